//! Single objects: writing and publishing dirtree, dirmeta and file objects (a file object
//! staged with its metadata deferred until verified), reading them back checked, listing them.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

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
        let mut staged = self.stage_file_object(id, meta, None, content, None)?;
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
    ) -> Result<Staged, RepoError> {
        let content_tmp = content.as_ref().map(|(_, p)| p.clone());
        let mut renames = Vec::with_capacity(2);
        let res = self.stage_file_inner(id, meta, verified, content, &mut renames, keep_open);
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
        verified: Option<FileHeader>,
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
                header,
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
        Ok(Deferred {
            id: *id,
            header,
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
    pub(super) fn finish_file_meta(
        &self,
        d: Deferred,
        sync: bool,
    ) -> Result<Option<PathBuf>, RepoError> {
        let exact = apply_deferred_meta(&d, sync)?;
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

/// A file object staged in `R/tmp`, as [`Repo::stage_file_object`] returns it.
#[derive(Debug)]
pub(super) struct Staged {
    /// The renames that publish it.
    pub(super) renames: Vec<(PathBuf, PathBuf)>,
    /// Its metadata, to apply.
    pub(super) deferred: Option<Deferred>,
}

/// A staged file object whose owner, mode and xattrs wait for its part to be verified.
#[derive(Debug)]
pub(super) struct Deferred {
    pub(super) id: ObjectId,
    /// Its header, parsed once.
    pub(super) header: FileHeader,
    /// The staged content file or symlink in `R/tmp`.
    pub(super) path: PathBuf,
    /// Its canonical metadata (header, target, xattrs), already parsed once.
    pub(super) meta: Vec<u8>,
    /// The staged content file, still open (written by this process).
    pub(super) file: Option<File>,
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
    let header = d.header;
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
