//! The xz container the installer wraps around an xz part (feature `xz`).
//!
//! An xz part holds a raw LZMA2 stream (`docs/FORMAT.md` section 5); its filter and dictionary
//! come from the signed superblock. The decoder (`xz4rust`, a port of XZ Embedded) reads `.xz`
//! streams, so the installer hands it a stream header and a block header made from the part
//! table before the part's bytes, and block padding, an index and a stream footer after them.
//! Nothing of the container is read from the file: what the part is decoded with is exactly
//! what the superblock declares, and the file carries no container overhead.

use crate::wire::{lzma2_dictionary_byte, Filter};

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
