//! The two on-flash records of a slot, as views over their bytes in the style of smoltcp's
//! `wire` modules: one `mod field` of byte ranges per record, read and written only through
//! its view type ([`Header`], [`RawEntry`]). `docs/FLASH.md` has the same tables in prose.

use crate::object::{ObjectId, ObjectKind, ID_LEN};

/// `n` rounded up to a multiple of `to`.
pub(super) const fn round_up(n: usize, to: usize) -> usize {
    n.div_ceil(to) * to
}

/// CRC-32 (IEEE, as zlib; bitwise, no table).
pub(crate) fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xEDB8_8320 & (crc & 1).wrapping_neg());
        }
    }
    !crc
}

fn le32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// The id in `b` (`ID_LEN` bytes).
pub(super) fn id(b: &[u8]) -> ObjectId {
    let mut id = [0u8; ID_LEN];
    id.copy_from_slice(b);
    ObjectId(id)
}

/// The slot header (96 bytes at the slot start, written last).
mod header {
    /// Byte ranges of the header's fields.
    pub(super) mod field {
        use core::ops::Range;

        /// [`super::super::super::SLOT_MAGIC`].
        pub const MAGIC: Range<usize> = 0..8;
        /// Layout version ([`super::super::super::SLOT_VERSION`]).
        pub const VERSION: Range<usize> = 8..12;
        /// Index positions in use (links and skipped positions included).
        pub const OBJECTS: Range<usize> = 12..16;
        /// The commit id.
        pub const COMMIT: Range<usize> = 16..48;
        /// Slot-relative end of the object data.
        pub const DATA_END: Range<usize> = 48..52;
        /// Slot-relative offset of the image.
        pub const IMAGE_OFFSET: Range<usize> = 52..56;
        /// Bytes of the image.
        pub const IMAGE_LEN: Range<usize> = 56..60;
        /// SHA-256 of the image.
        pub const IMAGE_SHA256: Range<usize> = 60..92;
        /// CRC-32 of the bytes before it.
        pub const CRC: Range<usize> = 92..96;
    }
}

/// A view of a slot header's bytes (at least [`super::HEADER_LEN`]).
pub(super) struct Header<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Header<T> {
    /// The header in `buffer`, unchecked: [`Header::check_crc`] says whether it is intact.
    pub(super) const fn new_unchecked(buffer: T) -> Self {
        Header { buffer }
    }

    fn u32_at(&self, f: core::ops::Range<usize>) -> u32 {
        le32(&self.buffer.as_ref()[f])
    }

    /// Whether magic, version and CRC are right.
    pub(super) fn check(&self) -> bool {
        let b = self.buffer.as_ref();
        b[header::field::MAGIC] == super::SLOT_MAGIC
            && self.u32_at(header::field::VERSION) == super::SLOT_VERSION
            && self.u32_at(header::field::CRC) == crc32(&b[..header::field::CRC.start])
    }

    /// Index positions in use.
    pub(super) fn objects(&self) -> u32 {
        self.u32_at(header::field::OBJECTS)
    }

    /// The commit.
    pub(super) fn commit(&self) -> ObjectId {
        id(&self.buffer.as_ref()[header::field::COMMIT])
    }

    /// Slot-relative end of the object data.
    pub(super) fn data_end(&self) -> u32 {
        self.u32_at(header::field::DATA_END)
    }

    /// Slot-relative offset of the image.
    pub(super) fn image_offset(&self) -> u32 {
        self.u32_at(header::field::IMAGE_OFFSET)
    }

    /// Bytes of the image.
    pub(super) fn image_len(&self) -> u32 {
        self.u32_at(header::field::IMAGE_LEN)
    }

    /// SHA-256 of the image.
    pub(super) fn image_sha256(&self) -> [u8; 32] {
        let mut h = [0u8; 32];
        h.copy_from_slice(&self.buffer.as_ref()[header::field::IMAGE_SHA256]);
        h
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Header<T> {
    /// Fills the header: magic, version, the fields given, and the CRC.
    pub(super) fn emit(
        &mut self,
        objects: u32,
        commit: &ObjectId,
        data_end: u32,
        image: (u32, u32, &[u8; 32]),
    ) {
        use header::field;
        let b = self.buffer.as_mut();
        b[field::MAGIC].copy_from_slice(&super::SLOT_MAGIC);
        b[field::VERSION].copy_from_slice(&super::SLOT_VERSION.to_le_bytes());
        b[field::OBJECTS].copy_from_slice(&objects.to_le_bytes());
        b[field::COMMIT].copy_from_slice(&commit.0);
        b[field::DATA_END].copy_from_slice(&data_end.to_le_bytes());
        b[field::IMAGE_OFFSET].copy_from_slice(&image.0.to_le_bytes());
        b[field::IMAGE_LEN].copy_from_slice(&image.1.to_le_bytes());
        b[field::IMAGE_SHA256].copy_from_slice(image.2);
        let crc = crc32(&b[..field::CRC.start]);
        b[field::CRC].copy_from_slice(&crc.to_le_bytes());
    }
}

/// An index entry (48 bytes, at the end of the slot growing down).
mod entry {
    /// Byte ranges of an index entry's fields.
    pub(super) mod field {
        use core::ops::Range;

        /// Object kind code, [`super::super::super::ENTRY_CHECKPOINT`] or
        /// [`super::super::super::ENTRY_LINK`].
        pub const KIND: usize = 0;
        /// The look-up chain (24 bits): bit 23 set when the entry has one, bits 0..23 one past
        /// the position of the previous entry of the same bucket (0 for none). Zero in links
        /// and in entries written before the chains.
        pub const CHAIN: Range<usize> = 1..4;
        /// Slot-relative offset of the object (of a link: the position the index goes on at).
        pub const OFFSET: Range<usize> = 4..8;
        /// Bytes of the object.
        pub const LEN: Range<usize> = 8..12;
        /// The object id.
        pub const ID: Range<usize> = 12..44;
        /// CRC-32 of the bytes before it.
        pub const CRC: Range<usize> = 44..48;
    }
}

/// A view of an index entry's bytes (at least [`super::ENTRY_LEN`]).
pub(super) struct RawEntry<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> RawEntry<T> {
    /// The entry in `buffer`, unchecked: [`RawEntry::check_crc`] says whether it is intact.
    pub(super) const fn new_unchecked(buffer: T) -> Self {
        RawEntry { buffer }
    }

    /// Whether the CRC is right.
    pub(super) fn check_crc(&self) -> bool {
        let b = self.buffer.as_ref();
        le32(&b[entry::field::CRC]) == crc32(&b[..entry::field::CRC.start])
    }

    /// The kind byte.
    pub(super) fn kind_code(&self) -> u8 {
        self.buffer.as_ref()[entry::field::KIND]
    }

    /// The chain field (24 bits, see `field::CHAIN`).
    pub(super) fn chain(&self) -> u32 {
        let c = &self.buffer.as_ref()[entry::field::CHAIN];
        u32::from_le_bytes([c[0], c[1], c[2], 0])
    }

    /// Slot-relative offset of the object; of a link, the position the index goes on at.
    pub(super) fn offset(&self) -> u32 {
        le32(&self.buffer.as_ref()[entry::field::OFFSET])
    }

    /// Bytes of the object.
    pub(super) fn len(&self) -> u32 {
        le32(&self.buffer.as_ref()[entry::field::LEN])
    }

    /// The object id.
    pub(super) fn id(&self) -> ObjectId {
        id(&self.buffer.as_ref()[entry::field::ID])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> RawEntry<T> {
    /// Fills the entry and its CRC (a link: `kind` [`super::ENTRY_LINK`], `offset` the
    /// position, the id zero).
    pub(super) fn emit(
        &mut self,
        kind: ObjectKind,
        chain: u32,
        offset: u32,
        len: u32,
        id: &ObjectId,
    ) {
        use entry::field;
        let b = self.buffer.as_mut();
        b[field::KIND] = kind.code();
        b[field::CHAIN].copy_from_slice(&chain.to_le_bytes()[..3]);
        b[field::OFFSET].copy_from_slice(&offset.to_le_bytes());
        b[field::LEN].copy_from_slice(&len.to_le_bytes());
        b[field::ID].copy_from_slice(&id.0);
        let crc = crc32(&b[..field::CRC.start]);
        b[field::CRC].copy_from_slice(&crc.to_le_bytes());
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn crc32_matches_zlib() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn fields_tile_the_records() {
        assert_eq!(header::field::CRC.end, super::super::HEADER_LEN);
        assert_eq!(entry::field::CRC.end, super::super::ENTRY_LEN);
    }
}
