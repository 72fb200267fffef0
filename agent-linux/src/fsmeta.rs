//! File metadata on Linux: reading extended attributes from a tree, applying mode, owner and
//! xattrs to what the repository or a checkout writes.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;

use agent_core::object::{FileHeader, ObjectError, Xattrs, MAX_XATTRS, MAX_XATTR_BYTES, S_IPERM};
use rustix::fs::{Gid, Mode, Uid, XattrFlags};

/// Which extended attributes a tree builder records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum XattrPolicy {
    /// Only `user.*` attributes (the default: they need no privilege to read or write).
    #[default]
    User,
    /// Every attribute the kernel lists (`security.*`, `trusted.*` too; needs root to apply).
    All,
    /// None.
    None,
}

impl XattrPolicy {
    fn wants(self, name: &[u8]) -> bool {
        match self {
            XattrPolicy::User => name.starts_with(b"user."),
            XattrPolicy::All => true,
            XattrPolicy::None => false,
        }
    }
}

/// Reads the extended attributes of `path` (not following a final symlink) that `policy`
/// selects, as `(name, value)` pairs sorted by name.
pub fn read_xattrs(path: &Path, policy: XattrPolicy) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    if policy == XattrPolicy::None {
        return Ok(Vec::new());
    }
    let mut list = vec![0u8; 64 * 1024];
    let n = match rustix::fs::llistxattr(path, &mut list[..]) {
        Ok(n) => n,
        Err(e) if e == rustix::io::Errno::NOTSUP => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut out = Vec::new();
    let mut value = vec![0u8; 64 * 1024];
    for name in list[..n].split(|b| *b == 0).filter(|n| !n.is_empty()) {
        if !policy.wants(name) {
            continue;
        }
        let v = rustix::fs::lgetxattr(path, name, &mut value[..])?;
        out.push((name.to_vec(), value[..v].to_vec()));
    }
    out.sort();
    Ok(out)
}

/// Encodes `(name, value)` pairs into a canonical xattr block (sorted by name), checking the
/// bounds of the object format.
pub fn encode_xattrs(pairs: &[(Vec<u8>, Vec<u8>)]) -> Result<Vec<u8>, ObjectError> {
    let mut sorted: Vec<&(Vec<u8>, Vec<u8>)> = pairs.iter().collect();
    sorted.sort();
    if sorted.len() > MAX_XATTRS {
        return Err(ObjectError::BadXattrs);
    }
    let mut out = Vec::new();
    for (name, value) in sorted {
        let nlen = u8::try_from(name.len()).map_err(|_| ObjectError::TooLong {
            field: "xattr name",
            len: name.len(),
            max: 255,
        })?;
        let vlen = u16::try_from(value.len()).map_err(|_| ObjectError::TooLong {
            field: "xattr value",
            len: value.len(),
            max: MAX_XATTR_BYTES,
        })?;
        out.push(nlen);
        out.extend_from_slice(name);
        out.extend_from_slice(&vlen.to_le_bytes());
        out.extend_from_slice(value);
        if out.len() > MAX_XATTR_BYTES {
            return Err(ObjectError::TooLong {
                field: "xattr block",
                len: out.len(),
                max: MAX_XATTR_BYTES,
            });
        }
    }
    Xattrs::parse(&out)?;
    Ok(out)
}

/// Whether this process can set any owner (it runs as root).
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Applies owner (when root), permission bits and xattrs (where the filesystem allows: an
/// attribute the kernel refuses is skipped) to an open regular file or directory.
pub fn apply_fd_meta<Fd: AsFd>(
    fd: Fd,
    mode: u32,
    uid: u32,
    gid: u32,
    xattrs: Xattrs<'_>,
) -> io::Result<()> {
    if is_root() {
        // Before chmod: chown clears set-id bits.
        rustix::fs::fchown(&fd, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))?;
    }
    for (name, value) in xattrs.iter() {
        // Refused attributes (no privilege, no support) are left out of the copy on disk; the
        // canonical metadata keeps them.
        let _ = rustix::fs::fsetxattr(&fd, name, value, XattrFlags::empty());
    }
    rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode & S_IPERM))?;
    Ok(())
}

/// [`apply_fd_meta`] for a regular file object.
pub fn apply_file_meta(file: &File, header: &FileHeader, xattrs: Xattrs<'_>) -> io::Result<()> {
    apply_fd_meta(file, header.mode, header.uid, header.gid, xattrs)
}

/// Best effort for a symlink at `path`: owner when root, xattrs where allowed (Linux refuses
/// `user.*` on symlinks). A symlink has no mode of its own.
pub fn apply_symlink_meta(path: &Path, header: &FileHeader, xattrs: Xattrs<'_>) {
    if is_root() {
        let _ = rustix::fs::chownat(
            rustix::fs::CWD,
            path,
            Some(Uid::from_raw(header.uid)),
            Some(Gid::from_raw(header.gid)),
            rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
        );
    }
    for (name, value) in xattrs.iter() {
        let _ = rustix::fs::lsetxattr(path, name, value, XattrFlags::empty());
    }
}

/// Where [`inode_meta`] reads an inode: an open regular file, or a symlink by path (not
/// followed).
#[derive(Debug, Clone, Copy)]
pub enum Inode<'a> {
    /// An open regular file.
    File(BorrowedFd<'a>),
    /// A symlink.
    Symlink(&'a Path),
}

/// The canonical metadata (header, symlink target, xattr block: `agent_core::object`'s file
/// object layout) that the inode holds: its type and permission bits, owner, size, symlink
/// target and every extended attribute the kernel lists, sorted by name. `Ok(None)` when that
/// is not a valid file object's metadata (an attribute list or value too large for the
/// format, a directory, ...). A repository in mode `bare` keeps a file object's metadata in
/// its inode when this reads back its canonical bytes exactly.
pub fn inode_meta(inode: Inode<'_>) -> io::Result<Option<Vec<u8>>> {
    use agent_core::object::{FILE_HEADER_LEN, S_IFLNK, S_IFMT, S_IFREG};
    let st = match inode {
        Inode::File(fd) => rustix::fs::fstat(fd)?,
        Inode::Symlink(p) => rustix::fs::lstat(p)?,
    };
    let mode = st.st_mode & (S_IFMT | S_IPERM);
    let target = match (inode, mode & S_IFMT) {
        (Inode::File(_), S_IFREG) => Vec::new(),
        (Inode::Symlink(p), S_IFLNK) => rustix::fs::readlink(p, Vec::new())?.into_bytes(),
        _ => return Ok(None),
    };
    // A list or a value longer than the format allows cannot be an object's (ERANGE).
    let mut list = [0u8; MAX_XATTR_BYTES];
    let listed = match inode {
        Inode::File(fd) => rustix::fs::flistxattr(fd, &mut list[..]),
        Inode::Symlink(p) => rustix::fs::llistxattr(p, &mut list[..]),
    };
    let n = match listed {
        Ok(n) => n,
        Err(e) if e == rustix::io::Errno::NOTSUP => 0,
        Err(e) if e == rustix::io::Errno::RANGE => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let mut pairs = Vec::new();
    let mut value = [0u8; MAX_XATTR_BYTES];
    for name in list[..n].split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let got = match inode {
            Inode::File(fd) => rustix::fs::fgetxattr(fd, name, &mut value[..]),
            Inode::Symlink(p) => rustix::fs::lgetxattr(p, name, &mut value[..]),
        };
        match got {
            Ok(v) => pairs.push((name.to_vec(), value[..v].to_vec())),
            // Removed since it was listed: not there.
            Err(e) if e == rustix::io::Errno::NODATA => {}
            Err(e) if e == rustix::io::Errno::RANGE => return Ok(None),
            Err(e) => return Err(e.into()),
        }
    }
    let Ok(xattrs) = encode_xattrs(&pairs) else {
        return Ok(None);
    };
    let (Ok(target_len), Ok(xattrs_len)) =
        (u16::try_from(target.len()), u16::try_from(xattrs.len()))
    else {
        return Ok(None);
    };
    let header = FileHeader {
        mode,
        uid: st.st_uid,
        gid: st.st_gid,
        size: if mode & S_IFMT == S_IFREG {
            st.st_size as u64
        } else {
            0
        },
        target_len,
        xattrs_len,
    };
    let mut out = vec![0u8; FILE_HEADER_LEN];
    header.emit(&mut out);
    if FileHeader::parse(&out).is_err() {
        return Ok(None);
    }
    out.extend_from_slice(&target);
    out.extend_from_slice(&xattrs);
    Ok(Some(out))
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn encode_sorts_and_bounds() {
        let b = encode_xattrs(&[
            (b"user.b".to_vec(), b"2".to_vec()),
            (b"user.a".to_vec(), b"1".to_vec()),
        ])
        .unwrap();
        let x = Xattrs::parse(&b).unwrap();
        let v: Vec<_> = x.iter().collect();
        assert_eq!(
            v,
            vec![(&b"user.a"[..], &b"1"[..]), (&b"user.b"[..], &b"2"[..])]
        );
        assert!(encode_xattrs(&[(b"user.a".to_vec(), vec![0; 5000])]).is_err());
        assert!(
            encode_xattrs(&[(b"user.a".to_vec(), vec![]), (b"user.a".to_vec(), vec![])]).is_err()
        );
    }

    #[test]
    fn user_xattrs_round_trip_on_tmp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        let f = File::create(&p).unwrap();
        let b = encode_xattrs(&[(b"user.k".to_vec(), b"v".to_vec())]).unwrap();
        apply_fd_meta(&f, 0o640, 0, 0, Xattrs::parse(&b).unwrap()).unwrap();
        assert_eq!(
            read_xattrs(&p, XattrPolicy::User).unwrap(),
            vec![(b"user.k".to_vec(), b"v".to_vec())]
        );
        assert!(read_xattrs(&p, XattrPolicy::None).unwrap().is_empty());
    }
}
