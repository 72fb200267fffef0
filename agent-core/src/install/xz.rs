//! The xz container the installer wraps around an xz part (feature `xz`).
//!
//! An xz part holds a raw LZMA2 stream (`docs/FORMAT.md` section 5); its filter and dictionary
//! come from the signed superblock. The decoder (`xz4rust`, a port of XZ Embedded) reads `.xz`
//! streams, so the installer hands it a stream header and a block header made from the part
//! table before the part's bytes, and block padding, an index and a stream footer after them.
//! Nothing of the container is read from the file: what the part is decoded with is exactly
//! what the superblock declares, and the file carries no container overhead.

use super::state::Ops;
use super::{InstallError, Installer, Res};
use crate::store::Store;
use crate::wire::{lzma2_dictionary_byte, Filter, PartEntry};

/// CRC-32 (IEEE 802.3, reflected, as xz uses it) of `bytes`: bitwise, for the few bytes of a
/// header (no table in flash).
const fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    let mut i = 0;
    while i < bytes.len() {
        crc ^= bytes[i] as u32;
        let mut k = 0;
        while k < 8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
            k += 1;
        }
        i += 1;
    }
    !crc
}

/// The stream flags: check type None (the part's SHA-256 and every object's are the checks).
const FLAGS: [u8; 2] = [0, 0];

/// The stream header: magic, flags, CRC-32 of the flags.
pub(crate) const STREAM_HEADER: [u8; 12] = {
    let c = crc32(&FLAGS).to_le_bytes();
    [
        0xfd, b'7', b'z', b'X', b'Z', 0, FLAGS[0], FLAGS[1], c[0], c[1], c[2], c[3],
    ]
};

/// Bytes of [`block_header`].
pub(crate) const BLOCK_HEADER_LEN: u32 = 12;

/// The block header of a part coded with `filter` (a known filter, or none) and an LZMA2
/// dictionary of `dictionary` bytes (a valid size): header size, flags (filter count, no
/// sizes), the BCJ filter without a start offset, LZMA2 with its dictionary byte, padding,
/// CRC-32.
pub(crate) fn block_header(filter: Filter, dictionary: u32) -> [u8; BLOCK_HEADER_LEN as usize] {
    let mut h = [0u8; BLOCK_HEADER_LEN as usize];
    h[0] = (BLOCK_HEADER_LEN / 4 - 1) as u8;
    let mut at = 2;
    if let Some(id) = filter.xz_id() {
        h[1] = 1;
        h[2] = id;
        h[3] = 0;
        at = 4;
    }
    h[at] = 0x21;
    h[at + 1] = 1;
    h[at + 2] = lzma2_dictionary_byte(dictionary);
    let c = crc32(&h[..8]).to_le_bytes();
    h[8..].copy_from_slice(&c);
    h
}

/// Appends `v` as an xz variable-length integer; returns the new length.
fn vli(out: &mut [u8], mut at: usize, mut v: u64) -> usize {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if let Some(b) = out.get_mut(at) {
            *b = if v == 0 { byte } else { byte | 0x80 };
        }
        at += 1;
        if v == 0 {
            return at;
        }
    }
}

/// Longest [`trailer`]: 3 bytes of block padding, an index of at most 20 bytes, the footer.
pub(crate) const TRAILER_MAX: usize = 3 + 20 + 12;

/// What follows a part's `size` bytes, which decode to `uncompressed` bytes: block padding to a
/// multiple of four, the index (one record), the stream footer. Written into `out`; returns its
/// length.
pub(crate) fn trailer(size: u32, uncompressed: u32, out: &mut [u8; TRAILER_MAX]) -> usize {
    *out = [0; TRAILER_MAX];
    let padding = (4 - size % 4) % 4;
    let start = padding as usize;
    // Index: indicator, one record (unpadded size, uncompressed size), padding, CRC-32.
    let mut at = start + 1;
    at = vli(out, at, 1);
    at = vli(out, at, u64::from(BLOCK_HEADER_LEN) + u64::from(size));
    at = vli(out, at, u64::from(uncompressed));
    at += (4 - (at - start) % 4) % 4;
    let c = crc32(out.get(start..at).unwrap_or(&[])).to_le_bytes();
    if let Some(dst) = out.get_mut(at..at + 4) {
        dst.copy_from_slice(&c);
    }
    at += 4;
    let index_len = (at - start) as u32;
    // Footer: CRC-32 of (backward size, flags), backward size, flags, magic.
    let mut footer = [0u8; 12];
    footer[4..8].copy_from_slice(&(index_len / 4 - 1).to_le_bytes());
    footer[8..10].copy_from_slice(&FLAGS);
    footer[10..12].copy_from_slice(b"YZ");
    let c = crc32(&footer[4..10]).to_le_bytes();
    footer[..4].copy_from_slice(&c);
    if let Some(dst) = out.get_mut(at..at + 12) {
        dst.copy_from_slice(&footer);
    }
    at + 12
}

/// What one [`XzDecode::decode`] call did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XzStep {
    /// Bytes of the input taken.
    pub consumed: usize,
    /// Bytes written to the start of the output.
    pub produced: usize,
    /// The `.xz` stream ended (its footer was decoded).
    pub end: bool,
}

/// Why an [`XzDecode`] refused its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum XzDecodeError {
    /// The stream is not valid `.xz` (corrupt, cut short, or needing more than the decoder has).
    Corrupt,
    /// Bytes followed the end of the stream.
    Trailing,
}

/// An `.xz` stream decoder (feature `xz`): the installer's codec interface for xz parts. The
/// installer wraps each xz part in an `.xz` container made from its verified part table
/// (`docs/FORMAT.md` section 5) and hands the decoder the container's bytes, the part's bytes
/// in fixed pieces, and the container's end. [`XzDecoder`] (no_std, no alloc, a lent
/// dictionary) is the device's; a Linux device may lend one backed by liblzma, or one that
/// decodes on another core.
pub trait XzDecode {
    /// Bytes of the largest LZMA2 dictionary it decodes with: a file that declares a larger one
    /// is refused at the superblock, before anything reaches the store.
    fn dictionary_len(&self) -> usize;

    /// Forgets the stream in progress: the next [`XzDecode::decode`] starts a new stream.
    fn reset(&mut self);

    /// Decodes the next bytes of the stream, `input`, into `output`, in stream order. A call
    /// with input takes some of it or produces some output (or both); it may hold input and
    /// output back (a decoder on another core does), but a call without input delivers what
    /// is held: it returns with output, with [`XzStep::end`], or with nothing produced only
    /// once everything given so far is decoded and delivered. Output before a failure is
    /// delivered before the failure.
    fn decode(&mut self, input: &[u8], output: &mut [u8]) -> Result<XzStep, XzDecodeError>;
}

/// The LZMA2 decoder (feature `xz`) lent to an installer ([`Installer::with_xz`]), so that an
/// installer is as small with the feature as without and only a caller that decodes xz parts
/// pays for it: `xz4rust`'s state (about 30 KB: probability tables, range decoder, BCJ
/// filters) and the dictionary it is lent ([`XzDecoder::new`]), or any other [`XzDecode`] the
/// caller has ([`XzDecoder::with_decoder`]: a Linux device's liblzma). An installer without
/// one refuses xz parts before anything reaches the store
/// ([`InstallError::DictionaryTooLarge`] with 0 lent).
pub struct XzDecoder<'d> {
    inner: Inner<'d>,
    lent: usize,
}

/// By value: no alloc here, and the embedded decoder is the device's case (as large as
/// before); a lent one only leaves the space unused.
#[allow(clippy::large_enum_variant)]
enum Inner<'d> {
    Embedded(xz4rust::XzDecoder<'d>),
    Lent(&'d mut (dyn XzDecode + 'd)),
}

impl<'d> XzDecoder<'d> {
    /// A decoder whose LZMA2 dictionary is `dictionary`: files whose dictionary
    /// ([`crate::wire::Superblock::dictionary`]) is larger are refused. Builds about 30 KB by
    /// value; box it on a small stack.
    pub fn new(dictionary: &'d mut [u8]) -> XzDecoder<'d> {
        XzDecoder {
            lent: dictionary.len(),
            inner: Inner::Embedded(xz4rust::XzDecoder::with_fixed_size_dict(dictionary)),
        }
    }

    /// The installer's decoder is `decoder` (its [`XzDecode::dictionary_len`] bounds the
    /// files accepted).
    pub fn with_decoder(decoder: &'d mut (dyn XzDecode + 'd)) -> XzDecoder<'d> {
        XzDecoder {
            lent: decoder.dictionary_len(),
            inner: Inner::Lent(decoder),
        }
    }

    /// Bytes of its dictionary.
    pub fn dictionary_len(&self) -> usize {
        self.lent
    }
}

impl XzDecode for XzDecoder<'_> {
    fn dictionary_len(&self) -> usize {
        self.lent
    }

    fn reset(&mut self) {
        match &mut self.inner {
            Inner::Embedded(x) => x.reset(),
            Inner::Lent(d) => d.reset(),
        }
    }

    /// `xz4rust` drops a failing call's output.
    fn decode(&mut self, input: &[u8], output: &mut [u8]) -> Result<XzStep, XzDecodeError> {
        let x = match &mut self.inner {
            Inner::Embedded(x) => x,
            Inner::Lent(d) => return d.decode(input, output),
        };
        let r = x
            .decode(input, output)
            .map_err(|_| XzDecodeError::Corrupt)?;
        Ok(XzStep {
            consumed: r.input_consumed().min(input.len()),
            produced: r.output_produced().min(output.len()),
            end: r.is_end_of_stream(),
        })
    }
}
impl Installer<'_> {
    /// Bytes of an xz input piece (and of the decoder's output space): half the ring.
    pub(super) fn xz_piece_len(&self) -> usize {
        self.ring_len() / 2
    }

    /// Takes the next raw bytes of an xz part. The decoder gets them in pieces of
    /// [`Installer::xz_piece_len`] bytes at fixed offsets of the part (the last one shorter),
    /// gathered in the ring's upper half when the input splits them, so that it sees the same
    /// calls whatever the chunking: `xz4rust` drops a call's output when the call fails, and
    /// only identical calls make the same records reach the store before a failure.
    pub(super) fn xz_bytes<S: Store>(
        &mut self,
        store: &mut S,
        mut chunk: &[u8],
        last: bool,
    ) -> Res<S::Error> {
        let k = self.xz_piece_len();
        while !chunk.is_empty() {
            if self.staged == 0 && chunk.len() >= k {
                let (piece, rest) = chunk.split_at(k);
                chunk = rest;
                if self.xz_run(store, piece)? {
                    return Err(InstallError::PartTrailing {
                        part: self.part as u32,
                    });
                }
                continue;
            }
            let n = (k - self.staged).min(chunk.len());
            let (now, rest) = chunk.split_at(n);
            chunk = rest;
            if let Some(dst) = self.window.get_mut(k + self.staged..k + self.staged + n) {
                dst.copy_from_slice(now);
            }
            self.staged += n;
            if self.staged == k {
                self.xz_staged(store)?;
            }
        }
        if last && self.staged > 0 {
            self.xz_staged(store)?;
        }
        Ok(())
    }

    /// Decodes the piece gathered in the ring's upper half.
    pub(super) fn xz_staged<S: Store>(&mut self, store: &mut S) -> Res<S::Error> {
        let k = self.xz_piece_len();
        let staged = core::mem::take(&mut self.staged);
        let (out, stage) = self.window.split_at_mut(k);
        let input = stage.get(..staged).unwrap_or(&[]);
        let part = self.part as u32;
        if xz_decode(
            self.xz.as_deref_mut(),
            out,
            &mut self.ops,
            store,
            input,
            false,
            part,
        )? {
            return Err(InstallError::PartTrailing { part });
        }
        Ok(())
    }

    /// Runs the LZMA2 decoder over `data` (a piece of the part, or of the container the
    /// installer wraps around it). Returns whether the xz stream ended.
    pub(super) fn xz_run<S: Store>(
        &mut self,
        store: &mut S,
        data: &[u8],
    ) -> Result<bool, InstallError<S::Error>> {
        self.xz_run_drain(store, data, false)
    }

    /// As [`Installer::xz_run`]; with `drain`, also takes everything the decoder holds.
    pub(super) fn xz_run_drain<S: Store>(
        &mut self,
        store: &mut S,
        data: &[u8],
        drain: bool,
    ) -> Result<bool, InstallError<S::Error>> {
        let k = self.xz_piece_len();
        let out = self.window.get_mut(..k).unwrap_or(&mut []);
        let part = self.part as u32;
        xz_decode(
            self.xz.as_deref_mut(),
            out,
            &mut self.ops,
            store,
            data,
            drain,
            part,
        )
    }

    /// All of xz part `p`'s bytes are in (and decoded): the container's end (block padding,
    /// index, footer) must end the stream.
    pub(super) fn xz_end<S: Store>(&mut self, store: &mut S, p: &PartEntry) -> Res<S::Error> {
        let mut end = [0u8; TRAILER_MAX];
        let n = trailer(p.size, p.uncompressed_size, &mut end);
        if self.xz_run_drain(store, end.get(..n).unwrap_or(&[]), true)? {
            Ok(())
        } else {
            Err(InstallError::Lzma {
                part: self.part as u32,
            })
        }
    }
}

/// Runs the LZMA2 decoder over all of `data`, the decoded bytes going through `out` to the
/// records; with `drain`, then takes what the decoder still holds until it has nothing more
/// ([`XzDecode::decode`] without input). Returns whether the xz stream ended; bytes after its
/// end are an error.
pub(super) fn xz_decode<S: Store>(
    xz: Option<&mut XzDecoder<'_>>,
    out: &mut [u8],
    ops: &mut Ops<'_>,
    store: &mut S,
    mut data: &[u8],
    drain: bool,
    part: u32,
) -> Result<bool, InstallError<S::Error>> {
    // Never without one: the superblock's check refused xz parts then.
    let Some(xz) = xz else {
        return Err(InstallError::Lzma { part });
    };
    while !data.is_empty() || drain {
        let r = xz.decode(data, out).map_err(|e| match e {
            XzDecodeError::Trailing => InstallError::PartTrailing { part },
            _ => InstallError::Lzma { part },
        })?;
        let written = r.produced.min(out.len());
        ops.decoded(store, out.get(..written).unwrap_or(&[]))?;
        data = data.get(r.consumed..).unwrap_or(&[]);
        if r.end {
            return if data.is_empty() {
                Ok(true)
            } else {
                Err(InstallError::PartTrailing { part })
            };
        }
        if r.consumed == 0 && written == 0 {
            // Nothing more without input (a decoder that neither takes nor gives is stuck).
            return if data.is_empty() {
                Ok(false)
            } else {
                Err(InstallError::Lzma { part })
            };
        }
    }
    Ok(false)
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn crc32_and_the_constant_header() {
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
        // What `xz --check=none` writes.
        assert_eq!(
            STREAM_HEADER,
            [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0, 0, 0, 0xff, 0x12, 0xd9, 0x41]
        );
    }

    #[test]
    fn block_headers() {
        let h = block_header(Filter::None, 8 << 20);
        assert_eq!(&h[..8], &[2, 0, 0x21, 1, 22, 0, 0, 0]);
        let h = block_header(Filter::Arm64, 4096);
        assert_eq!(&h[..8], &[2, 1, 0x0a, 0, 0x21, 1, 0, 0]);
        assert_eq!(&h[8..], &crc32(&h[..8]).to_le_bytes());
    }

    #[test]
    fn trailers_are_aligned() {
        let mut out = [0u8; TRAILER_MAX];
        for (size, un) in [(1, 1), (2, 100), (3, 70_000), (4, u32::MAX), (u32::MAX, 5)] {
            let n = trailer(size, un, &mut out);
            let pad = ((4 - size % 4) % 4) as usize;
            assert!(n <= TRAILER_MAX);
            assert_eq!((n - pad) % 4, 0);
            assert_eq!(&out[n - 2..n], b"YZ");
            assert!(out[..pad].iter().all(|&b| b == 0));
        }
    }
}
