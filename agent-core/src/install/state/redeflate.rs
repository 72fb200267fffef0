//! Redeflate records (`docs/FORMAT.md` §6, feature `redeflate`): a file object one range of
//! which is a raw deflate stream, carried as the bytes it inflates to. The installer hands the
//! plaintext to the deflate encoder its caller lent ([`Redeflate`]) and the stream it gets back
//! to the object check as a `Write` record's bytes would be: the object is hashed as it is
//! built, so an encoder that deflates differently is caught by the object's id.

use super::{Ops, Rec, Res};
use crate::install::InstallError;
use crate::object::{ObjectId, ObjectKind};
use crate::store::Store;
use crate::wire::DeflateParams;

/// A redeflate record's progress: bytes of each of its three ranges still to come.
#[derive(Clone, Copy)]
pub(crate) struct Redeflating {
    head: u32,
    plain: u64,
    tail: u32,
    /// Object offset where the stream must end (the object's length less the tail).
    stream_end: u64,
    /// The encoder was told the plaintext ended.
    finished: bool,
    params: DeflateParams,
}

impl Redeflating {
    pub(super) fn new(
        len: u64,
        (head, plain, tail): (u32, u64, u32),
        params: DeflateParams,
    ) -> Redeflating {
        Redeflating {
            head,
            plain,
            tail,
            stream_end: len.saturating_sub(u64::from(tail)),
            finished: false,
            params,
        }
    }
}

impl Ops<'_> {
    /// Starts the lent encoder on a new stream.
    pub(super) fn start_redeflate<E>(&mut self, id: ObjectId, params: DeflateParams) -> Res<E> {
        match self.deflater.as_mut().map(|d| d.start(params)) {
            Some(Ok(())) => Ok(()),
            _ => Err(InstallError::RedeflateUnsupported { id, params }),
        }
    }

    /// Takes the next bytes of a redeflate record: the head as it is, the plaintext through
    /// the encoder, the tail as it is. Ends the object after its last byte.
    pub(super) fn redeflate_bytes<S: Store>(
        &mut self,
        store: &mut S,
        input: &mut &[u8],
    ) -> Res<S::Error> {
        let (
            Rec::Body {
                kind, id, len, pos, ..
            },
            Some(mut r),
        ) = (self.rec, self.redeflating)
        else {
            return Ok(());
        };
        let at = (kind, id, len);
        let mut pos = pos;
        if r.head > 0 || r.finished {
            // The head, or the tail once the stream is done.
            let left = if r.head > 0 { &mut r.head } else { &mut r.tail };
            let n = self.copy_bytes(store, (kind, id, len, pos), u64::from(*left), input)?;
            pos += n;
            // `n` is at most `left`, a u32.
            *left -= n as u32;
        } else {
            let n = usize::try_from(r.plain)
                .unwrap_or(usize::MAX)
                .min(input.len());
            let (chunk, rest) = input.split_at(n);
            *input = rest;
            self.part_pos += n as u64;
            r.plain -= n as u64;
            r.finished = r.plain == 0;
            pos = self.deflate(store, at, pos, &r, chunk)?;
        }
        if r.head == 0 && r.plain == 0 && !r.finished {
            // An empty plaintext: the stream ends without input.
            r.finished = true;
            pos = self.deflate(store, at, pos, &r, &[])?;
        }
        self.rec = Rec::Body {
            kind,
            id,
            len,
            pos,
            patch: None,
        };
        self.redeflating = Some(r);
        if r.finished && r.tail == 0 {
            self.redeflating = None;
            self.end_object(store)?;
        }
        Ok(())
    }

    /// Deflates `plain` (the last of it when `r.finished`) from object offset `pos`, the stream
    /// going through the object check, hash and store; returns the offset after it. Checks
    /// that the stream ends exactly where the record says.
    fn deflate<S: Store>(
        &mut self,
        store: &mut S,
        (kind, id, len): (ObjectKind, ObjectId, u64),
        mut pos: u64,
        r: &Redeflating,
        plain: &[u8],
    ) -> Result<u64, InstallError<S::Error>> {
        let params = r.params;
        let Some(deflater) = self.deflater.take() else {
            return Err(InstallError::RedeflateUnsupported { id, params });
        };
        let stream_end = r.stream_end;
        let mut failed = None;
        let ran = deflater.deflate(plain, r.finished, &mut |piece: &[u8]| {
            let end = pos.saturating_add(piece.len() as u64);
            let step = if end > stream_end {
                Err(InstallError::RedeflateLength {
                    id,
                    len,
                    end: stream_end,
                    found: end,
                })
            } else {
                self.out_bytes(store, (kind, id, len, pos), piece)
            };
            pos = end;
            match step {
                Ok(()) => true,
                Err(e) => {
                    failed = Some(e);
                    false
                }
            }
        });
        self.deflater = Some(deflater);
        if let Some(e) = failed {
            return Err(e);
        }
        if ran.is_err() {
            return Err(InstallError::RedeflateFailed { id });
        }
        if r.finished && pos != stream_end {
            return Err(InstallError::RedeflateLength {
                id,
                len,
                end: stream_end,
                found: pos,
            });
        }
        Ok(pos)
    }
}
