//! Checking the index (signature, serial, expiry) and choosing what to take from it: [`plan`],
//! and the highest serial the device accepted ([`read_serial`], [`record_serial`]).

use std::io;
use std::path::Path;

use serde::Serialize;

use crate::deploy::{Deployer, InstallOptions};
use crate::index::{self, Entry, Index, KeyPolicy};

use super::{Source, UpgradeError, SERIAL_FILE};

/// What the index is, once accepted.
#[derive(Debug, Clone, Serialize)]
pub struct IndexInfo {
    /// Its serial.
    pub serial: u64,
    /// When it was written.
    pub created: u64,
    /// When it expires (0: never).
    pub expires: u64,
    /// Its signature.
    pub signature: index::Signature,
    /// Entries it lists.
    pub entries: usize,
}

/// What `upgrade` does about the index's target: `action` in `--json` (`install`,
/// `up-to-date`, `staged`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// A file is taken.
    Install,
    /// Nothing: the booted commit is the target.
    UpToDate,
    /// Nothing: the target is already what the next boot tries.
    Staged,
}

/// Which kind of file `upgrade` takes: `kind` in `--json` (`delta`, `from-scratch`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FileKind {
    /// A delta from the booted commit.
    Delta,
    /// A from-scratch file.
    FromScratch,
}

impl std::fmt::Display for FileKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FileKind::Delta => "delta",
            FileKind::FromScratch => "from-scratch",
        })
    }
}

/// What `upgrade` takes (or why it takes nothing).
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// Whether a file is taken, and why not.
    pub action: Action,
    /// The index.
    pub index: IndexInfo,
    /// The ref.
    #[serde(rename = "ref")]
    pub ref_name: String,
    /// The booted commit, if any.
    pub booted: Option<String>,
    /// The target commit.
    pub to: String,
    /// The target's version.
    pub version: String,
    /// The target's security version.
    pub security_version: u64,
    /// A delta or a from-scratch file (for `install`).
    pub kind: Option<FileKind>,
    /// The file taken (for `install`).
    pub file: Option<Entry>,
    /// Where the file is (for `install`).
    pub location: Option<String>,
}

/// Checks the index (signature, serial against `seen`, expiry against `now`) and picks what
/// to take for `ref_name` (or the ref the booted deployment is on, or the index's only ref).
pub fn plan(
    d: &Deployer,
    bytes: &[u8],
    source: &Source,
    opts: &InstallOptions,
    ref_name: Option<&str>,
    now: u64,
) -> Result<(Plan, Index), UpgradeError> {
    let trust = d.trust(opts).map_err(UpgradeError::Deploy)?;
    let (idx, signature) = index::verify(
        bytes,
        &KeyPolicy {
            trusted: &trust.trusted_keys,
            revoked: &trust.revoked_keys,
            allow_unsigned: trust.allow_unsigned,
        },
    )
    .map_err(UpgradeError::Index)?;
    let seen = read_serial(d.sysroot().path())?;
    if idx.serial < seen {
        return Err(UpgradeError::Rollback {
            serial: idx.serial,
            seen,
        });
    }
    if idx.expires != 0 && now > idx.expires {
        return Err(UpgradeError::Expired {
            expires: idx.expires,
            now,
        });
    }
    let st = d.status().map_err(UpgradeError::Deploy)?;
    let booted = st
        .deployments
        .iter()
        .find(|x| x.booted && !x.commit.is_empty());
    let mut refs: Vec<String> = Vec::new();
    for e in &idx.entries {
        if !refs.contains(&e.ref_name) {
            refs.push(e.ref_name.clone());
        }
    }
    let booted_ref = booted.and_then(|b| b.ref_name.clone());
    let chosen = match ref_name {
        Some(r) => Some(r.to_string()),
        None => booted_ref
            .filter(|r| refs.contains(r))
            .or_else(|| {
                let followed: Vec<&String> = refs
                    .iter()
                    .filter(|r| st.refs_followed.contains(r))
                    .collect();
                (followed.len() == 1).then(|| followed[0].clone())
            })
            .or_else(|| (refs.len() == 1).then(|| refs[0].clone())),
    };
    let Some(chosen) = chosen else {
        return Err(UpgradeError::NoRef { wanted: None, refs });
    };
    let mine: Vec<&Entry> = idx
        .entries
        .iter()
        .filter(|e| e.ref_name == chosen)
        .collect();
    let Some(first) = mine.first() else {
        return Err(UpgradeError::NoRef {
            wanted: Some(chosen),
            refs,
        });
    };
    let booted_commit = booted.map(|b| b.commit.clone());
    let info = IndexInfo {
        serial: idx.serial,
        created: idx.created,
        expires: idx.expires,
        signature,
        entries: idx.entries.len(),
    };
    let mut p = Plan {
        action: Action::Install,
        index: info,
        ref_name: chosen.clone(),
        booted: booted_commit.clone(),
        to: first.to.to_string(),
        version: first.version.clone(),
        security_version: first.security_version,
        kind: None,
        file: None,
        location: None,
    };
    if booted_commit.as_deref() == Some(p.to.as_str()) {
        p.action = Action::UpToDate;
        return Ok((p, idx));
    }
    if st
        .deployments
        .iter()
        .any(|x| x.next_boot && !x.booted && x.commit == p.to)
    {
        p.action = Action::Staged;
        return Ok((p, idx));
    }
    if first.security_version < trust.floor {
        return Err(UpgradeError::BelowFloor {
            security_version: first.security_version,
            floor: trust.floor,
        });
    }
    let repo = d.sysroot().repo();
    let delta = mine.iter().find(|e| {
        e.from.is_some_and(|f| {
            Some(f.to_string()) == booted_commit
                && repo
                    .has_object(agent_core::object::ObjectKind::Commit, &f)
                    .unwrap_or(false)
        })
    });
    let (kind, entry) = match delta {
        Some(e) => (FileKind::Delta, *e),
        None => match mine.iter().find(|e| e.from.is_none()) {
            Some(e) => (FileKind::FromScratch, *e),
            None => {
                return Err(UpgradeError::NothingApplicable {
                    ref_name: chosen,
                    booted: booted_commit,
                    sources: mine
                        .iter()
                        .filter_map(|e| e.from.map(|f| f.to_string()))
                        .collect(),
                })
            }
        },
    };
    p.kind = Some(kind);
    p.location = Some(source.locate(&entry.file));
    p.file = Some(entry.clone());
    Ok((p, idx))
}

/// The highest index serial the sysroot at `root` accepted (0 when none).
pub fn read_serial(root: &Path) -> Result<u64, UpgradeError> {
    let p = root.join(SERIAL_FILE);
    let err = |error: String| UpgradeError::SerialFile {
        path: p.clone(),
        error,
    };
    let text = match std::fs::read(&p) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(err(e.to_string())),
    };
    let t = String::from_utf8_lossy(&text[..text.len().min(32)]).into_owned();
    let t = t.strip_suffix('\n').unwrap_or(&t);
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
        return Err(err(format!("it holds {t:?}, not a number")));
    }
    t.parse().map_err(|_| err(format!("{t:?} is out of range")))
}

/// Records `serial` as the highest accepted (atomically), when it is higher.
pub fn record_serial(root: &Path, serial: u64) -> Result<(), UpgradeError> {
    if serial <= read_serial(root)? {
        return Ok(());
    }
    let p = root.join(SERIAL_FILE);
    crate::fsops::write_atomic(&p, format!("{serial}\n").as_bytes(), 0o644).map_err(|e| {
        UpgradeError::SerialFile {
            path: p.clone(),
            error: e.to_string(),
        }
    })
}

#[cfg(test)]
mod test {
    use super::{Action, FileKind};

    /// `--json` prints the action and the kind of file as these strings (and the text output
    /// the kind alike); scripts match on them.
    #[test]
    fn actions_serialize_as_before() {
        let s = |a| serde_json::to_string(&a).unwrap();
        assert_eq!(s(Action::Install), r#""install""#);
        assert_eq!(s(Action::UpToDate), r#""up-to-date""#);
        assert_eq!(s(Action::Staged), r#""staged""#);
        let k = |k| serde_json::to_string(&k).unwrap();
        assert_eq!(k(FileKind::Delta), r#""delta""#);
        assert_eq!(k(FileKind::FromScratch), r#""from-scratch""#);
        assert_eq!(FileKind::FromScratch.to_string(), "from-scratch");
    }
}
