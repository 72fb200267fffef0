//! Building trees into a repository: a directory on disk (or a tree held in memory) becomes
//! file, dirtree and dirmeta objects, written bottom-up so that a dirtree is only ever
//! present once everything under it is.
//!
//! File contents are streamed (hashed in 64 KiB blocks, then copied once if the object is new),
//! so a tree of any size is built in constant memory per file.

use std::ffi::OsStr;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use agent_core::object::{
    self, DirEntry, DirMeta, FileHeader, NameError, ObjectError, ObjectId, ObjectKind, Xattrs,
    FILE_HEADER_LEN, MAX_SYMLINK_TARGET, S_IFDIR, S_IFLNK, S_IFREG, S_IPERM,
};
use sha2::{Digest, Sha256};

use crate::fsmeta::{self, XattrPolicy};
use crate::repo::{Repo, RepoError, Transaction, TreeRoot, MAX_TREE_DEPTH};

const COPY_BUF: usize = 64 * 1024;

/// Why a tree could not be built.
#[derive(Debug)]
#[non_exhaustive]
pub enum BuildError {
    /// The repository failed.
    Repo(RepoError),
    /// Reading the source tree failed.
    Io {
        /// What was being done.
        what: &'static str,
        /// On which path.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// An entry whose name is not a single path component.
    BadName {
        /// The directory holding it.
        dir: PathBuf,
        /// The name, as bytes.
        name: Vec<u8>,
        /// What is wrong with it.
        error: NameError,
    },
    /// Two entries of one directory with the same name.
    DuplicateName {
        /// The directory.
        dir: PathBuf,
        /// The name.
        name: Vec<u8>,
    },
    /// A device, FIFO or socket: a commit holds only files, symlinks and directories.
    UnsupportedType {
        /// The entry.
        path: PathBuf,
        /// What it is.
        kind: &'static str,
    },
    /// The entry's metadata does not fit the object format (xattrs, symlink target, mode).
    Object {
        /// The entry.
        path: PathBuf,
        /// Why.
        error: ObjectError,
    },
    /// A file changed size while it was read.
    Changed(PathBuf),
    /// The tree is deeper than [`MAX_TREE_DEPTH`].
    TooDeep(PathBuf),
    /// The root is not a directory.
    NotADirectory(PathBuf),
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildError::Repo(e) => e.fmt(f),
            BuildError::Io { what, path, source } => {
                write!(f, "cannot {what} {}: {source}", path.display())
            }
            BuildError::BadName { dir, name, error } => write!(
                f,
                "entry {:?} in {} cannot be committed: {error}",
                String::from_utf8_lossy(name),
                dir.display()
            ),
            BuildError::DuplicateName { dir, name } => {
                write!(
                    f,
                    "directory {} holds {:?} twice",
                    dir.display(),
                    String::from_utf8_lossy(name)
                )
            }
            BuildError::UnsupportedType { path, kind } => write!(
                f,
                "{} is a {kind}; a commit holds only regular files, symlinks and directories",
                path.display()
            ),
            BuildError::Object { path, error } => {
                write!(f, "{} cannot be committed: {error}", path.display())
            }
            BuildError::Changed(p) => write!(
                f,
                "{} changed while it was read; commit a tree nobody writes to",
                p.display()
            ),
            BuildError::TooDeep(p) => write!(
                f,
                "{} is nested deeper than {MAX_TREE_DEPTH} directories",
                p.display()
            ),
            BuildError::NotADirectory(p) => write!(f, "{} is not a directory", p.display()),
        }
    }
}

/// Transparent to the errors its messages include.
impl std::error::Error for BuildError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BuildError::Repo(e) => e.source(),
            BuildError::Io { source, .. } => source.source(),
            BuildError::Object { error, .. } => error.source(),
            _ => None,
        }
    }
}

impl From<RepoError> for BuildError {
    fn from(e: RepoError) -> Self {
        BuildError::Repo(e)
    }
}

fn io_at<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> BuildError + 'a {
    move |source| BuildError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// How a directory is read into objects.
#[derive(Debug, Clone, Copy, Default)]
pub struct BuildOptions {
    /// Which extended attributes to record.
    pub xattrs: XattrPolicy,
    /// Record this `(uid, gid)` for every entry instead of the owner on disk.
    pub owner: Option<(u32, u32)>,
}

/// Counts of what a build read and wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct BuildStats {
    /// Files and symlinks read.
    pub files: u64,
    /// Directories read.
    pub dirs: u64,
    /// Content bytes read.
    pub bytes: u64,
    /// Objects that were not in the repository yet.
    pub new_objects: u64,
}

/// Builds the directory `root` into `repo` and returns the root's dirtree and dirmeta.
/// `progress` is called after every file.
pub fn build_dir(
    repo: &Repo,
    root: &Path,
    opts: &BuildOptions,
    progress: &mut dyn FnMut(&BuildStats),
) -> Result<(TreeRoot, BuildStats), BuildError> {
    let md = fs::metadata(root).map_err(io_at("stat", root))?;
    if !md.is_dir() {
        return Err(BuildError::NotADirectory(root.to_path_buf()));
    }
    let mut b = DirBuilder {
        txn: Transaction::new(repo),
        opts,
        stats: BuildStats::default(),
        progress,
    };
    let (tree, meta) = b.dir(root, &md, 0)?;
    b.txn.commit()?;
    Ok((TreeRoot { tree, meta }, b.stats))
}

struct DirBuilder<'a> {
    txn: Transaction<'a>,
    opts: &'a BuildOptions,
    stats: BuildStats,
    progress: &'a mut dyn FnMut(&BuildStats),
}

impl DirBuilder<'_> {
    fn owner(&self, md: &fs::Metadata) -> (u32, u32) {
        self.opts.owner.unwrap_or((md.uid(), md.gid()))
    }

    fn xattrs(&self, path: &Path) -> Result<Vec<u8>, BuildError> {
        let pairs =
            fsmeta::read_xattrs(path, self.opts.xattrs).map_err(io_at("read xattrs of", path))?;
        fsmeta::encode_xattrs(&pairs).map_err(|error| BuildError::Object {
            path: path.to_path_buf(),
            error,
        })
    }

    fn dir(
        &mut self,
        path: &Path,
        md: &fs::Metadata,
        depth: usize,
    ) -> Result<(ObjectId, ObjectId), BuildError> {
        if depth > MAX_TREE_DEPTH {
            return Err(BuildError::TooDeep(path.to_path_buf()));
        }
        self.stats.dirs += 1;
        let mut names = Vec::new();
        for e in fs::read_dir(path).map_err(io_at("read directory", path))? {
            let e = e.map_err(io_at("read directory", path))?;
            names.push(e.file_name().as_bytes().to_vec());
        }
        names.sort();
        let mut entries = Vec::with_capacity(names.len());
        for name in names {
            object::validate_name(&name).map_err(|error| BuildError::BadName {
                dir: path.to_path_buf(),
                name: name.clone(),
                error,
            })?;
            let child = path.join(OsStr::from_bytes(&name));
            let cmd = fs::symlink_metadata(&child).map_err(io_at("stat", &child))?;
            let ft = cmd.file_type();
            let entry = if ft.is_dir() {
                let (tree, meta) = self.dir(&child, &cmd, depth + 1)?;
                Node::Dir { tree, meta }
            } else if ft.is_file() {
                Node::File(self.file(&child, &cmd)?)
            } else if ft.is_symlink() {
                Node::File(self.symlink(&child, &cmd)?)
            } else {
                use std::os::unix::fs::FileTypeExt;
                let kind = if ft.is_fifo() {
                    "FIFO"
                } else if ft.is_socket() {
                    "socket"
                } else if ft.is_block_device() {
                    "block device"
                } else {
                    "character device"
                };
                return Err(BuildError::UnsupportedType { path: child, kind });
            };
            entries.push((name, entry));
        }
        let tree = write_dirtree(&mut self.txn, path, &entries, &mut self.stats)?;
        let (uid, gid) = self.owner(md);
        let xattrs = self.xattrs(path)?;
        let meta = write_dirmeta(
            &mut self.txn,
            path,
            md.mode() & S_IPERM,
            uid,
            gid,
            &xattrs,
            &mut self.stats,
        )?;
        Ok((tree, meta))
    }

    fn symlink(&mut self, path: &Path, md: &fs::Metadata) -> Result<ObjectId, BuildError> {
        let target = fs::read_link(path).map_err(io_at("read symlink", path))?;
        let (uid, gid) = self.owner(md);
        let xattrs = self.xattrs(path)?;
        self.stats.files += 1;
        let id = write_symlink(
            &mut self.txn,
            path,
            target.as_os_str().as_bytes(),
            uid,
            gid,
            &xattrs,
            &mut self.stats,
        )?;
        (self.progress)(&self.stats);
        Ok(id)
    }

    fn file(&mut self, path: &Path, md: &fs::Metadata) -> Result<ObjectId, BuildError> {
        let (uid, gid) = self.owner(md);
        let xattrs = self.xattrs(path)?;
        let mut f = OpenOptions::new()
            .read(true)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(path)
            .map_err(io_at("open", path))?;
        let size = f.metadata().map_err(io_at("stat", path))?.len();
        let meta = file_meta(
            path,
            S_IFREG | (md.mode() & S_IPERM),
            uid,
            gid,
            size,
            b"",
            &xattrs,
        )?;
        // First pass: hash only, so an object already in the repository costs no write.
        let id = hash_stream(&meta, &mut f, size, path, None)?;
        self.stats.files += 1;
        self.stats.bytes += size;
        if !self.txn.has_object(ObjectKind::File, &id)? {
            let (mut tmp, tmp_path) = self.txn.repo().create_tmp("build")?;
            let copied = (|| {
                // The same descriptor (opened with O_NOFOLLOW), from the start again.
                f.seek(SeekFrom::Start(0)).map_err(io_at("rewind", path))?;
                let again = hash_stream(&meta, &mut f, size, path, Some(&mut tmp))?;
                if again != id {
                    return Err(BuildError::Changed(path.to_path_buf()));
                }
                Ok(())
            })();
            if let Err(e) = copied {
                let _ = fs::remove_file(&tmp_path);
                return Err(e);
            }
            self.txn
                .publish_file_object(&id, &meta, Some((tmp, tmp_path)))?;
            self.stats.new_objects += 1;
        }
        (self.progress)(&self.stats);
        Ok(id)
    }
}

/// Hashes `meta` followed by exactly `size` bytes of `src`, copying them to `copy` if given.
fn hash_stream(
    meta: &[u8],
    src: &mut File,
    size: u64,
    path: &Path,
    mut copy: Option<&mut File>,
) -> Result<ObjectId, BuildError> {
    let mut h = Sha256::new();
    h.update(meta);
    let mut buf = vec![0u8; COPY_BUF];
    let mut total = 0u64;
    loop {
        let n = match src.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_at("read", path)(e)),
        };
        total += n as u64;
        if total > size {
            return Err(BuildError::Changed(path.to_path_buf()));
        }
        h.update(&buf[..n]);
        if let Some(c) = copy.as_deref_mut() {
            c.write_all(&buf[..n])
                .map_err(io_at("write a copy of", path))?;
        }
    }
    if total != size {
        return Err(BuildError::Changed(path.to_path_buf()));
    }
    Ok(ObjectId(h.finalize().into()))
}

/// A file object's canonical metadata: header, target, xattr block.
pub(crate) fn file_meta(
    path: &Path,
    mode: u32,
    uid: u32,
    gid: u32,
    size: u64,
    target: &[u8],
    xattrs: &[u8],
) -> Result<Vec<u8>, BuildError> {
    let obj_err = |error| BuildError::Object {
        path: path.to_path_buf(),
        error,
    };
    if target.len() > MAX_SYMLINK_TARGET {
        return Err(obj_err(ObjectError::TooLong {
            field: "symlink target",
            len: target.len(),
            max: MAX_SYMLINK_TARGET,
        }));
    }
    let header = FileHeader {
        mode,
        uid,
        gid,
        size,
        target_len: target.len() as u16,
        xattrs_len: xattrs.len() as u16,
    };
    let mut meta = vec![0u8; FILE_HEADER_LEN];
    header.emit(&mut meta);
    meta.extend_from_slice(target);
    meta.extend_from_slice(xattrs);
    FileHeader::parse(&meta).map_err(obj_err)?;
    if header.is_symlink() && target.contains(&0) {
        return Err(obj_err(ObjectError::BadSymlinkTarget));
    }
    Ok(meta)
}

pub(crate) fn write_symlink(
    txn: &mut Transaction<'_>,
    path: &Path,
    target: &[u8],
    uid: u32,
    gid: u32,
    xattrs: &[u8],
    stats: &mut BuildStats,
) -> Result<ObjectId, BuildError> {
    let meta = file_meta(path, S_IFLNK | 0o777, uid, gid, 0, target, xattrs)?;
    let id = ObjectId::of(&meta);
    if !txn.has_object(ObjectKind::File, &id)? {
        txn.publish_file_object(&id, &meta, None)?;
        stats.new_objects += 1;
    }
    Ok(id)
}

fn write_small_file(
    txn: &mut Transaction<'_>,
    path: &Path,
    mode: u32,
    content: &[u8],
    xattrs: &[u8],
    stats: &mut BuildStats,
) -> Result<ObjectId, BuildError> {
    let meta = file_meta(
        path,
        S_IFREG | (mode & S_IPERM),
        0,
        0,
        content.len() as u64,
        b"",
        xattrs,
    )?;
    let mut h = Sha256::new();
    h.update(&meta);
    h.update(content);
    let id = ObjectId(h.finalize().into());
    if !txn.has_object(ObjectKind::File, &id)? {
        let (mut tmp, tmp_path) = txn.repo().create_tmp("build")?;
        if let Err(e) = tmp.write_all(content) {
            let _ = fs::remove_file(&tmp_path);
            return Err(io_at("write", &tmp_path)(e));
        }
        txn.publish_file_object(&id, &meta, Some((tmp, tmp_path)))?;
        stats.new_objects += 1;
    }
    Ok(id)
}

pub(crate) enum Node {
    File(ObjectId),
    Dir { tree: ObjectId, meta: ObjectId },
}

/// Encodes and writes a dirtree. Entries must be sorted; names are validated here, so a
/// tree that a filesystem could never hold (`..`, `a/b`, a NUL) is refused.
pub(crate) fn write_dirtree(
    txn: &mut Transaction<'_>,
    dir: &Path,
    entries: &[(Vec<u8>, Node)],
    stats: &mut BuildStats,
) -> Result<ObjectId, BuildError> {
    let mut bytes = (entries.len() as u32).to_le_bytes().to_vec();
    let mut prev: Option<&[u8]> = None;
    for (name, node) in entries {
        object::validate_name(name).map_err(|error| BuildError::BadName {
            dir: dir.to_path_buf(),
            name: name.clone(),
            error,
        })?;
        if prev.is_some_and(|p| p >= name.as_slice()) {
            return Err(BuildError::DuplicateName {
                dir: dir.to_path_buf(),
                name: name.clone(),
            });
        }
        prev = Some(name);
        let e = match node {
            Node::File(id) => DirEntry::File { name, id: *id },
            Node::Dir { tree, meta } => DirEntry::Dir {
                name,
                tree: *tree,
                meta: *meta,
            },
        };
        let at = bytes.len();
        bytes.resize(at + e.buffer_len(), 0);
        e.emit(&mut bytes[at..]);
    }
    let id = ObjectId::of(&bytes);
    if !txn.has_object(ObjectKind::DirTree, &id)? {
        txn.write_metadata_object(ObjectKind::DirTree, &bytes)?;
        stats.new_objects += 1;
    }
    Ok(id)
}

pub(crate) fn write_dirmeta(
    txn: &mut Transaction<'_>,
    path: &Path,
    perm: u32,
    uid: u32,
    gid: u32,
    xattrs: &[u8],
    stats: &mut BuildStats,
) -> Result<ObjectId, BuildError> {
    let x = Xattrs::parse(xattrs).map_err(|error| BuildError::Object {
        path: path.to_path_buf(),
        error,
    })?;
    let bytes = DirMeta {
        mode: S_IFDIR | (perm & S_IPERM),
        uid,
        gid,
        xattrs: x,
    }
    .to_vec();
    let id = ObjectId::of(&bytes);
    if !txn.has_object(ObjectKind::DirMeta, &id)? {
        txn.write_metadata_object(ObjectKind::DirMeta, &bytes)?;
        stats.new_objects += 1;
    }
    Ok(id)
}

/// A tree held in memory, for programs and tests that make trees a filesystem cannot hold.
/// Owners are 0:0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemNode {
    /// A regular file.
    File {
        /// Permission bits.
        mode: u32,
        /// Content.
        content: Vec<u8>,
        /// Extended attributes.
        xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    },
    /// A symlink.
    Symlink {
        /// Its target.
        target: Vec<u8>,
    },
    /// A directory.
    Dir(MemDir),
}

/// A directory held in memory. Entries may come in any order; names are checked when the tree
/// is built.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MemDir {
    /// Permission bits.
    pub mode: u32,
    /// Extended attributes.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// Entries: name and node.
    pub entries: Vec<(Vec<u8>, MemNode)>,
}

impl MemDir {
    /// An empty directory with mode 0755.
    pub fn new() -> MemDir {
        MemDir {
            mode: 0o755,
            xattrs: Vec::new(),
            entries: Vec::new(),
        }
    }

    /// Adds an entry (builder style).
    pub fn with(mut self, name: &[u8], node: MemNode) -> MemDir {
        self.entries.push((name.to_vec(), node));
        self
    }
}

/// Builds an in-memory tree into `repo`. Names are validated like those read from disk.
pub fn build_mem(repo: &Repo, dir: &MemDir) -> Result<(TreeRoot, BuildStats), BuildError> {
    let mut stats = BuildStats::default();
    let mut txn = Transaction::new(repo);
    let (tree, meta) = mem_dir(&mut txn, dir, Path::new("/"), 0, &mut stats)?;
    txn.commit()?;
    Ok((TreeRoot { tree, meta }, stats))
}

fn mem_dir(
    txn: &mut Transaction<'_>,
    dir: &MemDir,
    path: &Path,
    depth: usize,
    stats: &mut BuildStats,
) -> Result<(ObjectId, ObjectId), BuildError> {
    if depth > MAX_TREE_DEPTH {
        return Err(BuildError::TooDeep(path.to_path_buf()));
    }
    stats.dirs += 1;
    let mut sorted: Vec<&(Vec<u8>, MemNode)> = dir.entries.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut entries = Vec::with_capacity(sorted.len());
    for (name, node) in sorted {
        object::validate_name(name).map_err(|error| BuildError::BadName {
            dir: path.to_path_buf(),
            name: name.clone(),
            error,
        })?;
        let child = path.join(OsStr::from_bytes(name));
        let obj_err = |error| BuildError::Object {
            path: child.clone(),
            error,
        };
        let n = match node {
            MemNode::File {
                mode,
                content,
                xattrs,
            } => {
                stats.files += 1;
                stats.bytes += content.len() as u64;
                let x = fsmeta::encode_xattrs(xattrs).map_err(obj_err)?;
                Node::File(write_small_file(txn, &child, *mode, content, &x, stats)?)
            }
            MemNode::Symlink { target } => {
                stats.files += 1;
                Node::File(write_symlink(txn, &child, target, 0, 0, b"", stats)?)
            }
            MemNode::Dir(d) => {
                let (tree, meta) = mem_dir(txn, d, &child, depth + 1, stats)?;
                Node::Dir { tree, meta }
            }
        };
        entries.push((name.clone(), n));
    }
    let tree = write_dirtree(txn, path, &entries, stats)?;
    let x = fsmeta::encode_xattrs(&dir.xattrs).map_err(|error| BuildError::Object {
        path: path.to_path_buf(),
        error,
    })?;
    let meta = write_dirmeta(txn, path, dir.mode, 0, 0, &x, stats)?;
    Ok((tree, meta))
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn mem_tree_rejects_bad_names() {
        let d = tempfile::tempdir().unwrap();
        let repo = Repo::init(&d.path().join("r")).unwrap();
        for bad in [&b".."[..], b"a/b", b"a\0b", b"", b"."] {
            let t = MemDir::new().with(
                bad,
                MemNode::File {
                    mode: 0o644,
                    content: b"x".to_vec(),
                    xattrs: vec![],
                },
            );
            assert!(
                matches!(build_mem(&repo, &t), Err(BuildError::BadName { .. })),
                "{bad:?}"
            );
            let nested = MemDir::new().with(
                b"ok",
                MemNode::Dir(MemDir::new().with(bad, MemNode::Dir(MemDir::new()))),
            );
            assert!(
                matches!(build_mem(&repo, &nested), Err(BuildError::BadName { .. })),
                "{bad:?}"
            );
        }
        let dup = MemDir::new().with(b"a", MemNode::Dir(MemDir::new())).with(
            b"a",
            MemNode::Symlink {
                target: b"x".to_vec(),
            },
        );
        assert!(matches!(
            build_mem(&repo, &dup),
            Err(BuildError::DuplicateName { .. })
        ));
        // Nothing was written for the refused trees except leaf objects, and no dirtree names
        // a bad entry: every dirtree in the repository parses.
        let ok = MemDir::new().with(
            b"f",
            MemNode::File {
                mode: 0o755,
                content: b"hi".to_vec(),
                xattrs: vec![],
            },
        );
        let (root, stats) = build_mem(&repo, &ok).unwrap();
        assert!(repo.read_dirtree(&root.tree).is_ok());
        assert_eq!(stats.files, 1);
    }

    #[test]
    fn build_dir_is_deterministic_and_dedups() {
        let d = tempfile::tempdir().unwrap();
        let repo = Repo::init(&d.path().join("r")).unwrap();
        let src = d.path().join("src");
        fs::create_dir_all(src.join("a/b")).unwrap();
        fs::write(src.join("a/b/f"), b"content").unwrap();
        fs::write(src.join("g"), b"content").unwrap();
        std::os::unix::fs::symlink("a/b/f", src.join("link")).unwrap();
        let opts = BuildOptions::default();
        let (r1, s1) = build_dir(&repo, &src, &opts, &mut |_| {}).unwrap();
        let (r2, s2) = build_dir(&repo, &src, &opts, &mut |_| {}).unwrap();
        assert_eq!(r1, r2);
        assert_eq!(s1.files, 3);
        assert!(s1.new_objects > 0);
        assert_eq!(s2.new_objects, 0);
        let set_entries = repo.read_dirtree(&r1.tree).unwrap();
        let names: Vec<&[u8]> = set_entries.iter().map(|e| e.name()).collect();
        assert_eq!(names, vec![&b"a"[..], b"g", b"link"]);
    }
}
