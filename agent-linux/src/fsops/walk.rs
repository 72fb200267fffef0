//! Walking deep directory trees through directory descriptors, with a bounded number open.
//!
//! A [`DirStack`] is the path from a root directory down to the directory being worked on,
//! kept as names, with descriptors open for at most [`MAX_OPEN_DIRS`] of its deepest levels.
//! Every directory is opened relative to its parent's descriptor with
//! `O_DIRECTORY | O_NOFOLLOW`, so no path is ever longer than one name (paths over
//! `PATH_MAX` are fine) and no symlink is followed. When the walk climbs back to a level whose
//! descriptor was closed, the stack opens the path again from the root by its names (no `..`),
//! checking that every directory is still the one it first opened (device and inode), and
//! keeps the deepest [`MAX_OPEN_DIRS`] of them open: climbing out of a chain of `d` levels
//! costs `d² / (2 · MAX_OPEN_DIRS)` opens, and the walk needs no more than
//! `MAX_OPEN_DIRS + 2` descriptors whatever the depth (well within the common limit of 1,024).
//!
//! The paths it reports ([`DirStack::path`]) are for messages only; nothing is opened by them.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, CWD};

/// Most directory descriptors a [`DirStack`] keeps open.
pub const MAX_OPEN_DIRS: usize = 64;

/// Opens directory `name` in `dir` (or a path, with `CWD`) without following a symlink.
pub fn open_dir_at<Fd: AsFd, P: rustix::path::Arg>(dir: Fd, name: P) -> io::Result<OwnedFd> {
    Ok(rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// Opens the directory at `path` without following a symlink in its last component.
pub fn open_dir(path: &Path) -> io::Result<OwnedFd> {
    open_dir_at(CWD, path)
}

/// The type of `name` in `dir`, not following a symlink; `None` when it does not exist.
pub fn type_at(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<Option<FileType>> {
    match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(FileType::from_raw_mode(st.st_mode))),
        Err(rustix::io::Errno::NOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The entries of the open directory `dir` (without `.` and `..`) and their types (from the
/// directory entry, or from `fstatat` without following when the filesystem does not say).
pub fn list(dir: BorrowedFd<'_>) -> io::Result<Vec<(OsString, FileType)>> {
    let mut d = rustix::fs::Dir::read_from(dir)?;
    let mut out = Vec::new();
    while let Some(e) = d.read() {
        let e = e?;
        let name = e.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        let name = OsStr::from_bytes(name).to_os_string();
        let ty = match e.file_type() {
            FileType::Unknown => match type_at(dir, &name)? {
                Some(t) => t,
                None => continue,
            },
            t => t,
        };
        out.push((name, ty));
    }
    Ok(out)
}

fn dev_ino(fd: BorrowedFd<'_>) -> io::Result<(u64, u64)> {
    let st = rustix::fs::fstat(fd)?;
    Ok((st.st_dev, st.st_ino))
}

struct Level {
    name: OsString,
    fd: Option<OwnedFd>,
    id: (u64, u64),
}

/// A path of directories below a root, walked through descriptors. See the [module
/// docs](self).
pub struct DirStack {
    root: OwnedFd,
    base: PathBuf,
    levels: Vec<Level>,
    /// Levels from this index up are open; those below are closed.
    first_open: usize,
}

impl DirStack {
    /// A stack at the directory `root` (an open descriptor), named `base` in messages.
    pub fn new(root: OwnedFd, base: &Path) -> DirStack {
        DirStack {
            root,
            base: base.to_path_buf(),
            levels: Vec::new(),
            first_open: 0,
        }
    }

    /// A stack at the directory `path`, opened without following a symlink.
    pub fn open(path: &Path) -> io::Result<DirStack> {
        Ok(DirStack::new(open_dir(path)?, path))
    }

    /// Levels below the root (0 at the root).
    pub fn depth(&self) -> usize {
        self.levels.len()
    }

    /// The current directory's path, for messages.
    pub fn path(&self) -> PathBuf {
        let mut p = self.base.clone();
        for l in &self.levels {
            p.push(&l.name);
        }
        p
    }

    /// The path of `name` in the current directory, for messages.
    pub fn child_path(&self, name: &OsStr) -> PathBuf {
        let mut p = self.path();
        p.push(name);
        p
    }

    /// The path of `name` in the current directory for traces and messages, built in
    /// bounded time: below [`MAX_OPEN_DIRS`] levels the full path, deeper the root, `…` and
    /// the last levels.
    pub fn short_child_path(&self, name: &OsStr) -> PathBuf {
        const TAIL: usize = 8;
        if self.levels.len() <= MAX_OPEN_DIRS {
            return self.child_path(name);
        }
        let mut p = self.base.clone();
        p.push(format!("…({} levels)…", self.levels.len() - TAIL));
        for l in &self.levels[self.levels.len() - TAIL..] {
            p.push(&l.name);
        }
        p.push(name);
        p
    }

    /// The root's descriptor.
    pub fn root(&self) -> BorrowedFd<'_> {
        self.root.as_fd()
    }

    /// The current directory's descriptor (opened again from the root when it was closed).
    pub fn top(&mut self) -> io::Result<BorrowedFd<'_>> {
        let n = self.levels.len();
        if n == 0 {
            return Ok(self.root.as_fd());
        }
        if self.first_open >= n {
            self.reopen()?;
        }
        match self.levels.last().and_then(|l| l.fd.as_ref()) {
            Some(fd) => Ok(fd.as_fd()),
            None => Err(io::Error::other("directory walk lost its descriptor")),
        }
    }

    /// Opens the whole path again from the root, keeping the deepest levels open.
    fn reopen(&mut self) -> io::Result<()> {
        let n = self.levels.len();
        let keep_from = n.saturating_sub(MAX_OPEN_DIRS);
        let mut parent: Option<OwnedFd> = None;
        for i in 0..n {
            let fd = {
                let at = match &parent {
                    Some(p) => p.as_fd(),
                    None if i == 0 => self.root.as_fd(),
                    None => match self.levels[i - 1].fd.as_ref() {
                        Some(fd) => fd.as_fd(),
                        None => return Err(io::Error::other("directory walk lost its parent")),
                    },
                };
                open_dir_at(at, &self.levels[i].name)?
            };
            if dev_ino(fd.as_fd())? != self.levels[i].id {
                return Err(io::Error::other(format!(
                    "{} was replaced while it was being walked",
                    self.path().display()
                )));
            }
            if i >= keep_from {
                self.levels[i].fd = Some(fd);
                parent = None;
            } else {
                parent = Some(fd);
            }
        }
        self.first_open = keep_from;
        Ok(())
    }

    /// Enters subdirectory `name` of the current directory (opened without following a
    /// symlink: a symlink or a file there is an error, `ENOTDIR` or `ELOOP`).
    pub fn enter(&mut self, name: &OsStr) -> io::Result<()> {
        let fd = open_dir_at(self.top()?, name)?;
        let id = dev_ino(fd.as_fd())?;
        if self.first_open > self.levels.len() {
            self.first_open = self.levels.len();
        }
        self.levels.push(Level {
            name: name.to_os_string(),
            fd: Some(fd),
            id,
        });
        if self.levels.len() - self.first_open > MAX_OPEN_DIRS {
            if let Some(l) = self.levels.get_mut(self.first_open) {
                l.fd = None;
            }
            self.first_open += 1;
        }
        Ok(())
    }

    /// Leaves the current directory for its parent; returns the name left (`None` at the
    /// root).
    pub fn leave(&mut self) -> Option<OsString> {
        let l = self.levels.pop()?;
        if self.first_open > self.levels.len() {
            self.first_open = self.levels.len();
        }
        Some(l.name)
    }

    /// Descriptors the stack holds open (the root included).
    pub fn open_count(&self) -> usize {
        1 + self.levels.iter().filter(|l| l.fd.is_some()).count()
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn deep_chain_with_bounded_descriptors() {
        let d = tempfile::tempdir().unwrap();
        let root = open_dir(d.path()).unwrap();
        let mut s = DirStack::new(root, d.path());
        let depth = 3 * MAX_OPEN_DIRS + 5;
        for i in 0..depth {
            let name = OsString::from(format!("level-{i:04}-{}", "x".repeat(200)));
            rustix::fs::mkdirat(s.top().unwrap(), &name, Mode::from_raw_mode(0o755)).unwrap();
            s.enter(&name).unwrap();
            assert!(s.open_count() <= MAX_OPEN_DIRS + 1);
        }
        // The path is far longer than PATH_MAX; everything still works by descriptor.
        assert!(s.path().as_os_str().len() > 4096 * 3);
        let mut seen = 0;
        while let Some(name) = s.leave() {
            let fd = s.top().unwrap();
            assert!(list(fd)
                .unwrap()
                .iter()
                .any(|(n, t)| *n == name && t.is_dir()));
            assert!(s.open_count() <= MAX_OPEN_DIRS + 1);
            seen += 1;
        }
        assert_eq!(seen, depth);
        // A symlink is never entered.
        std::os::unix::fs::symlink("/", d.path().join("link")).unwrap();
        assert!(s.enter(OsStr::new("link")).is_err());
    }
}
