//! Materializing a commit's tree in a directory.
//!
//! Everything is created relative to an open directory descriptor, new entries with
//! `O_CREAT | O_EXCL | O_NOFOLLOW` (files) or `mkdirat` (directories, which fails on anything
//! existing), and a directory is entered with `O_DIRECTORY | O_NOFOLLOW`. Names come from
//! dirtrees, which are parsed (every name one path component) before use. A checkout therefore
//! never writes outside its destination and never follows a symlink while writing, even one
//! it created itself.
//!
//! In [`CheckoutMode::Copy`] every file's content is hashed as it is copied and checked
//! against its object id, so a corrupted repository is caught. [`CheckoutMode::HardLink`]
//! links the repository's file objects instead (they carry their mode, owner and xattrs, see
//! `docs/REPO.md`); it needs the destination on the repository's filesystem, and the files must
//! then never be modified in place.

use std::ffi::OsStr;
use std::fmt;
use std::fs;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use agent_core::object::{DirMeta, ObjectId, ObjectKind};
use rustix::fs::{AtFlags, Gid, Mode, OFlags, Uid, CWD};
use sha2::{Digest, Sha256};

use crate::fsmeta;
use crate::fsops::walk::DirStack;
use crate::repo::{OwnedEntry, Repo, RepoError, TreeRoot, MAX_TREE_DEPTH};

/// How file objects get into the checkout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CheckoutMode {
    /// Copy contents (verified against their ids) and apply metadata.
    #[default]
    Copy,
    /// Hard-link the repository's file objects (same filesystem only).
    HardLink,
}

/// Why a checkout failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum CheckoutError {
    /// Reading the repository failed.
    Repo(RepoError),
    /// Writing the checkout failed.
    Io {
        /// What was being done.
        what: &'static str,
        /// The path (relative ones are inside the destination).
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The destination exists and is not an empty directory.
    NotEmpty(PathBuf),
    /// The destination is a symlink or not a directory.
    NotADirectory(PathBuf),
    /// The tree is deeper than [`MAX_TREE_DEPTH`].
    TooDeep(PathBuf),
}

impl fmt::Display for CheckoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckoutError::Repo(e) => e.fmt(f),
            CheckoutError::Io { what, path, source } => {
                write!(f, "cannot {what} {}: {source}", path.display())
            }
            CheckoutError::NotEmpty(p) => {
                write!(
                    f,
                    "{} exists and is not empty; check out into a new or empty directory",
                    p.display()
                )
            }
            CheckoutError::NotADirectory(p) => {
                write!(f, "{} is not a directory (or is a symlink); check out into a new or empty directory", p.display())
            }
            CheckoutError::TooDeep(p) => write!(
                f,
                "{} is nested deeper than {MAX_TREE_DEPTH} directories",
                p.display()
            ),
        }
    }
}

/// Transparent to the errors its messages include.
impl std::error::Error for CheckoutError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CheckoutError::Repo(e) => e.source(),
            CheckoutError::Io { source, .. } => source.source(),
            _ => None,
        }
    }
}

impl From<RepoError> for CheckoutError {
    fn from(e: RepoError) -> Self {
        CheckoutError::Repo(e)
    }
}

fn io_at<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> CheckoutError + 'a {
    move |source| CheckoutError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

fn errno_at<'a>(
    what: &'static str,
    path: &'a Path,
) -> impl FnOnce(rustix::io::Errno) -> CheckoutError + 'a {
    move |e| CheckoutError::Io {
        what,
        path: path.to_path_buf(),
        source: e.into(),
    }
}

/// What a checkout wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct CheckoutStats {
    /// Regular files.
    pub files: u64,
    /// Symlinks.
    pub symlinks: u64,
    /// Directories, the root included.
    pub dirs: u64,
    /// Content bytes.
    pub bytes: u64,
}

/// Checks out commit `commit` into `dest` (new, or an empty directory).
pub fn checkout(
    repo: &Repo,
    commit: &ObjectId,
    dest: &Path,
    mode: CheckoutMode,
) -> Result<CheckoutStats, CheckoutError> {
    let c = repo.read_commit(commit)?;
    checkout_tree(
        repo,
        TreeRoot {
            tree: c.root_tree,
            meta: c.root_meta,
        },
        dest,
        mode,
    )
}

/// Checks out a tree (a dirtree and the dirmeta of its root) into `dest` (new, or an empty
/// directory).
pub fn checkout_tree(
    repo: &Repo,
    root: TreeRoot,
    dest: &Path,
    mode: CheckoutMode,
) -> Result<CheckoutStats, CheckoutError> {
    // Read the root's metadata before creating anything.
    let meta_bytes = repo.read_metadata_object(ObjectKind::DirMeta, &root.meta)?;
    match fs::symlink_metadata(dest) {
        Ok(md) if md.file_type().is_dir() => {
            if fs::read_dir(dest)
                .map_err(io_at("read directory", dest))?
                .next()
                .is_some()
            {
                return Err(CheckoutError::NotEmpty(dest.to_path_buf()));
            }
        }
        Ok(_) => return Err(CheckoutError::NotADirectory(dest.to_path_buf())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            crate::fsops::mkdir(dest, 0o700).map_err(io_at("create directory", dest))?;
        }
        Err(e) => return Err(io_at("look up", dest)(e)),
    }
    let fd = rustix::fs::openat(
        CWD,
        dest,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(errno_at("open directory", dest))?;
    let mut w = Writer {
        repo,
        mode,
        stats: CheckoutStats::default(),
        buf: vec![0u8; 64 * 1024],
    };
    let keep = rustix::io::dup(&fd).map_err(errno_at("open directory", dest))?;
    w.tree(keep, &root.tree, dest)?;
    apply_dirmeta(fd.as_fd(), &root.meta, &meta_bytes, dest)?;
    w.stats.dirs += 1;
    crate::fsops::fsync_fd(&fd, dest).map_err(io_at("fsync", dest))?;
    Ok(w.stats)
}

fn apply_dirmeta(
    fd: BorrowedFd<'_>,
    id: &ObjectId,
    bytes: &[u8],
    path: &Path,
) -> Result<(), CheckoutError> {
    let m = DirMeta::parse(bytes).map_err(|error| RepoError::CorruptObject {
        kind: ObjectKind::DirMeta,
        id: *id,
        error,
    })?;
    crate::fsops::set_meta(fd, path, |fd| {
        fsmeta::apply_fd_meta(fd, m.mode, m.uid, m.gid, m.xattrs)
    })
    .map_err(io_at("set metadata of", path))
}

struct Writer<'a> {
    repo: &'a Repo,
    mode: CheckoutMode,
    stats: CheckoutStats,
    buf: Vec<u8>,
}

impl Writer<'_> {
    /// Writes the tree `tree` into the directory `root` (`dest` in messages): depth first,
    /// without recursion, through directory descriptors of which a bounded number is open
    /// ([`DirStack`]), so any tree within [`MAX_TREE_DEPTH`] checks out, whatever its path
    /// lengths and the process's limit of open files.
    fn tree(&mut self, root: OwnedFd, tree: &ObjectId, dest: &Path) -> Result<(), CheckoutError> {
        struct Frame {
            entries: Vec<OwnedEntry>,
            next: usize,
            /// The directory's dirmeta (the root's is applied by the caller).
            meta: Option<(ObjectId, Vec<u8>)>,
        }
        let mut s = DirStack::new(root, dest);
        // `read_dirtree` parses the object: every name is one path component.
        let mut frames = vec![Frame {
            entries: self.repo.read_dirtree(tree)?,
            next: 0,
            meta: None,
        }];
        while let Some(f) = frames.last_mut() {
            let Some(entry) = f.entries.get(f.next) else {
                let done = frames.pop().expect("a frame is on the stack");
                if let Some((id, bytes)) = done.meta {
                    let path = s.path();
                    // Metadata last, so that a read-only directory could be filled first.
                    let fd = s.top().map_err(io_at("open directory", &path))?;
                    apply_dirmeta(fd, &id, &bytes, &path)?;
                    s.leave();
                    self.stats.dirs += 1;
                }
                continue;
            };
            f.next += 1;
            let name = OsStr::from_bytes(entry.name()).to_os_string();
            let path = s.short_child_path(&name);
            match entry.clone() {
                OwnedEntry::File { id, .. } => {
                    let dir = s.top().map_err(io_at("open directory", &path))?;
                    self.file(dir, &name, &id, &path)?;
                }
                OwnedEntry::Dir { tree, meta, .. } => {
                    if frames.len() > MAX_TREE_DEPTH {
                        return Err(CheckoutError::TooDeep(path));
                    }
                    let meta_bytes = self.repo.read_metadata_object(ObjectKind::DirMeta, &meta)?;
                    let entries = self.repo.read_dirtree(&tree)?;
                    let dir = s.top().map_err(io_at("open directory", &path))?;
                    crate::fsops::mkdir_at(dir, &name, 0o700, &path)
                        .map_err(io_at("create directory", &path))?;
                    s.enter(&name).map_err(io_at("open directory", &path))?;
                    frames.push(Frame {
                        entries,
                        next: 0,
                        meta: Some((meta, meta_bytes)),
                    });
                }
            }
        }
        Ok(())
    }

    fn file(
        &mut self,
        dir: BorrowedFd<'_>,
        name: &OsStr,
        id: &ObjectId,
        path: &Path,
    ) -> Result<(), CheckoutError> {
        if self.mode == CheckoutMode::HardLink {
            let obj = self.repo.object_path(ObjectKind::File, id);
            if !self.repo.has_object(ObjectKind::File, id)? {
                return Err(RepoError::MissingObject {
                    kind: ObjectKind::File,
                    id: *id,
                }
                .into());
            }
            // Without AT_SYMLINK_FOLLOW, a symlink object is linked as the symlink itself.
            crate::fsops::link_at(&obj, dir.as_fd(), name, path)
                .map_err(io_at("hard-link", path))?;
            let md = fs::symlink_metadata(&obj).map_err(io_at("stat", &obj))?;
            if md.file_type().is_symlink() {
                self.stats.symlinks += 1;
            } else {
                self.stats.files += 1;
                self.stats.bytes += md.len();
            }
            return Ok(());
        }
        let obj = self.repo.open_file_object(id)?;
        if obj.header.is_symlink() {
            let target = OsStr::from_bytes(obj.target());
            crate::fsops::symlink_at(target, dir.as_fd(), name, path)
                .map_err(io_at("create symlink", path))?;
            if fsmeta::is_root() {
                rustix::fs::chownat(
                    dir,
                    name,
                    Some(Uid::from_raw(obj.header.uid)),
                    Some(Gid::from_raw(obj.header.gid)),
                    AtFlags::SYMLINK_NOFOLLOW,
                )
                .map_err(errno_at("set owner of", path))?;
            }
            if !obj.xattrs().is_empty() {
                // lsetxattr does not follow the final component; /proc/self/fd/N names the
                // directory we hold open.
                let p =
                    PathBuf::from(format!("/proc/self/fd/{}", dir.as_fd().as_raw_fd())).join(name);
                for (n, v) in obj.xattrs().iter() {
                    let _ = rustix::fs::lsetxattr(&p, n, v, rustix::fs::XattrFlags::empty());
                }
            }
            self.stats.symlinks += 1;
            return Ok(());
        }
        let mut out = crate::fsops::create_at(dir.as_fd(), name, 0o600, path)
            .map_err(io_at("create", path))?;
        let mut h = Sha256::new();
        h.update(&obj.meta);
        let header = obj.header;
        let meta = obj.meta.clone();
        let mut content = obj.content.ok_or(RepoError::MissingObject {
            kind: ObjectKind::File,
            id: *id,
        })?;
        let mut total = 0u64;
        loop {
            let n = match content.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io_at("read object for", path)(e)),
            };
            total += n as u64;
            h.update(&self.buf[..n]);
            crate::fsops::write_all(&mut out, path, &self.buf[..n])
                .map_err(io_at("write", path))?;
        }
        let found = ObjectId(h.finalize().into());
        if found != *id || total != header.size {
            return Err(RepoError::HashMismatch {
                kind: ObjectKind::File,
                id: *id,
                found,
            }
            .into());
        }
        let xattrs = agent_core::object::Xattrs::parse(
            &meta[header.meta_len() as usize - usize::from(header.xattrs_len)..],
        )
        .map_err(|error| RepoError::CorruptObject {
            kind: ObjectKind::File,
            id: *id,
            error,
        })?;
        crate::fsops::set_meta(&out, path, |fd| {
            fsmeta::apply_fd_meta(fd, header.mode, header.uid, header.gid, xattrs)
        })
        .map_err(io_at("set metadata of", path))?;
        self.stats.files += 1;
        self.stats.bytes += total;
        Ok(())
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::tree::{build_mem, MemDir, MemNode};
    use std::os::unix::fs::PermissionsExt;

    fn sample(repo: &Repo) -> TreeRoot {
        let t = MemDir::new()
            .with(
                b"bin",
                MemNode::Dir(MemDir::new().with(
                    b"tool",
                    MemNode::File {
                        mode: 0o755,
                        content: b"#!/bin/sh\n".to_vec(),
                        xattrs: vec![],
                    },
                )),
            )
            .with(
                b"empty",
                MemNode::File {
                    mode: 0o600,
                    content: vec![],
                    xattrs: vec![(b"user.a".to_vec(), b"1".to_vec())],
                },
            )
            .with(
                b"link",
                MemNode::Symlink {
                    target: b"../../etc/passwd".to_vec(),
                },
            )
            .with(
                b"void",
                MemNode::Dir(MemDir {
                    mode: 0o700,
                    ..MemDir::new()
                }),
            );
        build_mem(repo, &t).unwrap().0
    }

    #[test]
    fn copy_and_hardlink_checkouts() {
        let d = tempfile::tempdir().unwrap();
        let repo = Repo::init(&d.path().join("r")).unwrap();
        let root = sample(&repo);
        for (mode, name) in [(CheckoutMode::Copy, "c"), (CheckoutMode::HardLink, "h")] {
            let dest = d.path().join(name);
            let stats = checkout_tree(&repo, root, &dest, mode).unwrap();
            assert_eq!((stats.files, stats.symlinks, stats.dirs), (2, 1, 3));
            assert_eq!(fs::read(dest.join("bin/tool")).unwrap(), b"#!/bin/sh\n");
            assert_eq!(
                fs::metadata(dest.join("bin/tool"))
                    .unwrap()
                    .permissions()
                    .mode()
                    & 0o7777,
                0o755
            );
            assert_eq!(
                fs::metadata(dest.join("empty"))
                    .unwrap()
                    .permissions()
                    .mode()
                    & 0o7777,
                0o600
            );
            assert_eq!(
                fs::read_link(dest.join("link")).unwrap(),
                Path::new("../../etc/passwd")
            );
            assert_eq!(
                fs::metadata(dest.join("void"))
                    .unwrap()
                    .permissions()
                    .mode()
                    & 0o7777,
                0o700
            );
            assert_eq!(
                fsmeta::read_xattrs(&dest.join("empty"), fsmeta::XattrPolicy::User).unwrap(),
                vec![(b"user.a".to_vec(), b"1".to_vec())]
            );
        }
        // Refuses a non-empty destination and a symlink as the destination.
        assert!(matches!(
            checkout_tree(&repo, root, &d.path().join("c"), CheckoutMode::Copy),
            Err(CheckoutError::NotEmpty(_))
        ));
        std::os::unix::fs::symlink(d.path().join("elsewhere"), d.path().join("sl")).unwrap();
        fs::create_dir(d.path().join("elsewhere")).unwrap();
        assert!(matches!(
            checkout_tree(&repo, root, &d.path().join("sl"), CheckoutMode::Copy),
            Err(CheckoutError::NotADirectory(_))
        ));
    }

    #[test]
    fn corrupted_content_is_caught() {
        let d = tempfile::tempdir().unwrap();
        let repo = Repo::init(&d.path().join("r")).unwrap();
        let root = sample(&repo);
        let entries = repo.read_dirtree(&root.tree).unwrap();
        let OwnedEntry::Dir { tree, .. } = &entries[0] else {
            panic!()
        };
        let OwnedEntry::File { id, .. } = &repo.read_dirtree(tree).unwrap()[0] else {
            panic!()
        };
        let p = repo.object_path(ObjectKind::File, id);
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        fs::write(&p, b"#!/bin/sh\x0b").unwrap();
        let err = checkout_tree(&repo, root, &d.path().join("c"), CheckoutMode::Copy).unwrap_err();
        assert!(
            matches!(err, CheckoutError::Repo(RepoError::HashMismatch { .. })),
            "{err}"
        );
    }
}
