//! Build-side commands: init, commit, refs, log, keygen.

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use agent_linux::fsmeta::XattrPolicy;
use agent_linux::progress::Reporter;
use agent_linux::repo::{self, CommitInfo, CommitMeta, Repo};
use agent_linux::{keys, tree};
use anyhow::{bail, Context};

use super::output::{self, human_bytes};
use super::{esc, RepoArg};

/// Arguments of `ecu-agent init`.
#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// The directory to create the repository in (new, or empty).
    #[arg(long, value_name = "DIR")]
    repo: PathBuf,
}

pub fn init(a: InitArgs) -> anyhow::Result<()> {
    Repo::init(&a.repo)
        .with_context(|| format!("cannot create a repository at {}", a.repo.display()))?;
    eprintln!("initialized repository {}", a.repo.display());
    Ok(())
}

/// Which extended attributes `commit` records.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum XattrsArg {
    /// `user.*` only.
    User,
    /// Every attribute (security.*, trusted.* need root to read and to apply on the device).
    All,
    /// None.
    None,
}

/// Arguments of `ecu-agent commit`.
#[derive(Debug, clap::Args)]
pub struct CommitArgs {
    #[command(flatten)]
    repo: RepoArg,
    /// The ref to commit on, e.g. `ecu/armv7/main` (letters, digits, `.`, `_`, `-`, `/`).
    #[arg(long, value_name = "REF")]
    branch: String,
    /// The directory tree to record: regular files, executables, symlinks, empty files and
    /// directories, with their modes, owners and xattrs.
    #[arg(long, value_name = "DIR")]
    tree: PathBuf,
    /// Version string of the commit (at most 255 bytes), e.g. `9.1`.
    #[arg(long, value_name = "V", default_value = "")]
    version: String,
    /// One-line subject.
    #[arg(long, short = 's', value_name = "S", default_value = "")]
    subject: String,
    /// Longer description.
    #[arg(long, short = 'b', value_name = "B", default_value = "")]
    body: String,
    /// Commit time in seconds since 1970-01-01 UTC (default: now). Set it for reproducible
    /// commits.
    #[arg(long, value_name = "T")]
    timestamp: Option<u64>,
    /// The commit's security version, for anti-rollback: a device refuses updates whose
    /// security version is below its floor, and raises the floor once an update has booted
    /// and been marked good. Raise it when the commit fixes a vulnerability that an older
    /// commit must not bring back. Default: the parent commit's (0 without a parent); a value
    /// below the parent's is refused.
    #[arg(long, value_name = "N")]
    security_version: Option<u64>,
    /// Also sign the commit with this ed25519 secret key (from `ecu-agent keygen`); the
    /// detached signature is stored beside the commit and shown by `log`.
    #[arg(long, value_name = "K")]
    sign_key: Option<PathBuf>,
    /// Which extended attributes to record.
    #[arg(long, value_enum, default_value = "user", value_name = "WHICH")]
    xattrs: XattrsArg,
    /// Record this owner for every entry instead of the owners on disk, e.g. `0:0`.
    #[arg(long, value_name = "UID:GID", value_parser = parse_owner)]
    owner: Option<(u32, u32)>,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    json: bool,
}

fn parse_owner(s: &str) -> Result<(u32, u32), String> {
    let (u, g) = s.split_once(':').ok_or("expected UID:GID, e.g. 0:0")?;
    Ok((
        u.parse().map_err(|_| format!("{u:?} is not a uid"))?,
        g.parse().map_err(|_| format!("{g:?} is not a gid"))?,
    ))
}

#[derive(serde::Serialize)]
struct CommitOut<'a> {
    commit: String,
    parent: Option<String>,
    #[serde(rename = "ref")]
    ref_name: &'a str,
    version: &'a str,
    subject: &'a str,
    timestamp: u64,
    security_version: u64,
    files: u64,
    directories: u64,
    bytes: u64,
    new_objects: u64,
}

pub fn commit(a: CommitArgs) -> anyhow::Result<()> {
    // Validate everything before touching the repository.
    repo::validate_ref(&a.branch)?;
    if a.version.len() > agent_core::object::MAX_VERSION_LEN {
        bail!(
            "--version is {} bytes, at most {} are allowed",
            a.version.len(),
            agent_core::object::MAX_VERSION_LEN
        );
    }
    let timestamp = match a.timestamp {
        Some(t) => t,
        None => SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    };
    let seed = a.sign_key.as_deref().map(keys::read_key).transpose()?;
    let repo = Repo::open(&a.repo.repo)?;
    let _lock = repo.lock()?;
    // Refuse a security version below the parent's before reading the tree.
    if let (Some(given), Some(parent)) = (a.security_version, repo.read_ref(&a.branch)?) {
        let parent_security_version = repo.read_commit(&parent)?.security_version;
        if given < parent_security_version {
            return Err(repo::RepoError::SecurityVersionBelowParent {
                given,
                parent,
                parent_security_version,
            })
            .with_context(|| format!("cannot commit on {}", a.branch));
        }
    }
    let opts = tree::BuildOptions {
        xattrs: match a.xattrs {
            XattrsArg::User => XattrPolicy::User,
            XattrsArg::All => XattrPolicy::All,
            XattrsArg::None => XattrPolicy::None,
        },
        owner: a.owner,
    };
    let mut progress = Reporter::text();
    let (root, stats) = tree::build_dir(&repo, &a.tree, &opts, &mut |s| {
        progress.message(|| format!("reading tree: {} files, {}", s.files, human_bytes(s.bytes)))
    })
    .with_context(|| format!("cannot record {}", a.tree.display()))?;
    progress.clear();
    let meta = CommitMeta {
        version: a.version.clone(),
        subject: a.subject.clone(),
        body: a.body.clone(),
        timestamp,
    };
    let id = repo
        .commit_with_security_version(&a.branch, root, &meta, a.security_version)
        .with_context(|| format!("cannot commit on {}", a.branch))?;
    if let Some(seed) = seed {
        repo.sign_commit(&id, &seed)?;
    }
    let info = repo.read_commit(&id)?;
    if a.json {
        output::json(&CommitOut {
            commit: id.to_string(),
            parent: info.parent.map(|p| p.to_string()),
            ref_name: &a.branch,
            version: &a.version,
            subject: &a.subject,
            timestamp,
            security_version: info.security_version,
            files: stats.files,
            directories: stats.dirs,
            bytes: stats.bytes,
            new_objects: stats.new_objects,
        })
    } else {
        eprintln!(
            "{}: {} files, {} directories, {}, {} new objects",
            a.branch,
            stats.files,
            stats.dirs,
            human_bytes(stats.bytes),
            stats.new_objects
        );
        Ok(output::out(&format!("{id}\n"))?)
    }
}

/// Arguments of `ecu-agent refs`.
#[derive(Debug, clap::Args)]
pub struct RefsArgs {
    #[command(flatten)]
    repo: RepoArg,
    /// Print the refs as JSON on stdout (`[{"ref": .., "commit": .., "security_version": ..}]`).
    #[arg(long)]
    json: bool,
}

pub fn refs(a: RefsArgs) -> anyhow::Result<()> {
    let repo = Repo::open(&a.repo.repo)?;
    let refs = repo.list_refs()?;
    if a.json {
        let v = refs
            .iter()
            .map(|(r, c)| {
                // A ref whose commit is missing (a partial repository) has no security version.
                let sv = match repo.read_commit(c) {
                    Ok(info) => Some(info.security_version),
                    Err(repo::RepoError::MissingObject { .. }) => None,
                    Err(e) => return Err(e),
                };
                Ok(serde_json::json!({"ref": r, "commit": c.to_string(), "security_version": sv}))
            })
            .collect::<Result<Vec<_>, _>>()?;
        return output::json(&v);
    }
    let mut s = String::new();
    for (r, c) in refs {
        s.push_str(&format!("{} {c}\n", esc(&r)));
    }
    Ok(output::out(&s)?)
}

/// Arguments of `ecu-agent log`.
#[derive(Debug, clap::Args)]
pub struct LogArgs {
    #[command(flatten)]
    repo: RepoArg,
    /// A ref name, a commit id or a unique prefix of one (at least 4 hex characters).
    #[arg(value_name = "REF")]
    rev: String,
    /// Print the history as JSON on stdout (an array, newest first).
    #[arg(long)]
    json: bool,
}

#[derive(serde::Serialize)]
struct LogEntry {
    commit: String,
    parent: Option<String>,
    content_checksum: String,
    timestamp: u64,
    date: String,
    version: String,
    subject: String,
    body: String,
    security_version: u64,
    signed_by: Option<String>,
}

fn log_entry(repo: &Repo, c: &CommitInfo) -> anyhow::Result<LogEntry> {
    Ok(LogEntry {
        commit: c.id.to_string(),
        parent: c.parent.map(|p| p.to_string()),
        content_checksum: c.content_checksum().to_string(),
        timestamp: c.timestamp,
        date: output::format_utc(c.timestamp),
        version: c.version.clone(),
        subject: c.subject.clone(),
        body: c.body.clone(),
        security_version: c.security_version,
        signed_by: repo
            .commit_signer(&c.id)?
            .map(|k| agent_core::ObjectId(k).to_string()),
    })
}

pub fn log(a: LogArgs) -> anyhow::Result<()> {
    let repo = Repo::open(&a.repo.repo)?;
    let id = repo.resolve(&a.rev)?;
    let (history, missing) = repo.history(&id)?;
    let entries = history
        .iter()
        .map(|c| log_entry(&repo, c))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if a.json {
        return output::json(&entries);
    }
    let mut s = String::new();
    for e in &entries {
        s.push_str(&format!("commit {}\n", e.commit));
        if let Some(p) = &e.parent {
            s.push_str(&format!("Parent:  {p}\n"));
        }
        s.push_str(&format!("ContentChecksum:  {}\n", e.content_checksum));
        s.push_str(&format!("Date:  {}\n", e.date));
        if !e.version.is_empty() {
            s.push_str(&format!("Version: {}\n", esc(&e.version)));
        }
        if e.security_version != 0 {
            s.push_str(&format!("Security-Version: {}\n", e.security_version));
        }
        if let Some(k) = &e.signed_by {
            s.push_str(&format!("Signed-by: ed25519 {k}\n"));
        }
        s.push('\n');
        if !e.subject.is_empty() {
            s.push_str(&format!("    {}\n\n", esc(&e.subject)));
        }
        if !e.body.is_empty() {
            for line in e.body.lines() {
                s.push_str(&format!("    {}\n", esc(line)));
            }
            s.push('\n');
        }
    }
    if let Some(m) = missing {
        s.push_str(&format!(
            "<< History beyond this commit not fetched ({m} is not in the repository) >>\n"
        ));
    }
    Ok(output::out(&s)?)
}

/// Arguments of `ecu-agent keygen`.
#[derive(Debug, clap::Args)]
pub struct KeygenArgs {
    /// Where to write the secret key (64 hex characters, mode 0600); the public key goes to
    /// the same path with `.pub` appended. Existing files are never overwritten.
    #[arg(long, value_name = "K")]
    out: PathBuf,
}

pub fn keygen(a: KeygenArgs) -> anyhow::Result<()> {
    let public = keys::keygen(&a.out)?;
    eprintln!(
        "wrote {} (secret, keep it private) and {}",
        a.out.display(),
        keys::pub_path(&a.out).display()
    );
    Ok(output::out(&format!("{}\n", agent_core::ObjectId(public)))?)
}

/// Arguments of `ecu-agent fsck`.
#[derive(Debug, clap::Args)]
pub struct FsckArgs {
    #[command(flatten)]
    repo: RepoArg,
    /// Commits to check (refs, ids or unique prefixes); every ref's head when none is given.
    #[arg(value_name = "REF")]
    revs: Vec<String>,
    /// Also check every ancestor that is in the repository.
    #[arg(long)]
    history: bool,
    /// Print what was checked as JSON on stdout.
    #[arg(long)]
    json: bool,
}

pub fn fsck(a: FsckArgs) -> anyhow::Result<()> {
    let repo = Repo::open(&a.repo.repo)?;
    let mut ids = Vec::new();
    if a.revs.is_empty() {
        ids.extend(repo.list_refs()?.into_iter().map(|(_, id)| id));
    } else {
        for r in &a.revs {
            ids.push(repo.resolve(r)?);
        }
    }
    if a.history {
        let heads = std::mem::take(&mut ids);
        for h in heads {
            ids.extend(repo.history(&h)?.0.into_iter().map(|c| c.id));
        }
    }
    ids.sort();
    ids.dedup();
    let mut out = Vec::new();
    let mut progress = Reporter::text();
    for id in &ids {
        progress.message(|| format!("checking {id}"));
        let stats = repo
            .fsck_commit(id)
            .with_context(|| format!("commit {id} is damaged"))?;
        out.push(serde_json::json!({"commit": id.to_string(), "stats": stats}));
        if !a.json {
            progress.suspend(|| {
                eprintln!(
                    "{id}: ok ({} files, {} directories, {})",
                    stats.files,
                    stats.dirtrees,
                    human_bytes(stats.bytes)
                )
            });
        }
    }
    progress.clear();
    if a.json {
        return output::json(&out);
    }
    Ok(())
}
