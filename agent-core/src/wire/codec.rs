//! How a part is encoded: its [`Codec`], an xz part's BCJ [`Filter`], and the dictionary sizes
//! a file may declare.

use serde::{Deserialize, Serialize};

code_enum! {
    /// How a part's bytes are encoded.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
    #[cfg_attr(feature = "defmt", derive(defmt::Format))]
    #[serde(from = "u8", into = "u8")]
    pub enum Codec ("codec") {
        /// The operation records as they are.
        Stored = 0 => "stored",
        /// Raw deflate (RFC 1951, no zlib or gzip wrapper).
        Deflate = 1 => "deflate",
        /// A raw LZMA2 stream (format version 3 on), through the part's [`Filter`], with the
        /// superblock's dictionary size ([`Superblock::dictionary`](super::Superblock::dictionary)).
        Xz = 2 => "xz",
    }
}

code_enum! {
    /// The branch/call/jump filter (BCJ) an [`Codec::Xz`] part's records went through before
    /// LZMA2: it turns relative branch targets of one instruction set into absolute ones, so that
    /// machine code compresses better. Format version 3 on; other codecs have [`Filter::None`].
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
    #[cfg_attr(feature = "defmt", derive(defmt::Format))]
    #[serde(from = "u8", into = "u8")]
    pub enum Filter ("filter") {
        /// No filter.
        None = 0 => "none",
        /// x86 and x86-64 (xz's filter 0x04).
        X86 = 1 => "x86",
        /// 32-bit ARM (xz's filter 0x07).
        Arm = 2 => "arm",
        /// ARM Thumb and Thumb-2 (xz's filter 0x08).
        ArmThumb = 3 => "arm-thumb",
        /// 64-bit ARM (xz's filter 0x0A).
        Arm64 = 4 => "arm64",
    }
}

impl Filter {
    /// The xz filter id of a BCJ filter (`None` for no filter or an unknown one).
    pub const fn xz_id(self) -> Option<u8> {
        match self {
            Filter::X86 => Some(0x04),
            Filter::Arm => Some(0x07),
            Filter::ArmThumb => Some(0x08),
            Filter::Arm64 => Some(0x0a),
            Filter::None | Filter::Unknown(_) => None,
        }
    }
}

/// The window of a format-version-1 or -2 file: deflate's 32 KiB.
pub const DEFLATE_DICTIONARY: u32 = 32 * 1024;
/// The smallest dictionary a file may declare: 4 KiB.
pub const MIN_DICTIONARY: u32 = 4 * 1024;
/// The largest dictionary a file may declare: 1.5 GiB (3 · 2^29).
pub const MAX_DICTIONARY: u32 = 3 << 29;

/// Whether `d` is a dictionary size a file may declare: 2^n or 2^n + 2^(n-1) bytes (the sizes
/// an LZMA2 dictionary byte can say exactly), from [`MIN_DICTIONARY`] to [`MAX_DICTIONARY`].
pub const fn dictionary_is_valid(d: u32) -> bool {
    if d < MIN_DICTIONARY || d > MAX_DICTIONARY {
        return false;
    }
    let low = d.trailing_zeros();
    let rest = d >> low;
    rest == 1 || rest == 3
}

/// The LZMA2 dictionary byte (xz's filter property) for a valid dictionary size `d`: the
/// byte `b` with `(2 | (b & 1)) << (b / 2 + 11) == d`.
pub const fn lzma2_dictionary_byte(d: u32) -> u8 {
    let low = d.trailing_zeros();
    if d >> low == 3 {
        // 3 << (low) = (2 | 1) << (b / 2 + 11) with b odd: b / 2 + 11 = low.
        ((low - 11) * 2 + 1) as u8
    } else {
        // 2 << (low - 1): b even, b / 2 + 11 = low - 1.
        ((low - 12) * 2) as u8
    }
}

/// The largest valid dictionary size (see [`dictionary_is_valid`]) at most `max`, or `None`
/// when `max` is below [`MIN_DICTIONARY`].
pub const fn dictionary_at_most(max: u64) -> Option<u32> {
    if max < MIN_DICTIONARY as u64 {
        return None;
    }
    let max = if max > MAX_DICTIONARY as u64 {
        MAX_DICTIONARY
    } else {
        max as u32
    };
    let pow = 1u32 << (31 - max.leading_zeros());
    let three = pow | (pow >> 1);
    Some(if three <= max { three } else { pow })
}

#[cfg(test)]
mod test {
    extern crate std;

    use super::*;

    #[test]
    fn dictionary_sizes_and_their_lzma2_bytes() {
        // xz's own table: byte b means (2 | (b & 1)) << (b / 2 + 11).
        for b in 0u8..=37 {
            let d = (2u32 | u32::from(b & 1)) << (u32::from(b) / 2 + 11);
            assert!(dictionary_is_valid(d), "{d}");
            assert_eq!(lzma2_dictionary_byte(d), b, "{d}");
            assert_eq!(dictionary_at_most(u64::from(d)), Some(d));
            assert_eq!(dictionary_at_most(u64::from(d) + 1), Some(d));
        }
        assert_eq!(dictionary_at_most(4095), None);
        assert_eq!(dictionary_at_most(100_000), Some(98_304));
        assert_eq!(dictionary_at_most(u64::MAX), Some(MAX_DICTIONARY));
    }
}
