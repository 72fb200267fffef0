//! Checking a deployment directory against its commit (an fsck of one checkout).
//!
//! Every entry of the commit's tree must be in the directory with the right type; a regular
//! file's content, hashed together with the file object's canonical metadata from the
//! repository, must give the object's id; modes must match (and owners, when running as
//! root); symlink targets must match; and the directory must hold nothing else.
//! Extended attributes are not compared.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::{self, Read};
use std::os::fd::BorrowedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fs::{AtFlags, FileType, Mode, OFlags};

use agent_core::object::{DirMeta, ObjectId, ObjectKind, S_IPERM};
use sha2::{Digest, Sha256};

use bootloader_hooks::Slot;

use super::{adopt, DeployError, Deployer};
use crate::fsops::walk::{self, DirStack};
use crate::repo::{io_err, OwnedEntry, Repo, RepoError, MAX_TREE_DEPTH};

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

/// What `fstatat` without following says about an entry.
struct Md {
    ty: FileType,
    mode: u32,
    uid: u32,
    gid: u32,
    size: u64,
}

fn md_at(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<Md> {
    let st = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)?;
    Ok(Md {
        ty: FileType::from_raw_mode(st.st_mode),
        mode: st.st_mode,
        uid: st.st_uid,
        gid: st.st_gid,
        size: st.st_size as u64,
    })
}

/// Compares `dir` with the tree of `commit` in `repo`. Repository errors (a missing or
/// corrupt object) are errors; differences of the directory are listed in the report.
///
/// The directory is walked through descriptors ([`DirStack`]: entries opened without
/// following symlinks, a bounded number of directories open, no recursion), so any tree
/// within [`MAX_TREE_DEPTH`] is verified whatever its path lengths.
pub fn verify(repo: &Repo, commit: &ObjectId, dir: &Path) -> Result<VerifyReport, RepoError> {
    let c = repo.read_commit(commit)?;
    let mut r = VerifyReport::default();
    let root_meta = repo.read_metadata_object(ObjectKind::DirMeta, &c.root_meta)?;
    let root = match walk::open_dir(dir) {
        Ok(fd) => fd,
        Err(e) => {
            r.problems.push(format!("{}: {e}", dir.display()));
            return Ok(r);
        }
    };
    let rmd = rustix::fs::fstat(&root).map_err(|e| io_err("stat", dir)(e.into()))?;
    let rmd = Md {
        ty: FileType::Directory,
        mode: rmd.st_mode,
        uid: rmd.st_uid,
        gid: rmd.st_gid,
        size: 0,
    };
    check_dirmeta(&root_meta, &c.root_meta, &rmd, dir, &mut r)?;
    let mut s = DirStack::new(root, dir);
    // One frame per directory of the path walked: its entries and the next one to check.
    let mut frames: Vec<(Vec<OwnedEntry>, usize)> = Vec::new();
    let mut tree = Some(c.root_tree);
    loop {
        if let Some(t) = tree.take() {
            if r.problems.len() >= MAX_PROBLEMS {
                break;
            }
            r.dirs += 1;
            let entries = repo.read_dirtree(&t)?;
            let here = s.path();
            let found = s.top().and_then(walk::list);
            match found {
                Ok(found) => {
                    let mut expected: Vec<&[u8]> = entries.iter().map(|e| e.name()).collect();
                    expected.sort();
                    let mut found: Vec<OsString> = found.into_iter().map(|(n, _)| n).collect();
                    found.sort();
                    for extra in found
                        .iter()
                        .filter(|f| expected.binary_search(&f.as_bytes()).is_err())
                    {
                        r.problems
                            .push(format!("{}: not in the commit", here.join(extra).display()));
                    }
                    frames.push((entries, 0));
                }
                Err(e) => {
                    r.problems.push(format!("{}: {e}", here.display()));
                    frames.push((Vec::new(), 0));
                }
            }
        }
        let Some((entries, next)) = frames.last_mut() else {
            break;
        };
        let Some(e) = entries.get(*next).cloned() else {
            frames.pop();
            if s.leave().is_none() {
                break;
            }
            continue;
        };
        *next += 1;
        let name = OsStr::from_bytes(e.name()).to_os_string();
        let p = s.short_child_path(&name);
        let dirfd = match s.top() {
            Ok(fd) => fd,
            Err(err) => {
                r.problems.push(format!("{}: {err}", p.display()));
                continue;
            }
        };
        let md = match md_at(dirfd, &name) {
            Ok(m) => m,
            Err(err) => {
                r.problems.push(format!("{}: {err}", p.display()));
                continue;
            }
        };
        match e {
            OwnedEntry::Dir { tree: t, meta, .. } => {
                if md.ty != FileType::Directory {
                    r.problems
                        .push(format!("{}: should be a directory", p.display()));
                    continue;
                }
                if frames.len() > MAX_TREE_DEPTH {
                    return Err(RepoError::TooDeep(*commit));
                }
                let mb = repo.read_metadata_object(ObjectKind::DirMeta, &meta)?;
                check_dirmeta(&mb, &meta, &md, &p, &mut r)?;
                match s.enter(&name) {
                    Ok(()) => tree = Some(t),
                    Err(err) => r.problems.push(format!("{}: {err}", p.display())),
                }
            }
            OwnedEntry::File { id, .. } => check_file(repo, &id, dirfd, &name, &p, &md, &mut r)?,
        }
    }
    Ok(r)
}

/// Checks permission bits and (when running as root) the owner against the commit's.
fn check_mode_owner(mode: u32, uid: u32, gid: u32, md: &Md, p: &Path, r: &mut VerifyReport) {
    if md.mode & S_IPERM != mode & S_IPERM {
        r.problems.push(format!(
            "{}: mode {:o} but the commit says {:o}",
            p.display(),
            md.mode & S_IPERM,
            mode & S_IPERM
        ));
    }
    if crate::fsmeta::is_root() && (md.uid != uid || md.gid != gid) {
        r.problems.push(format!(
            "{}: owner {}:{} but the commit says {uid}:{gid}",
            p.display(),
            md.uid,
            md.gid
        ));
    }
}

fn check_dirmeta(
    bytes: &[u8],
    id: &ObjectId,
    md: &Md,
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
    dir: BorrowedFd<'_>,
    name: &OsStr,
    p: &Path,
    md: &Md,
    r: &mut VerifyReport,
) -> Result<(), RepoError> {
    let obj = repo.open_file_object(id)?;
    let h = obj.header;
    if h.is_symlink() {
        r.symlinks += 1;
        if md.ty != FileType::Symlink {
            r.problems
                .push(format!("{}: should be a symlink", p.display()));
            return Ok(());
        }
        match rustix::fs::readlinkat(dir, name, Vec::new()) {
            Ok(t) if t.as_bytes() == obj.target() => {}
            Ok(t) => r.problems.push(format!(
                "{}: points to {} but the commit says {}",
                p.display(),
                String::from_utf8_lossy(t.as_bytes()),
                String::from_utf8_lossy(obj.target())
            )),
            Err(e) => r.problems.push(format!("{}: {e}", p.display())),
        }
        return Ok(());
    }
    r.files += 1;
    if md.ty != FileType::RegularFile {
        r.problems
            .push(format!("{}: should be a regular file", p.display()));
        return Ok(());
    }
    check_mode_owner(h.mode, h.uid, h.gid, md, p, r);
    if md.size != h.size {
        r.problems.push(format!(
            "{}: {} bytes but the commit says {}",
            p.display(),
            md.size,
            h.size
        ));
        return Ok(());
    }
    let mut hasher = Sha256::new();
    hasher.update(&obj.meta);
    let opened = rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    );
    let mut f = match opened {
        Ok(f) => fs::File::from(f),
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

impl Deployer {
    /// Verifies the deployment in `slot` (default: the booted one) against its commit.
    pub fn verify_slot(&self, slot: Option<Slot>) -> Result<(String, VerifyReport), DeployError> {
        let (_, state) = self.ready()?;
        let s = match slot {
            Some(s) => s,
            None => self.booted_slot()?,
        };
        let st = state.slot(s);
        if adopt::is_adopted(st.name.as_str()) {
            return Err(DeployError::NotADeployment(s));
        }
        let Some(c) = Self::commit_of_slot(st)? else {
            return Err(DeployError::BootedSlotEmpty(s));
        };
        let name = st.name.as_str().to_string();
        let r = verify(self.sysroot.repo(), &c, &self.deployment_path(&name))?;
        Ok((name, r))
    }
}
