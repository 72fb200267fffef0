//! Finding the file objects a redeflate record can carry (`docs/FORMAT.md` §6): a gzip member
//! whose deflate stream zlib rebuilds byte for byte from the bytes it inflates to.

use std::vec::Vec;

use flate2::{Decompress, FlushDecompress, Status};

use crate::install::{Deflaters, Redeflate};
use crate::object::{FileHeader, FILE_HEADER_LEN, S_IFMT, S_IFREG};
use crate::wire::DeflateParams;

/// How a gzip member starts (RFC 1952): its two magic bytes and method 8, deflate.
pub(super) const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b, 8];

/// Largest plaintext a redeflate record is made for: 64 MiB (the writer holds it in memory).
pub(super) const MAX_PLAIN: usize = 64 << 20;

/// zlib's level 6, its default.
const ZLIB_6: DeflateParams = DeflateParams {
    level: 6,
    window_bits: 15,
    mem_level: 8,
    strategy: 0,
};

/// The parameters tried by default, in order: zlib at `-9` and at its default level 6 (zlib
/// makes the same stream as `gzip -9n` for most gzip files under about 64 KiB of text:
/// Debian's small manuals).
const TRIED_ZLIB: [DeflateParams; 2] = [DeflateParams::BEST, ZLIB_6];

/// The parameters tried with GNU gzip's deflate, in order: `gzip -9` first, so that a device
/// installing a system whose gzip files GNU gzip wrote (Debian's, every one) needs that one
/// encoder and not zlib's too (about 270 KiB less at its peak); then zlib's two, for gzip
/// files other tools wrote; then `gzip -6`, gzip's default.
const TRIED_GZIP: [DeflateParams; 4] = [
    DeflateParams::gzip(9),
    DeflateParams::BEST,
    ZLIB_6,
    DeflateParams::gzip(6),
];

/// A file object split for a redeflate record.
pub(super) struct Split {
    /// Bytes before the stream: the object's header, target and xattrs, the gzip header.
    pub(super) head: usize,
    /// What the stream inflates to.
    pub(super) plain: Vec<u8>,
    /// Bytes after the stream (the gzip trailer, and anything after it).
    pub(super) tail: usize,
    /// How zlib rebuilds the stream.
    pub(super) params: DeflateParams,
}

/// Where the deflate stream of the gzip member at the start of `content` begins, if it is one
/// (RFC 1952: magic, method 8, no reserved flags, then the optional fields the flags name).
fn gzip_stream_start(content: &[u8]) -> Option<usize> {
    let (GZIP_MAGIC, [flags, ..]) = content.split_at_checked(3)? else {
        return None;
    };
    if flags & 0xe0 != 0 {
        return None;
    }
    let mut at = 10usize;
    if flags & 4 != 0 {
        let xlen = content.get(at..at + 2)?;
        at += 2 + usize::from(u16::from_le_bytes([xlen[0], xlen[1]]));
    }
    for flag in [8, 16] {
        if flags & flag != 0 {
            at += content.get(at..)?.iter().position(|&b| b == 0)? + 1;
        }
    }
    if flags & 2 != 0 {
        at += 2;
    }
    (at < content.len()).then_some(at)
}

/// Inflates the raw deflate stream at the start of `stream`: its plaintext and its length, or
/// `None` if it is not a valid stream, does not end, or inflates to more than [`MAX_PLAIN`].
fn inflate(stream: &[u8]) -> Option<(Vec<u8>, usize)> {
    let mut d = Decompress::new(false);
    let mut plain = Vec::with_capacity(stream.len().saturating_mul(4).min(MAX_PLAIN));
    loop {
        if plain.len() == plain.capacity() {
            if plain.len() >= MAX_PLAIN {
                return None;
            }
            plain.reserve(plain.len().clamp(64 * 1024, MAX_PLAIN - plain.len()));
        }
        let used = usize::try_from(d.total_in()).ok()?;
        match d
            .decompress_vec(stream.get(used..)?, &mut plain, FlushDecompress::None)
            .ok()?
        {
            Status::StreamEnd => return Some((plain, usize::try_from(d.total_in()).ok()?)),
            Status::Ok if plain.len() < plain.capacity() && used == stream.len() => return None,
            Status::BufError if plain.len() < plain.capacity() => return None,
            _ => {}
        }
    }
}

/// Whether `z` deflates `plain` with `params` into exactly `stream` (stopping at the first
/// byte that differs).
fn rebuilds(z: &mut Deflaters, params: DeflateParams, plain: &[u8], stream: &[u8]) -> bool {
    if z.start(params).is_err() {
        return false;
    }
    let mut at = 0usize;
    let mut same = true;
    let ran = z.deflate(plain, true, &mut |piece| {
        same = stream.get(at..at + piece.len()) == Some(piece);
        at += piece.len();
        same
    });
    ran.is_ok() && same && at == stream.len()
}

/// The redeflate split of file object `bytes`, if its content is a gzip member whose stream
/// `z` rebuilds with one of the parameters tried (GNU gzip's only when `gzip`), and the
/// plaintext is no shorter than the stream (so the record is never longer than the object's
/// bytes).
pub(super) fn split(z: &mut Deflaters, bytes: &[u8], gzip: bool) -> Option<Split> {
    let header = FileHeader::parse(bytes).ok()?;
    if header.mode & S_IFMT != S_IFREG {
        return None;
    }
    let content_at = usize::try_from(header.meta_len()).ok()?;
    debug_assert!(content_at >= FILE_HEADER_LEN);
    let content = bytes.get(content_at..)?;
    let start = gzip_stream_start(content)?;
    let (plain, stream_len) = inflate(&content[start..])?;
    let stream = &content[start..start + stream_len];
    if plain.len() < stream.len() {
        return None;
    }
    let tried: &[DeflateParams] = if gzip { &TRIED_GZIP } else { &TRIED_ZLIB };
    let params = tried
        .iter()
        .copied()
        .find(|&p| rebuilds(z, p, &plain, stream))?;
    let head = content_at + start;
    Some(Split {
        head,
        tail: bytes.len() - head - stream_len,
        plain,
        params,
    })
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn gzip_headers_with_optional_fields() {
        assert_eq!(
            gzip_stream_start(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 2, 3, 0xaa]),
            Some(10)
        );
        // FEXTRA of 2 bytes, FNAME "a", FCOMMENT "", FHCRC.
        let h = [
            0x1f,
            0x8b,
            8,
            4 | 8 | 16 | 2,
            0,
            0,
            0,
            0,
            0,
            3,
            2,
            0,
            9,
            9,
            b'a',
            0,
            0,
            7,
            7,
            0xaa,
        ];
        assert_eq!(gzip_stream_start(&h), Some(19));
        // Reserved flags, another method, a name without its end.
        assert_eq!(
            gzip_stream_start(&[0x1f, 0x8b, 8, 0x20, 0, 0, 0, 0, 0, 3, 1]),
            None
        );
        assert_eq!(
            gzip_stream_start(&[0x1f, 0x8b, 7, 0, 0, 0, 0, 0, 0, 3, 1]),
            None
        );
        assert_eq!(
            gzip_stream_start(&[0x1f, 0x8b, 8, 8, 0, 0, 0, 0, 0, 3, b'a']),
            None
        );
    }

    #[test]
    fn with_gnu_gzip_on_gzip_9_is_tried_first_and_zlib_still_serves_other_tools() {
        let mut rng = test_support::rng::XorShift64::new(5);
        let text: Vec<u8> = (0..40_000)
            .flat_map(|_| std::format!("w{} ", rng.below(400)).into_bytes())
            .take(200_000)
            .collect();
        // Small: zlib and GNU gzip make the same stream; a large one only GNU gzip's.
        let small = test_support::gzip::gzip_n(&text[..5000]);
        let large = test_support::gzip::gzip_n(&text);
        let zlib_made = test_support::gzip::member(&text, 6, None);
        let mut z = Deflaters::new();
        let params = |z: &mut Deflaters, gz: &[u8], gzip: bool| {
            let object = crate::object::file_object(0o644, 0, 0, gz);
            split(z, &object, gzip).map(|s| s.params)
        };
        assert_eq!(params(&mut z, &small, false), Some(DeflateParams::BEST));
        assert_eq!(params(&mut z, &small, true), Some(DeflateParams::gzip(9)));
        assert_eq!(params(&mut z, &large, false), None);
        assert_eq!(params(&mut z, &large, true), Some(DeflateParams::gzip(9)));
        assert_eq!(params(&mut z, &zlib_made, true), Some(ZLIB_6));
    }

    #[test]
    fn inflate_finds_the_end_of_the_stream() {
        let mut z = Deflaters::new();
        let plain: Vec<u8> = (0..100_000u32)
            .map(|i| (i % 251) as u8 ^ (i / 997) as u8)
            .collect();
        let mut stream = crate::install::deflate_all(&mut z, DeflateParams::BEST, &plain).unwrap();
        let len = stream.len();
        stream.extend_from_slice(b"trailer!");
        assert_eq!(inflate(&stream), Some((plain.clone(), len)));
        assert_eq!(inflate(&stream[..len - 1]), None);
        assert!(rebuilds(
            &mut z,
            DeflateParams::BEST,
            &plain,
            &stream[..len]
        ));
        assert!(!rebuilds(
            &mut z,
            DeflateParams::BEST,
            &plain,
            &stream[..len - 1]
        ));
        assert!(!rebuilds(
            &mut z,
            DeflateParams::BEST,
            &plain[1..],
            &stream[..len]
        ));
    }
}
