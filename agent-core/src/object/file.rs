//! File objects: a regular file or a symlink, its [`FileHeader`] and the whole [`FileObject`].

use super::*;

/// The fixed 24-byte header at the start of a file object.
///
/// | offset | size | field |
/// | --- | --- | --- |
/// | 0 | 4 | mode (`S_IFREG` or `S_IFLNK` plus permission bits) |
/// | 4 | 4 | uid |
/// | 8 | 4 | gid |
/// | 12 | 8 | content size (0 for a symlink) |
/// | 20 | 2 | symlink target length (0 for a regular file) |
/// | 22 | 2 | xattr block length |
///
/// The target, the xattr block and the content follow, in that order.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct FileHeader {
    /// `st_mode`: type and permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Content size in bytes (0 for a symlink).
    pub size: u64,
    /// Length of the symlink target (0 for a regular file).
    pub target_len: u16,
    /// Length of the xattr block.
    pub xattrs_len: u16,
}

impl FileHeader {
    /// Parses and validates the fixed header (the first [`FILE_HEADER_LEN`] bytes).
    pub fn parse(b: &[u8]) -> Result<FileHeader, ObjectError> {
        need(b, FILE_HEADER_LEN)?;
        let h = FileHeader {
            mode: le_u32(b, 0),
            uid: le_u32(b, 4),
            gid: le_u32(b, 8),
            size: le_u64(b, 12),
            target_len: le_u16(b, 20),
            xattrs_len: le_u16(b, 22),
        };
        if h.mode & !(S_IFMT | S_IPERM) != 0 {
            return Err(ObjectError::BadMode(h.mode));
        }
        match h.mode & S_IFMT {
            S_IFREG if h.target_len == 0 => {}
            S_IFLNK if h.size == 0 && h.target_len != 0 => {}
            S_IFLNK => return Err(ObjectError::BadSymlinkTarget),
            _ => return Err(ObjectError::BadMode(h.mode)),
        }
        if usize::from(h.target_len) > MAX_SYMLINK_TARGET {
            return Err(ObjectError::TooLong {
                field: "symlink target",
                len: h.target_len.into(),
                max: MAX_SYMLINK_TARGET,
            });
        }
        if usize::from(h.xattrs_len) > MAX_XATTR_BYTES {
            return Err(ObjectError::TooLong {
                field: "xattr block",
                len: h.xattrs_len.into(),
                max: MAX_XATTR_BYTES,
            });
        }
        Ok(h)
    }

    /// Writes the fixed header into `out[..FILE_HEADER_LEN]`.
    ///
    /// # Panics
    /// If `out` is shorter than [`FILE_HEADER_LEN`].
    pub fn emit(&self, out: &mut [u8]) {
        out[0..4].copy_from_slice(&self.mode.to_le_bytes());
        out[4..8].copy_from_slice(&self.uid.to_le_bytes());
        out[8..12].copy_from_slice(&self.gid.to_le_bytes());
        out[12..20].copy_from_slice(&self.size.to_le_bytes());
        out[20..22].copy_from_slice(&self.target_len.to_le_bytes());
        out[22..24].copy_from_slice(&self.xattrs_len.to_le_bytes());
    }

    /// True for a symlink.
    pub fn is_symlink(&self) -> bool {
        self.mode & S_IFMT == S_IFLNK
    }

    /// Bytes of the header, target and xattrs: where the content starts.
    pub fn meta_len(&self) -> u64 {
        FILE_HEADER_LEN as u64 + u64::from(self.target_len) + u64::from(self.xattrs_len)
    }

    /// Bytes of the whole object.
    pub fn object_len(&self) -> u64 {
        self.meta_len().saturating_add(self.size)
    }
}

/// A whole file object held in memory.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct FileObject<'a> {
    /// The fixed header.
    pub header: FileHeader,
    /// The symlink target (empty for a regular file).
    pub target: &'a [u8],
    /// Extended attributes.
    pub xattrs: Xattrs<'a>,
    /// The content (empty for a symlink).
    pub content: &'a [u8],
}

impl<'a> FileObject<'a> {
    /// Parses and validates a whole file object.
    pub fn parse(b: &'a [u8]) -> Result<FileObject<'a>, ObjectError> {
        let header = FileHeader::parse(b)?;
        let meta_end = header.meta_len() as usize;
        need(b, meta_end)?;
        let target = &b[FILE_HEADER_LEN..FILE_HEADER_LEN + usize::from(header.target_len)];
        if header.is_symlink() && target.contains(&0) {
            return Err(ObjectError::BadSymlinkTarget);
        }
        let xattrs = Xattrs::parse(&b[FILE_HEADER_LEN + target.len()..meta_end])?;
        let rest = &b[meta_end..];
        if (rest.len() as u64) < header.size {
            return Err(ObjectError::Truncated {
                needed: meta_end + header.size as usize,
                have: b.len(),
            });
        }
        if rest.len() as u64 > header.size {
            return Err(ObjectError::TrailingBytes(
                rest.len() - header.size as usize,
            ));
        }
        Ok(FileObject {
            header,
            target,
            xattrs,
            content: rest,
        })
    }
}

#[cfg(test)]
mod test {
    use super::*;

    static FILE_FIXTURE: [u8; 24 + 2 + 10 + 3] = [
        0xed, 0x81, 0, 0, // mode 0o100755
        0, 0, 0, 0, // uid
        0, 0, 0, 0, // gid
        3, 0, 0, 0, 0, 0, 0, 0, // size 3
        0, 0, // no target
        12, 0, // xattrs 12 bytes
        // xattr "user.a" = "xyz"... 1 + 6 + 2 + 3 = 12
        6, b'u', b's', b'e', b'r', b'.', b'a', 3, 0, b'x', b'y', b'z', //
        b'a', b'b', b'c',
    ];

    #[test]
    fn file_deconstruct() {
        // The fixture's xattr block is 12 bytes; the array type above has room for 39.
        let f = FileObject::parse(&FILE_FIXTURE).unwrap();
        assert_eq!(f.header.mode, 0o100755);
        assert_eq!(f.header.size, 3);
        assert_eq!(f.content, b"abc");
        let x: heapless::Vec<(&[u8], &[u8]), 4> = f.xattrs.iter().collect();
        assert_eq!(&x[..], &[(&b"user.a"[..], &b"xyz"[..])]);
    }

    #[test]
    fn file_construct() {
        let h = FileHeader {
            mode: 0o100755,
            uid: 0,
            gid: 0,
            size: 3,
            target_len: 0,
            xattrs_len: 12,
        };
        let mut out = [0u8; FILE_HEADER_LEN];
        h.emit(&mut out);
        assert_eq!(&out[..], &FILE_FIXTURE[..FILE_HEADER_LEN]);
    }

    #[test]
    fn file_bad() {
        let mut b = FILE_FIXTURE;
        b[1] = 0x61; // 0o060755: block device
        assert!(matches!(
            FileObject::parse(&b),
            Err(ObjectError::BadMode(_))
        ));
        assert!(matches!(
            FileObject::parse(&FILE_FIXTURE[..30]),
            Err(ObjectError::Truncated { .. })
        ));
        let mut long = [0u8; 40];
        long[..39].copy_from_slice(&FILE_FIXTURE);
        assert_eq!(FileObject::parse(&long), Err(ObjectError::TrailingBytes(1)));
        // symlink with content
        let h = FileHeader {
            mode: S_IFLNK | 0o777,
            uid: 0,
            gid: 0,
            size: 1,
            target_len: 1,
            xattrs_len: 0,
        };
        let mut out = [0u8; FILE_HEADER_LEN];
        h.emit(&mut out);
        assert_eq!(FileHeader::parse(&out), Err(ObjectError::BadSymlinkTarget));
    }
}
