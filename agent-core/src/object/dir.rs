//! Directory objects: a directory's own metadata ([`DirMeta`]) and its listing ([`DirTree`] of
//! [`DirEntry`] values), with the entry length a streaming parser buffers.

use super::*;

/// A directory's metadata: `u32 mode, u32 uid, u32 gid, u16 xattr_len, xattr block`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct DirMeta<'a> {
    /// `st_mode` (type `S_IFDIR` plus permission bits).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Extended attributes.
    pub xattrs: Xattrs<'a>,
}

impl<'a> DirMeta<'a> {
    /// Parses and validates a whole dirmeta object.
    pub fn parse(b: &'a [u8]) -> Result<DirMeta<'a>, ObjectError> {
        need(b, DIRMETA_HEADER_LEN)?;
        let mode = le_u32(b, 0);
        if mode & S_IFMT != S_IFDIR || mode & !(S_IFMT | S_IPERM) != 0 {
            return Err(ObjectError::BadMode(mode));
        }
        let xlen = usize::from(le_u16(b, 12));
        need(b, DIRMETA_HEADER_LEN + xlen)?;
        if b.len() > DIRMETA_HEADER_LEN + xlen {
            return Err(ObjectError::TrailingBytes(
                b.len() - DIRMETA_HEADER_LEN - xlen,
            ));
        }
        Ok(DirMeta {
            mode,
            uid: le_u32(b, 4),
            gid: le_u32(b, 8),
            xattrs: Xattrs::parse(&b[DIRMETA_HEADER_LEN..])?,
        })
    }

    /// Bytes [`DirMeta::emit`] writes.
    pub fn buffer_len(&self) -> usize {
        DIRMETA_HEADER_LEN + self.xattrs.as_bytes().len()
    }

    /// Writes the object into `out[..self.buffer_len()]`.
    ///
    /// # Panics
    /// If `out` is shorter than [`DirMeta::buffer_len`].
    pub fn emit(&self, out: &mut [u8]) {
        out[0..4].copy_from_slice(&self.mode.to_le_bytes());
        out[4..8].copy_from_slice(&self.uid.to_le_bytes());
        out[8..12].copy_from_slice(&self.gid.to_le_bytes());
        let x = self.xattrs.as_bytes();
        out[12..14].copy_from_slice(&(x.len() as u16).to_le_bytes());
        out[14..14 + x.len()].copy_from_slice(x);
    }
}

/// One entry of a directory listing.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum DirEntry<'a> {
    /// A file or symlink.
    File {
        /// Its name (one path component).
        name: &'a [u8],
        /// Its file object.
        id: ObjectId,
    },
    /// A subdirectory.
    Dir {
        /// Its name (one path component).
        name: &'a [u8],
        /// Its dirtree object.
        tree: ObjectId,
        /// Its dirmeta object.
        meta: ObjectId,
    },
}

impl<'a> DirEntry<'a> {
    /// The entry's name.
    pub fn name(&self) -> &'a [u8] {
        match self {
            DirEntry::File { name, .. } | DirEntry::Dir { name, .. } => name,
        }
    }

    /// The objects the entry names, with their kinds, in the order a reuse-entries record's
    /// bitmap counts a dirtree's references (`docs/FORMAT.md` §6): a file entry's file; a
    /// directory entry's dirtree, then its dirmeta.
    pub fn references(self) -> impl Iterator<Item = (ObjectKind, ObjectId)> {
        let refs = match self {
            DirEntry::File { id, .. } => [Some((ObjectKind::File, id)), None],
            DirEntry::Dir { tree, meta, .. } => [
                Some((ObjectKind::DirTree, tree)),
                Some((ObjectKind::DirMeta, meta)),
            ],
        };
        refs.into_iter().flatten()
    }

    /// Bytes this entry takes in a dirtree object.
    pub fn buffer_len(&self) -> usize {
        match self {
            DirEntry::File { name, .. } => 2 + name.len() + ID_LEN,
            DirEntry::Dir { name, .. } => 2 + name.len() + 2 * ID_LEN,
        }
    }

    /// Writes the entry into `out[..self.buffer_len()]`: `u8 type (1 file, 2 dir), u8
    /// name_len, name, id, [meta id]`.
    ///
    /// # Panics
    /// If `out` is shorter than [`DirEntry::buffer_len`] or the name is longer than 255 bytes.
    pub fn emit(&self, out: &mut [u8]) {
        let name = self.name();
        out[1] = u8::try_from(name.len()).expect("name longer than 255 bytes");
        out[2..2 + name.len()].copy_from_slice(name);
        let at = 2 + name.len();
        match self {
            DirEntry::File { id, .. } => {
                out[0] = 1;
                out[at..at + ID_LEN].copy_from_slice(&id.0);
            }
            DirEntry::Dir { tree, meta, .. } => {
                out[0] = 2;
                out[at..at + ID_LEN].copy_from_slice(&tree.0);
                out[at + ID_LEN..at + 2 * ID_LEN].copy_from_slice(&meta.0);
            }
        }
    }
}

/// Parses one dirtree entry at the start of `b`; returns it and the bytes it took.
///
/// The name is validated ([`validate_name`]); ordering is the caller's to check.
pub fn parse_dir_entry(b: &[u8]) -> Result<(DirEntry<'_>, usize), ObjectError> {
    need(b, 2)?;
    let kind = b[0];
    let nlen = usize::from(b[1]);
    let name_end = 2 + nlen;
    let len = match kind {
        1 => name_end + ID_LEN,
        2 => name_end + 2 * ID_LEN,
        t => return Err(ObjectError::BadEntryType(t)),
    };
    need(b, len)?;
    let name = &b[2..name_end];
    validate_name(name).map_err(ObjectError::BadName)?;
    let entry = if kind == 1 {
        DirEntry::File {
            name,
            id: id_at(b, name_end),
        }
    } else {
        DirEntry::Dir {
            name,
            tree: id_at(b, name_end),
            meta: id_at(b, name_end + ID_LEN),
        }
    };
    Ok((entry, len))
}

/// The bytes a dirtree entry of type `kind` with a name of `name_len` bytes takes, or `None`
/// for an unknown type. Lets a streaming parser know how much to buffer.
pub const fn dir_entry_len(kind: u8, name_len: u8) -> Option<usize> {
    match kind {
        1 => Some(2 + name_len as usize + ID_LEN),
        2 => Some(2 + name_len as usize + 2 * ID_LEN),
        _ => None,
    }
}

/// Largest encoded dirtree entry.
pub const MAX_DIR_ENTRY_LEN: usize = 2 + MAX_NAME_LEN + 2 * ID_LEN;

/// A dirtree object held in memory: `u32 count`, then `count` entries sorted by name.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct DirTree<'a> {
    count: u32,
    entries: &'a [u8],
}

/// Size of a dirtree's fixed header (the entry count).
pub const DIRTREE_HEADER_LEN: usize = 4;

impl<'a> DirTree<'a> {
    /// Parses and validates a whole dirtree object: every name a single component, names
    /// strictly ascending, no bytes left over.
    pub fn parse(b: &'a [u8]) -> Result<DirTree<'a>, ObjectError> {
        need(b, DIRTREE_HEADER_LEN)?;
        let count = le_u32(b, 0);
        let mut rest = &b[DIRTREE_HEADER_LEN..];
        let mut prev: Option<&[u8]> = None;
        for _ in 0..count {
            let (e, n) = parse_dir_entry(rest)?;
            if prev.is_some_and(|p| p >= e.name()) {
                return Err(ObjectError::Unsorted);
            }
            prev = Some(e.name());
            rest = &rest[n..];
        }
        if !rest.is_empty() {
            return Err(ObjectError::TrailingBytes(rest.len()));
        }
        Ok(DirTree {
            count,
            entries: &b[DIRTREE_HEADER_LEN..],
        })
    }

    /// Number of entries.
    pub fn len(&self) -> u32 {
        self.count
    }

    /// True for an empty directory.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The objects its entries name, in entry order ([`DirEntry::references`]): the references
    /// a reuse-entries record's bitmap counts.
    pub fn references(&self) -> impl Iterator<Item = (ObjectKind, ObjectId)> + 'a {
        self.entries().flat_map(DirEntry::references)
    }

    /// The entries, sorted by name.
    pub fn entries(&self) -> impl Iterator<Item = DirEntry<'a>> {
        let mut rest = self.entries;
        core::iter::from_fn(move || {
            let (e, n) = parse_dir_entry(rest).ok()?;
            rest = &rest[n..];
            Some(e)
        })
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn dirtree_round_trip_and_validation() {
        let a = DirEntry::File {
            name: b"a",
            id: ObjectId([1; 32]),
        };
        let b = DirEntry::Dir {
            name: b"b",
            tree: ObjectId([2; 32]),
            meta: ObjectId([3; 32]),
        };
        let mut buf = [0u8; 4 + 35 + 67];
        buf[..4].copy_from_slice(&2u32.to_le_bytes());
        a.emit(&mut buf[4..]);
        b.emit(&mut buf[4 + a.buffer_len()..]);
        let t = DirTree::parse(&buf).unwrap();
        assert_eq!(t.len(), 2);
        let v: heapless::Vec<DirEntry, 2> = t.entries().collect();
        assert_eq!(&v[..], &[a, b]);
        // The references a reuse-entries bitmap counts: a's file, b's dirtree, b's dirmeta.
        let r: heapless::Vec<(ObjectKind, ObjectId), 3> = t.references().collect();
        assert_eq!(
            &r[..],
            &[
                (ObjectKind::File, ObjectId([1; 32])),
                (ObjectKind::DirTree, ObjectId([2; 32])),
                (ObjectKind::DirMeta, ObjectId([3; 32])),
            ]
        );

        // Swap order: unsorted.
        let mut swapped = [0u8; 4 + 35 + 67];
        swapped[..4].copy_from_slice(&2u32.to_le_bytes());
        b.emit(&mut swapped[4..]);
        a.emit(&mut swapped[4 + b.buffer_len()..]);
        assert_eq!(DirTree::parse(&swapped), Err(ObjectError::Unsorted));

        for bad in [&b".."[..], b"a/b", b"a\0"] {
            let e = DirEntry::File {
                name: bad,
                id: ObjectId::ZERO,
            };
            let mut one = [0u8; 4 + 2 + 3 + 32];
            one[..4].copy_from_slice(&1u32.to_le_bytes());
            e.emit(&mut one[4..]);
            let n = 4 + e.buffer_len();
            assert!(
                matches!(DirTree::parse(&one[..n]), Err(ObjectError::BadName(_))),
                "{bad:?}"
            );
        }
        assert!(matches!(
            DirTree::parse(&buf[..50]),
            Err(ObjectError::Truncated { .. })
        ));
    }

    #[test]
    fn dirmeta_round_trip() {
        let m = DirMeta {
            mode: S_IFDIR | 0o755,
            uid: 1,
            gid: 2,
            xattrs: Xattrs::EMPTY,
        };
        let mut buf = [0u8; DIRMETA_HEADER_LEN];
        m.emit(&mut buf);
        assert_eq!(DirMeta::parse(&buf), Ok(m));
        buf[1] = 0x81;
        assert!(matches!(DirMeta::parse(&buf), Err(ObjectError::BadMode(_))));
    }
}
