//! The object repository on a Linux filesystem (`docs/REPO.md` is its specification).
//!
//! ```text
//! R/config                         "ecu-agent-repo 1" and the layout's name
//! R/objects/ab/cdef….dirtree       canonical bytes of the object (as hashed)
//! R/objects/ab/cdef….dirmeta       canonical bytes
//! R/objects/ab/cdef….commit        canonical bytes; present only once complete
//! R/objects/ab/cdef….file          a regular file's content with its mode, owner and xattrs
//!                                  applied, or a symlink: the file object, its metadata in
//!                                  its inode
//! R/objects/ab/cdef….filemeta      only where the inode cannot hold it exactly: the file
//!                                  object's canonical metadata (header, target, xattrs)
//! R/refs/heads/<ref path>          64 hex characters and a newline
//! R/tmp/                           staging (mode 0700): every write lands here first, then
//!                                  is renamed
//! R/state/                         reserved for partial installs
//! R/lock                           flock()ed by a writer (commit, install)
//! ```
//!
//! A file object is kept as a plain file (or a real symlink) so that a checkout can
//! hard-link it; its canonical metadata is read back from its inode (mode, owner, size,
//! target, xattrs), or from a `.filemeta` side file written where the filesystem could not
//! apply it exactly, so that the object's exact bytes (and id) can always be rebuilt. Every
//! write goes to `R/tmp`, is fsynced and renamed into place, and the directory is fsynced.
//! Objects are content-addressed, so publishing a verified object early is harmless; a
//! `.commit` object is only written once everything it references is in place, so its
//! presence means "this commit is complete".
//!
//! The code is split by concept: this module holds the layout (init, open, lock, paths,
//! staging in `R/tmp`); `error` the error type; `objects` reading and writing single
//! objects; `commits` commits, their signatures and history; `refs` ref files and revision
//! lookup; `txn` many objects written together ([`Transaction`], [`TmpPool`]); `fsck`
//! walking and checking a commit's tree; `gc` the journaled removal of dirtrees.
//! Every public item is re-exported here, so its path is `crate::repo::Item`.

mod commits;
mod error;
mod fsck;
mod gc;
mod objects;
mod refs;
mod txn;

pub use commits::{CommitInfo, CommitMeta, TreeRoot};
pub(crate) use error::io_err;
pub use error::RepoError;
pub use fsck::{FsckStats, ObjectSet};
pub use gc::GC_JOURNAL;
pub(crate) use objects::check_metadata;
pub use objects::{FileObjectReader, OwnedEntry};
pub use refs::{validate_ref, RefSearch, MAX_REF_LEN};
pub(crate) use txn::Chunked;
pub use txn::{TmpPool, Transaction, MAX_DIR_FSYNCS, MAX_OPEN_STAGED};

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use agent_core::object::{ObjectId, ObjectKind};

/// The first line of `R/config`.
pub const CONFIG_MAGIC: &str = "ecu-agent-repo";
/// The repository layout version this crate reads and writes.
pub const REPO_VERSION: u32 = 1;
/// The layout's name in `R/config`: one file per file object, its metadata in its inode, plus
/// a `.filemeta` side file only for an object whose inode cannot hold its metadata exactly.
pub const REPO_MODE: &str = "bare";
/// The layout before [`REPO_MODE`]: a `.filemeta` side file for every file object. Such a
/// repository is a valid `bare` one (the side files are read when present); the first writer
/// to lock it ([`Repo::lock`]) rewrites its config, so older agents no longer write there.
pub const LEGACY_REPO_MODE: &str = "bare-split";
/// Suffix of the side file that holds a file object's canonical metadata.
pub const FILEMETA_SUFFIX: &str = "filemeta";
/// Largest dirtree, dirmeta or commit object read into memory (a dirtree of 16 MiB holds
/// more than 100 000 entries).
pub const MAX_METADATA_OBJECT: u64 = 16 * 1024 * 1024;

/// Checks that `path`, if it exists, is a real directory (not followed if it is a symlink)
/// owned by the running user. `Ok(false)` when it does not exist.
pub fn check_trusted_dir(path: &Path) -> Result<bool, RepoError> {
    use std::os::unix::fs::MetadataExt;
    let md = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(io_err("look up", path)(e)),
    };
    let untrusted = |what: String| RepoError::Untrusted {
        path: path.to_path_buf(),
        what,
    };
    if md.file_type().is_symlink() {
        let to = fs::read_link(path)
            .map(|t| format!(" (to {})", t.display()))
            .unwrap_or_default();
        return Err(untrusted(format!("a symbolic link{to}")));
    }
    if !md.is_dir() {
        return Err(untrusted("not a directory".into()));
    }
    let me = rustix::process::geteuid().as_raw();
    if md.uid() != me {
        return Err(untrusted(format!("owned by uid {}", md.uid())));
    }
    Ok(true)
}

/// Mode of the staging directory `R/tmp`: private, so that nothing staged there can be run,
/// read or linked by anyone else before it is verified and published.
pub const TMP_DIR_MODE: u32 = 0o700;
/// Deepest directory nesting of a tree ([`agent_core::object::MAX_TREE_DEPTH`], the limit the
/// installer enforces), as a `usize`: commit, checkout, verify, fsck, cleanup and deployment
/// removal use this one limit.
pub const MAX_TREE_DEPTH: usize = agent_core::object::MAX_TREE_DEPTH as usize;

/// The repository's write lock, released when dropped. See [`Repo::lock`].
#[derive(Debug)]
pub struct RepoLock {
    _file: File,
}

/// An object repository. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct Repo {
    root: PathBuf,
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// This process's id (asked once: staging names carry it).
fn pid() -> u32 {
    static PID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *PID.get_or_init(std::process::id)
}

impl Repo {
    /// Creates a repository at `path` (which may exist if it is an empty directory).
    pub fn init(path: &Path) -> Result<Repo, RepoError> {
        match fs::read_dir(path) {
            Ok(mut it) => {
                if it.next().is_some() {
                    if path.join("config").exists() {
                        return Repo::open(path);
                    }
                    // An init interrupted before its config was written is finished.
                    if !interrupted_init(path) {
                        return Err(RepoError::NotEmpty(path.to_path_buf()));
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                crate::fsops::mkdir_all(path, 0o755).map_err(io_err("create", path))?
            }
            Err(e) => return Err(io_err("read directory", path)(e)),
        }
        for sub in ["objects", "refs/heads", "tmp", "state"] {
            let p = path.join(sub);
            let mode = if sub == "tmp" { TMP_DIR_MODE } else { 0o755 };
            crate::fsops::mkdir_all(&p, mode).map_err(io_err("create", &p))?;
        }
        let repo = Repo {
            root: path.to_path_buf(),
        };
        let config = format!("{CONFIG_MAGIC} {REPO_VERSION}\nmode={REPO_MODE}\n");
        repo.write_atomic(&path.join("config"), config.as_bytes())?;
        Ok(repo)
    }

    /// Checks the repository's own directories (`objects` and every `objects/xx`, `refs` and
    /// every directory under it, `tmp`, `state`): each must be a real directory (not a
    /// symlink) owned by the running user, or missing. The repository's root is the
    /// caller's (for a sysroot, [`crate::sysroot::Sysroot`] checks it).
    pub fn check_dirs(&self) -> Result<(), RepoError> {
        for sub in ["objects", "tmp", "state"] {
            check_trusted_dir(&self.root.join(sub))?;
        }
        let objects = self.root.join("objects");
        if let Ok(rd) = fs::read_dir(&objects) {
            for e in rd {
                let e = e.map_err(io_err("read directory", &objects))?;
                check_trusted_dir(&e.path())?;
            }
        }
        // Ref names hold `/`: every directory under refs/ is a place a ref is written.
        let mut todo = vec![self.root.join("refs")];
        while let Some(d) = todo.pop() {
            if !check_trusted_dir(&d)? {
                continue;
            }
            for e in fs::read_dir(&d).map_err(io_err("read directory", &d))? {
                let e = e.map_err(io_err("read directory", &d))?;
                let ft = e.file_type().map_err(io_err("look up", &e.path()))?;
                // A symlink there is refused like a directory would be checked: ref writes
                // would follow it.
                if ft.is_dir() || ft.is_symlink() {
                    todo.push(e.path());
                }
            }
        }
        Ok(())
    }

    /// Opens an existing repository.
    pub fn open(path: &Path) -> Result<Repo, RepoError> {
        let config_path = path.join("config");
        let config = match fs::read_to_string(&config_path) {
            Ok(c) => c,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(RepoError::NotARepo(path.to_path_buf()))
            }
            Err(e) => return Err(io_err("read", &config_path)(e)),
        };
        let mut lines = config.lines();
        let first = lines.next().unwrap_or("");
        let expected = format!("{CONFIG_MAGIC} {REPO_VERSION}");
        let mode_ok = lines.any(|l| {
            let l = l.trim();
            l == format!("mode={REPO_MODE}") || l == format!("mode={LEGACY_REPO_MODE}")
        });
        if first.trim() != expected || !mode_ok {
            return Err(RepoError::UnsupportedRepo {
                path: path.to_path_buf(),
                found: first.to_string(),
            });
        }
        let repo = Repo {
            root: path.to_path_buf(),
        };
        repo.check_dirs()?;
        Ok(repo)
    }

    /// The repository's directory.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// Takes the repository's write lock (an exclusive `flock` on `R/lock`), waiting for
    /// another writer to finish, then makes `R/tmp` private (mode 0700: a repository made by an
    /// older version had it 0755) and removes whatever a crashed writer left in it (no other
    /// writer can be using it). Hold it while building commits or installing.
    pub fn lock(&self) -> Result<RepoLock, RepoError> {
        let p = self.root.join("lock");
        let f = crate::fsops::lock_exclusive(&p).map_err(|(what, e)| io_err(what, &p)(e))?;
        let tmp = self.tmp_dir();
        crate::fsops::mkdir_all(&tmp, TMP_DIR_MODE).map_err(io_err("create", &tmp))?;
        let md = fs::symlink_metadata(&tmp).map_err(io_err("look up", &tmp))?;
        if !md.is_dir() {
            return Err(io_err("use", &tmp)(io::Error::new(
                io::ErrorKind::InvalidData,
                "the staging directory is not a directory",
            )));
        }
        if md.permissions().mode() & 0o7777 != TMP_DIR_MODE {
            crate::fsops::set_meta_path(&tmp, || {
                fs::set_permissions(&tmp, fs::Permissions::from_mode(TMP_DIR_MODE))
            })
            .map_err(io_err("make private", &tmp))?;
        }
        if let Ok(rd) = fs::read_dir(&tmp) {
            for e in rd.flatten() {
                let _ = crate::fsops::remove_file(&e.path());
            }
        }
        self.finish_gc()?;
        self.migrate()?;
        Ok(RepoLock { _file: f })
    }

    /// Rewrites the config of a [`LEGACY_REPO_MODE`] repository as [`REPO_MODE`]: its objects
    /// all have side files, which a `bare` repository reads, so nothing else changes. Called
    /// with the lock held; returns whether the config was rewritten.
    fn migrate(&self) -> Result<bool, RepoError> {
        let p = self.root.join("config");
        let config = fs::read_to_string(&p).map_err(io_err("read", &p))?;
        if !config
            .lines()
            .any(|l| l.trim() == format!("mode={LEGACY_REPO_MODE}"))
        {
            return Ok(false);
        }
        let new: String = config
            .lines()
            .map(|l| {
                if l.trim() == format!("mode={LEGACY_REPO_MODE}") {
                    format!("mode={REPO_MODE}\n")
                } else {
                    format!("{l}\n")
                }
            })
            .collect();
        self.write_atomic(&p, new.as_bytes())?;
        log::info!(
            "repository {} migrated from mode {LEGACY_REPO_MODE} to {REPO_MODE}",
            self.root.display()
        );
        Ok(true)
    }

    /// The staging directory `R/tmp`.
    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// Where an object lives: `R/objects/ab/cdef….<kind>`.
    pub fn object_path(&self, kind: ObjectKind, id: &ObjectId) -> PathBuf {
        let hex = id.to_hex();
        let (dir, rest) = hex.as_str().split_at(2);
        self.root
            .join("objects")
            .join(dir)
            .join(format!("{rest}.{}", kind.suffix()))
    }

    /// Where a file object's canonical metadata lives: `R/objects/ab/cdef….filemeta`.
    pub fn filemeta_path(&self, id: &ObjectId) -> PathBuf {
        let hex = id.to_hex();
        let (dir, rest) = hex.as_str().split_at(2);
        self.root
            .join("objects")
            .join(dir)
            .join(format!("{rest}.{FILEMETA_SUFFIX}"))
    }

    /// Whether the object is in place. For a file, its content (or symlink) is published
    /// after its `.filemeta`, so the content's presence means both are there. A dirtree is
    /// only ever written after everything under it, so its presence means its whole tree is.
    pub fn has_object(&self, kind: ObjectKind, id: &ObjectId) -> Result<bool, RepoError> {
        if matches!(kind, ObjectKind::Unknown(_)) {
            return Ok(false);
        }
        let p = self.object_path(kind, id);
        match fs::symlink_metadata(&p) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_err("look up", &p)(e)),
        }
    }

    /// Whether the repository holds the complete commit `id`.
    pub fn has_commit(&self, id: &ObjectId) -> Result<bool, RepoError> {
        self.has_object(ObjectKind::Commit, id)
    }

    /// A new, exclusively created file in `R/tmp` (mode 0600) and its path.
    pub fn create_tmp(&self, prefix: &str) -> Result<(File, PathBuf), RepoError> {
        let dir = self.tmp_dir();
        loop {
            let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
            let p = dir.join(format!("{prefix}-{}-{n}", pid()));
            match crate::fsops::create_new(&p, 0o600) {
                Ok(f) => return Ok((f, p)),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(io_err("create", &p)(e)),
            }
        }
    }

    /// A fresh unused path in `R/tmp` (for a symlink).
    pub(crate) fn tmp_path(&self, prefix: &str) -> PathBuf {
        let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        self.tmp_dir().join(format!("{prefix}-{}-{n}", pid()))
    }

    /// Writes `bytes` to `path` atomically: a temp file in `R/tmp`, fsync, rename, fsync of
    /// the directory.
    pub fn write_atomic(&self, path: &Path, bytes: &[u8]) -> Result<(), RepoError> {
        let tmp = self.write_tmp(bytes, true)?;
        let res = self.rename_into_place(&tmp, path);
        if res.is_err() {
            let _ = crate::fsops::remove_file(&tmp);
        }
        res
    }

    /// Renames `tmp` to `path` (creating `path`'s directory) and fsyncs that directory.
    pub(crate) fn rename_into_place(&self, tmp: &Path, path: &Path) -> Result<(), RepoError> {
        let dir = path.parent().unwrap_or(&self.root);
        crate::fsops::mkdir_all(dir, 0o755).map_err(io_err("create", dir))?;
        crate::fsops::rename(tmp, path).map_err(io_err("rename into", path))?;
        sync_dir(dir)
    }

    /// Writes `bytes` to a new file in `R/tmp` (mode 0644, fsynced when `sync`).
    fn write_tmp(&self, bytes: &[u8], sync: bool) -> Result<PathBuf, RepoError> {
        let (mut f, tmp) = self.create_tmp("write")?;
        let res = (|| {
            crate::fsops::write_all(&mut f, &tmp, bytes).map_err(io_err("write", &tmp))?;
            crate::fsops::set_mode_unpublished(&f, 0o644).map_err(io_err("set mode of", &tmp))?;
            if sync {
                crate::fsops::fsync(&f, &tmp).map_err(io_err("fsync", &tmp))?;
            }
            Ok(())
        })();
        match res {
            Ok(()) => Ok(tmp),
            Err(e) => {
                let _ = crate::fsops::remove_file(&tmp);
                Err(e)
            }
        }
    }
}

/// Whether `path` holds only what an interrupted [`Repo::init`] leaves: the layout's empty
/// directories (`objects`, `refs/heads`, `state`) and staging files in `tmp`.
fn interrupted_init(path: &Path) -> bool {
    let entries = |p: &Path| -> Option<Vec<(String, bool)>> {
        fs::read_dir(p)
            .ok()?
            .map(|e| {
                let e = e.ok()?;
                let dir = e.file_type().ok()?.is_dir();
                Some((e.file_name().to_string_lossy().into_owned(), dir))
            })
            .collect()
    };
    let Some(top) = entries(path) else {
        return false;
    };
    top.iter().all(|(name, dir)| {
        *dir && match name.as_str() {
            "objects" | "state" => entries(&path.join(name)).is_some_and(|v| v.is_empty()),
            "tmp" => entries(&path.join(name)).is_some_and(|v| v.iter().all(|(_, d)| !d)),
            "refs" => entries(&path.join(name)).is_some_and(|v| {
                v.iter().all(|(n, d)| {
                    *d && n == "heads"
                        && entries(&path.join("refs/heads")).is_some_and(|h| h.is_empty())
                })
            }),
            _ => false,
        }
    })
}

fn prefix_compatible(dir: &str, prefix: &str) -> bool {
    dir.bytes().zip(prefix.bytes()).all(|(a, b)| a == b)
}

/// fsyncs a directory so that a rename into it survives power loss.
pub fn sync_dir(dir: &Path) -> Result<(), RepoError> {
    crate::fsops::fsync_dir(dir).map_err(io_err("fsync directory", dir))
}

#[cfg(test)]
mod test {
    use std::io::Read;

    use agent_core::object::{self, DirMeta, FileHeader, Xattrs, FILE_HEADER_LEN};

    use super::*;

    #[test]
    fn ref_names() {
        for ok in ["main", "ecu/armv7/main", "cs9/x86_64/qemu-minimal", "a.b_c"] {
            assert!(validate_ref(ok).is_ok(), "{ok}");
        }
        for bad in [
            "", "/a", "a/", "a//b", "../x", "a/../b", ".hidden", "a b", "-x", "a\0b",
        ] {
            assert!(validate_ref(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_staging_path_is_kept_as_its_name_in_tmp_and_whole_elsewhere() {
        let d = tempfile::tempdir().unwrap();
        let repo = Repo::init(&d.path().join("r")).unwrap();
        let (_, made) = repo.create_tmp("install").unwrap();
        let outside = d.path().join("elsewhere");
        for p in [made, outside, PathBuf::from("rel/x"), PathBuf::from("x")] {
            let t = objects::TmpRef::new(&repo, p.clone());
            // The same file (a relative path not in R/tmp comes back as `./…`); only a file
            // in R/tmp is kept as its bare name.
            let back = t.path(&repo);
            assert_eq!(back.strip_prefix(".").unwrap_or(&back), p);
            let in_tmp = p.parent() == Some(repo.tmp_dir().as_path());
            assert_eq!(format!("{t:?}").contains('/'), !in_tmp, "{p:?}");
        }
    }

    /// A file object's canonical metadata and content.
    fn file_meta(mode: u32, target: &[u8], xattrs: &[(&[u8], &[u8])], size: u64) -> Vec<u8> {
        let pairs: Vec<(Vec<u8>, Vec<u8>)> = xattrs
            .iter()
            .map(|(n, v)| (n.to_vec(), v.to_vec()))
            .collect();
        let x = crate::fsmeta::encode_xattrs(&pairs).unwrap();
        let h = FileHeader {
            mode,
            uid: rustix::process::geteuid().as_raw(),
            gid: rustix::process::getegid().as_raw(),
            size,
            target_len: target.len() as u16,
            xattrs_len: x.len() as u16,
        };
        let mut meta = vec![0u8; FILE_HEADER_LEN];
        h.emit(&mut meta);
        meta.extend_from_slice(target);
        meta.extend_from_slice(&x);
        meta
    }

    /// Stages a file object (regular when `content` is given) in `txn`; returns its id.
    fn stage(txn: &mut Transaction<'_>, meta: &[u8], content: Option<&[u8]>) -> ObjectId {
        let mut all = meta.to_vec();
        all.extend_from_slice(content.unwrap_or(b""));
        let id = ObjectId::of(&all);
        let content = content.map(|c| {
            let (mut f, p) = txn.repo().create_tmp("test").unwrap();
            std::io::Write::write_all(&mut f, c).unwrap();
            (f, p)
        });
        txn.publish_file_object(&id, meta, content).unwrap();
        id
    }

    /// Reads a file object back whole and checks that it hashes to its id.
    fn read_back(repo: &Repo, id: &ObjectId) {
        let mut r = repo.open_file_object(id).unwrap().into_reader();
        let mut all = Vec::new();
        r.read_to_end(&mut all).unwrap();
        assert_eq!(ObjectId::of(&all), *id);
    }

    #[test]
    fn a_file_object_is_one_file_unless_its_inode_cannot_hold_its_metadata() {
        use object::{S_IFLNK, S_IFREG};
        let dir = tempfile::tempdir().unwrap();
        let repo = Repo::init(&dir.path().join("r")).unwrap();
        let mut txn = Transaction::new(&repo);
        // One file: the inode holds mode, owner and size.
        let plain = stage(
            &mut txn,
            &file_meta(S_IFREG | 0o4755, b"", &[], 5),
            Some(b"hello"),
        );
        let link = stage(&mut txn, &file_meta(S_IFLNK | 0o777, b"../t", &[], 0), None);
        // An attribute in a namespace no filesystem knows cannot be set; a symlink's
        // permission bits are always 0777 on Linux: both need a side file.
        let odd_xattr = file_meta(S_IFREG | 0o644, b"", &[(b"bogus.name", b"v")], 2);
        let odd = stage(&mut txn, &odd_xattr, Some(b"hi"));
        let odd_link = stage(&mut txn, &file_meta(S_IFLNK | 0o755, b"t", &[], 0), None);
        // Many files: more than are kept open until their part is verified.
        let many: Vec<ObjectId> = (0..MAX_OPEN_STAGED + 3)
            .map(|i| {
                let c = format!("file {i}");
                let m = file_meta(S_IFREG | 0o600, b"", &[], c.len() as u64);
                stage(&mut txn, &m, Some(c.as_bytes()))
            })
            .collect();
        txn.part_verified().unwrap();
        txn.commit().unwrap();
        for id in [plain, link].iter().chain(&many) {
            assert!(repo.has_object(ObjectKind::File, id).unwrap());
            assert!(!repo.filemeta_path(id).exists(), "{id} has a side file");
            read_back(&repo, id);
        }
        for id in [odd, odd_link] {
            assert!(repo.filemeta_path(&id).exists(), "{id} has no side file");
            read_back(&repo, &id);
        }
        use std::os::unix::fs::MetadataExt;
        let md = fs::symlink_metadata(repo.object_path(ObjectKind::File, &plain)).unwrap();
        assert_eq!(md.mode() & 0o7777, 0o4755);
        assert_eq!(fs::read_dir(repo.tmp_dir()).unwrap().count(), 0);
        let same = fs::read_link(repo.object_path(ObjectKind::File, &link)).unwrap();
        assert_eq!(same, Path::new("../t"));
        // The path without a transaction does the same.
        let meta = file_meta(S_IFREG | 0o640, b"", &[(b"bogus.other", b"w")], 3);
        let mut all = meta.clone();
        all.extend_from_slice(b"abc");
        let id = ObjectId::of(&all);
        let (mut f, p) = repo.create_tmp("test").unwrap();
        std::io::Write::write_all(&mut f, b"abc").unwrap();
        repo.publish_file_object(&id, &meta, Some((f, p))).unwrap();
        assert!(repo.filemeta_path(&id).exists());
        read_back(&repo, &id);
        // An object whose inode was changed afterwards no longer reads as itself.
        let obj = repo.object_path(ObjectKind::File, &plain);
        fs::set_permissions(&obj, fs::Permissions::from_mode(0o700)).unwrap();
        let mut r = repo.open_file_object(&plain).unwrap().into_reader();
        let mut all = Vec::new();
        r.read_to_end(&mut all).unwrap();
        assert_ne!(ObjectId::of(&all), plain);
    }

    #[test]
    fn a_tmp_pool_creates_ahead_and_removes_what_was_not_taken() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repo::init(&dir.path().join("r")).unwrap();
        let mut pool = TmpPool::start(&repo, "pool").expect("two cores, no fault injection");
        let (mut f, p) = pool.take().unwrap();
        assert_eq!(p.parent(), Some(repo.tmp_dir().as_path()));
        std::io::Write::write_all(&mut f, b"taken").unwrap();
        let count = || fs::read_dir(repo.tmp_dir()).unwrap().count();
        let t = std::time::Instant::now();
        while count() < TmpPool::AHEAD && t.elapsed().as_secs() < 10 {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(count() > TmpPool::AHEAD, "{} files ahead", count() - 1);
        assert!(count() <= TmpPool::AHEAD + 2);
        drop(pool);
        let left: Vec<PathBuf> = fs::read_dir(repo.tmp_dir())
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(left, vec![p.clone()]);
        assert_eq!(fs::read(&p).unwrap(), b"taken");
    }

    #[test]
    fn a_bare_split_repository_is_read_and_migrated_by_its_first_writer() {
        use object::S_IFREG;
        let dir = tempfile::tempdir().unwrap();
        let repo = Repo::init(&dir.path().join("r")).unwrap();
        let config = repo.path().join("config");
        assert_eq!(
            fs::read_to_string(&config).unwrap(),
            format!("{CONFIG_MAGIC} {REPO_VERSION}\nmode={REPO_MODE}\n")
        );
        let mut txn = Transaction::new(&repo);
        let id = stage(
            &mut txn,
            &file_meta(S_IFREG | 0o644, b"", &[], 3),
            Some(b"old"),
        );
        txn.commit().unwrap();
        drop(txn);
        // What an older agent wrote: the config's old mode, a side file for every object
        // (here one that differs from the inode, which it wins over).
        fs::write(
            &config,
            format!("{CONFIG_MAGIC} {REPO_VERSION}\nmode=bare-split\n"),
        )
        .unwrap();
        let obj = repo.object_path(ObjectKind::File, &id);
        fs::set_permissions(&obj, fs::Permissions::from_mode(0o600)).unwrap();
        fs::write(
            repo.filemeta_path(&id),
            file_meta(S_IFREG | 0o644, b"", &[], 3),
        )
        .unwrap();
        let repo = Repo::open(repo.path()).unwrap();
        read_back(&repo, &id);
        assert!(fs::read_to_string(&config)
            .unwrap()
            .contains("mode=bare-split"));
        let lock = repo.lock().unwrap();
        assert_eq!(
            fs::read_to_string(&config).unwrap(),
            format!("{CONFIG_MAGIC} {REPO_VERSION}\nmode={REPO_MODE}\n")
        );
        drop(lock);
        read_back(&Repo::open(repo.path()).unwrap(), &id);
        // Another layout is refused, naming what this build reads.
        fs::write(
            &config,
            format!("{CONFIG_MAGIC} {REPO_VERSION}\nmode=archive\n"),
        )
        .unwrap();
        let e = Repo::open(repo.path()).unwrap_err();
        assert!(e.to_string().contains("mode bare"), "{e}");
    }

    /// An empty root directory (mode 0755, owned by root) written into `r`.
    fn empty_root(r: &Repo) -> TreeRoot {
        let mb = DirMeta {
            mode: object::S_IFDIR | 0o755,
            uid: 0,
            gid: 0,
            xattrs: Xattrs::EMPTY,
        }
        .to_vec();
        let meta = r.write_metadata_object(ObjectKind::DirMeta, &mb).unwrap();
        let tree = r
            .write_metadata_object(ObjectKind::DirTree, &0u32.to_le_bytes())
            .unwrap();
        TreeRoot { tree, meta }
    }

    /// The one ref inference of `deploy` (heads), `update generate` (histories, first by name)
    /// and `status` (heads, then histories).
    #[test]
    fn refs_are_inferred_from_a_revision_then_heads_then_histories() {
        use RefSearch::{Head, HeadThenHistory, History};
        let dir = tempfile::tempdir().unwrap();
        let r = Repo::init(&dir.path().join("r")).unwrap();
        let root = empty_root(&r);
        let at = |timestamp| CommitMeta {
            timestamp,
            ..CommitMeta::default()
        };
        // a: c1 <- c2; b: c1 (its head, in a's history); 0: a damaged commit, first by name.
        let c1 = r.commit("a", root, &at(1)).unwrap();
        let c2 = r.commit("a", root, &at(2)).unwrap();
        r.write_ref("b", &c1).unwrap();
        let c3 = r.commit("0", root, &at(3)).unwrap();
        fs::write(r.object_path(ObjectKind::Commit, &c3), b"junk").unwrap();
        let other = ObjectId([7; 32]);
        let infer = |rev: Option<&str>, c: &ObjectId, s| r.infer_ref(rev, c, s).unwrap();
        for s in [Head, History, HeadThenHistory] {
            // A revision that names a ref is that ref, whatever holds the commit.
            assert_eq!(infer(Some("a"), &c1, s).as_deref(), Some("a"));
            assert_eq!(infer(Some("b"), &c2, s).as_deref(), Some("b"));
            // No ref holds it.
            assert_eq!(infer(None, &other, s), None);
            assert_eq!(infer(Some("nope"), &other, s), None);
            // c2 is a's head.
            assert_eq!(
                infer(Some(c2.to_hex().as_str()), &c2, s).as_deref(),
                Some("a")
            );
        }
        // c1 is b's head and in a's history.
        assert_eq!(infer(Some("no ref!"), &c1, Head).as_deref(), Some("b"));
        assert_eq!(infer(None, &c1, History).as_deref(), Some("a"));
        assert_eq!(infer(None, &c1, HeadThenHistory).as_deref(), Some("b"));
        // Only in a history: found by a history search, not by heads.
        r.write_ref("b", &c2).unwrap();
        assert_eq!(infer(None, &c1, Head), None);
        assert_eq!(infer(None, &c1, HeadThenHistory).as_deref(), Some("a"));
        // The damaged ref is passed over, its own head still found as a head.
        assert_eq!(infer(None, &c3, Head).as_deref(), Some("0"));
        assert_eq!(infer(None, &c3, History), None);
    }

    #[test]
    fn init_open_refs_and_metadata_objects() {
        let dir = tempfile::tempdir().unwrap();
        let r = Repo::init(&dir.path().join("r")).unwrap();
        assert!(Repo::open(r.path()).is_ok());
        assert!(matches!(
            Repo::open(dir.path()),
            Err(RepoError::NotARepo(_))
        ));
        let TreeRoot { tree: t, meta: m } = empty_root(&r);
        assert!(r
            .write_metadata_object(ObjectKind::DirTree, &[1, 0, 0, 0])
            .is_err());
        let cm = CommitMeta {
            version: "1".into(),
            subject: "s".into(),
            body: String::new(),
            timestamp: 5,
        };
        let c1 = r.commit("a/b", TreeRoot { tree: t, meta: m }, &cm).unwrap();
        let c2 = r
            .commit(
                "a/b",
                TreeRoot { tree: t, meta: m },
                &CommitMeta { timestamp: 6, ..cm },
            )
            .unwrap();
        assert_eq!(r.read_commit(&c2).unwrap().parent, Some(c1));
        assert_eq!(r.list_refs().unwrap(), vec![("a/b".to_string(), c2)]);
        assert_eq!(r.resolve("a/b").unwrap(), c2);
        assert_eq!(r.resolve(&c1.to_hex().as_str()[..10]).unwrap(), c1);
        assert!(matches!(
            r.resolve("nope"),
            Err(RepoError::UnknownRevision(_))
        ));
        let (h, missing) = r.history(&c2).unwrap();
        assert_eq!(h.iter().map(|c| c.id).collect::<Vec<_>>(), vec![c2, c1]);
        assert_eq!(missing, None);
        // Security versions: the parent's by default, never below it, ids of 0 unchanged.
        let root = TreeRoot { tree: t, meta: m };
        let meta7 = CommitMeta {
            timestamp: 7,
            ..CommitMeta::default()
        };
        let c3 = r
            .commit_with_security_version("a/b", root, &meta7, Some(4))
            .unwrap();
        assert_eq!(r.read_commit(&c3).unwrap().security_version, 4);
        assert_eq!(r.read_commit(&c2).unwrap().security_version, 0);
        let c4 = r.commit("a/b", root, &meta7).unwrap();
        assert_eq!(r.read_commit(&c4).unwrap().security_version, 4);
        assert!(matches!(
            r.commit_with_security_version("a/b", root, &meta7, Some(3)),
            Err(RepoError::SecurityVersionBelowParent {
                given: 3,
                parent,
                parent_security_version: 4
            }) if parent == c4
        ));
        assert_eq!(r.read_ref("a/b").unwrap(), Some(c4));
        // A corrupted object is caught on read.
        fs::write(r.object_path(ObjectKind::Commit, &c1), b"junk").unwrap();
        assert!(matches!(
            r.read_commit(&c1),
            Err(RepoError::HashMismatch { .. })
        ));
    }
}
