//! Resuming an interrupted install at the last verified part (`docs/RESUME.md`).
//!
//! After each part but the last has been verified (its SHA-256 matched and its objects are in
//! the store), the installer hands the store a [`Checkpoint`] ([`crate::store::Store::checkpoint`]):
//! which file (a SHA-256 over its signed superblock's part table, and its target commit), how
//! many parts are complete, where in the file the next part starts, and how many operations
//! those parts held. Records never span parts and nothing else carries over from one part to
//! the next, so that is the whole state the installer needs.
//!
//! To resume, the caller gives the stored checkpoint to [`super::Installer::resume`] and feeds
//! the file from its first byte again: the header, superblock and signature are verified as in
//! any install (a checkpoint is never trusted for them), then the installer checks that the
//! checkpoint belongs to this very file and agrees with its part table, asks the store whether
//! the objects of the completed parts are still in place
//! ([`crate::store::Store::resume`]), and if so skips to the next part
//! ([`super::Progress::resume_offset`], [`super::Installer::skip`]). Otherwise it installs from
//! the first part, as if there were no checkpoint: a stale or damaged checkpoint costs time,
//! never correctness.

use crate::object::{ObjectId, ID_LEN};

/// Bytes of an encoded [`Checkpoint`].
pub const CHECKPOINT_LEN: usize = 96;
/// The first 8 bytes of an encoded [`Checkpoint`].
pub const CHECKPOINT_MAGIC: [u8; 8] = *b"ECURSM01";

mod field {
    use core::ops::Range;
    pub const MAGIC: Range<usize> = 0..8;
    pub const FILE: Range<usize> = 8..40;
    pub const TARGET: Range<usize> = 40..72;
    pub const OFFSET: Range<usize> = 72..80;
    pub const PARTS: Range<usize> = 80..84;
    pub const OBJECTS: Range<usize> = 84..88;
    pub const RESERVED: Range<usize> = 88..92;
    pub const CRC: Range<usize> = 92..96;
}

/// Where an install stood after its last verified part: enough to resume there. See
/// [`Installer::resume`](super::Installer::resume) for the protocol; the byte layout is in `docs/RESUME.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Checkpoint {
    /// Which file: the SHA-256 of its verified superblock's ref, source, target and part table
    /// (every part's codec, sizes, operation count and SHA-256; `docs/RESUME.md` has the exact
    /// bytes). Files with the same value have byte-identical parts for the same commit.
    pub file: [u8; 32],
    /// The commit the file installs.
    pub target: ObjectId,
    /// File offset where part `parts` starts: the first byte a resumed install needs after
    /// the signature.
    pub offset: u64,
    /// Parts completed and verified (`1 ..` parts in the file − 1).
    pub parts: u32,
    /// Operations those parts held (objects written, verified and in the store, or reused).
    pub objects: u32,
}

/// Why [`Checkpoint::from_bytes`] refused bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum CheckpointError {
    /// Not [`CHECKPOINT_LEN`] bytes.
    Length(usize),
    /// Not a checkpoint of this layout (magic).
    Magic,
    /// The CRC does not match: torn or damaged.
    Crc,
    /// Fields out of range (no part completed, a reserved field not zero).
    Invalid,
}

impl core::fmt::Display for CheckpointError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            CheckpointError::Length(n) => write!(
                f,
                "an install checkpoint is {CHECKPOINT_LEN} bytes, this one {n}; it is ignored and the install starts over"
            ),
            CheckpointError::Magic => f.write_str(
                "the install checkpoint has an unknown layout; it is ignored and the install starts over",
            ),
            CheckpointError::Crc => f.write_str(
                "the install checkpoint is damaged (CRC mismatch); it is ignored and the install starts over",
            ),
            CheckpointError::Invalid => f.write_str(
                "the install checkpoint holds values out of range; it is ignored and the install starts over",
            ),
        }
    }
}

impl core::error::Error for CheckpointError {}

impl Checkpoint {
    /// The encoding: magic, file hash, target, offset (u64 LE), parts, objects (u32 LE), 4
    /// zero bytes, CRC-32 (IEEE) of the first 92 bytes.
    pub fn to_bytes(&self) -> [u8; CHECKPOINT_LEN] {
        let mut b = [0u8; CHECKPOINT_LEN];
        b[field::MAGIC].copy_from_slice(&CHECKPOINT_MAGIC);
        b[field::FILE].copy_from_slice(&self.file);
        b[field::TARGET].copy_from_slice(&self.target.0);
        b[field::OFFSET].copy_from_slice(&self.offset.to_le_bytes());
        b[field::PARTS].copy_from_slice(&self.parts.to_le_bytes());
        b[field::OBJECTS].copy_from_slice(&self.objects.to_le_bytes());
        let crc = crate::store::flash::crc32(&b[..field::CRC.start]);
        b[field::CRC].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes and checks [`Checkpoint::to_bytes`]'s encoding (length, magic, CRC, ranges).
    /// Whether it belongs to a file is checked by the installer, against the file.
    pub fn from_bytes(b: &[u8]) -> Result<Checkpoint, CheckpointError> {
        let b: &[u8; CHECKPOINT_LEN] =
            b.try_into().map_err(|_| CheckpointError::Length(b.len()))?;
        if b[field::MAGIC] != CHECKPOINT_MAGIC {
            return Err(CheckpointError::Magic);
        }
        let crc = crate::store::flash::crc32(&b[..field::CRC.start]);
        if b[field::CRC] != crc.to_le_bytes() {
            return Err(CheckpointError::Crc);
        }
        let u32_at = |r: core::ops::Range<usize>| {
            let mut w = [0u8; 4];
            w.copy_from_slice(&b[r]);
            u32::from_le_bytes(w)
        };
        let mut off = [0u8; 8];
        off.copy_from_slice(&b[field::OFFSET]);
        let mut file = [0u8; 32];
        file.copy_from_slice(&b[field::FILE]);
        let mut target = [0u8; ID_LEN];
        target.copy_from_slice(&b[field::TARGET]);
        let cp = Checkpoint {
            file,
            target: ObjectId(target),
            offset: u64::from_le_bytes(off),
            parts: u32_at(field::PARTS),
            objects: u32_at(field::OBJECTS),
        };
        if cp.parts == 0 || u32_at(field::RESERVED) != 0 {
            return Err(CheckpointError::Invalid);
        }
        Ok(cp)
    }
}

#[cfg(test)]
mod test {
    use super::*;

    static BYTES: [u8; CHECKPOINT_LEN] = {
        let mut b = [0u8; CHECKPOINT_LEN];
        let magic = *b"ECURSM01";
        let mut i = 0;
        while i < 8 {
            b[i] = magic[i];
            i += 1;
        }
        let mut i = 8;
        while i < 40 {
            b[i] = 0x11;
            i += 1;
        }
        while i < 72 {
            b[i] = 0x22;
            i += 1;
        }
        // offset 0x1_0000_0203, parts 2, objects 7
        b[72] = 0x03;
        b[73] = 0x02;
        b[76] = 0x01;
        b[80] = 2;
        b[84] = 7;
        b
    };

    fn repr() -> Checkpoint {
        Checkpoint {
            file: [0x11; 32],
            target: ObjectId([0x22; 32]),
            offset: 0x1_0000_0203,
            parts: 2,
            objects: 7,
        }
    }

    #[test]
    fn emit_matches_the_layout_and_parses_back() {
        let b = repr().to_bytes();
        assert_eq!(b[..92], BYTES[..92]);
        assert_eq!(
            u32::from_le_bytes(b[92..].try_into().unwrap()),
            crate::store::flash::crc32(&BYTES[..92])
        );
        assert_eq!(Checkpoint::from_bytes(&b), Ok(repr()));
    }

    #[test]
    fn every_flipped_bit_and_bad_length_is_refused() {
        let b = repr().to_bytes();
        for i in 0..b.len() * 8 {
            let mut c = b;
            c[i / 8] ^= 1 << (i % 8);
            assert!(Checkpoint::from_bytes(&c).is_err(), "bit {i}");
        }
        assert_eq!(
            Checkpoint::from_bytes(&b[..95]),
            Err(CheckpointError::Length(95))
        );
        assert_eq!(
            Checkpoint::from_bytes(&[0xFF; CHECKPOINT_LEN]),
            Err(CheckpointError::Magic)
        );
        let zero = Checkpoint { parts: 0, ..repr() }.to_bytes();
        assert_eq!(Checkpoint::from_bytes(&zero), Err(CheckpointError::Invalid));
    }
}
