//! The fixed 16-byte header: a checked view over its bytes ([`Header`]) and its validated
//! fields ([`HeaderRepr`]).

use super::{
    FormatError, FORMAT_VERSION, HEADER_LEN, MAGIC, MAX_SUPERBLOCK_LEN, MIN_FORMAT_VERSION,
};

mod field {
    pub type Field = core::ops::Range<usize>;
    pub const MAGIC: Field = 0..8;
    pub const VERSION: Field = 8..10;
    pub const FLAGS: Field = 10..12;
    pub const SUPERBLOCK_LEN: Field = 12..16;
}

/// A view of the fixed 16-byte header.
#[derive(Debug, Clone)]
pub struct Header<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Header<T> {
    /// Wraps a buffer without checking its length.
    pub const fn new_unchecked(buffer: T) -> Header<T> {
        Header { buffer }
    }

    /// Wraps a buffer after [`Header::check_len`].
    pub fn new_checked(buffer: T) -> Result<Header<T>, FormatError> {
        let h = Header::new_unchecked(buffer);
        h.check_len()?;
        Ok(h)
    }

    /// Fails when the buffer is shorter than [`HEADER_LEN`].
    pub fn check_len(&self) -> Result<(), FormatError> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            Err(FormatError::Truncated {
                needed: HEADER_LEN,
                have: len,
            })
        } else {
            Ok(())
        }
    }

    /// The magic bytes.
    pub fn magic(&self) -> [u8; 8] {
        let mut m = [0u8; 8];
        m.copy_from_slice(&self.buffer.as_ref()[field::MAGIC]);
        m
    }

    /// The format version.
    pub fn version(&self) -> u16 {
        let b = &self.buffer.as_ref()[field::VERSION];
        u16::from_le_bytes([b[0], b[1]])
    }

    /// The flags (all zero in versions 1 and 2).
    pub fn flags(&self) -> u16 {
        let b = &self.buffer.as_ref()[field::FLAGS];
        u16::from_le_bytes([b[0], b[1]])
    }

    /// The superblock's length in bytes.
    pub fn superblock_len(&self) -> u32 {
        let b = &self.buffer.as_ref()[field::SUPERBLOCK_LEN];
        u32::from_le_bytes([b[0], b[1], b[2], b[3]])
    }

    /// The underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Header<T> {
    /// Sets the magic bytes.
    pub fn set_magic(&mut self, m: [u8; 8]) {
        self.buffer.as_mut()[field::MAGIC].copy_from_slice(&m);
    }
    /// Sets the format version.
    pub fn set_version(&mut self, v: u16) {
        self.buffer.as_mut()[field::VERSION].copy_from_slice(&v.to_le_bytes());
    }
    /// Sets the flags.
    pub fn set_flags(&mut self, v: u16) {
        self.buffer.as_mut()[field::FLAGS].copy_from_slice(&v.to_le_bytes());
    }
    /// Sets the superblock length.
    pub fn set_superblock_len(&mut self, v: u32) {
        self.buffer.as_mut()[field::SUPERBLOCK_LEN].copy_from_slice(&v.to_le_bytes());
    }
}

/// The meaningful, validated content of a header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct HeaderRepr {
    /// The format version, [`MIN_FORMAT_VERSION`]..=[`FORMAT_VERSION`]: it says how the
    /// superblock is encoded.
    pub version: u16,
    /// Length of the superblock that follows, at most [`MAX_SUPERBLOCK_LEN`].
    pub superblock_len: u32,
}

impl HeaderRepr {
    /// Validates a header: magic, version, flags and the superblock bound.
    pub fn parse<T: AsRef<[u8]>>(h: &Header<T>) -> Result<HeaderRepr, FormatError> {
        h.check_len()?;
        if h.magic() != MAGIC {
            return Err(FormatError::BadMagic);
        }
        let version = h.version();
        if !(MIN_FORMAT_VERSION..=FORMAT_VERSION).contains(&version) {
            return Err(FormatError::UnsupportedVersion(version));
        }
        if h.flags() != 0 {
            return Err(FormatError::UnknownFlags(h.flags()));
        }
        let len = h.superblock_len();
        if len == 0 || len as usize > MAX_SUPERBLOCK_LEN {
            return Err(FormatError::SuperblockLength(len));
        }
        Ok(HeaderRepr {
            version,
            superblock_len: len,
        })
    }

    /// Bytes of the header.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, h: &mut Header<T>) {
        h.set_magic(MAGIC);
        h.set_version(self.version);
        h.set_flags(0);
        h.set_superblock_len(self.superblock_len);
    }
}

#[cfg(test)]
mod test {
    extern crate std;

    use super::*;

    static HEADER_BYTES: [u8; 16] = [
        b'E', b'C', b'U', b'P', b'D', b'A', b'T', b'E', // magic
        1, 0, // version
        0, 0, // flags
        0x34, 0x12, 0, 0, // superblock length 0x1234
    ];

    #[test]
    fn header_deconstruct() {
        let h = Header::new_checked(&HEADER_BYTES[..]).unwrap();
        assert_eq!(h.magic(), MAGIC);
        assert_eq!(h.version(), 1);
        assert_eq!(h.flags(), 0);
        assert_eq!(h.superblock_len(), 0x1234);
    }

    #[test]
    fn header_construct_and_emit() {
        let mut buf = [0xaau8; 16];
        let repr = HeaderRepr {
            version: 1,
            superblock_len: 0x1234,
        };
        repr.emit(&mut Header::new_unchecked(&mut buf[..]));
        assert_eq!(buf, HEADER_BYTES);
    }

    #[test]
    fn header_parse() {
        let h = Header::new_unchecked(&HEADER_BYTES[..]);
        assert_eq!(
            HeaderRepr::parse(&h),
            Ok(HeaderRepr {
                version: 1,
                superblock_len: 0x1234
            })
        );
        let mut b = HEADER_BYTES;
        b[8] = 2;
        let repr = HeaderRepr::parse(&Header::new_unchecked(&b[..])).unwrap();
        assert_eq!(repr.version, 2);
        let mut out = [0u8; 16];
        repr.emit(&mut Header::new_unchecked(&mut out[..]));
        assert_eq!(out, b);
    }

    #[test]
    fn header_bad() {
        assert_eq!(
            Header::new_checked(&HEADER_BYTES[..15]).unwrap_err(),
            FormatError::Truncated {
                needed: 16,
                have: 15
            }
        );
        let mut b = HEADER_BYTES;
        b[0] = b'X';
        assert_eq!(
            HeaderRepr::parse(&Header::new_unchecked(&b[..])),
            Err(FormatError::BadMagic)
        );
        for v in [0u16, 6, 0x0100, u16::MAX] {
            let mut b = HEADER_BYTES;
            b[8..10].copy_from_slice(&v.to_le_bytes());
            let e = HeaderRepr::parse(&Header::new_unchecked(&b[..])).unwrap_err();
            assert_eq!(e, FormatError::UnsupportedVersion(v));
            let msg = std::format!("{e}");
            assert!(msg.contains(&std::format!("version {v} ")), "{msg}");
        }
        let mut b = HEADER_BYTES;
        b[10] = 1;
        assert_eq!(
            HeaderRepr::parse(&Header::new_unchecked(&b[..])),
            Err(FormatError::UnknownFlags(1))
        );
        let mut b = HEADER_BYTES;
        b[12..16].copy_from_slice(&0u32.to_le_bytes());
        assert_eq!(
            HeaderRepr::parse(&Header::new_unchecked(&b[..])),
            Err(FormatError::SuperblockLength(0))
        );
        b[12..16].copy_from_slice(&(MAX_SUPERBLOCK_LEN as u32 + 1).to_le_bytes());
        assert!(matches!(
            HeaderRepr::parse(&Header::new_unchecked(&b[..])),
            Err(FormatError::SuperblockLength(_))
        ));
    }
}
