//! Checking a deployment directory against its commit (an fsck of one checkout).
//!
//! Every entry of the commit's tree must be in the directory with the right type; a regular
//! file's content, hashed together with the file object's canonical metadata from the
//! repository, must give the object's id; modes must match (and owners, when running as
//! root); symlink targets must match; and the directory must hold nothing else.
//! Extended attributes are not compared.

use std::ffi::OsStr;
use std::fs;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use agent_core::object::{DirMeta, ObjectId, ObjectKind, S_IPERM};
use sha2::{Digest, Sha256};

use crate::repo::{OwnedEntry, Repo, RepoError, MAX_TREE_DEPTH};

/// What a verification found.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct VerifyReport {
    /// Regular files checked.
    pub files: u64,
    /// Symlinks checked.
    pub symlinks: u64,
    /// Directories checked.
    pub dirs: u64,
    /// Each difference, as `path: what` (empty: the directory matches the commit).
    pub problems: Vec<String>,
}

impl VerifyReport {
    /// Whether the directory matches its commit.
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// The most problems recorded before giving up on a directory.
const MAX_PROBLEMS: usize = 100;

/// Compares `dir` with the tree of `commit` in `repo`. Repository errors (a missing or
/// corrupt object) are errors; differences of the directory are listed in the report.
pub fn verify(repo: &Repo, commit: &ObjectId, dir: &Path) -> Result<VerifyReport, RepoError> {
    let c = repo.read_commit(commit)?;
    let mut r = VerifyReport::default();
    let root_meta = repo.read_metadata_object(ObjectKind::DirMeta, &c.root_meta)?;
    match fs::symlink_metadata(dir) {
        Ok(m) if m.is_dir() => check_dirmeta(&root_meta, &c.root_meta, &m, dir, &mut r)?,
        Ok(_) => {
            r.problems
                .push(format!("{}: not a directory", dir.display()));
            return Ok(r);
        }
        Err(e) => {
            r.problems.push(format!("{}: {e}", dir.display()));
            return Ok(r);
        }
    }
    let mut stack = vec![(c.root_tree, dir.to_path_buf(), 0usize)];
    while let Some((tree, path, depth)) = stack.pop() {
        if r.problems.len() >= MAX_PROBLEMS {
            break;
        }
        if depth > MAX_TREE_DEPTH {
            return Err(RepoError::TooDeep(*commit));
        }
        r.dirs += 1;
        let entries = repo.read_dirtree(&tree)?;
        let mut expected: Vec<&[u8]> = entries.iter().map(|e| e.name()).collect();
        expected.sort();
        let mut found: Vec<Vec<u8>> = match fs::read_dir(&path) {
            Ok(rd) => rd
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().as_bytes().to_vec())
                .collect(),
            Err(e) => {
                r.problems.push(format!("{}: {e}", path.display()));
                continue;
            }
        };
        found.sort();
        for extra in found.iter().filter(|f| !expected.contains(&f.as_slice())) {
            r.problems.push(format!(
                "{}: not in the commit",
                path.join(OsStr::from_bytes(extra)).display()
            ));
        }
        for e in &entries {
            let p = path.join(OsStr::from_bytes(e.name()));
            let md = match fs::symlink_metadata(&p) {
                Ok(m) => m,
                Err(err) => {
                    r.problems.push(format!("{}: {err}", p.display()));
                    continue;
                }
            };
            match e {
                OwnedEntry::Dir { tree, meta, .. } => {
                    if !md.is_dir() {
                        r.problems
                            .push(format!("{}: should be a directory", p.display()));
                        continue;
                    }
                    let mb = repo.read_metadata_object(ObjectKind::DirMeta, meta)?;
                    check_dirmeta(&mb, meta, &md, &p, &mut r)?;
                    stack.push((*tree, p, depth + 1));
                }
                OwnedEntry::File { id, .. } => check_file(repo, id, &p, &md, &mut r)?,
            }
        }
    }
    Ok(r)
}

/// Checks permission bits and (when running as root) the owner against the commit's.
fn check_mode_owner(
    mode: u32,
    uid: u32,
    gid: u32,
    md: &fs::Metadata,
    p: &Path,
    r: &mut VerifyReport,
) {
    if md.mode() & S_IPERM != mode & S_IPERM {
        r.problems.push(format!(
            "{}: mode {:o} but the commit says {:o}",
            p.display(),
            md.mode() & S_IPERM,
            mode & S_IPERM
        ));
    }
    if crate::fsmeta::is_root() && (md.uid() != uid || md.gid() != gid) {
        r.problems.push(format!(
            "{}: owner {}:{} but the commit says {uid}:{gid}",
            p.display(),
            md.uid(),
            md.gid()
        ));
    }
}

fn check_dirmeta(
    bytes: &[u8],
    id: &ObjectId,
    md: &fs::Metadata,
    p: &Path,
    r: &mut VerifyReport,
) -> Result<(), RepoError> {
    let m = DirMeta::parse(bytes).map_err(|error| RepoError::CorruptObject {
        kind: ObjectKind::DirMeta,
        id: *id,
        error,
    })?;
    check_mode_owner(m.mode, m.uid, m.gid, md, p, r);
    Ok(())
}

fn check_file(
    repo: &Repo,
    id: &ObjectId,
    p: &Path,
    md: &fs::Metadata,
    r: &mut VerifyReport,
) -> Result<(), RepoError> {
    let obj = repo.open_file_object(id)?;
    let h = obj.header;
    if h.is_symlink() {
        r.symlinks += 1;
        if !md.file_type().is_symlink() {
            r.problems
                .push(format!("{}: should be a symlink", p.display()));
            return Ok(());
        }
        match fs::read_link(p) {
            Ok(t) if t.as_os_str().as_bytes() == obj.target() => {}
            Ok(t) => r.problems.push(format!(
                "{}: points to {} but the commit says {}",
                p.display(),
                t.display(),
                String::from_utf8_lossy(obj.target())
            )),
            Err(e) => r.problems.push(format!("{}: {e}", p.display())),
        }
        return Ok(());
    }
    r.files += 1;
    if !md.is_file() {
        r.problems
            .push(format!("{}: should be a regular file", p.display()));
        return Ok(());
    }
    check_mode_owner(h.mode, h.uid, h.gid, md, p, r);
    if md.len() != h.size {
        r.problems.push(format!(
            "{}: {} bytes but the commit says {}",
            p.display(),
            md.len(),
            h.size
        ));
        return Ok(());
    }
    let mut hasher = Sha256::new();
    hasher.update(&obj.meta);
    let mut f = match fs::File::open(p) {
        Ok(f) => f,
        Err(e) => {
            r.problems.push(format!("{}: {e}", p.display()));
            return Ok(());
        }
    };
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                r.problems.push(format!("{}: {e}", p.display()));
                return Ok(());
            }
        };
        hasher.update(&buf[..n]);
    }
    let found = ObjectId(hasher.finalize().into());
    if found != *id {
        r.problems.push(format!(
            "{}: content differs from the commit (file object {id})",
            p.display()
        ));
    }
    Ok(())
}
