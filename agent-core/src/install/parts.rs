//! The installer's part stream: once the superblock is verified, each part is opened, its raw
//! bytes hashed and decoded (stored as they are, or inflated through the lent window) into
//! the operation records, and closed when its SHA-256 and sizes check out.

use miniz_oxide::inflate::core::decompress;
use miniz_oxide::inflate::core::inflate_flags::TINFL_FLAG_HAS_MORE_INPUT;
use miniz_oxide::inflate::TINFLStatus;
use sha2::Digest;

#[cfg(feature = "xz")]
use super::XzDecode;
use super::{Checkpoint, InstallError, Installer, PartHashing, Phase, Res};
use crate::store::Store;
use crate::wire::{Codec, PartEntry};

impl Installer<'_> {
    /// The superblock is verified: a delta's source must be in the store; then the first part.
    #[inline(never)]
    pub(super) fn start_parts<S: Store>(&mut self, store: &mut S) -> Res<S::Error> {
        if let Some(from) = self.info.from {
            if !store.has_commit(&from).map_err(InstallError::Store)? {
                return Err(InstallError::MissingSource(from));
            }
        }
        let mut records = 0u64;
        for i in 0..self.parts.len() {
            records += self
                .parts
                .get(i)
                .map_or(0, |p| u64::from(p.uncompressed_size));
        }
        let declared = crate::store::Declared {
            records,
            ops: self.ops.objects_declared,
            inflated: self.ops.format_version >= crate::wire::REDEFLATE_FORMAT_VERSION,
        };
        store.declared(&declared).map_err(InstallError::Store)?;
        self.phase = Phase::Parts;
        self.part = 0;
        if cfg!(feature = "resume") && core::mem::take(&mut self.pending) {
            // Only a checkpoint of this very file, at one of its part boundaries, whose
            // objects the store still holds.
            let cp = Checkpoint::from_bytes(self.ops.stash()).ok();
            if let Some(cp) = cp.filter(|cp| self.checkpoint_at(cp.parts as usize) == Some(*cp)) {
                if store.resume(&cp).map_err(InstallError::Store)? {
                    info!("resuming at part {} (byte {})", cp.parts, cp.offset);
                    self.part = cp.parts as usize;
                    self.ops.resume(cp.objects);
                    // `checkpoint_at` accepted it: fewer parts than `MAX_PARTS`.
                    self.resumed_parts = cp.parts as u8;
                    self.part_left = cp.offset;
                    self.phase = Phase::Skip;
                    return self.end_skip(store);
                }
            }
            info!("checkpoint does not apply to this file: installing from the first part");
        }
        self.open_parts(store)
    }

    /// Opens the part at `self.part`, closing at once any that are empty; after the last part,
    /// runs the final checks.
    pub(super) fn open_parts<S: Store>(&mut self, store: &mut S) -> Res<S::Error> {
        loop {
            let Some(p) = self.parts.get(self.part) else {
                self.ops.end_file()?;
                self.phase = Phase::Done;
                return Ok(());
            };
            self.part_left = u64::from(p.size);
            Digest::reset(&mut self.part_hash);
            self.part_check = PartHashing::Open;
            self.inflater.init();
            self.out_pos = 0;
            let last = self.part + 1 == self.parts.len();
            self.ops
                .start_part(self.part as u32, p.uncompressed_size, p.ops, last);
            #[cfg(feature = "xz")]
            if p.codec == Codec::Xz {
                if let Some(x) = self.xz.as_mut() {
                    x.reset();
                }
                self.staged = 0;
                let header = super::xz::block_header(p.filter, self.dictionary);
                // The stream cannot end inside the headers (they are ours).
                let _ = self.xz_run(store, &super::xz::STREAM_HEADER)?;
                let _ = self.xz_run(store, &header)?;
            }
            if p.size > 0 {
                return Ok(());
            }
            match p.codec {
                Codec::Deflate => self.inflate(store, &[], true)?,
                #[cfg(feature = "xz")]
                Codec::Xz => self.xz_end(store, &p)?,
                _ => {}
            }
            self.close_part(store, p)?;
            self.take_checkpoint(store)?;
        }
    }

    /// Takes the next raw bytes of the current part (at most what is left of it).
    pub(super) fn part_bytes<S: Store>(&mut self, store: &mut S, chunk: &[u8]) -> Res<S::Error> {
        let Some(p) = self.parts.get(self.part) else {
            return Ok(());
        };
        self.part_hash.update(chunk);
        self.part_left = self.part_left.saturating_sub(chunk.len() as u64);
        let last = self.part_left == 0;
        match p.codec {
            Codec::Deflate => self.inflate(store, chunk, last)?,
            #[cfg(feature = "xz")]
            Codec::Xz => {
                self.xz_bytes(store, chunk, last)?;
                if last {
                    self.xz_end(store, &p)?;
                }
            }
            _ => self.ops.decoded(store, chunk)?,
        }
        if last {
            self.close_part(store, p)?;
            self.take_checkpoint(store)?;
            self.open_parts(store)?;
        }
        Ok(())
    }

    /// Runs the inflater over `chunk`; `last` when it ends the part.
    pub(super) fn inflate<S: Store>(
        &mut self,
        store: &mut S,
        chunk: &[u8],
        last: bool,
    ) -> Res<S::Error> {
        let part = self.part as u32;
        let flags = if last { 0 } else { TINFL_FLAG_HAS_MORE_INPUT };
        let ring = self.ring_len();
        let mut data = chunk;
        loop {
            let (status, used, written) =
                decompress(&mut self.inflater, data, self.window, self.out_pos, flags);
            data = data.get(used..).unwrap_or(&[]);
            let end = self.out_pos.saturating_add(written).min(ring);
            self.ops
                .decoded(store, self.window.get(self.out_pos..end).unwrap_or(&[]))?;
            self.out_pos = end & ring.wrapping_sub(1);
            match status {
                TINFLStatus::Done => {
                    return if data.is_empty() && last {
                        Ok(())
                    } else {
                        Err(InstallError::PartTrailing { part })
                    };
                }
                TINFLStatus::NeedsMoreInput if !last && data.is_empty() => return Ok(()),
                TINFLStatus::HasMoreOutput | TINFLStatus::NeedsMoreInput
                    if used > 0 || written > 0 => {}
                _ => return Err(InstallError::Inflate { part }),
            }
        }
    }

    /// All raw bytes of part `p` are in and decoded: check its hash and its declared sizes,
    /// then tell the store ([`Store::part_verified`]).
    pub(super) fn close_part<S: Store>(&mut self, store: &mut S, p: PartEntry) -> Res<S::Error> {
        let found: [u8; 32] = self.part_hash.finalize_reset().into();
        if found != p.sha256 {
            self.part_check = PartHashing::Mismatch;
            return Err(InstallError::PartHash {
                part: self.part as u32,
            });
        }
        self.part_check = PartHashing::Idle;
        self.ops.end_part()?;
        store.part_verified().map_err(InstallError::Store)?;
        debug!("part {} verified", self.part);
        self.part += 1;
        Ok(())
    }
}
