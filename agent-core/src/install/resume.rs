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

use sha2::{Digest, Sha256};

#[cfg(doc)]
use super::Progress;
use super::{InstallError, Installer, Phase, Res};
use crate::object::{ObjectId, ID_LEN};
use crate::store::Store;
#[cfg(feature = "xz")]
use crate::wire::Codec;
use crate::wire::HEADER_LEN;

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

impl Installer<'_> {
    /// Resume an interrupted install from `checkpoint` (what the store recorded through
    /// [`Store::checkpoint`]). Call it after [`Installer::new`] or [`Installer::reset`], before
    /// the first [`Installer::feed`], then feed the file from its first byte: the header,
    /// superblock and signature are verified again. If the checkpoint was taken for this very
    /// file (same signed `header || superblock`, same target), agrees with its part table, and
    /// [`Store::resume`] confirms the objects of the completed parts are in place, the
    /// installer skips to the next part ([`Progress::resume_offset`]); otherwise it installs
    /// from the first part. Returns false (and does nothing) once feeding has begun, and
    /// always without the feature `resume` (on with `std`).
    pub fn resume(&mut self, checkpoint: Checkpoint) -> bool {
        if !cfg!(feature = "resume") || self.phase != Phase::Header || self.consumed != 0 {
            return false;
        }
        self.ops.stash().copy_from_slice(&checkpoint.to_bytes());
        self.pending = true;
        true
    }

    /// While resuming ([`Progress::resume_offset`] is ahead of [`Progress::bytes`]): skips the
    /// bytes up to the resume offset without reading them, for a caller that can seek its
    /// input. Returns the file offset of the next byte to feed (unchanged when there is
    /// nothing to skip).
    pub fn skip(&mut self) -> u64 {
        if self.phase == Phase::Skip {
            self.consumed = self.consumed.max(self.part_left);
        }
        self.consumed
    }

    /// The checkpoint of the last verified part boundary of the install in progress: `None`
    /// before the first part is verified, after the last one, and after a failure. The same
    /// value the store was given through [`Store::checkpoint`].
    pub fn checkpoint(&self) -> Option<Checkpoint> {
        if !matches!(self.phase, Phase::Parts | Phase::Skip) {
            return None;
        }
        self.checkpoint_at(self.part)
    }

    /// The checkpoint after the first `parts` parts (1 ..= the number of parts − 1).
    pub(super) fn checkpoint_at(&self, parts: usize) -> Option<Checkpoint> {
        let (offset, objects) = self.boundary(parts)?;
        Some(Checkpoint {
            file: self.file_id(),
            target: self.ops.to,
            offset,
            parts: parts as u32,
            objects,
        })
    }

    /// The file offset where part `parts` starts and the operations before it, for
    /// `1 ..= the number of parts − 1`.
    pub(super) fn boundary(&self, parts: usize) -> Option<(u64, u32)> {
        if !self.known || parts == 0 || parts >= self.parts.len() {
            return None;
        }
        let sig_len = self.signature_kind.len().unwrap_or(0) as u64;
        let mut offset = (HEADER_LEN + self.superblock_len) as u64 + 1 + sig_len;
        let mut objects = 0u32;
        for i in 0..parts {
            let p = self.parts.get(i)?;
            offset += u64::from(p.size);
            objects = objects.saturating_add(p.ops);
        }
        Some((offset, objects))
    }

    /// What a checkpoint is bound to (`docs/RESUME.md`): the SHA-256 of the verified
    /// superblock's ref, source, target and part table (every part's sizes, operation count and
    /// SHA-256). Two files with the same value have byte-identical parts for the same commit.
    /// Computed when needed, so that it costs no installer RAM.
    #[inline(never)]
    pub(super) fn file_id(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(CHECKPOINT_MAGIC);
        h.update([self.info.ref_name.len() as u8]);
        h.update(self.info.ref_name.as_bytes());
        match self.info.from {
            Some(f) => {
                h.update([1]);
                h.update(f.0);
            }
            None => h.update([0]),
        }
        h.update(self.ops.to.0);
        h.update([self.parts.len() as u8]);
        for i in 0..self.parts.len() {
            if let Some(p) = self.parts.get(i) {
                // One update a part (smaller code than one a field): codec, [filter,] sizes,
                // op count, SHA-256.
                let mut b = [0u8; 46];
                b[0] = p.codec.into();
                #[allow(unused_mut)]
                let mut at = 1;
                #[cfg(feature = "xz")]
                if p.codec == Codec::Xz {
                    // What the part decodes with (format version 3); other codecs have none.
                    b[1] = p.filter.into();
                    at = 2;
                }
                b[at..at + 4].copy_from_slice(&p.size.to_le_bytes());
                b[at + 4..at + 8].copy_from_slice(&p.uncompressed_size.to_le_bytes());
                b[at + 8..at + 12].copy_from_slice(&p.ops.to_le_bytes());
                b[at + 12..at + 44].copy_from_slice(&p.sha256);
                h.update(&b[..at + 44]);
            }
        }
        h.finalize().into()
    }

    /// Where a resumed install resumed.
    pub(super) fn resume_offset(&self) -> Option<u64> {
        self.boundary(usize::from(self.resumed_parts))
            .map(|(offset, _)| offset)
    }

    /// Resuming: once every byte before the resume offset is consumed, opens the next part.
    pub(super) fn end_skip<S: Store>(&mut self, store: &mut S) -> Res<S::Error> {
        if self.phase == Phase::Skip && self.consumed >= self.part_left {
            self.phase = Phase::Parts;
            return self.open_parts(store);
        }
        Ok(())
    }

    /// Part `self.part - 1` was just verified (and [`Store::part_verified`] told): the store
    /// may record the checkpoint (with the feature `resume`).
    pub(super) fn take_checkpoint<S: Store>(&mut self, store: &mut S) -> Res<S::Error> {
        if !cfg!(feature = "resume") {
            return Ok(());
        }
        match self.checkpoint_at(self.part) {
            Some(cp) => store.checkpoint(&cp).map_err(InstallError::Store),
            None => Ok(()),
        }
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
