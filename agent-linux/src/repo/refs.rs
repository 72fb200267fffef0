//! Refs (`R/refs/heads/<name>`): name rules, reading, writing and listing them, and
//! resolving a revision (a ref, a commit id or a unique prefix) to a commit.

use std::fs;
use std::io;
use std::path::PathBuf;

use agent_core::object::{self, ObjectId, ObjectKind};

use super::{io_err, Repo, RepoError};

/// Which refs [`Repo::infer_ref`] takes as holding a commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefSearch {
    /// The first ref (by name) whose head is the commit (`deploy`).
    Head,
    /// The first ref (by name) whose history holds the commit, its head included
    /// (`update generate`).
    History,
    /// The first ref whose head is the commit, else the first whose history holds it
    /// (`status`).
    HeadThenHistory,
}

/// Longest ref name in bytes (as the `.update` format allows).
pub const MAX_REF_LEN: usize = agent_core::wire::MAX_REF_LEN;

/// Checks a ref name: `/`-separated components, each a valid name of `[A-Za-z0-9._-]` not
/// starting with `.` or `-`, at most [`MAX_REF_LEN`] bytes in all.
pub fn validate_ref(name: &str) -> Result<(), RepoError> {
    let bad = |reason| {
        Err(RepoError::BadRefName {
            name: name.to_string(),
            reason,
        })
    };
    if name.is_empty() {
        return bad("it is empty");
    }
    if name.len() > MAX_REF_LEN {
        return bad("it is longer than 255 bytes");
    }
    for comp in name.split('/') {
        if object::validate_name(comp.as_bytes()).is_err() {
            return bad(
                "each `/`-separated component must be a non-empty name other than `.` and `..`",
            );
        }
        if comp.starts_with('.') || comp.starts_with('-') {
            return bad("a component may not start with `.` or `-`");
        }
        if !comp
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
        {
            return bad("only letters, digits, `.`, `_`, `-` and `/` are allowed");
        }
    }
    Ok(())
}

impl Repo {
    fn ref_path(&self, name: &str) -> PathBuf {
        self.root.join("refs/heads").join(name)
    }

    /// The commit a ref points to, or `None` when there is no such ref.
    pub fn read_ref(&self, name: &str) -> Result<Option<ObjectId>, RepoError> {
        validate_ref(name)?;
        let p = self.ref_path(name);
        match fs::symlink_metadata(&p) {
            Ok(m) if m.is_file() => {}
            Ok(_) => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(20) => {
                return Ok(None)
            }
            Err(e) => return Err(io_err("look up", &p)(e)),
        }
        let text = fs::read_to_string(&p).map_err(io_err("read", &p))?;
        ObjectId::from_hex(text.trim())
            .map(Some)
            .map_err(|_| RepoError::BadRefFile(p))
    }

    /// Points a ref at a commit, atomically.
    pub fn write_ref(&self, name: &str, id: &ObjectId) -> Result<(), RepoError> {
        validate_ref(name)?;
        self.write_atomic(&self.ref_path(name), format!("{id}\n").as_bytes())
    }

    /// Every ref and its commit, sorted by name.
    pub fn list_refs(&self) -> Result<Vec<(String, ObjectId)>, RepoError> {
        let mut out = Vec::new();
        let base = self.root.join("refs/heads");
        let mut stack = vec![(base.clone(), String::new())];
        while let Some((dir, prefix)) = stack.pop() {
            let rd = match fs::read_dir(&dir) {
                Ok(rd) => rd,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err("read directory", &dir)(e)),
            };
            for entry in rd {
                let entry = entry.map_err(io_err("read directory", &dir))?;
                let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                    continue;
                };
                let full = if prefix.is_empty() {
                    name
                } else {
                    format!("{prefix}/{name}")
                };
                let ft = entry.file_type().map_err(io_err("stat", &entry.path()))?;
                if ft.is_dir() {
                    stack.push((entry.path(), full));
                } else if ft.is_file() && validate_ref(&full).is_ok() {
                    let text =
                        fs::read_to_string(entry.path()).map_err(io_err("read", &entry.path()))?;
                    let id = ObjectId::from_hex(text.trim())
                        .map_err(|_| RepoError::BadRefFile(entry.path()))?;
                    out.push((full, id));
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// The ref a command means when it was given `rev` (a ref name, a commit id or a prefix
    /// of one) that resolved to `commit`: `rev` itself when it names a ref of the repository,
    /// else a ref that holds `commit` as `search` says, else `None`. A ref whose history
    /// cannot be read (a damaged commit object) is passed over: the question is which ref
    /// holds the commit, and `fsck` is what reports the damage.
    pub fn infer_ref(
        &self,
        rev: Option<&str>,
        commit: &ObjectId,
        search: RefSearch,
    ) -> Result<Option<String>, RepoError> {
        if let Some(rev) = rev {
            if validate_ref(rev).is_ok() && self.read_ref(rev)?.is_some() {
                return Ok(Some(rev.to_string()));
            }
        }
        let refs = self.list_refs()?;
        let by_head = || refs.iter().find(|(_, head)| head == commit);
        let by_history = || {
            refs.iter().find(|(_, head)| {
                self.history(head)
                    .is_ok_and(|(h, _)| h.iter().any(|c| c.id == *commit))
            })
        };
        let found = match search {
            RefSearch::Head => by_head(),
            RefSearch::History => by_history(),
            RefSearch::HeadThenHistory => by_head().or_else(by_history),
        };
        Ok(found.map(|(name, _)| name.clone()))
    }

    /// Resolves a ref name, a full commit id or a unique prefix of one (at least 4 hex
    /// characters) to a commit in the repository.
    pub fn resolve(&self, rev: &str) -> Result<ObjectId, RepoError> {
        if validate_ref(rev).is_ok() {
            if let Some(id) = self.read_ref(rev)? {
                return Ok(id);
            }
        }
        if let Ok(id) = ObjectId::from_hex(rev) {
            return if self.has_commit(&id)? {
                Ok(id)
            } else {
                Err(RepoError::UnknownRevision(rev.to_string()))
            };
        }
        if rev.len() >= 4 && rev.len() < 64 && rev.bytes().all(|b| b.is_ascii_hexdigit()) {
            let matches = self.list_objects(ObjectKind::Commit, &rev.to_ascii_lowercase())?;
            return match matches.len() {
                0 => Err(RepoError::UnknownRevision(rev.to_string())),
                1 => Ok(matches[0]),
                n => Err(RepoError::AmbiguousRevision {
                    rev: rev.to_string(),
                    matches: n,
                }),
            };
        }
        Err(RepoError::UnknownRevision(rev.to_string()))
    }
}
