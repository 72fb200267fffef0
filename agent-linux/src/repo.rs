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

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use agent_core::object::{
    self, Commit, DirEntry, DirMeta, DirTree, FileHeader, ObjectError, ObjectId, ObjectKind,
    Xattrs, FILE_HEADER_LEN, MAX_COMMIT_LEN,
};
use sha2::{Digest, Sha256};

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
/// Longest ref name in bytes (as the `.update` format allows).
pub const MAX_REF_LEN: usize = agent_core::wire::MAX_REF_LEN;
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

/// The journal of an interrupted dirtree removal, in the repository (see
/// [`Repo::remove_dirtrees`]).
pub const GC_JOURNAL: &str = "gc-dirtrees";
/// Mode of the staging directory `R/tmp`: private, so that nothing staged there can be run,
/// read or linked by anyone else before it is verified and published.
pub const TMP_DIR_MODE: u32 = 0o700;
/// Deepest directory nesting of a tree ([`agent_core::object::MAX_TREE_DEPTH`], the limit the
/// installer enforces), as a `usize`: commit, checkout, verify, fsck, cleanup and deployment
/// removal use this one limit.
pub const MAX_TREE_DEPTH: usize = agent_core::object::MAX_TREE_DEPTH as usize;

/// Why a repository operation failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum RepoError {
    /// A filesystem call failed.
    Io {
        /// What was being done.
        what: &'static str,
        /// On which path.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The directory has no `config` of an `ecu-agent` repository.
    NotARepo(PathBuf),
    /// A directory of the sysroot or repository is a symlink, not a directory, or owned by
    /// another user: someone planted it, and following it could write or delete outside.
    Untrusted {
        /// The directory.
        path: PathBuf,
        /// What it is instead ("a symbolic link", "not a directory", "owned by uid 1000").
        what: String,
    },
    /// The directory is not empty and not a repository, so `init` will not touch it.
    NotEmpty(PathBuf),
    /// `config` names a layout or version this build does not know.
    UnsupportedRepo {
        /// The repository.
        path: PathBuf,
        /// Its first line.
        found: String,
    },
    /// A ref name that is not `component/component/...` of `[A-Za-z0-9._-]`.
    BadRefName {
        /// The name given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A ref file that does not hold an object id.
    BadRefFile(PathBuf),
    /// No ref, commit id or unique id prefix by this name.
    UnknownRevision(String),
    /// A short id that matches more than one commit.
    AmbiguousRevision {
        /// The prefix given.
        rev: String,
        /// How many commits it matches.
        matches: usize,
    },
    /// An object the operation needs is not in the repository.
    MissingObject {
        /// Its kind.
        kind: ObjectKind,
        /// Its id.
        id: ObjectId,
    },
    /// An object's bytes do not parse.
    CorruptObject {
        /// Its kind.
        kind: ObjectKind,
        /// Its id.
        id: ObjectId,
        /// Why.
        error: ObjectError,
    },
    /// An object's bytes do not hash to its name.
    HashMismatch {
        /// Its kind.
        kind: ObjectKind,
        /// The name it is stored under.
        id: ObjectId,
        /// The hash of what is stored.
        found: ObjectId,
    },
    /// A metadata object larger than [`MAX_METADATA_OBJECT`].
    ObjectTooLarge {
        /// Its kind.
        kind: ObjectKind,
        /// Its id.
        id: ObjectId,
        /// Its size.
        len: u64,
    },
    /// A tree nested deeper than [`MAX_TREE_DEPTH`].
    TooDeep(ObjectId),
    /// An object kind this repository cannot hold.
    UnknownKind(ObjectKind),
    /// A commit's detached signature does not verify.
    BadSignature(PathBuf),
    /// The installer called the store out of sequence (a bug in the caller).
    Sequence(&'static str),
    /// An object's bytes were more or fewer than announced.
    ObjectLength {
        /// Its kind.
        kind: ObjectKind,
        /// Its id.
        id: ObjectId,
        /// Bytes announced.
        expected: u64,
        /// Bytes received.
        found: u64,
    },
    /// The commit to record is not the one the install wrote.
    CommitMismatch {
        /// The id asked for.
        expected: ObjectId,
        /// The commit staged, if any.
        staged: Option<ObjectId>,
    },
    /// A new commit's security version is below its parent's (security versions never go
    /// down along a ref).
    SecurityVersionBelowParent {
        /// The security version asked for.
        given: u64,
        /// The parent commit.
        parent: ObjectId,
        /// The parent's security version.
        parent_security_version: u64,
    },
    /// The filesystem cannot hold what the update declares.
    NoSpace {
        /// The repository's directory.
        path: PathBuf,
        /// Bytes the update's parts decode to.
        needed: u64,
        /// Bytes available to the agent on that filesystem (statvfs).
        available: u64,
    },
}

impl fmt::Display for RepoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RepoError::Io { what, path, source } => write!(f, "cannot {what} {}: {source}", path.display()),
            RepoError::Untrusted { path, what } => write!(
                f,
                "refused: {} is {what}, but the sysroot's and repository's directories must be real directories owned by uid {} (the user running the agent); nothing was changed. Move it away and put the real directory back (or remove it to have it recreated)",
                path.display(),
                rustix::process::geteuid().as_raw()
            ),
            RepoError::NotARepo(p) => {
                write!(f, "{} is not an ecu-agent repository (no config); create one with `ecu-agent init`", p.display())
            }
            RepoError::NotEmpty(p) => {
                write!(f, "{} exists, is not empty and is not a repository; pick an empty or new directory", p.display())
            }
            RepoError::UnsupportedRepo { path, found } => write!(
                f,
                "{} is a repository of an unsupported kind ({found:?}); this build reads `{CONFIG_MAGIC} {REPO_VERSION}` mode {REPO_MODE} (or {LEGACY_REPO_MODE}, which it migrates)",
                path.display()
            ),
            RepoError::BadRefName { name, reason } => write!(f, "ref name {name:?} is not allowed: {reason}"),
            RepoError::BadRefFile(p) => write!(f, "ref file {} does not hold a commit id; repair or delete it", p.display()),
            RepoError::UnknownRevision(r) => {
                write!(f, "{r:?} is neither a ref nor a commit in this repository (see `ecu-agent refs`)")
            }
            RepoError::AmbiguousRevision { rev, matches } => {
                write!(f, "{rev:?} matches {matches} commits; give more characters of the id")
            }
            RepoError::MissingObject { kind, id } => write!(f, "{kind} object {id} is not in the repository"),
            RepoError::CorruptObject { kind, id, error } => write!(f, "{kind} object {id} is corrupt: {error}"),
            RepoError::HashMismatch { kind, id, found } => {
                write!(f, "{kind} object {id} is corrupt: its bytes hash to {found}")
            }
            RepoError::ObjectTooLarge { kind, id, len } => {
                write!(f, "{kind} object {id} is {len} bytes, more than the {MAX_METADATA_OBJECT} allowed")
            }
            RepoError::TooDeep(id) => write!(f, "tree {id} is nested deeper than {MAX_TREE_DEPTH} directories"),
            RepoError::UnknownKind(k) => write!(f, "a repository cannot hold objects of {k}"),
            RepoError::BadSignature(p) => {
                write!(f, "commit signature {} does not verify; the commit or the signature was altered", p.display())
            }
            RepoError::Sequence(s) => write!(f, "store called out of sequence: {s} (this is a bug)"),
            RepoError::ObjectLength { kind, id, expected, found } => {
                write!(f, "{kind} object {id} was announced as {expected} bytes but {found} arrived")
            }
            RepoError::CommitMismatch { expected, staged: Some(s) } => {
                write!(f, "asked to record commit {expected} but the install staged {s} (this is a bug)")
            }
            RepoError::CommitMismatch { expected, staged: None } => {
                write!(f, "asked to record commit {expected} but the install staged no commit object")
            }
            RepoError::SecurityVersionBelowParent { given, parent, parent_security_version } => write!(
                f,
                "security version {given} is below {parent_security_version}, the security version of the parent commit {parent}; security versions never go down along a ref: give {parent_security_version} or more"
            ),
            RepoError::NoSpace { path, needed, available } => write!(
                f,
                "refused before writing anything: the update declares {needed} bytes of objects but the filesystem holding {} has {available} bytes available; free {} bytes (`ecu-agent cleanup` removes what nothing needs) and install again",
                path.display(),
                needed.saturating_sub(*available)
            ),
        }
    }
}

/// Transparent to the errors its messages include (as every error of this crate): `source()`
/// is their own source, so that each message appears once in a chain.
impl std::error::Error for RepoError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RepoError::Io { source, .. } => source.source(),
            RepoError::CorruptObject { error, .. } => error.source(),
            _ => None,
        }
    }
}

/// Shorthand for an [`RepoError::Io`] mapper.
pub(crate) fn io_err<'a>(
    what: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> RepoError + 'a {
    move |source| RepoError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// A commit read from the repository, with owned fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitInfo {
    /// The commit's id.
    pub id: ObjectId,
    /// The previous commit on the ref.
    pub parent: Option<ObjectId>,
    /// Seconds since the epoch, UTC.
    pub timestamp: u64,
    /// Root dirtree.
    pub root_tree: ObjectId,
    /// Root dirmeta.
    pub root_meta: ObjectId,
    /// Version string.
    pub version: String,
    /// Subject line.
    pub subject: String,
    /// Body.
    pub body: String,
    /// Anti-rollback security version (0 for a commit that carries none).
    pub security_version: u64,
}

impl CommitInfo {
    /// The checksum of the commit's content alone: SHA-256 of the root dirtree id followed by
    /// the root dirmeta id. Two commits of the same tree share it (as OSTree's
    /// `ContentChecksum`).
    pub fn content_checksum(&self) -> ObjectId {
        let mut h = Sha256::new();
        h.update(self.root_tree.0);
        h.update(self.root_meta.0);
        ObjectId(h.finalize().into())
    }
}

/// What a new commit says about itself; the parent is the ref's current head.
#[derive(Debug, Clone, Default)]
pub struct CommitMeta {
    /// Version string (at most 255 bytes).
    pub version: String,
    /// Subject line.
    pub subject: String,
    /// Body.
    pub body: String,
    /// Seconds since the epoch, UTC.
    pub timestamp: u64,
}

/// The root of a tree written into the repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TreeRoot {
    /// The root dirtree.
    pub tree: ObjectId,
    /// The root dirmeta.
    pub meta: ObjectId,
}

/// Every object a commit's tree references (not the commit itself).
#[derive(Debug, Clone, Default)]
pub struct ObjectSet {
    /// File objects.
    pub files: HashSet<ObjectId>,
    /// Dirtree objects.
    pub dirtrees: HashSet<ObjectId>,
    /// Dirmeta objects.
    pub dirmetas: HashSet<ObjectId>,
}

impl ObjectSet {
    /// Whether the set holds the object.
    pub fn contains(&self, kind: ObjectKind, id: &ObjectId) -> bool {
        match kind {
            ObjectKind::File => self.files.contains(id),
            ObjectKind::DirTree => self.dirtrees.contains(id),
            ObjectKind::DirMeta => self.dirmetas.contains(id),
            _ => false,
        }
    }
}

/// A file object opened for reading: its canonical metadata and, for a regular file, its
/// content.
#[derive(Debug)]
pub struct FileObjectReader {
    /// The parsed fixed header.
    pub header: FileHeader,
    /// Header, symlink target and xattr block: the object's first `header.meta_len()` bytes.
    pub meta: Vec<u8>,
    /// The content (`None` for a symlink).
    pub content: Option<File>,
}

impl FileObjectReader {
    /// The symlink target (empty for a regular file).
    pub fn target(&self) -> &[u8] {
        &self.meta[FILE_HEADER_LEN..FILE_HEADER_LEN + usize::from(self.header.target_len)]
    }

    /// The xattr block.
    pub fn xattrs(&self) -> Xattrs<'_> {
        // Validated when the reader was opened.
        Xattrs::parse(&self.meta[FILE_HEADER_LEN + usize::from(self.header.target_len)..])
            .unwrap_or(Xattrs::EMPTY)
    }

    /// The whole object as a stream (metadata, then content): what the `.update` carries.
    pub fn into_reader(self) -> impl Read {
        let meta = io::Cursor::new(self.meta);
        match self.content {
            Some(f) => Box::new(meta.chain(f)) as Box<dyn Read>,
            None => Box::new(meta),
        }
    }
}

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

    /// The journal of a dirtree removal in progress: `R/gc-dirtrees`, one id per line.
    fn gc_journal(&self) -> PathBuf {
        self.root.join(GC_JOURNAL)
    }

    /// Removes the dirtrees `ids` (garbage: no ref or deployment reaches them) in any order,
    /// with a few directory fsyncs instead of one per level of their trees: the ids are first
    /// written durably to `R/gc-dirtrees`, then removed, their directories fsynced, and the
    /// journal removed. A cut in between leaves the journal, and whoever takes the repository
    /// lock next ([`Repo::lock`]) finishes the removal before anything else, so that no dirtree
    /// left without its children is ever used. Returns the dirtrees removed and their bytes.
    /// The caller holds the repository lock.
    pub fn remove_dirtrees(&self, ids: &[ObjectId]) -> Result<(u64, u64), RepoError> {
        if ids.is_empty() {
            return Ok((0, 0));
        }
        let mut text = String::with_capacity(ids.len() * 65);
        for id in ids {
            text.push_str(&id.to_string());
            text.push('\n');
        }
        let j = self.gc_journal();
        crate::fsops::write_atomic(&j, text.as_bytes(), 0o644).map_err(io_err("write", &j))?;
        let r = self.remove_listed(ids)?;
        crate::fsops::remove_file(&j).map_err(io_err("remove", &j))?;
        crate::fsops::fsync_dir(&self.root).map_err(io_err("fsync", &self.root))?;
        Ok(r)
    }

    /// Removes the listed dirtrees (missing ones are fine) and fsyncs their directories.
    fn remove_listed(&self, ids: &[ObjectId]) -> Result<(u64, u64), RepoError> {
        let (mut n, mut bytes) = (0, 0);
        let mut dirs = std::collections::BTreeSet::new();
        for id in ids {
            let p = self.object_path(ObjectKind::DirTree, id);
            let len = fs::symlink_metadata(&p).map(|m| m.len()).unwrap_or(0);
            if crate::fsops::remove_file_if_exists(&p).map_err(io_err("remove", &p))? {
                n += 1;
                bytes += len;
                dirs.insert(crate::fsops::parent_of(&p));
            }
        }
        for d in dirs {
            crate::fsops::fsync_dir(&d).map_err(io_err("fsync", &d))?;
        }
        Ok((n, bytes))
    }

    /// Finishes a dirtree removal that a cut interrupted (see [`Repo::remove_dirtrees`]).
    fn finish_gc(&self) -> Result<(), RepoError> {
        let j = self.gc_journal();
        let text = match fs::read_to_string(&j) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_err("read", &j)(e)),
        };
        // A torn journal cannot exist (it is written atomically); a line that is not an id
        // is skipped rather than trusted as a path.
        let ids: Vec<ObjectId> = text
            .lines()
            .filter_map(|l| ObjectId::from_hex(l.trim()).ok())
            .collect();
        self.remove_listed(&ids)?;
        crate::fsops::remove_file(&j).map_err(io_err("remove", &j))?;
        crate::fsops::fsync_dir(&self.root).map_err(io_err("fsync", &self.root))
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

    /// Writes a dirtree, dirmeta or commit object from its canonical bytes (unless it is
    /// already there) and returns its id. The bytes are parsed first, so nothing invalid
    /// enters the repository.
    pub fn write_metadata_object(
        &self,
        kind: ObjectKind,
        bytes: &[u8],
    ) -> Result<ObjectId, RepoError> {
        let id = ObjectId::of(bytes);
        check_metadata(kind, &id, bytes)?;
        if !self.has_object(kind, &id)? {
            self.write_atomic(&self.object_path(kind, &id), bytes)?;
        }
        Ok(id)
    }

    /// Publishes a verified file object now (fsynced, renamed into place, directory fsynced):
    /// `meta` is its canonical metadata (header, target, xattrs), `content` a staged file in
    /// `R/tmp` holding the content of a regular file (`None` for a symlink). Applies mode,
    /// owner (when running as root) and xattrs (where the filesystem allows) to the content so
    /// that it can be hard-linked into a checkout; a `.filemeta` side file is written only when
    /// the inode cannot hold the metadata exactly ([`Repo::open_file_object`]). Consumes
    /// `content` in every case. To write many objects, a [`Transaction`] is much faster.
    pub fn publish_file_object(
        &self,
        id: &ObjectId,
        meta: &[u8],
        content: Option<(File, PathBuf)>,
    ) -> Result<(), RepoError> {
        if self.has_object(ObjectKind::File, id)? {
            if let Some((_, p)) = content {
                let _ = crate::fsops::remove_file(&p);
            }
            return Ok(());
        }
        let mut staged = self.stage_file_object(id, meta, content, None)?;
        let res = (|| {
            let d = staged.deferred.take().ok_or(RepoError::Sequence(
                "a file object was staged without its metadata",
            ))?;
            if let Some(side) = self.finish_file_meta(d, true)? {
                staged.renames.insert(0, (side, self.filemeta_path(id)));
            }
            Ok(())
        })();
        let mut res = res;
        for (tmp, dest) in &staged.renames {
            if res.is_ok() {
                res = self.rename_into_place(tmp, dest);
            }
            if res.is_err() {
                let _ = crate::fsops::remove_file(tmp);
            }
        }
        res
    }

    /// Checks a file object's metadata and stages its content (a regular file's, given in
    /// `content`) or creates its symlink in `R/tmp`: returns the rename that publishes it, and
    /// the object whose owner, xattrs and mode are still to be applied by
    /// [`Repo::finish_file_meta`]. The content stays open (`keep_open`) for that, unless
    /// too many already are. On error nothing is left behind.
    fn stage_file_object(
        &self,
        id: &ObjectId,
        meta: &[u8],
        content: Option<(File, PathBuf)>,
        keep_open: Option<&mut usize>,
    ) -> Result<Staged, RepoError> {
        let content_tmp = content.as_ref().map(|(_, p)| p.clone());
        let mut renames = Vec::with_capacity(2);
        let res = self.stage_file_inner(id, meta, content, &mut renames, keep_open);
        if res.is_err() {
            for (tmp, _) in &renames {
                let _ = crate::fsops::remove_file(tmp);
            }
            if let Some(p) = content_tmp {
                let _ = crate::fsops::remove_file(&p);
            }
        }
        res.map(|d| Staged {
            renames,
            deferred: Some(d),
        })
    }

    fn stage_file_inner(
        &self,
        id: &ObjectId,
        meta: &[u8],
        content: Option<(File, PathBuf)>,
        staged: &mut Vec<(PathBuf, PathBuf)>,
        keep_open: Option<&mut usize>,
    ) -> Result<Deferred, RepoError> {
        let kind = ObjectKind::File;
        let corrupt = |error| RepoError::CorruptObject {
            kind,
            id: *id,
            error,
        };
        let header = FileHeader::parse(meta).map_err(corrupt)?;
        if meta.len() as u64 != header.meta_len() {
            return Err(RepoError::ObjectLength {
                kind,
                id: *id,
                expected: header.meta_len(),
                found: meta.len() as u64,
            });
        }
        let target = &meta[FILE_HEADER_LEN..FILE_HEADER_LEN + usize::from(header.target_len)];
        Xattrs::parse(&meta[FILE_HEADER_LEN + target.len()..]).map_err(corrupt)?;
        let final_path = self.object_path(kind, id);
        if header.is_symlink() {
            if target.is_empty() || target.contains(&0) {
                return Err(corrupt(ObjectError::BadSymlinkTarget));
            }
            let tmp = self.tmp_path("symlink");
            crate::fsops::symlink(std::ffi::OsStr::from_bytes(target), &tmp)
                .map_err(io_err("create symlink", &tmp))?;
            staged.push((tmp.clone(), final_path));
            return Ok(Deferred {
                id: *id,
                path: tmp,
                meta: meta.to_vec(),
                file: None,
            });
        }
        let Some((file, tmp)) = content else {
            return Err(RepoError::Sequence(
                "a regular file object was published without content",
            ));
        };
        staged.push((tmp.clone(), final_path));
        let len = file.metadata().map_err(io_err("stat", &tmp))?.len();
        if len != header.size {
            return Err(RepoError::ObjectLength {
                kind,
                id: *id,
                expected: header.size,
                found: len,
            });
        }
        let file = match keep_open {
            Some(n) if *n >= MAX_OPEN_STAGED => None,
            Some(n) => {
                *n += 1;
                Some(file)
            }
            None => Some(file),
        };
        Ok(Deferred {
            id: *id,
            path: tmp,
            meta: meta.to_vec(),
            file,
        })
    }

    /// Applies a staged file object's owner, xattrs and mode ([`apply_deferred_meta`]; fsynced
    /// when `sync`), then reads the inode back: when it holds the canonical metadata exactly,
    /// the object is one file; otherwise (an owner this process cannot give, an attribute the
    /// filesystem refuses or adds, a symlink's permission bits) its metadata is written to a
    /// `.filemeta` side file in `R/tmp`, whose path is returned, to be published before the
    /// object.
    fn finish_file_meta(&self, d: Deferred, sync: bool) -> Result<Option<PathBuf>, RepoError> {
        let exact = apply_deferred_meta(&d, sync)?;
        if exact {
            return Ok(None);
        }
        self.write_tmp(&d.meta, sync).map(Some)
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

    /// Reads a dirtree, dirmeta or commit object whole, checking its hash and its encoding.
    pub fn read_metadata_object(
        &self,
        kind: ObjectKind,
        id: &ObjectId,
    ) -> Result<Vec<u8>, RepoError> {
        if matches!(kind, ObjectKind::File | ObjectKind::Unknown(_)) {
            return Err(RepoError::UnknownKind(kind));
        }
        let p = self.object_path(kind, id);
        let f = match File::open(&p) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(RepoError::MissingObject { kind, id: *id })
            }
            Err(e) => return Err(io_err("open", &p)(e)),
        };
        let len = f.metadata().map_err(io_err("stat", &p))?.len();
        if len > MAX_METADATA_OBJECT || (kind == ObjectKind::Commit && len > MAX_COMMIT_LEN as u64)
        {
            return Err(RepoError::ObjectTooLarge { kind, id: *id, len });
        }
        let mut bytes = Vec::with_capacity(len as usize);
        f.take(MAX_METADATA_OBJECT + 1)
            .read_to_end(&mut bytes)
            .map_err(io_err("read", &p))?;
        let found = ObjectId::of(&bytes);
        if found != *id {
            return Err(RepoError::HashMismatch {
                kind,
                id: *id,
                found,
            });
        }
        check_metadata(kind, id, &bytes)?;
        Ok(bytes)
    }

    /// Opens a file object: its metadata is read and checked (from its `.filemeta` side file
    /// when it has one, else from its inode: [`crate::fsmeta::inode_meta`]), its content opened.
    pub fn open_file_object(&self, id: &ObjectId) -> Result<FileObjectReader, RepoError> {
        let kind = ObjectKind::File;
        let missing = || RepoError::MissingObject { kind, id: *id };
        let corrupt = |error| RepoError::CorruptObject {
            kind,
            id: *id,
            error,
        };
        let p = self.object_path(kind, id);
        let mp = self.filemeta_path(id);
        let side = match fs::read(&mp) {
            Ok(m) => Some(m),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_err("read", &mp)(e)),
        };
        let file = match OpenOptions::new()
            .read(true)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(&p)
        {
            Ok(f) => Some(f),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(missing()),
            // ELOOP: the object is a symlink.
            Err(e) if e.raw_os_error() == Some(40) => None,
            Err(e) => return Err(io_err("open", &p)(e)),
        };
        let meta = match side {
            Some(m) => m,
            None => {
                let inode = match &file {
                    Some(f) => crate::fsmeta::Inode::File(f.as_fd()),
                    None => crate::fsmeta::Inode::Symlink(&p),
                };
                crate::fsmeta::inode_meta(inode)
                    .map_err(io_err("read the metadata of", &p))?
                    .ok_or(corrupt(ObjectError::BadXattrs))?
            }
        };
        let header = FileHeader::parse(&meta).map_err(corrupt)?;
        if meta.len() as u64 != header.meta_len() {
            return Err(corrupt(ObjectError::TrailingBytes(
                meta.len().saturating_sub(FILE_HEADER_LEN),
            )));
        }
        Xattrs::parse(&meta[FILE_HEADER_LEN + usize::from(header.target_len)..])
            .map_err(corrupt)?;
        let content = match (header.is_symlink(), file) {
            (true, _) => None,
            (false, None) => return Err(corrupt(ObjectError::BadMode(header.mode))),
            (false, Some(f)) => {
                let len = f.metadata().map_err(io_err("stat", &p))?.len();
                if len != header.size {
                    return Err(RepoError::ObjectLength {
                        kind,
                        id: *id,
                        expected: header.size,
                        found: len,
                    });
                }
                Some(f)
            }
        };
        Ok(FileObjectReader {
            header,
            meta,
            content,
        })
    }

    /// Reads a commit.
    pub fn read_commit(&self, id: &ObjectId) -> Result<CommitInfo, RepoError> {
        let bytes = self.read_metadata_object(ObjectKind::Commit, id)?;
        let c = Commit::parse(&bytes).map_err(|error| RepoError::CorruptObject {
            kind: ObjectKind::Commit,
            id: *id,
            error,
        })?;
        Ok(CommitInfo {
            id: *id,
            parent: c.parent,
            timestamp: c.timestamp,
            root_tree: c.root_tree,
            root_meta: c.root_meta,
            version: c.version.to_string(),
            subject: c.subject.to_string(),
            body: c.body.to_string(),
            security_version: c.security_version,
        })
    }

    /// Records a new commit of `root` on `ref_name`: its parent is the ref's current head.
    /// The commit object is written (it names only objects already in place), then the ref.
    /// Its security version is the parent's (0 without a parent): see
    /// [`Repo::commit_with_security_version`].
    pub fn commit(
        &self,
        ref_name: &str,
        root: TreeRoot,
        meta: &CommitMeta,
    ) -> Result<ObjectId, RepoError> {
        self.commit_with_security_version(ref_name, root, meta, None)
    }

    /// [`Repo::commit`] at security version `security_version`; `None` takes the parent's
    /// (0 without a parent). A version below the parent's is refused
    /// ([`RepoError::SecurityVersionBelowParent`]) before anything is written.
    pub fn commit_with_security_version(
        &self,
        ref_name: &str,
        root: TreeRoot,
        meta: &CommitMeta,
        security_version: Option<u64>,
    ) -> Result<ObjectId, RepoError> {
        validate_ref(ref_name)?;
        for (kind, id) in [
            (ObjectKind::DirTree, root.tree),
            (ObjectKind::DirMeta, root.meta),
        ] {
            if !self.has_object(kind, &id)? {
                return Err(RepoError::MissingObject { kind, id });
            }
        }
        let parent = self.read_ref(ref_name)?;
        let parent_sv = match parent {
            Some(p) => self.read_commit(&p)?.security_version,
            None => 0,
        };
        let security_version = security_version.unwrap_or(parent_sv);
        if let (Some(parent), true) = (parent, security_version < parent_sv) {
            return Err(RepoError::SecurityVersionBelowParent {
                given: security_version,
                parent,
                parent_security_version: parent_sv,
            });
        }
        let c = Commit {
            parent,
            timestamp: meta.timestamp,
            root_tree: root.tree,
            root_meta: root.meta,
            version: &meta.version,
            subject: &meta.subject,
            body: &meta.body,
            security_version,
        };
        let bytes = c.to_vec().map_err(|error| RepoError::CorruptObject {
            kind: ObjectKind::Commit,
            id: ObjectId::ZERO,
            error,
        })?;
        let id = self.write_metadata_object(ObjectKind::Commit, &bytes)?;
        self.write_ref(ref_name, &id)?;
        Ok(id)
    }

    /// Where a commit's detached signature lives: `R/objects/ab/cdef….commitsig`.
    pub fn commitsig_path(&self, id: &ObjectId) -> PathBuf {
        let hex = id.to_hex();
        let (dir, rest) = hex.as_str().split_at(2);
        self.root
            .join("objects")
            .join(dir)
            .join(format!("{rest}.commitsig"))
    }

    /// Signs a commit with an ed25519 secret seed: `R/objects/ab/cdef….commitsig` holds
    /// `ed25519 <public key hex> <signature hex>`, the signature over the commit object's bytes.
    pub fn sign_commit(&self, id: &ObjectId, seed: &[u8; 32]) -> Result<(), RepoError> {
        use ed25519_dalek::Signer;
        let bytes = self.read_metadata_object(ObjectKind::Commit, id)?;
        let key = ed25519_dalek::SigningKey::from_bytes(seed);
        let sig = key.sign(&bytes).to_bytes();
        let sig_hex: String = sig.iter().map(|b| format!("{b:02x}")).collect();
        let text = format!(
            "ed25519 {} {sig_hex}\n",
            ObjectId(key.verifying_key().to_bytes())
        );
        self.write_atomic(&self.commitsig_path(id), text.as_bytes())
    }

    /// The public key that validly signed the commit, if it has a detached signature that
    /// verifies (a signature that does not verify is reported as an error).
    pub fn commit_signer(&self, id: &ObjectId) -> Result<Option<[u8; 32]>, RepoError> {
        let p = self.commitsig_path(id);
        let text = match fs::read_to_string(&p) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err("read", &p)(e)),
        };
        let bad = || RepoError::BadSignature(p.clone());
        let mut parts = text.split_whitespace();
        if parts.next() != Some("ed25519") {
            return Err(bad());
        }
        let public = ObjectId::from_hex(parts.next().ok_or_else(bad)?).map_err(|_| bad())?;
        let sig_hex = parts.next().ok_or_else(bad)?;
        if sig_hex.len() != 128 {
            return Err(bad());
        }
        let (a, b) = sig_hex.split_at(64);
        let (a, b) = (
            ObjectId::from_hex(a).map_err(|_| bad())?,
            ObjectId::from_hex(b).map_err(|_| bad())?,
        );
        let mut sig = [0u8; 64];
        sig[..32].copy_from_slice(&a.0);
        sig[32..].copy_from_slice(&b.0);
        let key = ed25519_dalek::VerifyingKey::from_bytes(&public.0).map_err(|_| bad())?;
        let bytes = self.read_metadata_object(ObjectKind::Commit, id)?;
        key.verify_strict(&bytes, &ed25519_dalek::Signature::from_bytes(&sig))
            .map_err(|_| bad())?;
        Ok(Some(public.0))
    }

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

    /// Every complete commit in the repository.
    pub fn list_commits(&self) -> Result<Vec<ObjectId>, RepoError> {
        self.list_objects(ObjectKind::Commit, "")
    }

    fn list_objects(&self, kind: ObjectKind, prefix: &str) -> Result<Vec<ObjectId>, RepoError> {
        let mut out = Vec::new();
        let objects = self.root.join("objects");
        let rd = fs::read_dir(&objects).map_err(io_err("read directory", &objects))?;
        let suffix = format!(".{}", kind.suffix());
        for sub in rd {
            let sub = sub.map_err(io_err("read directory", &objects))?;
            let Some(dir) = sub.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if dir.len() != 2 || !prefix_compatible(&dir, prefix) {
                continue;
            }
            let rd2 = fs::read_dir(sub.path()).map_err(io_err("read directory", &sub.path()))?;
            for e in rd2 {
                let e = e.map_err(io_err("read directory", &sub.path()))?;
                let Some(name) = e.file_name().to_str().map(str::to_string) else {
                    continue;
                };
                if let Some(rest) = name.strip_suffix(&suffix) {
                    if let Ok(id) = ObjectId::from_hex(&format!("{dir}{rest}")) {
                        if prefix.is_empty() || id.matches_prefix(prefix) {
                            out.push(id);
                        }
                    }
                }
            }
        }
        out.sort();
        Ok(out)
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

    /// The history from `id` back: the commit, its parent, ... until a commit without a
    /// parent or whose parent is not in the repository (the second value is then that
    /// missing parent).
    pub fn history(&self, id: &ObjectId) -> Result<(Vec<CommitInfo>, Option<ObjectId>), RepoError> {
        let mut out = Vec::new();
        let mut next = Some(*id);
        while let Some(c) = next {
            if !self.has_commit(&c)? {
                return Ok((out, Some(c)));
            }
            let info = self.read_commit(&c)?;
            next = info.parent;
            out.push(info);
        }
        Ok((out, None))
    }

    /// Reads a dirtree and returns its entries as owned values.
    pub fn read_dirtree(&self, id: &ObjectId) -> Result<Vec<OwnedEntry>, RepoError> {
        let bytes = self.read_metadata_object(ObjectKind::DirTree, id)?;
        let t = DirTree::parse(&bytes).map_err(|error| RepoError::CorruptObject {
            kind: ObjectKind::DirTree,
            id: *id,
            error,
        })?;
        Ok(t.entries()
            .map(|e| match e {
                DirEntry::File { name, id } => OwnedEntry::File {
                    name: name.to_vec(),
                    id,
                },
                DirEntry::Dir { name, tree, meta } => OwnedEntry::Dir {
                    name: name.to_vec(),
                    tree,
                    meta,
                },
            })
            .collect())
    }

    /// Checks a commit completely: the commit and every object its tree references are
    /// present, parse, and hash to their names (file contents are streamed); a regular
    /// file's content has the object's permission bits and a symlink object is a symlink to
    /// the object's target, as hard-linked deployments need.
    pub fn fsck_commit(&self, id: &ObjectId) -> Result<FsckStats, RepoError> {
        let set = self.reachable(id)?;
        let mut stats = FsckStats {
            dirtrees: set.dirtrees.len() as u64,
            ..FsckStats::default()
        };
        for m in &set.dirmetas {
            self.read_metadata_object(ObjectKind::DirMeta, m)?;
            stats.dirmetas += 1;
        }
        let mut buf = vec![0u8; 64 * 1024];
        for f in &set.files {
            let kind = ObjectKind::File;
            let obj = self.open_file_object(f)?;
            let p = self.object_path(kind, f);
            let md = fs::symlink_metadata(&p).map_err(io_err("stat", &p))?;
            let mut h = Sha256::new();
            h.update(&obj.meta);
            let mode_ok = if obj.header.is_symlink() {
                let target = fs::read_link(&p).map_err(io_err("read symlink", &p))?;
                md.file_type().is_symlink() && target.as_os_str().as_bytes() == obj.target()
            } else {
                use std::os::unix::fs::MetadataExt;
                md.file_type().is_file()
                    && md.mode() & object::S_IPERM == obj.header.mode & object::S_IPERM
            };
            if !mode_ok {
                return Err(RepoError::CorruptObject {
                    kind,
                    id: *f,
                    error: ObjectError::BadMode(obj.header.mode),
                });
            }
            if let Some(mut c) = obj.content {
                loop {
                    let n = c.read(&mut buf).map_err(io_err("read", &p))?;
                    if n == 0 {
                        break;
                    }
                    stats.bytes += n as u64;
                    h.update(&buf[..n]);
                }
            }
            let found = ObjectId(h.finalize().into());
            if found != *f {
                return Err(RepoError::HashMismatch {
                    kind,
                    id: *f,
                    found,
                });
            }
            stats.files += 1;
        }
        Ok(stats)
    }

    /// The depth of dirtree `id` (0 without subdirectories, else one more than its deepest
    /// subdirectory's), counted without recursion; `memo` remembers the depths computed, so
    /// asking about every dirtree of a tree costs one read of each. Counting stops past
    /// [`MAX_TREE_DEPTH`] (the answer is then `MAX_TREE_DEPTH + 1`).
    pub fn tree_depth(
        &self,
        id: &ObjectId,
        memo: &mut HashMap<ObjectId, u16>,
    ) -> Result<u16, RepoError> {
        let cap = agent_core::object::MAX_TREE_DEPTH + 1;
        if let Some(d) = memo.get(id) {
            return Ok(*d);
        }
        // One frame per level of the path being walked: a dirtree, its subdirectories and how
        // many of them are counted, and the deepest of those.
        struct Frame {
            tree: ObjectId,
            kids: Vec<ObjectId>,
            next: usize,
            deepest: Option<u16>,
        }
        let kids_of = |t: &ObjectId| -> Result<Vec<ObjectId>, RepoError> {
            Ok(self
                .read_dirtree(t)?
                .into_iter()
                .filter_map(|e| match e {
                    OwnedEntry::Dir { tree, .. } => Some(tree),
                    OwnedEntry::File { .. } => None,
                })
                .collect())
        };
        let mut stack = vec![Frame {
            tree: *id,
            kids: kids_of(id)?,
            next: 0,
            deepest: None,
        }];
        loop {
            let levels = stack.len();
            let Some(top) = stack.last_mut() else { break };
            if let Some(k) = top.kids.get(top.next).copied() {
                top.next += 1;
                let d = match memo.get(&k) {
                    Some(d) => *d,
                    None if levels > MAX_TREE_DEPTH => cap,
                    None => {
                        let kids = kids_of(&k)?;
                        stack.push(Frame {
                            tree: k,
                            kids,
                            next: 0,
                            deepest: None,
                        });
                        continue;
                    }
                };
                top.deepest = Some(top.deepest.map_or(d, |x| x.max(d)));
                continue;
            }
            let done = stack.pop().expect("a frame is on the stack");
            let d = done.deepest.map_or(0, |x| x.saturating_add(1)).min(cap);
            memo.insert(done.tree, d);
            if let Some(parent) = stack.last_mut() {
                parent.deepest = Some(parent.deepest.map_or(d, |x| x.max(d)));
            }
        }
        Ok(memo.get(id).copied().unwrap_or(cap))
    }

    /// Every object the tree of `commit` references.
    pub fn reachable(&self, commit: &ObjectId) -> Result<ObjectSet, RepoError> {
        let c = self.read_commit(commit)?;
        let mut set = ObjectSet::default();
        set.dirmetas.insert(c.root_meta);
        let mut stack = vec![(c.root_tree, 0usize)];
        while let Some((tree, depth)) = stack.pop() {
            if !set.dirtrees.insert(tree) {
                continue;
            }
            if depth > MAX_TREE_DEPTH {
                return Err(RepoError::TooDeep(*commit));
            }
            for e in self.read_dirtree(&tree)? {
                match e {
                    OwnedEntry::File { id, .. } => {
                        set.files.insert(id);
                    }
                    OwnedEntry::Dir { tree, meta, .. } => {
                        set.dirmetas.insert(meta);
                        stack.push((tree, depth + 1));
                    }
                }
            }
        }
        Ok(set)
    }
}

/// Objects written together, fast and safely: each is staged in `R/tmp` without an fsync;
/// [`Transaction::commit`] makes them all durable with one `syncfs`, then publishes them by
/// rename in waves, with one fsync of every directory a wave renamed into before the next
/// wave starts: files, file metadata and dirmetas first, then dirtrees by height (those
/// whose subdirectories are all outside the transaction, then those whose highest staged
/// subdirectory is in the wave before, ...). So the bottom-up invariant holds after a power
/// loss at any point without relying on renames reaching the disk in order, and nothing is
/// visible before everything is durable. Dropping it (or [`Transaction::abort`]) removes what
/// it staged.
///
/// A file object staged by [`Transaction::publish_file_object`] stays a 0600 file owned by
/// the writer, without xattrs, until [`Transaction::part_verified`]: what an object's own
/// hash proves is nothing until the part that carries it (which the signature covers) has
/// matched its hash. Only then do setuid/setgid and executable bits, owners and capabilities
/// reach it; [`Transaction::commit`] applies whatever is still deferred (an installer commits
/// only once everything is verified).
#[derive(Debug)]
pub struct Transaction<'r> {
    repo: &'r Repo,
    /// `.filemeta` side files (published first), then file objects and dirmetas.
    sides: Vec<(PathBuf, PathBuf)>,
    leaves: Vec<(PathBuf, PathBuf)>,
    /// Dirtrees staged, with their height (1 + the highest of their subdirectories staged in
    /// this transaction, 0 without one).
    trees: Vec<(PathBuf, PathBuf, u32)>,
    heights: HashMap<ObjectId, u32>,
    pending: HashSet<(u8, ObjectId)>,
    unverified: Vec<Deferred>,
    /// How many of `unverified` hold their staged file open.
    open_files: usize,
}

/// Most directories a wave of [`Transaction::commit`] fsyncs one by one; a wave that renamed
/// into more is made durable with one `syncfs` of the repository's filesystem instead.
pub const MAX_DIR_FSYNCS: usize = 8;

/// Most staged files a [`Transaction`] keeps open until their part is verified (so that
/// their metadata is applied without opening them again); more are closed and reopened.
pub const MAX_OPEN_STAGED: usize = 256;

/// A file object staged in `R/tmp`, as [`Repo::stage_file_object`] returns it.
#[derive(Debug)]
struct Staged {
    /// The renames that publish it.
    renames: Vec<(PathBuf, PathBuf)>,
    /// Its metadata, to apply.
    deferred: Option<Deferred>,
}

/// A staged file object whose owner, mode and xattrs wait for its part to be verified.
#[derive(Debug)]
struct Deferred {
    id: ObjectId,
    /// The staged content file or symlink in `R/tmp`.
    path: PathBuf,
    /// Its canonical metadata (header, target, xattrs), already parsed once.
    meta: Vec<u8>,
    /// The staged content file, still open (written by this process).
    file: Option<File>,
}

/// Applies a deferred object's owner, xattrs and mode to its staged file (the descriptor
/// kept open, else opened again with `O_NOFOLLOW` in the private `R/tmp`; fsynced when
/// `sync`), or its owner and xattrs to a staged symlink. Returns whether the inode now holds
/// the object's canonical metadata exactly ([`crate::fsmeta::inode_meta`]).
fn apply_deferred_meta(d: &Deferred, sync: bool) -> Result<bool, RepoError> {
    let corrupt = |error| RepoError::CorruptObject {
        kind: ObjectKind::File,
        id: d.id,
        error,
    };
    let header = FileHeader::parse(&d.meta).map_err(corrupt)?;
    let target_end = FILE_HEADER_LEN + usize::from(header.target_len);
    let xattrs = Xattrs::parse(d.meta.get(target_end..).unwrap_or(&[])).map_err(corrupt)?;
    if header.is_symlink() {
        crate::fsmeta::apply_symlink_meta(&d.path, &header, xattrs);
        let found = crate::fsmeta::inode_meta(crate::fsmeta::Inode::Symlink(&d.path))
            .map_err(io_err("read the metadata of", &d.path))?;
        return Ok(found.as_deref() == Some(&d.meta[..]));
    }
    let reopened;
    let file = match &d.file {
        Some(f) => f,
        None => {
            reopened = OpenOptions::new()
                .read(true)
                .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
                .open(&d.path)
                .map_err(io_err("open", &d.path))?;
            &reopened
        }
    };
    crate::fsops::set_meta(file, &d.path, |fd| {
        crate::fsmeta::apply_fd_meta(fd, header.mode, header.uid, header.gid, xattrs)
    })
    .map_err(io_err("set metadata of", &d.path))?;
    if sync {
        crate::fsops::fsync(file, &d.path).map_err(io_err("fsync", &d.path))?;
    }
    let found = crate::fsmeta::inode_meta(crate::fsmeta::Inode::File(file.as_fd()))
        .map_err(io_err("read the metadata of", &d.path))?;
    Ok(found.as_deref() == Some(&d.meta[..]))
}

impl<'r> Transaction<'r> {
    /// An empty transaction on `repo`.
    pub fn new(repo: &'r Repo) -> Transaction<'r> {
        Transaction {
            repo,
            sides: Vec::new(),
            leaves: Vec::new(),
            trees: Vec::new(),
            heights: HashMap::new(),
            pending: HashSet::new(),
            unverified: Vec::new(),
            open_files: 0,
        }
    }

    /// The repository.
    pub fn repo(&self) -> &'r Repo {
        self.repo
    }

    /// Whether the object is staged in this transaction or already in the repository.
    pub fn has_object(&self, kind: ObjectKind, id: &ObjectId) -> Result<bool, RepoError> {
        Ok(self.pending.contains(&(kind.code(), *id)) || self.repo.has_object(kind, id)?)
    }

    /// Stages a dirtree or dirmeta from its canonical bytes (parsed first) unless it is there
    /// already, and returns its id. Everything a dirtree names must have been staged (or be
    /// present) before it.
    pub fn write_metadata_object(
        &mut self,
        kind: ObjectKind,
        bytes: &[u8],
    ) -> Result<ObjectId, RepoError> {
        let id = ObjectId::of(bytes);
        check_metadata(kind, &id, bytes)?;
        if kind == ObjectKind::Commit {
            return Err(RepoError::Sequence(
                "a commit is not part of a transaction; write it after commit()",
            ));
        }
        if !self.has_object(kind, &id)? {
            let tmp = self.repo.write_tmp(bytes, false)?;
            let dest = self.repo.object_path(kind, &id);
            if kind == ObjectKind::DirTree {
                let height = DirTree::parse(bytes)
                    .map(|t| {
                        t.entries()
                            .filter_map(|e| match e {
                                DirEntry::Dir { tree, .. } => {
                                    self.heights.get(&tree).map(|h| h + 1)
                                }
                                DirEntry::File { .. } => None,
                            })
                            .max()
                            .unwrap_or(0)
                    })
                    .unwrap_or(0);
                self.heights.insert(id, height);
                self.trees.push((tmp, dest, height));
            } else {
                self.leaves.push((tmp, dest));
            }
            self.pending.insert((kind.code(), id));
        }
        Ok(id)
    }

    /// Stages a file object whose own hash matched, as [`Repo::publish_file_object`]
    /// describes, but with its owner, xattrs and mode deferred to
    /// [`Transaction::part_verified`] (see the type's docs). Consumes `content` in every case.
    pub fn publish_file_object(
        &mut self,
        id: &ObjectId,
        meta: &[u8],
        content: Option<(File, PathBuf)>,
    ) -> Result<(), RepoError> {
        if self.has_object(ObjectKind::File, id)? {
            if let Some((_, p)) = content {
                let _ = crate::fsops::remove_file(&p);
            }
            return Ok(());
        }
        let staged = self
            .repo
            .stage_file_object(id, meta, content, Some(&mut self.open_files))?;
        self.leaves.extend(staged.renames);
        self.unverified.extend(staged.deferred);
        self.pending.insert((ObjectKind::File.code(), *id));
        Ok(())
    }

    /// The part that carried the file objects staged since the last call has matched its
    /// hash: their owners, xattrs (capabilities included) and modes (setuid, setgid and
    /// executable bits included) are applied now.
    pub fn part_verified(&mut self) -> Result<(), RepoError> {
        self.open_files = 0;
        for d in std::mem::take(&mut self.unverified) {
            let id = d.id;
            if let Some(side) = self.repo.finish_file_meta(d, false)? {
                self.sides.push((side, self.repo.filemeta_path(&id)));
            }
        }
        Ok(())
    }

    /// How many staged file objects still wait for [`Transaction::part_verified`].
    pub fn unverified(&self) -> usize {
        self.unverified.len()
    }

    /// Makes everything staged durable and visible (see the type's docs). Metadata still
    /// deferred is applied first: call this only once everything staged is verified.
    pub fn commit(&mut self) -> Result<(), RepoError> {
        if let Err(e) = self.part_verified() {
            self.abort();
            return Err(e);
        }
        if self.sides.is_empty() && self.leaves.is_empty() && self.trees.is_empty() {
            return Ok(());
        }
        let tmp = self.repo.tmp_dir();
        crate::fsops::syncfs(&tmp).map_err(io_err("sync the filesystem of", &tmp))?;
        let mut trees = std::mem::take(&mut self.trees);
        trees.sort_by_key(|t| t.2);
        // Side files before the objects they describe: an object's presence means it is whole.
        let mut leaves = std::mem::take(&mut self.sides);
        leaves.append(&mut self.leaves);
        let mut waves = vec![leaves];
        for (tmp, dest, h) in trees {
            if waves.len() < h as usize + 2 {
                waves.push(Vec::new());
            }
            if let Some(w) = waves.last_mut() {
                w.push((tmp, dest));
            }
        }
        let mut waves = waves.into_iter();
        while let Some(phase) = waves.next() {
            let mut dirs = std::collections::BTreeSet::new();
            let mut iter = phase.into_iter();
            let mut res = Ok(());
            for (tmp, dest) in iter.by_ref() {
                let d = dest.parent().unwrap_or(self.repo.path()).to_path_buf();
                if !dirs.contains(&d) {
                    if let Err(e) = crate::fsops::mkdir_all(&d, 0o755) {
                        res = Err(io_err("create", &d)(e));
                    }
                    dirs.insert(d);
                }
                if res.is_ok() {
                    res = crate::fsops::rename(&tmp, &dest).map_err(io_err("rename into", &dest));
                }
                if res.is_err() {
                    let _ = crate::fsops::remove_file(&tmp);
                    break;
                }
            }
            if let Err(e) = res {
                for (tmp, _) in iter.chain(waves.by_ref().flatten()) {
                    let _ = crate::fsops::remove_file(&tmp);
                }
                self.abort();
                return Err(e);
            }
            if dirs.len() > MAX_DIR_FSYNCS {
                // One flush of the filesystem instead of an fsync per directory.
                crate::fsops::syncfs(&tmp).map_err(io_err("sync the filesystem of", &tmp))?;
            } else {
                for d in &dirs {
                    sync_dir(d)?;
                }
            }
        }
        self.pending.clear();
        Ok(())
    }

    /// Drops everything staged.
    pub fn abort(&mut self) {
        let trees = self.trees.drain(..).map(|(tmp, dest, _)| (tmp, dest));
        let leaves = self.sides.drain(..).chain(self.leaves.drain(..));
        for (tmp, _) in leaves.chain(trees) {
            let _ = crate::fsops::remove_file(&tmp);
        }
        self.heights.clear();
        self.pending.clear();
        self.unverified.clear();
        self.open_files = 0;
    }
}

impl Drop for Transaction<'_> {
    fn drop(&mut self) {
        self.abort();
    }
}

/// Empty staging files created ahead of need on another thread: creating a file is most of
/// the kernel's work per file object, so an install creates them on a second core while it
/// decodes and hashes on the first. The thread stays at most [`TmpPool::AHEAD`] files ahead;
/// dropping the pool stops it and removes the files it made that were not taken.
///
/// Not used when interruption points are cut at or traced ([`crate::fsops`]): the power-loss
/// tests count them, and another thread's creates would move them from run to run.
#[derive(Debug)]
pub struct TmpPool {
    repo: Repo,
    prefix: &'static str,
    rx: std::sync::mpsc::Receiver<Result<(File, PathBuf), RepoError>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TmpPool {
    /// Most files created ahead.
    pub const AHEAD: usize = 32;

    /// Starts the thread, unless fault injection is on or there is one core only.
    pub fn start(repo: &Repo, prefix: &'static str) -> Option<TmpPool> {
        if crate::fsops::points_observed()
            || std::thread::available_parallelism().map_or(1, |n| n.get()) < 2
        {
            return None;
        }
        let (tx, rx) = std::sync::mpsc::sync_channel(Self::AHEAD);
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (r, halt) = (repo.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("ecu-agent-tmp".into())
            .spawn(move || {
                while !halt.load(Ordering::Relaxed) {
                    let made = r.create_tmp(prefix);
                    let failed = made.is_err();
                    if let Err(std::sync::mpsc::SendError(Ok((f, p)))) = tx.send(made) {
                        drop(f);
                        let _ = crate::fsops::remove_file(&p);
                        break;
                    }
                    if failed {
                        break;
                    }
                }
            })
            .ok()?;
        Some(TmpPool {
            repo: repo.clone(),
            prefix,
            rx,
            stop,
            thread: Some(thread),
        })
    }

    /// A new, empty staging file (mode 0600) and its path, as [`Repo::create_tmp`] makes.
    pub fn take(&mut self) -> Result<(File, PathBuf), RepoError> {
        match self.rx.recv() {
            Ok(made) => made,
            // The thread stopped (after an error it reported): create here.
            Err(_) => self.repo.create_tmp(self.prefix),
        }
    }
}

impl Drop for TmpPool {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Unblocks the thread if it waits on a full channel; ends when it has exited.
        while let Ok(made) = self.rx.recv() {
            if let Ok((f, p)) = made {
                drop(f);
                let _ = crate::fsops::remove_file(&p);
            }
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What [`Repo::fsck_commit`] checked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct FsckStats {
    /// File objects (files and symlinks).
    pub files: u64,
    /// Dirtree objects.
    pub dirtrees: u64,
    /// Dirmeta objects.
    pub dirmetas: u64,
    /// Content bytes hashed.
    pub bytes: u64,
}

/// A dirtree entry with owned name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnedEntry {
    /// A file or symlink.
    File {
        /// Its name.
        name: Vec<u8>,
        /// Its file object.
        id: ObjectId,
    },
    /// A subdirectory.
    Dir {
        /// Its name.
        name: Vec<u8>,
        /// Its dirtree.
        tree: ObjectId,
        /// Its dirmeta.
        meta: ObjectId,
    },
}

impl OwnedEntry {
    /// The entry's name.
    pub fn name(&self) -> &[u8] {
        match self {
            OwnedEntry::File { name, .. } | OwnedEntry::Dir { name, .. } => name,
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

/// Parses a metadata object of `kind`, so that nothing malformed is stored or used.
pub(crate) fn check_metadata(
    kind: ObjectKind,
    id: &ObjectId,
    bytes: &[u8],
) -> Result<(), RepoError> {
    let res = match kind {
        ObjectKind::DirTree => DirTree::parse(bytes).map(|_| ()),
        ObjectKind::DirMeta => DirMeta::parse(bytes).map(|_| ()),
        ObjectKind::Commit => Commit::parse(bytes).map(|_| ()),
        k => return Err(RepoError::UnknownKind(k)),
    };
    res.map_err(|error| RepoError::CorruptObject {
        kind,
        id: *id,
        error,
    })
}

/// fsyncs a directory so that a rename into it survives power loss.
pub fn sync_dir(dir: &Path) -> Result<(), RepoError> {
    crate::fsops::fsync_dir(dir).map_err(io_err("fsync directory", dir))
}

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

#[cfg(test)]
mod test {
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

    #[test]
    fn init_open_refs_and_metadata_objects() {
        let dir = tempfile::tempdir().unwrap();
        let r = Repo::init(&dir.path().join("r")).unwrap();
        assert!(Repo::open(r.path()).is_ok());
        assert!(matches!(
            Repo::open(dir.path()),
            Err(RepoError::NotARepo(_))
        ));
        let mb = object::DirMeta {
            mode: object::S_IFDIR | 0o755,
            uid: 0,
            gid: 0,
            xattrs: Xattrs::EMPTY,
        }
        .to_vec();
        let m = r.write_metadata_object(ObjectKind::DirMeta, &mb).unwrap();
        let t = r
            .write_metadata_object(ObjectKind::DirTree, &0u32.to_le_bytes())
            .unwrap();
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
