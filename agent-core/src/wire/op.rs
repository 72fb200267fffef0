//! Operation records: the [`OpCode`] byte, the fixed record headers ([`OpRepr`]) and a patch
//! control's sign-and-magnitude integers ([`offtin`]).

use super::FormatError;
use crate::object::{ObjectId, ObjectKind, ID_LEN};

code_enum! {
    /// Operation codes. 0x04..=0x7f are reserved for later operations; 0x80..=0xff are never
    /// assigned.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    #[cfg_attr(feature = "defmt", derive(defmt::Format))]
    pub enum OpCode ("operation code") {
        /// Write a new object from literal bytes.
        Write = 1 => "write",
        /// The target reuses an object the device already has (for a dirtree: the whole tree
        /// under it).
        Reuse = 2 => "reuse",
        /// Build a new object from a source object the device has and a bsdiff-style patch
        /// (format version 3 on).
        Patch = 3 => "patch",
    }
}

/// Bytes of a `Reuse` record: code, kind, id.
pub const REUSE_LEN: usize = 2 + ID_LEN;
/// Bytes of a `Write` record before the object's bytes: code, kind, id, u64 length.
pub const WRITE_HEADER_LEN: usize = 2 + ID_LEN + 8;
/// Bytes of a `Patch` record before its patch: code, kind, id, u64 length, source id.
pub const PATCH_HEADER_LEN: usize = WRITE_HEADER_LEN + ID_LEN;
/// Largest operation record header.
pub const MAX_OP_HEADER_LEN: usize = PATCH_HEADER_LEN;
/// Bytes of a patch control (`docs/FORMAT.md` §6): add length, copy length, seek, each 8
/// bytes in bsdiff's sign-and-magnitude encoding ([`offtin`]).
pub const PATCH_CONTROL_LEN: usize = 24;

/// Decodes an 8-byte bsdiff integer: little-endian magnitude in the low 63 bits, the sign in
/// the top bit. The magnitude 2^63 does not fit: it saturates to `i64::MIN + 1`'s magnitude
/// (`i64::MIN` is never produced).
pub fn offtin(b: [u8; 8]) -> i64 {
    let v = u64::from_le_bytes(b);
    let mag = (v & (u64::MAX >> 1)) as i64;
    if v >> 63 == 1 {
        -mag
    } else {
        mag
    }
}

/// A decoded operation record header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum OpRepr {
    /// `len` bytes of the object follow.
    Write {
        /// The object's kind.
        kind: ObjectKind,
        /// The id its bytes must hash to.
        id: ObjectId,
        /// Bytes of the object that follow.
        len: u64,
    },
    /// The object (and for a dirtree, everything under it) comes from the source commit.
    Reuse {
        /// The object's kind.
        kind: ObjectKind,
        /// Its id.
        id: ObjectId,
    },
    /// The object's `len` bytes are built from object `source` (same kind, which the device
    /// holds) by the patch controls that follow, until `len` bytes are produced.
    Patch {
        /// The object's kind (and its source's).
        kind: ObjectKind,
        /// The id the built bytes must hash to.
        id: ObjectId,
        /// Bytes the patch builds.
        len: u64,
        /// The object the patch reads from.
        source: ObjectId,
    },
}

impl OpRepr {
    /// Bytes of the record header for an op whose first byte is `code`, or an error for an
    /// unknown code.
    pub fn header_len(code: u8) -> Result<usize, FormatError> {
        match OpCode::from_code(code) {
            OpCode::Write => Ok(WRITE_HEADER_LEN),
            OpCode::Reuse => Ok(REUSE_LEN),
            OpCode::Patch => Ok(PATCH_HEADER_LEN),
            OpCode::Unknown(c) => Err(FormatError::UnknownOp(c)),
        }
    }

    /// Parses a record header; `b` must hold exactly [`OpRepr::header_len`] bytes.
    pub fn parse(b: &[u8]) -> Result<OpRepr, FormatError> {
        let Some(&code) = b.first() else {
            return Err(FormatError::Truncated { needed: 1, have: 0 });
        };
        let need = OpRepr::header_len(code)?;
        if b.len() < need {
            return Err(FormatError::Truncated {
                needed: need,
                have: b.len(),
            });
        }
        let kind = ObjectKind::from_code(b[1]);
        if let ObjectKind::Unknown(k) = kind {
            return Err(FormatError::UnknownKind(k));
        }
        let mut id = [0u8; ID_LEN];
        id.copy_from_slice(&b[2..2 + ID_LEN]);
        let id = ObjectId(id);
        let mut l = [0u8; 8];
        if let Some(f) = b.get(2 + ID_LEN..WRITE_HEADER_LEN) {
            l.copy_from_slice(f);
        }
        let len = u64::from_le_bytes(l);
        Ok(match OpCode::from_code(code) {
            OpCode::Write => OpRepr::Write { kind, id, len },
            OpCode::Patch => {
                let mut source = [0u8; ID_LEN];
                source.copy_from_slice(&b[WRITE_HEADER_LEN..PATCH_HEADER_LEN]);
                OpRepr::Patch {
                    kind,
                    id,
                    len,
                    source: ObjectId(source),
                }
            }
            _ => OpRepr::Reuse { kind, id },
        })
    }

    /// Bytes [`OpRepr::emit`] writes.
    pub const fn buffer_len(&self) -> usize {
        match self {
            OpRepr::Write { .. } => WRITE_HEADER_LEN,
            OpRepr::Reuse { .. } => REUSE_LEN,
            OpRepr::Patch { .. } => PATCH_HEADER_LEN,
        }
    }

    /// Writes the record header into `out[..self.buffer_len()]`.
    ///
    /// # Panics
    /// If `out` is shorter than [`OpRepr::buffer_len`].
    pub fn emit(&self, out: &mut [u8]) {
        let (code, kind, id) = match self {
            OpRepr::Write { kind, id, .. } => (OpCode::Write, kind, id),
            OpRepr::Reuse { kind, id } => (OpCode::Reuse, kind, id),
            OpRepr::Patch { kind, id, .. } => (OpCode::Patch, kind, id),
        };
        out[0] = code.code();
        out[1] = kind.code();
        out[2..2 + ID_LEN].copy_from_slice(&id.0);
        if let OpRepr::Write { len, .. } | OpRepr::Patch { len, .. } = self {
            out[2 + ID_LEN..WRITE_HEADER_LEN].copy_from_slice(&len.to_le_bytes());
        }
        if let OpRepr::Patch { source, .. } = self {
            out[WRITE_HEADER_LEN..PATCH_HEADER_LEN].copy_from_slice(&source.0);
        }
    }
}

#[cfg(test)]
mod test {
    extern crate std;

    use super::*;

    static PATCH_RECORD: [u8; PATCH_HEADER_LEN] = {
        let mut b = [0u8; PATCH_HEADER_LEN];
        b[0] = 3; // Patch
        b[1] = 1; // file
        let mut i = 0;
        while i < 32 {
            b[2 + i] = 0xaa; // id
            b[42 + i] = 0xbb; // source
            i += 1;
        }
        b[34] = 0x10; // length 0x10 + 0x02 << 8
        b[35] = 0x02;
        b
    };

    #[test]
    fn patch_record_deconstruct_and_construct() {
        let repr = OpRepr::parse(&PATCH_RECORD).unwrap();
        assert_eq!(
            repr,
            OpRepr::Patch {
                kind: ObjectKind::File,
                id: ObjectId([0xaa; 32]),
                len: 0x210,
                source: ObjectId([0xbb; 32]),
            }
        );
        let mut out = [0u8; PATCH_HEADER_LEN];
        repr.emit(&mut out);
        assert_eq!(out, PATCH_RECORD);
        assert_eq!(MAX_OP_HEADER_LEN, 74);
    }

    #[test]
    fn offtin_is_sign_and_magnitude() {
        assert_eq!(offtin(5u64.to_le_bytes()), 5);
        assert_eq!(offtin((5u64 | 1 << 63).to_le_bytes()), -5);
        assert_eq!(offtin((1u64 << 63).to_le_bytes()), 0);
        assert_eq!(offtin(u64::MAX.to_le_bytes()), -i64::MAX);
    }

    #[test]
    fn op_round_trip_and_unknown() {
        for op in [
            OpRepr::Write {
                kind: ObjectKind::File,
                id: ObjectId([3; 32]),
                len: 99,
            },
            OpRepr::Reuse {
                kind: ObjectKind::DirTree,
                id: ObjectId([4; 32]),
            },
            OpRepr::Patch {
                kind: ObjectKind::File,
                id: ObjectId([5; 32]),
                len: 0x0102_0304,
                source: ObjectId([6; 32]),
            },
        ] {
            let mut buf = [0u8; MAX_OP_HEADER_LEN];
            op.emit(&mut buf);
            assert_eq!(OpRepr::header_len(buf[0]), Ok(op.buffer_len()));
            assert_eq!(OpRepr::parse(&buf[..op.buffer_len()]), Ok(op));
            assert!(matches!(
                OpRepr::parse(&buf[..op.buffer_len() - 1]),
                Err(FormatError::Truncated { .. })
            ));
        }
        assert_eq!(OpRepr::header_len(4), Err(FormatError::UnknownOp(4)));
        assert_eq!(OpRepr::header_len(0), Err(FormatError::UnknownOp(0)));
        let mut buf = [0u8; REUSE_LEN];
        buf[0] = 2;
        buf[1] = 9;
        assert_eq!(OpRepr::parse(&buf), Err(FormatError::UnknownKind(9)));
    }
}
