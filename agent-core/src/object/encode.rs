//! Whole objects into a `Vec` (feature `std`): the encoders the write side and tests use.

use std::vec;
use std::vec::Vec;

use super::*;

/// Encodes a regular file object without xattrs: type `S_IFREG` plus the permission bits
/// of `perm` (other bits are ignored), the owner and the content.
pub fn file_object(perm: u32, uid: u32, gid: u32, content: &[u8]) -> Vec<u8> {
    let header = FileHeader {
        mode: S_IFREG | (perm & S_IPERM),
        uid,
        gid,
        size: content.len() as u64,
        target_len: 0,
        xattrs_len: 0,
    };
    let mut b = vec![0u8; FILE_HEADER_LEN];
    header.emit(&mut b);
    b.extend_from_slice(content);
    b
}

/// Encodes a symlink object without xattrs (mode `S_IFLNK | 0o777`).
///
/// Fails with [`ObjectError::BadSymlinkTarget`] for an empty target or one holding a NUL,
/// and [`ObjectError::TooLong`] for one over [`MAX_SYMLINK_TARGET`] bytes.
pub fn symlink_object(uid: u32, gid: u32, target: &[u8]) -> Result<Vec<u8>, ObjectError> {
    if target.len() > MAX_SYMLINK_TARGET {
        return Err(ObjectError::TooLong {
            field: "symlink target",
            len: target.len(),
            max: MAX_SYMLINK_TARGET,
        });
    }
    if target.is_empty() || target.contains(&0) {
        return Err(ObjectError::BadSymlinkTarget);
    }
    let header = FileHeader {
        mode: S_IFLNK | 0o777,
        uid,
        gid,
        size: 0,
        target_len: target.len() as u16,
        xattrs_len: 0,
    };
    let mut b = vec![0u8; FILE_HEADER_LEN];
    header.emit(&mut b);
    b.extend_from_slice(target);
    Ok(b)
}

/// Encodes a dirtree object from entries in any order: they are sorted by name, and each
/// name is checked to be one path component ([`ObjectError::BadName`]) and to occur once
/// ([`ObjectError::Unsorted`]), so the result always parses.
pub fn dirtree_object(entries: &[DirEntry<'_>]) -> Result<Vec<u8>, ObjectError> {
    let mut sorted = entries.to_vec();
    sorted.sort_by(|a, b| a.name().cmp(b.name()));
    for (i, e) in sorted.iter().enumerate() {
        validate_name(e.name()).map_err(ObjectError::BadName)?;
        if i > 0 && sorted[i - 1].name() == e.name() {
            return Err(ObjectError::Unsorted);
        }
    }
    if u32::try_from(sorted.len()).is_err() {
        return Err(ObjectError::TooLong {
            field: "dirtree",
            len: sorted.len(),
            max: u32::MAX as usize,
        });
    }
    Ok(dirtree_object_unchecked(&sorted))
}

/// Encodes a dirtree object from entries exactly in the order given, checking nothing: for
/// tests that need a dirtree a parser must refuse (unsorted, repeated or bad names).
/// [`dirtree_object`] is the checked twin.
///
/// # Panics
/// If a name is longer than 255 bytes, as [`DirEntry::emit`].
pub fn dirtree_object_unchecked(entries: &[DirEntry<'_>]) -> Vec<u8> {
    let mut b = (entries.len() as u32).to_le_bytes().to_vec();
    for e in entries {
        let at = b.len();
        b.resize(at + e.buffer_len(), 0);
        e.emit(&mut b[at..]);
    }
    b
}

impl DirMeta<'_> {
    /// The encoded object ([`DirMeta::emit`] into a `Vec`).
    pub fn to_vec(&self) -> Vec<u8> {
        let mut b = vec![0u8; self.buffer_len()];
        self.emit(&mut b);
        b
    }
}

impl Commit<'_> {
    /// The encoded object ([`Commit::emit`] into a `Vec`), or why a field is over its bound
    /// ([`Commit::check`]).
    pub fn to_vec(&self) -> Result<Vec<u8>, ObjectError> {
        self.check()?;
        let mut b = vec![0u8; self.buffer_len()];
        self.emit(&mut b);
        Ok(b)
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[cfg(feature = "std")]
    #[test]
    fn std_encoders_round_trip() {
        let f = file_object(0o100_640, 1, 2, b"abc");
        let o = FileObject::parse(&f).unwrap();
        assert_eq!(
            (o.header.mode, o.header.uid, o.header.gid),
            (S_IFREG | 0o640, 1, 2)
        );
        assert_eq!(o.content, b"abc");

        let l = symlink_object(3, 4, b"../x").unwrap();
        let o = FileObject::parse(&l).unwrap();
        assert!(o.header.is_symlink());
        assert_eq!((o.header.uid, o.header.gid, o.target), (3, 4, &b"../x"[..]));
        assert_eq!(
            symlink_object(0, 0, b""),
            Err(ObjectError::BadSymlinkTarget)
        );
        assert_eq!(
            symlink_object(0, 0, b"a\0"),
            Err(ObjectError::BadSymlinkTarget)
        );
        assert!(matches!(
            symlink_object(0, 0, &[b'x'; MAX_SYMLINK_TARGET + 1]),
            Err(ObjectError::TooLong { .. })
        ));

        let (a, b) = (ObjectId::of(b"a"), ObjectId::of(b"b"));
        let unsorted = [
            DirEntry::Dir {
                name: b"z",
                tree: a,
                meta: b,
            },
            DirEntry::File { name: b"m", id: a },
        ];
        let t = dirtree_object(&unsorted).unwrap();
        let parsed: std::vec::Vec<_> = DirTree::parse(&t).unwrap().entries().collect();
        assert_eq!(parsed, [unsorted[1], unsorted[0]]);
        assert_eq!(
            DirTree::parse(&dirtree_object_unchecked(&unsorted)),
            Err(ObjectError::Unsorted)
        );
        assert_eq!(dirtree_object(&[]).unwrap(), 0u32.to_le_bytes());
        let twice = [
            DirEntry::File { name: b"m", id: a },
            DirEntry::File { name: b"m", id: b },
        ];
        assert_eq!(dirtree_object(&twice), Err(ObjectError::Unsorted));
        assert_eq!(
            dirtree_object(&[DirEntry::File { name: b"..", id: a }]),
            Err(ObjectError::BadName(NameError::Dots))
        );

        let m = DirMeta {
            mode: S_IFDIR | 0o700,
            uid: 5,
            gid: 6,
            xattrs: Xattrs::EMPTY,
        };
        assert_eq!(DirMeta::parse(&m.to_vec()), Ok(m));

        let c = Commit {
            parent: Some(a),
            timestamp: 9,
            root_tree: a,
            root_meta: b,
            version: "1.2",
            subject: "s",
            body: "b",
            security_version: 0,
        };
        assert_eq!(Commit::parse(&c.to_vec().unwrap()), Ok(c));
        let long = "v".repeat(MAX_VERSION_LEN + 1);
        assert!(matches!(
            Commit {
                version: &long,
                ..c
            }
            .to_vec(),
            Err(ObjectError::TooLong {
                field: "version",
                ..
            })
        ));
    }
}
