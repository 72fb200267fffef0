//! Operation records: the [`OpCode`] byte, the fixed record headers ([`OpRepr`]) and a patch
//! control's sign-and-magnitude integers ([`offtin`]).

use super::FormatError;
use crate::object::{ObjectId, ObjectKind, ID_LEN};

code_enum! {
    /// Operation codes. 0x06..=0x7f are reserved for later operations; 0x80..=0xff are never
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
        /// Write a new file object one range of which is a raw deflate stream, carried as the
        /// bytes it inflates to and deflated again on the device (format version 4 on).
        Redeflate = 4 => "redeflate",
        /// The target reuses the objects that chosen references of a dirtree the device holds
        /// name, one bit each (format version 5 on).
        ReuseEntries = 5 => "reuse entries",
    }
}

/// Bytes of a `Reuse` record: code, kind, id.
pub const REUSE_LEN: usize = 2 + ID_LEN;
/// Bytes of a `Write` record before the object's bytes: code, kind, id, u64 length.
pub const WRITE_HEADER_LEN: usize = 2 + ID_LEN + 8;
/// Bytes of a `Patch` record before its patch: code, kind, id, u64 length, source id.
pub const PATCH_HEADER_LEN: usize = WRITE_HEADER_LEN + ID_LEN;
/// Bytes of a `Redeflate` record before its head: code, kind, id, u64 length, u32 head
/// length, u64 plaintext length, u32 tail length, the four [`DeflateParams`] bytes.
pub const REDEFLATE_HEADER_LEN: usize = WRITE_HEADER_LEN + 4 + 8 + 4 + 4;
/// Bytes of a `ReuseEntries` record before its bitmap: code, kind (always dirtree), the
/// source dirtree's id, u64 bitmap length.
pub const REUSE_ENTRIES_HEADER_LEN: usize = WRITE_HEADER_LEN;
/// Largest operation record header.
pub const MAX_OP_HEADER_LEN: usize = PATCH_HEADER_LEN;
const _: () = assert!(REDEFLATE_HEADER_LEN <= MAX_OP_HEADER_LEN);

/// How a `Redeflate` record's plaintext is deflated again: the arguments of zlib's
/// `deflateInit2` (a raw stream: `windowBits` negated) and nothing else, so that zlib's
/// `deflate` with `Z_FINISH` rebuilds the stream (`docs/FORMAT.md` §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct DeflateParams {
    /// Compression level, 0..=9.
    pub level: u8,
    /// Base-2 logarithm of the window, 9..=15.
    pub window_bits: u8,
    /// zlib's `memLevel`, 1..=9.
    pub mem_level: u8,
    /// zlib's strategy, 0..=4 (`Z_DEFAULT_STRATEGY`, `Z_FILTERED`, `Z_HUFFMAN_ONLY`, `Z_RLE`,
    /// `Z_FIXED`), or [`DeflateParams::GZIP`]: GNU gzip's encoder instead of zlib's.
    pub strategy: u8,
}

impl DeflateParams {
    /// zlib's `-9`: level 9, a 32 KiB window, `memLevel` 8, the default strategy (what `gzip
    /// -9` also writes for most files under 64 KiB).
    pub const BEST: DeflateParams = DeflateParams {
        level: 9,
        window_bits: 15,
        mem_level: 8,
        strategy: 0,
    };

    /// The `strategy` byte that names GNU gzip's deflate (`gzip -4` to `gzip -9`, whose window
    /// and tables are fixed: `window_bits` 15 and `mem_level` 8 go with it) instead of zlib's.
    pub const GZIP: u8 = 0x80;

    /// GNU gzip's deflate at `level` (`gzip -9n` writes Debian's manuals and changelogs).
    pub const fn gzip(level: u8) -> DeflateParams {
        DeflateParams {
            level,
            window_bits: 15,
            mem_level: 8,
            strategy: DeflateParams::GZIP,
        }
    }

    /// Whether these name GNU gzip's deflate rather than zlib's.
    pub const fn is_gzip(&self) -> bool {
        self.strategy == DeflateParams::GZIP
    }

    /// The four bytes as the record holds them, checked: level, window bits, memory level,
    /// strategy (zlib's, or [`DeflateParams::GZIP`] at levels 4 to 9 with window bits 15 and
    /// memory level 8).
    pub fn parse(b: [u8; 4]) -> Result<DeflateParams, FormatError> {
        let [level, window_bits, mem_level, strategy] = b;
        let zlib = level <= 9
            && (9..=15).contains(&window_bits)
            && (1..=9).contains(&mem_level)
            && strategy <= 4;
        let gzip = (4..=9).contains(&level)
            && window_bits == 15
            && mem_level == 8
            && strategy == DeflateParams::GZIP;
        if !zlib && !gzip {
            return Err(FormatError::BadDeflateParams(b));
        }
        Ok(DeflateParams {
            level,
            window_bits,
            mem_level,
            strategy,
        })
    }

    /// The four bytes of the record.
    pub const fn bytes(&self) -> [u8; 4] {
        [self.level, self.window_bits, self.mem_level, self.strategy]
    }
}

/// The most bytes a raw deflate stream of `plain` bytes may take in a redeflate record: at
/// least zlib's `deflateBound` for any parameters (`plain + ⌈plain/8⌉ + ⌈plain/64⌉ + 5`).
pub const fn deflate_bound(plain: u64) -> u64 {
    plain
        .saturating_add(plain >> 3)
        .saturating_add(plain >> 6)
        .saturating_add(16)
}
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
    /// A file object of `len` bytes: `head` bytes that follow as they are, then the raw
    /// deflate stream of the `plain` bytes that follow them (deflated with `params`), then
    /// `tail` bytes that follow as they are.
    Redeflate {
        /// The object's kind (always a file).
        kind: ObjectKind,
        /// The id the built bytes must hash to.
        id: ObjectId,
        /// Bytes of the object: `head`, the deflate stream and `tail`.
        len: u64,
        /// Bytes before the stream, carried as they are.
        head: u32,
        /// Bytes the stream inflates to, carried after the head.
        plain: u64,
        /// Bytes after the stream, carried as they are after the plaintext.
        tail: u32,
        /// How the plaintext is deflated.
        params: DeflateParams,
    },
    /// The target reuses the objects that the references of dirtree `source` (which the
    /// device holds) name where the `len` bitmap bytes that follow have a bit set: one bit
    /// for each reference in entry order (a file entry's file, a directory entry's dirtree
    /// and then its dirmeta), the lowest bit of each byte first.
    ReuseEntries {
        /// The dirtree whose references the bitmap selects.
        source: ObjectId,
        /// Bytes of the bitmap that follows.
        len: u64,
    },
}

impl OpRepr {
    /// Bytes of the record header for an op whose first byte is `code`, or an error for an
    /// unknown code (and for `Redeflate` without the feature `redeflate`, which a device
    /// without a deflate encoder leaves off, and `ReuseEntries` without `reuse-entries`).
    pub fn header_len(code: u8) -> Result<usize, FormatError> {
        match OpCode::from_code(code) {
            OpCode::Write => Ok(WRITE_HEADER_LEN),
            OpCode::Reuse => Ok(REUSE_LEN),
            OpCode::Patch => Ok(PATCH_HEADER_LEN),
            #[cfg(feature = "redeflate")]
            OpCode::Redeflate => Ok(REDEFLATE_HEADER_LEN),
            // Without the feature the record is never parsed (no code for it in firmware).
            #[cfg(not(feature = "redeflate"))]
            OpCode::Redeflate => Err(FormatError::UnknownOp(code)),
            #[cfg(feature = "reuse-entries")]
            OpCode::ReuseEntries => Ok(REUSE_ENTRIES_HEADER_LEN),
            #[cfg(not(feature = "reuse-entries"))]
            OpCode::ReuseEntries => Err(FormatError::UnknownOp(code)),
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
            // Its kind byte is that of its source: only a dirtree has references.
            OpCode::ReuseEntries if kind != ObjectKind::DirTree => {
                return Err(FormatError::UnknownKind(b[1]))
            }
            OpCode::ReuseEntries => OpRepr::ReuseEntries { source: id, len },
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
            OpCode::Redeflate => {
                let u32_at = |at: usize| {
                    let mut v = [0u8; 4];
                    v.copy_from_slice(&b[at..at + 4]);
                    u32::from_le_bytes(v)
                };
                let mut plain = [0u8; 8];
                plain.copy_from_slice(&b[WRITE_HEADER_LEN + 4..WRITE_HEADER_LEN + 12]);
                let mut params = [0u8; 4];
                params.copy_from_slice(&b[WRITE_HEADER_LEN + 16..REDEFLATE_HEADER_LEN]);
                OpRepr::Redeflate {
                    kind,
                    id,
                    len,
                    head: u32_at(WRITE_HEADER_LEN),
                    plain: u64::from_le_bytes(plain),
                    tail: u32_at(WRITE_HEADER_LEN + 12),
                    params: DeflateParams::parse(params)?,
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
            OpRepr::Redeflate { .. } => REDEFLATE_HEADER_LEN,
            OpRepr::ReuseEntries { .. } => REUSE_ENTRIES_HEADER_LEN,
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
            OpRepr::Redeflate { kind, id, .. } => (OpCode::Redeflate, kind, id),
            OpRepr::ReuseEntries { source, .. } => {
                (OpCode::ReuseEntries, &ObjectKind::DirTree, source)
            }
        };
        out[0] = code.code();
        out[1] = kind.code();
        out[2..2 + ID_LEN].copy_from_slice(&id.0);
        if let OpRepr::Write { len, .. }
        | OpRepr::Patch { len, .. }
        | OpRepr::Redeflate { len, .. }
        | OpRepr::ReuseEntries { len, .. } = self
        {
            out[2 + ID_LEN..WRITE_HEADER_LEN].copy_from_slice(&len.to_le_bytes());
        }
        if let OpRepr::Patch { source, .. } = self {
            out[WRITE_HEADER_LEN..PATCH_HEADER_LEN].copy_from_slice(&source.0);
        }
        if let OpRepr::Redeflate {
            head,
            plain,
            tail,
            params,
            ..
        } = self
        {
            let at = WRITE_HEADER_LEN;
            out[at..at + 4].copy_from_slice(&head.to_le_bytes());
            out[at + 4..at + 12].copy_from_slice(&plain.to_le_bytes());
            out[at + 12..at + 16].copy_from_slice(&tail.to_le_bytes());
            out[at + 16..REDEFLATE_HEADER_LEN].copy_from_slice(&params.bytes());
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
    fn redeflate_record_layout_and_bad_params() {
        let op = OpRepr::Redeflate {
            kind: ObjectKind::File,
            id: ObjectId([0xaa; 32]),
            len: 0x210,
            head: 0x22,
            plain: 0x0403,
            tail: 8,
            params: DeflateParams::BEST,
        };
        let mut b = [0u8; REDEFLATE_HEADER_LEN];
        op.emit(&mut b);
        assert_eq!(REDEFLATE_HEADER_LEN, 62);
        assert_eq!(&b[..2], &[4, 1]);
        assert_eq!(&b[34..42], &[0x10, 2, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&b[42..46], &[0x22, 0, 0, 0]);
        assert_eq!(&b[46..54], &[3, 4, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&b[54..58], &[8, 0, 0, 0]);
        assert_eq!(&b[58..62], &[9, 15, 8, 0]);
        for (at, bad) in [(58, 10), (59, 8), (59, 16), (60, 0), (60, 10), (61, 5)] {
            let mut c = b;
            c[at] = bad;
            assert_eq!(
                OpRepr::parse(&c),
                Err(FormatError::BadDeflateParams(c[58..62].try_into().unwrap()))
            );
        }
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
            OpRepr::Redeflate {
                kind: ObjectKind::File,
                id: ObjectId([7; 32]),
                len: 0x0102_0304,
                head: 34,
                plain: 0x000a_0b0c_0d0e,
                tail: 8,
                params: DeflateParams::BEST,
            },
            OpRepr::ReuseEntries {
                source: ObjectId([8; 32]),
                len: 3,
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
        assert_eq!(OpRepr::header_len(6), Err(FormatError::UnknownOp(6)));
        assert_eq!(OpRepr::header_len(0), Err(FormatError::UnknownOp(0)));
        let mut buf = [0u8; REUSE_LEN];
        buf[0] = 2;
        buf[1] = 9;
        assert_eq!(OpRepr::parse(&buf), Err(FormatError::UnknownKind(9)));
        // A reuse-entries record names a dirtree, whose references it selects.
        let mut buf = [0u8; REUSE_ENTRIES_HEADER_LEN];
        buf[0] = 5;
        buf[1] = 1;
        assert_eq!(OpRepr::parse(&buf), Err(FormatError::UnknownKind(1)));
        buf[1] = 2;
        buf[34] = 7;
        assert_eq!(
            OpRepr::parse(&buf),
            Ok(OpRepr::ReuseEntries {
                source: ObjectId::ZERO,
                len: 7
            })
        );
    }
}
