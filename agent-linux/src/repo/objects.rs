//! Single objects: writing and publishing dirtree, dirmeta and file objects (a file object
//! staged with its metadata deferred until verified), reading them back checked, listing them.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use agent_core::object::{
    Commit, DirEntry, DirMeta, DirTree, FileHeader, ObjectError, ObjectId, ObjectKind, Xattrs,
    FILE_HEADER_LEN, MAX_COMMIT_LEN,
};

use super::{io_err, prefix_compatible, Repo, RepoError, MAX_METADATA_OBJECT, MAX_OPEN_STAGED};

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

impl Repo {
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
    /// `content` in every case. To write many objects, a [`Transaction`](super::Transaction)
    /// is much faster.
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
        let (tmp, d) = self.stage_file_object(id, meta, None, content, None)?;
        let mut renames = Vec::with_capacity(2);
        let mut res = self.finish_file_meta(id, &tmp, &d, true).map(|side| {
            if let Some(side) = side {
                renames.push((side, self.filemeta_path(id)));
            }
        });
        drop(d);
        renames.push((tmp, self.object_path(ObjectKind::File, id)));
        for (tmp, dest) in &renames {
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
    /// `content`) or creates its symlink in `R/tmp`: returns the object whose owner, xattrs and
    /// mode are still to be applied by [`Repo::finish_file_meta`] (its staging file is renamed
    /// to [`Repo::object_path`] to publish it). The content stays open (`keep_open`) for that, unless
    /// too many already are. With `verified` (the header of an object the installer verified,
    /// whose content the caller counted), the metadata is not checked again. On error nothing
    /// is left behind.
    pub(super) fn stage_file_object(
        &self,
        id: &ObjectId,
        meta: &[u8],
        verified: Option<FileHeader>,
        content: Option<(File, PathBuf)>,
        keep_open: Option<&mut usize>,
    ) -> Result<(PathBuf, Deferred), RepoError> {
        let content_tmp = content.as_ref().map(|(_, p)| p.clone());
        let res = self.stage_file_inner(id, meta, verified, content, keep_open);
        if res.is_err() {
            if let Some(p) = content_tmp {
                let _ = crate::fsops::remove_file(&p);
            }
        }
        res
    }

    fn stage_file_inner(
        &self,
        id: &ObjectId,
        meta: &[u8],
        verified: Option<FileHeader>,
        content: Option<(File, PathBuf)>,
        keep_open: Option<&mut usize>,
    ) -> Result<(PathBuf, Deferred), RepoError> {
        let kind = ObjectKind::File;
        let corrupt = |error| RepoError::CorruptObject {
            kind,
            id: *id,
            error,
        };
        let header = match verified {
            Some(h) => h,
            None => FileHeader::parse(meta).map_err(corrupt)?,
        };
        if meta.len() as u64 != header.meta_len() {
            return Err(RepoError::ObjectLength {
                kind,
                id: *id,
                expected: header.meta_len(),
                found: meta.len() as u64,
            });
        }
        let target = &meta[FILE_HEADER_LEN..FILE_HEADER_LEN + usize::from(header.target_len)];
        if verified.is_none() {
            Xattrs::parse(&meta[FILE_HEADER_LEN + target.len()..]).map_err(corrupt)?;
        }
        if header.is_symlink() {
            if target.is_empty() || target.contains(&0) {
                return Err(corrupt(ObjectError::BadSymlinkTarget));
            }
            let tmp = self.tmp_path("symlink");
            crate::fsops::symlink(std::ffi::OsStr::from_bytes(target), &tmp)
                .map_err(io_err("create symlink", &tmp))?;
            let d = Deferred {
                meta: meta.into(),
                file: None,
            };
            return Ok((tmp, d));
        }
        let Some((file, tmp)) = content else {
            return Err(RepoError::Sequence(
                "a regular file object was published without content",
            ));
        };
        let len = match verified {
            Some(_) => header.size,
            None => file.metadata().map_err(io_err("stat", &tmp))?.len(),
        };
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
        let d = Deferred {
            meta: meta.into(),
            file,
        };
        Ok((tmp, d))
    }

    /// Applies a staged file object's owner, xattrs and mode ([`apply_deferred_meta`]; fsynced
    /// when `sync`), then reads the inode back: when it holds the canonical metadata exactly,
    /// the object is one file; otherwise (an owner this process cannot give, an attribute the
    /// filesystem refuses or adds, a symlink's permission bits) its metadata is written to a
    /// `.filemeta` side file in `R/tmp`, whose path is returned, to be published before the
    /// object.
    pub(super) fn finish_file_meta(
        &self,
        id: &ObjectId,
        tmp: &Path,
        d: &Deferred,
        sync: bool,
    ) -> Result<Option<PathBuf>, RepoError> {
        let exact = apply_deferred_meta(id, d, tmp, sync)?;
        if exact {
            return Ok(None);
        }
        self.write_tmp(&d.meta, sync).map(Some)
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

    /// Reads a dirtree and returns its entries as owned values.
    pub fn read_dirtree(&self, id: &ObjectId) -> Result<Vec<OwnedEntry>, RepoError> {
        self.with_dirtree(id, |t| {
            t.entries()
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
                .collect()
        })
    }

    /// The objects dirtree `id` names, in entry order ([`DirTree::references`]: the
    /// references a reuse-entries record's bitmap counts).
    pub fn dirtree_references(
        &self,
        id: &ObjectId,
    ) -> Result<Vec<(ObjectKind, ObjectId)>, RepoError> {
        self.with_dirtree(id, |t| t.references().collect())
    }

    /// Reads and parses dirtree `id` and hands it to `f`.
    fn with_dirtree<T>(
        &self,
        id: &ObjectId,
        f: impl FnOnce(DirTree<'_>) -> T,
    ) -> Result<T, RepoError> {
        let bytes = self.read_metadata_object(ObjectKind::DirTree, id)?;
        let t = DirTree::parse(&bytes).map_err(|error| RepoError::CorruptObject {
            kind: ObjectKind::DirTree,
            id: *id,
            error,
        })?;
        Ok(f(t))
    }

    pub(super) fn list_objects(
        &self,
        kind: ObjectKind,
        prefix: &str,
    ) -> Result<Vec<ObjectId>, RepoError> {
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
}

/// What a staged file object still needs once its part is verified: its canonical metadata
/// (header, target, xattrs; already checked once), whose owner, mode and xattrs are to be
/// applied, and its staged content file, still open (written by this process) unless too
/// many are.
#[derive(Debug)]
pub(super) struct Deferred {
    pub(super) meta: Box<[u8]>,
    pub(super) file: Option<File>,
}

/// Where a staging file is, in few bytes (a transaction holds one per object it staged): its
/// name when it is in `R/tmp` (where [`Repo::create_tmp`] makes them), else its whole path
/// (which then has a `/`: a relative one is written `./…`).
#[derive(Debug)]
pub(super) struct TmpRef(Box<Path>);

impl TmpRef {
    /// `path`, remembered as its name when it is directly in `repo`'s `R/tmp`.
    pub(super) fn new(repo: &Repo, path: PathBuf) -> TmpRef {
        if path.parent() == Some(repo.tmp_dir().as_path()) {
            if let Some(name) = path.file_name() {
                return TmpRef(Path::new(name).into());
            }
        }
        if path.is_relative() {
            return TmpRef(Path::new(".").join(path).into_boxed_path());
        }
        TmpRef(path.into_boxed_path())
    }

    /// The path.
    pub(super) fn path(&self, repo: &Repo) -> PathBuf {
        if self.0.as_os_str().as_bytes().contains(&b'/') {
            self.0.to_path_buf()
        } else {
            repo.tmp_dir().join(&self.0)
        }
    }
}

/// Applies a deferred object's owner, xattrs and mode to its staged file (the descriptor
/// kept open, else opened again with `O_NOFOLLOW` in the private `R/tmp`; fsynced when
/// `sync`), or its owner and xattrs to a staged symlink. Returns whether the inode now holds
/// the object's canonical metadata exactly ([`crate::fsmeta::inode_meta`]).
fn apply_deferred_meta(
    id: &ObjectId,
    d: &Deferred,
    path: &Path,
    sync: bool,
) -> Result<bool, RepoError> {
    let corrupt = |error| RepoError::CorruptObject {
        kind: ObjectKind::File,
        id: *id,
        error,
    };
    let header = FileHeader::parse(&d.meta).map_err(corrupt)?;
    let target_end = FILE_HEADER_LEN + usize::from(header.target_len);
    let xattrs = Xattrs::parse(d.meta.get(target_end..).unwrap_or(&[])).map_err(corrupt)?;
    if header.is_symlink() {
        crate::fsmeta::apply_symlink_meta(path, &header, xattrs);
        let found = crate::fsmeta::inode_meta(crate::fsmeta::Inode::Symlink(path))
            .map_err(io_err("read the metadata of", path))?;
        return Ok(found.as_deref() == Some(&d.meta[..]));
    }
    let reopened;
    let file = match &d.file {
        Some(f) => f,
        None => {
            reopened = OpenOptions::new()
                .read(true)
                .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
                .open(path)
                .map_err(io_err("open", path))?;
            &reopened
        }
    };
    crate::fsops::set_meta(file, path, |fd| {
        crate::fsmeta::apply_fd_meta(fd, header.mode, header.uid, header.gid, xattrs)
    })
    .map_err(io_err("set metadata of", path))?;
    if sync {
        crate::fsops::fsync(file, path).map_err(io_err("fsync", path))?;
    }
    let found = crate::fsmeta::inode_meta(crate::fsmeta::Inode::File(file.as_fd()))
        .map_err(io_err("read the metadata of", path))?;
    Ok(found.as_deref() == Some(&d.meta[..]))
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
