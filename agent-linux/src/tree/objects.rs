//! Writing single objects of a tree: a file's metadata and content (streamed, hashed, then
//! copied once if new), a symlink, a dirtree from its entries and a dirmeta.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::Path;

use agent_core::object::{
    self, DirEntry, DirMeta, FileHeader, ObjectError, ObjectId, ObjectKind, Xattrs,
    FILE_HEADER_LEN, MAX_SYMLINK_TARGET, S_IFDIR, S_IFLNK, S_IFREG, S_IPERM,
};
use sha2::{Digest, Sha256};

use crate::repo::Transaction;

use super::{io_at, BuildError, BuildStats, COPY_BUF};

/// Hashes `meta` followed by exactly `size` bytes of `src`, copying them to `copy` if given.
pub(super) fn hash_stream(
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

pub(super) fn write_small_file(
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
