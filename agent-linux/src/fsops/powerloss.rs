//! The power-loss model: what a simulated cut loses (see `docs/POWERLOSS.md`).
//!
//! When the fault injection of [`super`] is on (`ECU_AGENT_FAULT_AT` set) and
//! `ECU_AGENT_FAULT_KEEP_CACHE` is not `1`, every mutation that goes through `fsops` is also
//! recorded here, in a journal of what is not yet durable. At the cut, before the process
//! aborts, the journal undoes on the real filesystem everything a power loss would lose:
//!
//! - **contents** of a regular file revert to what they were at its last `fsync` (or at the
//!   start of the process, whose starting state counts as durable); a file created and
//!   never fsynced is empty;
//! - **mode and owner** of a file or directory revert likewise to their last `fsync` of that
//!   inode (extended attributes and the owner of symlinks are not modeled);
//! - **names**: a create (file, symlink, hard link, directory), rename, unlink or rmdir is
//!   durable only once the directory holding the new name (for a rename: the destination
//!   directory) has been fsynced after it; the others are undone, newest first. A durable
//!   rmdir makes durable what was removed inside that directory before it;
//! - `syncfs` makes everything on its filesystem durable;
//! - the write in flight at the cut is torn: its first half is written and counts as
//!   written back (so are the unsynced writes to that file before it), which is how a torn
//!   sector run looks after a real cut.
//!
//! Operations are keyed by inode (device, inode number), and directories are held open, so
//! the journal follows files and directories across renames. Undoing is done through
//! `/proc/self/fd/N` paths of those held directories.
//!
//! # Plugging in a new operation
//! A new mutation in `fsops` announces its point, then runs the real call inside one of
//! [`record_create`], [`record_rename`], [`record_remove`] (namespace changes, by path or by
//! directory descriptor and name, see [`At`]), or calls [`before_write`] / [`before_meta`]
//! before changing a file's contents or metadata and [`synced`] / [`synced_fs`] after making
//! something durable. Code outside `fsops` never calls the system directly.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use rustix::fs::{Mode, OFlags, CWD};

/// The environment variable that, set to `1`, keeps the page cache at a cut (the model off:
/// everything done before the cut survives, as when a process is merely killed).
pub const KEEP_CACHE_VAR: &str = "ECU_AGENT_FAULT_KEEP_CACHE";

/// Test-only knob: a directory whose last path component equals this variable's value is
/// never fsynced (the point is still counted). Used to show that the model loses what a
/// missing directory fsync leaves unsynced.
pub const SKIP_FSYNC_DIR_VAR: &str = "ECU_AGENT_FAULT_SKIP_FSYNC_DIR";

/// An inode: (device, inode number).
type Key = (u64, u64);

/// Where a namespace operation happens: a path, or a directory descriptor and one name.
#[derive(Debug, Clone, Copy)]
pub enum At<'a> {
    /// A path (its last component is the name, its parent the directory).
    Path(&'a Path),
    /// A name inside an open directory.
    Fd(BorrowedFd<'a>, &'a OsStr),
}

fn proc_path(fd: BorrowedFd<'_>) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

fn key(md: &fs::Metadata) -> Key {
    (md.dev(), md.ino())
}

fn open_path(dir: &Path) -> io::Result<OwnedFd> {
    rustix::fs::openat(
        CWD,
        dir,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(io::Error::from)
}

impl At<'_> {
    /// The directory (opened `O_PATH`) and the name; `None` when the path has no name.
    fn split(&self) -> io::Result<Option<(OwnedFd, OsString)>> {
        match self {
            At::Path(p) => {
                let Some(name) = p.file_name() else {
                    return Ok(None);
                };
                let dir = super::parent_of(p);
                Ok(Some((open_path(&dir)?, name.to_os_string())))
            }
            At::Fd(d, name) => Ok(Some((
                rustix::fs::openat(
                    d,
                    ".",
                    OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                    Mode::empty(),
                )?,
                name.to_os_string(),
            ))),
        }
    }

    /// A path naming the same entry (through `/proc/self/fd` for a descriptor).
    fn path(&self) -> PathBuf {
        match self {
            At::Path(p) => p.to_path_buf(),
            At::Fd(d, name) => proc_path(*d).join(name),
        }
    }
}

/// What a removed or replaced entry was, to put it back.
#[derive(Debug)]
enum Saved {
    File { content: Vec<u8>, meta: Meta },
    Symlink(PathBuf),
    Dir(Meta),
}

/// Mode (permission bits), owner and group.
#[derive(Debug, Clone, Copy)]
struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
}

impl Meta {
    fn of(md: &fs::Metadata) -> Meta {
        Meta {
            mode: md.mode() & 0o7777,
            uid: md.uid(),
            gid: md.gid(),
        }
    }

    fn apply(&self, p: &Path) -> io::Result<()> {
        if rustix::process::geteuid().is_root() {
            std::os::unix::fs::chown(p, Some(self.uid), Some(self.gid))?;
        }
        fs::set_permissions(p, fs::Permissions::from_mode(self.mode))
    }
}

/// A namespace operation not yet durable.
#[derive(Debug)]
enum Op {
    /// A new name for an inode: a file, directory or symlink created, or a hard link.
    Created { dir: Key, name: OsString, ino: Key },
    /// A rename, with what it replaced.
    Renamed {
        from_dir: Key,
        from: OsString,
        to_dir: Key,
        to: OsString,
        ino: Key,
        replaced: Option<(Key, Saved)>,
    },
    /// An unlink or rmdir.
    Removed {
        dir: Key,
        name: OsString,
        ino: Key,
        saved: Saved,
    },
}

impl Op {
    /// The directory whose fsync makes this durable.
    fn dir(&self) -> Key {
        match self {
            Op::Created { dir, .. } | Op::Removed { dir, .. } => *dir,
            Op::Renamed { to_dir, .. } => *to_dir,
        }
    }

    /// Whether it names something inside directory `d` (removed with it).
    fn inside(&self, d: Key) -> bool {
        match self {
            Op::Created { dir, .. } | Op::Removed { dir, .. } => *dir == d,
            Op::Renamed {
                from_dir, to_dir, ..
            } => *from_dir == d || *to_dir == d,
        }
    }
}

/// An inode whose contents or metadata changed since its last fsync.
#[derive(Debug)]
struct Pending {
    /// Held open (`O_PATH`) so that it can be restored wherever it is named.
    fd: OwnedFd,
    /// Its contents at its last fsync, once they have changed since.
    content: Option<Vec<u8>>,
    /// Its mode and owner at its last fsync, once they have changed since.
    meta: Option<Meta>,
}

/// The journal of what is not durable.
#[derive(Debug, Default)]
pub struct Journal {
    ops: Vec<Op>,
    /// Directories named by `ops`, held open (`O_PATH`).
    dirs: HashMap<Key, OwnedFd>,
    inodes: HashMap<Key, Pending>,
}

fn global() -> Option<&'static Mutex<Journal>> {
    static J: OnceLock<Option<Mutex<Journal>>> = OnceLock::new();
    J.get_or_init(|| {
        let on =
            super::fault_at().is_some() && std::env::var(KEEP_CACHE_VAR).map_or(true, |v| v != "1");
        if on {
            // The journal holds directories open; allow as many as the hard limit does.
            let l = rustix::process::getrlimit(rustix::process::Resource::Nofile);
            let _ = rustix::process::setrlimit(
                rustix::process::Resource::Nofile,
                rustix::process::Rlimit {
                    current: l.maximum,
                    maximum: l.maximum,
                },
            );
        }
        on.then(|| Mutex::new(Journal::default()))
    })
    .as_ref()
}

#[cfg(test)]
thread_local! {
    static TEST: std::cell::RefCell<Option<Journal>> = const { std::cell::RefCell::new(None) };
}

/// Runs `f` on the journal when the model is on.
fn with<R>(f: impl FnOnce(&mut Journal) -> R) -> Option<R> {
    #[cfg(test)]
    if TEST.with(|t| t.borrow().is_some()) {
        return TEST.with(|t| t.borrow_mut().as_mut().map(f));
    }
    let j = global()?;
    let mut g = j.lock().unwrap_or_else(|e| e.into_inner());
    Some(f(&mut g))
}

/// Whether the model is on (in this thread, for unit tests).
pub fn active() -> bool {
    with(|_| ()).is_some()
}

/// Whether fsyncs of directory `dir` are skipped (the test-only knob).
pub fn skip_fsync_dir(dir: &Path) -> bool {
    static SKIP: OnceLock<Option<OsString>> = OnceLock::new();
    let skip = SKIP.get_or_init(|| {
        super::fault_at()?;
        std::env::var_os(SKIP_FSYNC_DIR_VAR).filter(|v| !v.is_empty())
    });
    match skip {
        Some(name) => {
            let canon = fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
            canon.file_name() == Some(name.as_os_str())
        }
        None => false,
    }
}

/// The model's failure to record or undo is a broken test, never a silent pass.
fn broken(what: &str, e: io::Error) -> ! {
    let _ = writeln!(io::stderr(), "power-loss model: cannot {what}: {e}");
    std::process::abort()
}

impl Journal {
    fn hold_dir(&mut self, fd: OwnedFd) -> Key {
        let md = fs::metadata(proc_path(fd.as_fd())).unwrap_or_else(|e| broken("stat a dir", e));
        let k = key(&md);
        self.dirs.entry(k).or_insert(fd);
        k
    }

    fn pending(&mut self, fd: BorrowedFd<'_>) -> &mut Pending {
        let md = fs::metadata(proc_path(fd)).unwrap_or_else(|e| broken("stat a file", e));
        self.inodes.entry(key(&md)).or_insert_with(|| Pending {
            fd: rustix::fs::openat(
                CWD,
                proc_path(fd),
                OFlags::PATH | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .unwrap_or_else(|e| broken("hold a file", e.into())),
            content: None,
            meta: None,
        })
    }

    /// What is at `p` now, as a power loss would bring it back: contents and metadata as of
    /// the last fsync of its inode.
    fn save(&self, p: &Path) -> io::Result<Option<(Key, Saved)>> {
        let md = match fs::symlink_metadata(p) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let k = key(&md);
        let pend = self.inodes.get(&k);
        let meta = pend.and_then(|p| p.meta).unwrap_or_else(|| Meta::of(&md));
        let saved = if md.file_type().is_symlink() {
            Saved::Symlink(fs::read_link(p)?)
        } else if md.is_dir() {
            Saved::Dir(meta)
        } else {
            let content = match pend.and_then(|p| p.content.clone()) {
                Some(c) => c,
                None => fs::read(p)?,
            };
            Saved::File { content, meta }
        };
        Ok(Some((k, saved)))
    }

    /// Marks durable what an fsync of directory `d` makes durable.
    fn dir_synced(&mut self, d: Key) {
        let mut work = vec![(d, false)];
        while let Some((d, removed)) = work.pop() {
            let mut keep = Vec::with_capacity(self.ops.len());
            for op in self.ops.drain(..) {
                let hit = if removed { op.inside(d) } else { op.dir() == d };
                if !hit {
                    keep.push(op);
                    continue;
                }
                // A durable rmdir: what was removed inside the directory is gone for good.
                if let Op::Removed {
                    ino,
                    saved: Saved::Dir(_),
                    ..
                } = op
                {
                    work.push((ino, true));
                }
            }
            self.ops = keep;
        }
    }

    /// Undoes everything not durable, on the real filesystem.
    fn undo(&mut self) {
        for p in self.inodes.values() {
            let path = proc_path(p.fd.as_fd());
            if let Some(c) = &p.content {
                if let Err(e) = restore_content(&path, c) {
                    broken("restore the contents of a file", e)
                }
            }
            if let Some(m) = &p.meta {
                if let Err(e) = m.apply(&path) {
                    broken("restore the mode of a file", e)
                }
            }
        }
        let dir = |dirs: &HashMap<Key, OwnedFd>, k: &Key, name: &OsStr| -> PathBuf {
            proc_path(dirs[k].as_fd()).join(name)
        };
        let ino_at = |p: &Path| fs::symlink_metadata(p).ok().map(|m| key(&m));
        // A directory put back is a new inode: what was inside the old one is put back
        // inside the new one, and its mode (maybe read-only) is applied last.
        let mut dirs_back = Vec::new();
        let mut put_back = |dirs: &mut HashMap<Key, OwnedFd>, p: &Path, old: Key, saved: &Saved| {
            restore(p, saved)?;
            if let Saved::Dir(meta) = saved {
                dirs.insert(old, open_path(p)?);
                dirs_back.push((old, *meta));
            }
            Ok(())
        };
        let ops: Vec<Op> = self.ops.drain(..).collect();
        for op in ops.into_iter().rev() {
            let res = match &op {
                Op::Created { dir: d, name, ino } => {
                    let p = dir(&self.dirs, d, name);
                    if ino_at(&p) == Some(*ino) {
                        remove_all(&p)
                    } else {
                        Ok(())
                    }
                }
                Op::Renamed {
                    from_dir,
                    from,
                    to_dir,
                    to,
                    ino,
                    replaced,
                } => {
                    let pt = dir(&self.dirs, to_dir, to);
                    let pf = dir(&self.dirs, from_dir, from);
                    let mut r = Ok(());
                    if ino_at(&pt) == Some(*ino) {
                        r = fs::rename(&pt, &pf);
                    }
                    match replaced {
                        Some((old, saved)) if r.is_ok() && ino_at(&pt).is_none() => {
                            put_back(&mut self.dirs, &pt, *old, saved)
                        }
                        _ => r,
                    }
                }
                Op::Removed {
                    dir: d,
                    name,
                    saved,
                    ino,
                } => {
                    let p = dir(&self.dirs, d, name);
                    if ino_at(&p).is_none() {
                        put_back(&mut self.dirs, &p, *ino, saved)
                    } else {
                        Ok(())
                    }
                }
            };
            if let Err(e) = res {
                broken(&format!("undo {op:?}"), e)
            }
        }
        for (k, meta) in dirs_back.iter().rev() {
            if let Err(e) = meta.apply(&proc_path(self.dirs[k].as_fd())) {
                broken("restore the mode of a directory", e)
            }
        }
        self.inodes.clear();
    }
}

fn restore_content(p: &Path, content: &[u8]) -> io::Result<()> {
    let open = || OpenOptions::new().write(true).open(p);
    let mut f = match open() {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            // A read-only file (its mode is restored afterwards when it changed).
            let mode = fs::metadata(p)?.mode() & 0o7777;
            fs::set_permissions(p, fs::Permissions::from_mode(mode | 0o200))?;
            let f = open()?;
            fs::set_permissions(p, fs::Permissions::from_mode(mode))?;
            f
        }
        Err(e) => return Err(e),
    };
    f.set_len(0)?;
    f.write_all(content)
}

fn restore(p: &Path, saved: &Saved) -> io::Result<()> {
    match saved {
        Saved::Symlink(target) => std::os::unix::fs::symlink(target, p),
        Saved::Dir(_) => fs::create_dir(p),
        Saved::File { content, meta } => {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(p)?;
            f.write_all(content)?;
            drop(f);
            meta.apply(p)
        }
    }
}

fn remove_all(p: &Path) -> io::Result<()> {
    let md = fs::symlink_metadata(p)?;
    if !md.is_dir() {
        return fs::remove_file(p);
    }
    fs::set_permissions(p, fs::Permissions::from_mode(0o700))?;
    for e in fs::read_dir(p)? {
        remove_all(&e?.path())?;
    }
    fs::remove_dir(p)
}

/// Runs `op`, which creates the entry `at` (a file, directory, symlink or hard link), and
/// records the new name.
pub fn record_create<T>(at: At<'_>, op: impl FnOnce() -> io::Result<T>) -> io::Result<T> {
    let r = op()?;
    with(|j| {
        let Some((dir, name)) = at.split().unwrap_or_else(|e| broken("open a dir", e)) else {
            return;
        };
        let md = fs::symlink_metadata(at.path()).unwrap_or_else(|e| broken("stat", e));
        let dir = j.hold_dir(dir);
        j.ops.push(Op::Created {
            dir,
            name,
            ino: key(&md),
        });
    });
    Ok(r)
}

/// Runs `op`, which renames `from` to `to`, and records the rename (and what it replaced).
pub fn record_rename<T>(
    from: At<'_>,
    to: At<'_>,
    op: impl FnOnce() -> io::Result<T>,
) -> io::Result<T> {
    let before = with(|j| {
        let ino = fs::symlink_metadata(from.path()).map(|m| key(&m)).ok()?;
        let replaced = j
            .save(&to.path())
            .unwrap_or_else(|e| broken("save a replaced file", e))
            .filter(|(k, _)| *k != ino);
        Some((ino, replaced))
    })
    .flatten();
    let r = op()?;
    if let Some((ino, replaced)) = before {
        with(|j| {
            let (Some((fd, from)), Some((td, to))) = (
                from.split().unwrap_or_else(|e| broken("open a dir", e)),
                to.split().unwrap_or_else(|e| broken("open a dir", e)),
            ) else {
                return;
            };
            let from_dir = j.hold_dir(fd);
            let to_dir = j.hold_dir(td);
            j.ops.push(Op::Renamed {
                from_dir,
                from,
                to_dir,
                to,
                ino,
                replaced,
            });
        });
    }
    Ok(r)
}

/// Runs `op`, which removes the entry `at` (unlink or rmdir), and records what it was.
pub fn record_remove<T>(at: At<'_>, op: impl FnOnce() -> io::Result<T>) -> io::Result<T> {
    let before = with(|j| {
        let split = at.split().unwrap_or_else(|e| broken("open a dir", e));
        let saved = j
            .save(&at.path())
            .unwrap_or_else(|e| broken("save a removed file", e));
        split.zip(saved)
    })
    .flatten();
    let r = op()?;
    if let Some(((dir, name), (ino, saved))) = before {
        with(|j| {
            let dir = j.hold_dir(dir);
            j.ops.push(Op::Removed {
                dir,
                name,
                ino,
                saved,
            });
        });
    }
    Ok(r)
}

/// Call before changing the contents of `file`: keeps its durable contents. (A device or
/// other non-regular file is not modeled: its writes count as durable.)
pub fn before_write(file: &File) {
    if !active() || !file.metadata().is_ok_and(|m| m.is_file()) {
        return;
    }
    with(|j| {
        let p = j.pending(file.as_fd());
        if p.content.is_none() {
            let c = fs::read(proc_path(p.fd.as_fd()))
                .unwrap_or_else(|e| broken("keep the contents of a file", e));
            p.content = Some(c);
        }
    });
}

/// Call before changing the mode or owner of the open file or directory `fd`.
pub fn before_meta(fd: BorrowedFd<'_>) {
    with(|j| {
        let p = j.pending(fd);
        if p.meta.is_none() {
            let md = fs::metadata(proc_path(p.fd.as_fd()))
                .unwrap_or_else(|e| broken("keep the mode of a file", e));
            p.meta = Some(Meta::of(&md));
        }
    });
}

/// [`before_meta`] by path (not following a final symlink; a symlink is not modeled).
pub fn before_meta_path(path: &Path) {
    if !active() {
        return;
    }
    if fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
        return;
    }
    match File::open(path) {
        Ok(f) => before_meta(f.as_fd()),
        Err(_) => {
            if let Ok(fd) = rustix::fs::openat(
                CWD,
                path,
                OFlags::PATH | OFlags::CLOEXEC | OFlags::NOFOLLOW,
                Mode::empty(),
            ) {
                before_meta(fd.as_fd())
            }
        }
    }
}

/// Call after `fd` (a file or a directory) was fsynced.
pub fn synced(fd: BorrowedFd<'_>) {
    with(|j| {
        let md = fs::metadata(proc_path(fd)).unwrap_or_else(|e| broken("stat", e));
        let k = key(&md);
        j.inodes.remove(&k);
        if md.is_dir() {
            j.dir_synced(k);
        }
    });
}

/// Call after a `syncfs` of the filesystem holding `fd`.
pub fn synced_fs(fd: BorrowedFd<'_>) {
    with(|j| {
        let dev = fs::metadata(proc_path(fd))
            .unwrap_or_else(|e| broken("stat", e))
            .dev();
        j.inodes.retain(|k, _| k.0 != dev);
        j.ops.retain(|op| op.dir().0 != dev);
    });
}

/// The write in flight at the cut reached the disk (torn): `file`'s contents so far count
/// as written back.
pub fn torn(file: &File) {
    with(|j| {
        let md = fs::metadata(proc_path(file.as_fd())).unwrap_or_else(|e| broken("stat", e));
        if let Some(p) = j.inodes.get_mut(&key(&md)) {
            p.content = None;
        }
    });
}

/// The cut: undoes what is not durable (nothing when the model is off).
pub fn cut() {
    with(|j| j.undo());
}

/// Starts a journal for the calling thread (unit tests of the model).
#[cfg(test)]
pub fn test_begin() {
    TEST.with(|t| *t.borrow_mut() = Some(Journal::default()));
}

/// Cuts the power for the calling thread's journal and ends it (unit tests of the model).
#[cfg(test)]
pub fn test_cut() {
    TEST.with(|t| {
        if let Some(mut j) = t.borrow_mut().take() {
            j.undo()
        }
    });
}

#[cfg(test)]
mod test {
    use super::super::*;
    use super::{test_begin, test_cut};
    use std::fs;
    use std::os::fd::AsFd;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
    }

    /// A temp file written and fsynced, renamed over `dest`; the directory fsynced or not.
    fn replace(dir: &Path, dest: &str, bytes: &[u8], sync_dir: bool) {
        let tmp = dir.join("tmp");
        let mut f = create_new(&tmp, 0o644).unwrap();
        write_all(&mut f, &tmp, bytes).unwrap();
        fsync(&f, &tmp).unwrap();
        drop(f);
        rename(&tmp, &dir.join(dest)).unwrap();
        if sync_dir {
            fsync_dir(dir).unwrap();
        }
    }

    #[test]
    fn a_rename_is_durable_only_with_its_directory_fsynced() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        fs::write(p.join("f"), b"old").unwrap();
        test_begin();
        replace(p, "f", b"new", false);
        replace(p, "g", b"new", false);
        test_cut();
        assert_eq!(fs::read(p.join("f")).unwrap(), b"old");
        assert!(!p.join("g").exists() && !p.join("tmp").exists());

        test_begin();
        replace(p, "f", b"new", true);
        replace(p, "g", b"new", true);
        test_cut();
        assert_eq!(fs::read(p.join("f")).unwrap(), b"new");
        assert_eq!(fs::read(p.join("g")).unwrap(), b"new");
    }

    #[test]
    fn a_rename_needs_the_destination_directory_fsynced() {
        let d = tempfile::tempdir().unwrap();
        let (a, b) = (d.path().join("a"), d.path().join("b"));
        fs::create_dir(&a).unwrap();
        fs::create_dir(&b).unwrap();
        fs::write(a.join("x"), b"x").unwrap();
        test_begin();
        rename(&a.join("x"), &b.join("y")).unwrap();
        fsync_dir(&a).unwrap();
        test_cut();
        assert!(a.join("x").exists() && !b.join("y").exists());
        test_begin();
        rename(&a.join("x"), &b.join("y")).unwrap();
        fsync_dir(&b).unwrap();
        test_cut();
        assert!(!a.join("x").exists());
        assert_eq!(fs::read(b.join("y")).unwrap(), b"x");
    }

    #[test]
    fn contents_revert_to_their_last_fsync() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        fs::write(p.join("env"), b"0123456789").unwrap();
        test_begin();
        // A new file whose name is durable but whose contents were never fsynced: empty.
        let mut f = create_new(&p.join("new"), 0o600).unwrap();
        write_all(&mut f, &p.join("new"), b"unsynced").unwrap();
        fsync_dir(p).unwrap();
        // Written in place: synced, then written again without a sync.
        write_in_place(&p.join("env"), 2, b"ab").unwrap();
        let mut e = fs::OpenOptions::new()
            .write(true)
            .open(p.join("env"))
            .unwrap();
        write_all(&mut e, &p.join("env"), b"XY").unwrap();
        test_cut();
        assert_eq!(fs::read(p.join("new")).unwrap(), b"");
        assert_eq!(fs::read(p.join("env")).unwrap(), b"01ab456789");
    }

    #[test]
    fn creates_and_removals_need_their_directory_fsynced() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        fs::create_dir(p.join("tree")).unwrap();
        fs::write(p.join("tree/f"), b"content").unwrap();
        fs::set_permissions(p.join("tree/f"), fs::Permissions::from_mode(0o640)).unwrap();
        std::os::unix::fs::symlink("f", p.join("tree/l")).unwrap();
        fs::set_permissions(p.join("tree"), fs::Permissions::from_mode(0o500)).unwrap();
        test_begin();
        remove_tree(&p.join("tree")).unwrap();
        mkdir(&p.join("d"), 0o755).unwrap();
        create_new(&p.join("d/x"), 0o644).unwrap();
        fsync_dir(&p.join("d")).unwrap();
        test_cut();
        // The removal is undone (contents, modes, the symlink); the directory created
        // without an fsync of its parent is gone with what was durably created inside it.
        assert_eq!(fs::read(p.join("tree/f")).unwrap(), b"content");
        assert_eq!(mode(&p.join("tree/f")), 0o640);
        assert_eq!(mode(&p.join("tree")), 0o500);
        assert_eq!(fs::read_link(p.join("tree/l")).unwrap(), Path::new("f"));
        assert!(!p.join("d").exists());

        test_begin();
        remove_tree(&p.join("tree")).unwrap();
        fsync_dir(p).unwrap();
        mkdir_all(&p.join("d/e"), 0o755).unwrap();
        create_new(&p.join("d/e/x"), 0o644).unwrap();
        fsync_dir(&p.join("d/e")).unwrap();
        test_cut();
        assert!(!p.join("tree").exists());
        assert!(p.join("d/e/x").exists(), "mkdir_all fsyncs each new parent");
    }

    #[test]
    fn metadata_reverts_and_syncfs_makes_everything_durable() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        fs::write(p.join("f"), b"x").unwrap();
        let f = fs::File::open(p.join("f")).unwrap();
        test_begin();
        set_meta(&f, &p.join("f"), |fd| {
            Ok(rustix::fs::fchmod(
                fd,
                rustix::fs::Mode::from_raw_mode(0o400),
            )?)
        })
        .unwrap();
        test_cut();
        assert_eq!(mode(&p.join("f")), 0o644 & !umask());

        test_begin();
        set_meta(&f, &p.join("f"), |fd| {
            Ok(rustix::fs::fchmod(
                fd,
                rustix::fs::Mode::from_raw_mode(0o400),
            )?)
        })
        .unwrap();
        replace(p, "g", b"g", false);
        mkdir(&p.join("d"), 0o755).unwrap();
        let mut h = create_new(&p.join("d/h"), 0o644).unwrap();
        write_all(&mut h, &p.join("d/h"), b"h").unwrap();
        syncfs(p).unwrap();
        test_cut();
        assert_eq!(mode(&p.join("f")), 0o400);
        assert_eq!(fs::read(p.join("g")).unwrap(), b"g");
        assert_eq!(fs::read(p.join("d/h")).unwrap(), b"h");
    }

    #[test]
    fn operations_by_directory_descriptor_follow_the_same_rules() {
        use std::ffi::OsStr;
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        fs::write(p.join("object"), b"obj").unwrap();
        let dir = fs::File::open(p).unwrap();
        let at = |n: &str| p.join(n);
        test_begin();
        // A new directory and what is inside it, its contents fsynced, its names not.
        mkdir_at(dir.as_fd(), OsStr::new("dep"), 0o755, &at("dep")).unwrap();
        let sub = fs::File::open(at("dep")).unwrap();
        let mut f = create_at(sub.as_fd(), OsStr::new("f"), 0o644, &at("dep/f")).unwrap();
        write_all(&mut f, &at("dep/f"), b"data").unwrap();
        fsync_fd(&f, &at("dep/f")).unwrap();
        symlink_at(OsStr::new("f"), sub.as_fd(), OsStr::new("l"), &at("dep/l")).unwrap();
        link_at(&at("object"), sub.as_fd(), OsStr::new("h"), &at("dep/h")).unwrap();
        test_cut();
        assert!(!at("dep").exists());
        assert_eq!(
            fs::read(at("object")).unwrap(),
            b"obj",
            "a hard link's undo keeps its inode"
        );

        test_begin();
        mkdir_at(dir.as_fd(), OsStr::new("dep"), 0o755, &at("dep")).unwrap();
        let sub = fs::File::open(at("dep")).unwrap();
        let mut f = create_at(sub.as_fd(), OsStr::new("f"), 0o644, &at("dep/f")).unwrap();
        write_all(&mut f, &at("dep/f"), b"data").unwrap();
        let mut g = create_at(sub.as_fd(), OsStr::new("g"), 0o644, &at("dep/g")).unwrap();
        write_all(&mut g, &at("dep/g"), b"unsynced").unwrap();
        fsync_fd(&f, &at("dep/f")).unwrap();
        link_at(&at("object"), sub.as_fd(), OsStr::new("h"), &at("dep/h")).unwrap();
        fsync_fd(&sub, &at("dep")).unwrap();
        fsync_fd(&dir, p).unwrap();
        test_cut();
        assert_eq!(fs::read(at("dep/f")).unwrap(), b"data");
        assert_eq!(fs::read(at("dep/g")).unwrap(), b"", "never fsynced: empty");
        assert_eq!(fs::read(at("dep/h")).unwrap(), b"obj");
    }

    fn umask() -> u32 {
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join("u"), b"").unwrap();
        !mode(&d.path().join("u")) & 0o666
    }
}
