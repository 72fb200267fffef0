//! Every filesystem mutation of the agent on a device, with named interruption points: the
//! repository's object and ref writes (`repo`, `store`), checkouts (`checkout`), deployments,
//! the boot environment and cleanup (`deploy`).
//!
//! Each function here announces its mutation with [`point`] before making it: a write, an
//! fsync, a rename, an unlink, a mkdir... Points are counted in the process. When the
//! environment variable `ECU_AGENT_FAULT_AT=N` is set, the `N`th point kills the process with
//! [`std::process::abort`] (nothing is flushed, no destructor runs: as close to a power cut as
//! a process can get without a VM). A [`Point::Write`] that is hit writes the first half of
//! its bytes before aborting, so a torn write is exercised as well. With
//! `ECU_AGENT_FAULT_TRACE=1` every point is printed on stderr with its number and path.
//!
//! The power-loss tests run a command with `N = 1, 2, ...` until a run completes without
//! reaching `N`, and check after each interruption that a simulated boot comes up on a
//! complete deployment and that the command run again succeeds.
//!
//! An abort alone would keep the page cache: everything written before the cut would
//! survive. So the cut is a power loss: with fault injection on, [`powerloss`] journals every
//! mutation made here and, at the cut, undoes what was not made durable (contents not
//! fsynced, names whose directory was not fsynced) before the process aborts. The model and
//! its rules are in `docs/POWERLOSS.md`; `ECU_AGENT_FAULT_KEEP_CACHE=1` turns it off.
//!
//! Every mutation of a sysroot goes through a function of this module (by path, or by
//! directory descriptor and name: [`create_at`], [`mkdir_at`], [`symlink_at`], [`link_at`],
//! [`set_meta`], [`fsync_fd`]); a new one announces its point and records itself in
//! [`powerloss`] as that module's docs say.

pub mod powerloss;
pub mod walk;

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// The environment variable that names the point to die at (1-based).
pub const FAULT_AT_VAR: &str = "ECU_AGENT_FAULT_AT";
/// The environment variable that, set to `1`, prints every point on stderr.
pub const FAULT_TRACE_VAR: &str = "ECU_AGENT_FAULT_TRACE";

/// The kinds of interruption points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Point {
    /// Writing bytes into a file (torn when hit: half the bytes are written).
    Write,
    /// fsync of a file.
    Fsync,
    /// fsync of a directory.
    FsyncDir,
    /// syncfs of a whole filesystem.
    Syncfs,
    /// A rename.
    Rename,
    /// Removing a file or symlink.
    Unlink,
    /// Removing an empty directory.
    Rmdir,
    /// Creating a directory.
    Mkdir,
    /// Creating a file.
    Create,
    /// Creating a hard link.
    Link,
    /// Creating a symlink.
    Symlink,
    /// Setting metadata (mode, owner, xattrs).
    Meta,
    /// A compound step done by code outside this module (marks its start).
    Step,
}

impl fmt::Display for Point {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Point::Write => "write",
            Point::Fsync => "fsync",
            Point::FsyncDir => "fsync-dir",
            Point::Syncfs => "syncfs",
            Point::Rename => "rename",
            Point::Unlink => "unlink",
            Point::Rmdir => "rmdir",
            Point::Mkdir => "mkdir",
            Point::Create => "create",
            Point::Link => "link",
            Point::Symlink => "symlink",
            Point::Meta => "meta",
            Point::Step => "step",
        })
    }
}

static COUNT: AtomicU64 = AtomicU64::new(0);

fn config() -> &'static (Option<u64>, bool) {
    static CONFIG: OnceLock<(Option<u64>, bool)> = OnceLock::new();
    CONFIG.get_or_init(|| {
        let at = std::env::var(FAULT_AT_VAR)
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .filter(|&n| n > 0);
        let trace = std::env::var(FAULT_TRACE_VAR).is_ok_and(|v| v == "1");
        (at, trace)
    })
}

/// The point to die at, when fault injection is on.
pub(crate) fn fault_at() -> Option<u64> {
    config().0
}

/// Whether points are cut at or traced: the points a command passes must then be the same
/// from run to run (no other thread may add its own, [`crate::repo::TmpPool`]).
pub(crate) fn points_observed() -> bool {
    let (at, trace) = *config();
    at.is_some() || trace
}

/// Announces a mutation. Returns `true` when this is the point to die at; the caller then
/// does its partial work (if any) and calls [`die`]. Most callers use [`point`].
pub fn reached(kind: Point, path: &Path) -> bool {
    let n = COUNT.fetch_add(1, Ordering::SeqCst) + 1;
    let (at, trace) = *config();
    if trace {
        let _ = writeln!(io::stderr(), "fault point {n}: {kind} {}", path.display());
    }
    at == Some(n)
}

/// Kills the process at an interruption point, after the power-loss model has undone what
/// was not durable.
pub fn die(kind: Point, path: &Path) -> ! {
    let _ = writeln!(
        io::stderr(),
        "{FAULT_AT_VAR}: killed at point {} ({kind} {})",
        COUNT.load(Ordering::SeqCst),
        path.display()
    );
    powerloss::cut();
    std::process::abort()
}

/// Announces a mutation and dies here if told to.
pub fn point(kind: Point, path: &Path) {
    if reached(kind, path) {
        die(kind, path)
    }
}

/// How many points this process has passed.
pub fn points_passed() -> u64 {
    COUNT.load(Ordering::SeqCst)
}

/// Writes all of `bytes` to `f` (a torn write when the point is hit).
/// (The write in flight at a cut is torn: its first half reaches the disk.)
pub fn write_all(f: &mut File, path: &Path, bytes: &[u8]) -> io::Result<()> {
    powerloss::before_write(f);
    if reached(Point::Write, path) {
        let _ = f.write_all(&bytes[..bytes.len() / 2]);
        powerloss::torn(f);
        die(Point::Write, path)
    }
    f.write_all(bytes)
}

/// fsyncs a file: its contents, mode and owner are durable afterwards (its name is not: that
/// takes an fsync of its directory).
pub fn fsync(f: &File, path: &Path) -> io::Result<()> {
    point(Point::Fsync, path);
    f.sync_all()?;
    powerloss::synced(f.as_fd());
    Ok(())
}

/// fsyncs an open file or directory (`path` names it in errors and traces).
pub fn fsync_fd<Fd: AsFd>(fd: Fd, path: &Path) -> io::Result<()> {
    let is_dir = rustix::fs::fstat(&fd)
        .map(|st| rustix::fs::FileType::from_raw_mode(st.st_mode).is_dir())
        .unwrap_or(false);
    point(
        if is_dir {
            Point::FsyncDir
        } else {
            Point::Fsync
        },
        path,
    );
    if is_dir && powerloss::skip_fsync_dir(path) {
        return Ok(());
    }
    rustix::fs::fsync(&fd)?;
    powerloss::synced(fd.as_fd());
    Ok(())
}

/// fsyncs a directory so that the entries created, renamed or removed in it are durable.
pub fn fsync_dir(dir: &Path) -> io::Result<()> {
    point(Point::FsyncDir, dir);
    if powerloss::skip_fsync_dir(dir) {
        return Ok(());
    }
    let f = File::open(dir)?;
    f.sync_all()?;
    powerloss::synced(f.as_fd());
    Ok(())
}

/// syncfs of the filesystem holding `path`: everything written there is durable afterwards
/// (used once after a checkout instead of an fsync per directory).
pub fn syncfs(path: &Path) -> io::Result<()> {
    point(Point::Syncfs, path);
    let f = File::open(path)?;
    rustix::fs::syncfs(&f)?;
    powerloss::synced_fs(f.as_fd());
    Ok(())
}

/// Creates a new file exclusively (mode `mode`), open for reading and writing.
pub fn create_new(path: &Path, mode: u32) -> io::Result<File> {
    point(Point::Create, path);
    powerloss::record_create(powerloss::At::Path(path), || {
        OpenOptions::new()
            .write(true)
            .read(true)
            .create_new(true)
            .mode(mode)
            .open(path)
    })
}

/// Creates a new file `name` in the open directory `dir` exclusively (mode `mode`, not
/// following a symlink), open for writing. `path` names it in errors and traces.
pub fn create_at(dir: BorrowedFd<'_>, name: &OsStr, mode: u32, path: &Path) -> io::Result<File> {
    use rustix::fs::{Mode, OFlags};
    point(Point::Create, path);
    powerloss::record_create(powerloss::At::Fd(dir, name), || {
        let fd = rustix::fs::openat(
            dir,
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(mode),
        )?;
        Ok(File::from(fd))
    })
}

/// Creates directory `name` in the open directory `dir` (mode `mode`; fails on anything
/// existing). `path` names it in errors and traces.
pub fn mkdir_at(dir: BorrowedFd<'_>, name: &OsStr, mode: u32, path: &Path) -> io::Result<()> {
    point(Point::Mkdir, path);
    powerloss::record_create(powerloss::At::Fd(dir, name), || {
        Ok(rustix::fs::mkdirat(
            dir,
            name,
            rustix::fs::Mode::from_raw_mode(mode),
        )?)
    })
}

/// Creates symlink `name` to `target` in the open directory `dir`.
pub fn symlink_at(
    target: &OsStr,
    dir: BorrowedFd<'_>,
    name: &OsStr,
    path: &Path,
) -> io::Result<()> {
    point(Point::Symlink, path);
    powerloss::record_create(powerloss::At::Fd(dir, name), || {
        Ok(rustix::fs::symlinkat(target, dir, name)?)
    })
}

/// Creates symlink `path` to `target`.
pub fn symlink(target: &OsStr, path: &Path) -> io::Result<()> {
    point(Point::Symlink, path);
    powerloss::record_create(powerloss::At::Path(path), || {
        std::os::unix::fs::symlink(target, path)
    })
}

/// Hard-links `existing` (a symlink is linked as itself, not followed) as `name` in the open
/// directory `dir`.
pub fn link_at(existing: &Path, dir: BorrowedFd<'_>, name: &OsStr, path: &Path) -> io::Result<()> {
    point(Point::Link, path);
    powerloss::record_create(powerloss::At::Fd(dir, name), || {
        Ok(rustix::fs::linkat(
            rustix::fs::CWD,
            existing,
            dir,
            name,
            rustix::fs::AtFlags::empty(),
        )?)
    })
}

/// Changes the metadata (mode, owner, xattrs) of the open file or directory `fd` by running
/// `f` on it (durable once `fd` is fsynced). `path` names it in errors and traces.
pub fn set_meta<Fd: AsFd, T>(
    fd: Fd,
    path: &Path,
    f: impl FnOnce(BorrowedFd<'_>) -> io::Result<T>,
) -> io::Result<T> {
    point(Point::Meta, path);
    powerloss::before_meta(fd.as_fd());
    f(fd.as_fd())
}

/// Sets the permission bits of `f`, a file this process created and has not published yet
/// (nothing can see it, so this is not an interruption point; the model still reverts it).
pub fn set_mode_unpublished(f: &File, mode: u32) -> io::Result<()> {
    powerloss::before_meta(f.as_fd());
    f.set_permissions(fs::Permissions::from_mode(mode))
}

/// Changes the metadata of `path` by running `f` (a symlink's owner and xattrs are not
/// modeled by [`powerloss`]).
pub fn set_meta_path<T>(path: &Path, f: impl FnOnce() -> io::Result<T>) -> io::Result<T> {
    point(Point::Meta, path);
    powerloss::before_meta_path(path);
    f()
}

/// Renames `from` to `to` (replacing `to` if it is a file or an empty directory).
pub fn rename(from: &Path, to: &Path) -> io::Result<()> {
    point(Point::Rename, to);
    powerloss::record_rename(powerloss::At::Path(from), powerloss::At::Path(to), || {
        fs::rename(from, to)
    })
}

/// Removes a file or symlink.
pub fn remove_file(path: &Path) -> io::Result<()> {
    point(Point::Unlink, path);
    powerloss::record_remove(powerloss::At::Path(path), || fs::remove_file(path))
}

/// Removes a file if it exists; `Ok(false)` when it did not.
pub fn remove_file_if_exists(path: &Path) -> io::Result<bool> {
    match fs::symlink_metadata(path) {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    }
    match remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Creates one directory (mode `mode`). Its name is durable once its parent is fsynced.
pub fn mkdir(path: &Path, mode: u32) -> io::Result<()> {
    point(Point::Mkdir, path);
    powerloss::record_create(powerloss::At::Path(path), || {
        fs::DirBuilder::new().mode(mode).create(path)
    })
}

/// Creates a directory and its missing parents (each creation is a point), each durably:
/// the parent of every directory created is fsynced, so that what is later made durable
/// inside it is reachable after a power loss.
pub fn mkdir_all(path: &Path, mode: u32) -> io::Result<()> {
    if path.is_dir() {
        return Ok(());
    }
    if let Some(parent) = path.parent() {
        if !parent.as_os_str().is_empty() {
            mkdir_all(parent, mode)?;
        }
    }
    match mkdir(path, mode) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && path.is_dir() => Ok(()),
        Err(e) => Err(e),
        Ok(()) => fsync_dir(&parent_of(path)),
    }
}

/// Removes a directory tree, one point per entry removed (symlinks are removed, never
/// followed). Missing is fine. Works through directory descriptors ([`walk::DirStack`]): any
/// depth, paths longer than `PATH_MAX`, at most [`walk::MAX_OPEN_DIRS`] directories open,
/// no recursion, time linear in what it removes (plus the re-opening of closed levels of a
/// chain deeper than [`walk::MAX_OPEN_DIRS`]). The directory holding `path` is opened by
/// path: it must be a checked directory of the sysroot.
pub fn remove_tree(path: &Path) -> io::Result<()> {
    let Some(name) = path.file_name() else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} names no directory entry to remove", path.display()),
        ));
    };
    let parent = match walk::open_dir(&parent_of(path)) {
        Ok(fd) => fd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    remove_tree_at(parent.as_fd(), name, path)
}

/// Removes `name` in the open directory `dir` and everything under it, as [`remove_tree`]
/// does. `path` names it in errors and traces.
pub fn remove_tree_at(dir: BorrowedFd<'_>, name: &OsStr, path: &Path) -> io::Result<()> {
    match walk::type_at(dir, name)? {
        None => return Ok(()),
        Some(t) if !t.is_dir() => return unlink_at(dir, name, path),
        Some(_) => {}
    }
    make_enterable(dir, name, path)?;
    let mut s = walk::DirStack::new(walk::open_dir_at(dir, name)?, path);
    // The subdirectories still to remove, one list per level of the walk.
    let mut pending: Vec<Vec<OsString>> = Vec::new();
    let mut listed = false;
    loop {
        if !listed {
            let mut subdirs = Vec::new();
            // Files, symlinks and others go now; subdirectories one by one.
            for (n, t) in walk::list(s.top()?)? {
                if t.is_dir() {
                    subdirs.push(n);
                } else {
                    let p = s.short_child_path(&n);
                    unlink_at(s.top()?, &n, &p)?;
                }
            }
            pending.push(subdirs);
            listed = true;
        }
        match pending.last_mut().and_then(Vec::pop) {
            Some(n) => {
                let p = s.short_child_path(&n);
                make_enterable(s.top()?, &n, &p)?;
                s.enter(&n)?;
                listed = false;
            }
            None => {
                pending.pop();
                let Some(n) = s.leave() else { break };
                let p = s.short_child_path(&n);
                rmdir_at(s.top()?, &n, &p)?;
            }
        }
    }
    drop(s);
    rmdir_at(dir, name, path)
}

/// Gives directory `name` in `dir` the owner's read, write and search bits when it lacks
/// them (a checkout applies the tree's modes; a read-only directory must be writable to be
/// emptied), without following a symlink.
fn make_enterable(dir: BorrowedFd<'_>, name: &OsStr, path: &Path) -> io::Result<()> {
    use rustix::fs::{AtFlags, Mode, OFlags};
    let st = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)?;
    if st.st_mode & 0o700 == 0o700 {
        return Ok(());
    }
    // O_PATH opens even a directory without read permission; chmod through its
    // /proc/self/fd link changes that very directory.
    let fd = rustix::fs::openat(
        dir,
        name,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    set_meta(&fd, path, |fd| {
        use std::os::fd::AsRawFd;
        let p = format!("/proc/self/fd/{}", fd.as_raw_fd());
        fs::set_permissions(p, fs::Permissions::from_mode((st.st_mode & 0o7777) | 0o700))
    })
}

/// Removes the file or symlink `name` in the open directory `dir`.
pub fn unlink_at(dir: BorrowedFd<'_>, name: &OsStr, path: &Path) -> io::Result<()> {
    point(Point::Unlink, path);
    powerloss::record_remove(powerloss::At::Fd(dir, name), || {
        Ok(rustix::fs::unlinkat(
            dir,
            name,
            rustix::fs::AtFlags::empty(),
        )?)
    })
}

/// Removes the empty directory `name` in the open directory `dir`.
pub fn rmdir_at(dir: BorrowedFd<'_>, name: &OsStr, path: &Path) -> io::Result<()> {
    point(Point::Rmdir, path);
    powerloss::record_remove(powerloss::At::Fd(dir, name), || {
        Ok(rustix::fs::unlinkat(
            dir,
            name,
            rustix::fs::AtFlags::REMOVEDIR,
        )?)
    })
}

/// Writes `bytes` to `path` atomically: a temporary file beside it (written, fsynced),
/// renamed over `path`, and the directory fsynced. The file gets mode `mode`.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let dir = parent_of(path);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    remove_file_if_exists(&tmp)?;
    let res = (|| {
        let mut f = create_new(&tmp, mode)?;
        write_all(&mut f, &tmp, bytes)?;
        fsync(&f, &tmp)?;
        drop(f);
        rename(&tmp, path)?;
        fsync_dir(&dir)
    })();
    if res.is_err() {
        let _ = remove_file(&tmp);
    }
    res
}

/// Overwrites `bytes.len()` bytes of an existing file or device at `offset` and fsyncs it
/// (not atomic: used for one copy of a redundant environment, whose CRC detects a tear).
pub fn write_in_place(path: &Path, offset: u64, bytes: &[u8]) -> io::Result<()> {
    let mut f = OpenOptions::new().write(true).open(path)?;
    f.seek(SeekFrom::Start(offset))?;
    write_all(&mut f, path, bytes)?;
    fsync(&f, path)
}

/// Opens `path` (created with mode 0644 when missing, never truncated) and takes an exclusive
/// `flock` on it, waiting while another process holds it; the lock lasts as long as the
/// returned file. Not an interruption point: a lock leaves nothing to recover. On failure,
/// says which step failed (`"open"` or `"lock"`).
pub fn lock_exclusive(path: &Path) -> Result<File, (&'static str, io::Error)> {
    let open = || {
        // Never through a planted symlink (O_NOFOLLOW: a link there fails with ELOOP).
        OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o644)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(path)
    };
    let f = if fs::symlink_metadata(path).is_ok() {
        open()
    } else {
        powerloss::record_create(powerloss::At::Path(path), open)
    }
    .map_err(|e| ("open", e))?;
    rustix::fs::flock(&f, rustix::fs::FlockOperation::LockExclusive)
        .map_err(|e| ("lock", e.into()))?;
    Ok(f)
}

/// The directory holding `path` (`.` for a bare name).
pub fn parent_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn atomic_write_and_tree_removal() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a/b/c");
        mkdir_all(&p, 0o755).unwrap();
        write_atomic(&p.join("f"), b"hello", 0o600).unwrap();
        write_atomic(&p.join("f"), b"world", 0o600).unwrap();
        assert_eq!(fs::read(p.join("f")).unwrap(), b"world");
        assert_eq!(
            fs::metadata(p.join("f")).unwrap().permissions().mode() & 0o777,
            0o600
        );
        write_in_place(&p.join("f"), 1, b"OR").unwrap();
        assert_eq!(fs::read(p.join("f")).unwrap(), b"wORld");
        std::os::unix::fs::symlink("/etc", p.join("l")).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o500)).unwrap();
        let before = points_passed();
        remove_tree(&d.path().join("a")).unwrap();
        assert!(!d.path().join("a").exists());
        assert!(Path::new("/etc").exists());
        // meta + 2 unlinks + 3 rmdirs at least
        assert!(points_passed() - before >= 6);
        assert!(remove_file_if_exists(&d.path().join("nope")).is_ok_and(|r| !r));
    }
}
