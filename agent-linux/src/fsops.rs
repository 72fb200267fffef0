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
//! What an abort cannot show is the loss of data that was written but not yet fsynced (the
//! page cache survives a killed process); the code therefore fsyncs before every rename and
//! the directory after it, and the tests check the order of these calls by construction
//! rather than by losing cached data.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
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

/// Kills the process at an interruption point.
pub fn die(kind: Point, path: &Path) -> ! {
    let _ = writeln!(
        io::stderr(),
        "{FAULT_AT_VAR}: killed at point {} ({kind} {})",
        COUNT.load(Ordering::SeqCst),
        path.display()
    );
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
pub fn write_all(f: &mut File, path: &Path, bytes: &[u8]) -> io::Result<()> {
    if reached(Point::Write, path) {
        let _ = f.write_all(&bytes[..bytes.len() / 2]);
        die(Point::Write, path)
    }
    f.write_all(bytes)
}

/// fsyncs a file.
pub fn fsync(f: &File, path: &Path) -> io::Result<()> {
    point(Point::Fsync, path);
    f.sync_all()
}

/// fsyncs a directory so that the entries created, renamed or removed in it are durable.
pub fn fsync_dir(dir: &Path) -> io::Result<()> {
    point(Point::FsyncDir, dir);
    File::open(dir)?.sync_all()
}

/// syncfs of the filesystem holding `path`: everything written there is durable afterwards
/// (used once after a checkout instead of an fsync per directory).
pub fn syncfs(path: &Path) -> io::Result<()> {
    point(Point::Syncfs, path);
    let f = File::open(path)?;
    rustix::fs::syncfs(&f).map_err(io::Error::from)
}

/// Creates a new file exclusively (mode `mode`).
pub fn create_new(path: &Path, mode: u32) -> io::Result<File> {
    point(Point::Create, path);
    OpenOptions::new()
        .write(true)
        .read(true)
        .create_new(true)
        .mode(mode)
        .open(path)
}

/// Renames `from` to `to` (replacing `to` if it is a file or an empty directory).
pub fn rename(from: &Path, to: &Path) -> io::Result<()> {
    point(Point::Rename, to);
    fs::rename(from, to)
}

/// Removes a file or symlink.
pub fn remove_file(path: &Path) -> io::Result<()> {
    point(Point::Unlink, path);
    fs::remove_file(path)
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

/// Creates one directory (mode `mode`).
pub fn mkdir(path: &Path, mode: u32) -> io::Result<()> {
    point(Point::Mkdir, path);
    fs::DirBuilder::new().mode(mode).create(path)
}

/// Creates a directory and its missing parents (each creation is a point).
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
        r => r,
    }
}

/// Removes a directory tree, one point per entry removed (symlinks are removed, never
/// followed). Missing is fine.
pub fn remove_tree(path: &Path) -> io::Result<()> {
    let md = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if !md.is_dir() {
        return remove_file(path);
    }
    // A read-only directory (a checkout applies the tree's modes) must be writable to empty.
    if md.permissions().mode() & 0o700 != 0o700 {
        point(Point::Meta, path);
        fs::set_permissions(path, fs::Permissions::from_mode(0o700))?;
    }
    for entry in fs::read_dir(path)? {
        let entry = entry?;
        let p = entry.path();
        if entry.file_type()?.is_dir() {
            remove_tree(&p)?;
        } else {
            remove_file(&p)?;
        }
    }
    point(Point::Rmdir, path);
    fs::remove_dir(path)
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
    let _ = fs::remove_file(&tmp);
    let res = (|| {
        let mut f = create_new(&tmp, mode)?;
        write_all(&mut f, &tmp, bytes)?;
        fsync(&f, &tmp)?;
        drop(f);
        rename(&tmp, path)?;
        fsync_dir(&dir)
    })();
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
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
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o644)
        .open(path)
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
