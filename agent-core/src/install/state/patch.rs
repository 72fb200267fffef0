//! Patch records (`docs/FORMAT.md` §6): an object built from a source object the store
//! already has and bsdiff-style controls, reading the source through the store in
//! [`PATCH_WINDOW`]-byte windows and handing the bytes built to the object check as a `Write`
//! record's would be.

use sha2::Digest;

use super::{fill, to_usize, Ops, Rec, Res};
use crate::install::{InstallError, PATCH_WINDOW};
use crate::object::{ObjectId, ObjectKind};
use crate::store::Store;
use crate::wire::{offtin, PATCH_CONTROL_LEN};

/// A `Patch` record's progress (`docs/FORMAT.md` §6).
#[derive(Clone, Copy)]
pub(super) struct Patch {
    pub(super) source: ObjectId,
    /// Bytes of the source (read whole and hashed when the record began).
    pub(super) source_len: u64,
    /// Where the next added bytes come from in the source.
    pub(super) old: i64,
    /// The current control's copy length and seek.
    pub(super) copy: u64,
    pub(super) seek: i64,
    pub(super) step: Step,
}

/// Where a patch is inside its current control.
#[derive(Clone, Copy)]
pub(super) enum Step {
    /// Gathering the 24-byte control (`Ops::op_have` bytes held).
    Control,
    /// `left` bytes to add to the source's bytes.
    Add { left: u64 },
    /// `left` bytes to copy as they are.
    Copy { left: u64 },
}

impl Ops<'_> {
    /// Reads the whole source of a patch through the store, in [`PATCH_WINDOW`]-byte
    /// windows, and checks its SHA-256: returns its length.
    #[inline(never)]
    pub(super) fn source_len<S: Store>(
        &mut self,
        store: &mut S,
        kind: ObjectKind,
        id: ObjectId,
        source: ObjectId,
    ) -> Result<u64, InstallError<S::Error>> {
        let mut win = [0u8; PATCH_WINDOW];
        Digest::reset(&mut self.hash);
        let mut at = 0u64;
        loop {
            let n = match store
                .read_object(kind, &source, at, &mut win)
                .map_err(InstallError::Store)?
            {
                Some(n) => n.min(PATCH_WINDOW),
                None => return Err(InstallError::PatchSourceMissing { kind, id, source }),
            };
            self.hash.update(&win[..n]);
            at += n as u64;
            if n < PATCH_WINDOW {
                break;
            }
        }
        let found = ObjectId(self.hash.finalize_reset().into());
        if found != source {
            return Err(InstallError::PatchSourceDamaged {
                kind,
                source,
                found,
            });
        }
        Ok(at)
    }

    /// Takes the next bytes of a `Patch` record: controls, bytes to add to the source's,
    /// bytes to copy. Builds the object's bytes through [`Ops::out_bytes`] as a `Write`
    /// record's arrive, reading the source in [`PATCH_WINDOW`]-byte windows.
    pub(super) fn patch_bytes<S: Store>(
        &mut self,
        store: &mut S,
        input: &mut &[u8],
    ) -> Res<S::Error> {
        let Rec::Body {
            kind,
            id,
            len,
            mut pos,
            patch: Some(mut p),
        } = self.rec
        else {
            return Ok(());
        };
        match p.step {
            Step::Control => {
                let before = input.len();
                let full = fill(
                    &mut self.op_buf[..PATCH_CONTROL_LEN],
                    &mut self.op_have,
                    input,
                );
                self.part_pos += (before - input.len()) as u64;
                if !full {
                    return Ok(());
                }
                self.op_have = 0;
                let word = |i: usize| {
                    let mut w = [0u8; 8];
                    w.copy_from_slice(&self.op_buf[i..i + 8]);
                    w
                };
                // Add and copy lengths are never negative: a sign bit makes them too long.
                let add = u64::from_le_bytes(word(0));
                let copy = u64::from_le_bytes(word(8));
                let left = len - pos;
                if add > left || copy > left - add {
                    return Err(InstallError::PatchOverrun {
                        kind,
                        id,
                        len,
                        at: pos,
                    });
                }
                let in_source = u64::try_from(p.old)
                    .is_ok_and(|o| o.checked_add(add).is_some_and(|e| e <= p.source_len));
                if !in_source {
                    return Err(InstallError::PatchRange {
                        kind,
                        id,
                        offset: p.old,
                        len: add,
                        source_len: p.source_len,
                    });
                }
                p.copy = copy;
                p.seek = offtin(word(16));
                p.step = Step::Add { left: add };
            }
            Step::Add { left } => {
                let n = to_usize(left).min(input.len()).min(PATCH_WINDOW);
                let (diff, rest) = input.split_at(n);
                *input = rest;
                let mut win = [0u8; PATCH_WINDOW];
                let win = &mut win[..n];
                // `old` is within the source (checked at the control).
                let at = p.old as u64;
                match store
                    .read_object(kind, &p.source, at, win)
                    .map_err(InstallError::Store)?
                {
                    Some(k) if k == n => {}
                    Some(_) => {
                        return Err(InstallError::PatchRange {
                            kind,
                            id,
                            offset: p.old,
                            len: n as u64,
                            source_len: p.source_len,
                        })
                    }
                    None => {
                        let source = p.source;
                        return Err(InstallError::PatchSourceMissing { kind, id, source });
                    }
                }
                for (w, d) in win.iter_mut().zip(diff) {
                    *w = w.wrapping_add(*d);
                }
                self.part_pos += n as u64;
                self.out_bytes(store, (kind, id, len, pos), win)?;
                pos += n as u64;
                p.old += n as i64;
                p.step = Step::Add {
                    left: left - n as u64,
                };
            }
            Step::Copy { left } => {
                let n = self.copy_bytes(store, (kind, id, len, pos), left, input)?;
                pos += n;
                p.step = Step::Copy { left: left - n };
            }
        }
        loop {
            match p.step {
                Step::Add { left: 0 } => p.step = Step::Copy { left: p.copy },
                Step::Copy { left: 0 } => {
                    let Some(old) = p.old.checked_add(p.seek) else {
                        return Err(InstallError::PatchRange {
                            kind,
                            id,
                            offset: p.old,
                            len: 0,
                            source_len: p.source_len,
                        });
                    };
                    p.old = old;
                    p.step = Step::Control;
                }
                _ => break,
            }
        }
        self.rec = Rec::Body {
            kind,
            id,
            len,
            pos,
            patch: Some(p),
        };
        if matches!(p.step, Step::Control) && pos == len {
            self.end_object(store)?;
        }
        Ok(())
    }
}
