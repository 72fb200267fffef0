//! A raw flash record for microcontroller bootloaders: fixed size, little-endian, with a CRC,
//! kept in two copies (two flash sectors) so that a write cut at any byte leaves the other copy
//! valid. The layout of version 2, byte by byte (also in `docs/BOOTSTATE.md` and
//! `include/ecu_boot_state.h`):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic `"ECBS"` (`0x53424345` LE) |
//! | 4 | 2 | format version, 2 |
//! | 6 | 2 | record length, 304 |
//! | 8 | 4 | revision |
//! | 12 | 132 | slot A |
//! | 144 | 132 | slot B |
//! | 276 | 8 | anti-rollback floor (`u64`) |
//! | 284 | 8 | slot A's security version (`u64`) |
//! | 292 | 8 | slot B's security version (`u64`) |
//! | 300 | 4 | CRC-32 (zlib) of bytes 0..300 |
//!
//! A slot is `priority: u8, tries_left: u8, flags: u8 (bit 0 = successful, others 0),
//! name_len: u8, name: [u8; 128]` (unused name bytes 0).
//!
//! Version 1 (280 bytes) is version 2 without bytes 276..300: its CRC-32 of bytes 0..276 is at
//! 276. It still decodes, with floor 0 and slot security versions 0; every write is version 2.
//!
//! Of two valid copies the one with the newer revision wins (`(int32_t)(r1 - r0) > 0` picks
//! copy 1; equal picks copy 0); an invalid copy is ignored. Writes go to the copy that is not
//! current.

use core::fmt;

use crate::state::{BootState, Slot, SlotName, SlotState, MAX_NAME_LEN};

/// `"ECBS"` read as a little-endian `u32`.
pub const MAGIC: u32 = u32::from_le_bytes(*b"ECBS");
/// Format version this crate writes (it also reads [`VERSION_1`]).
pub const VERSION: u16 = 2;
/// The previous format version: no floor, no security versions; still read.
pub const VERSION_1: u16 = 1;
/// Bytes of one slot entry.
pub const SLOT_LEN: usize = 4 + MAX_NAME_LEN;
/// Bytes of one record (one copy) as written, version 2.
pub const RECORD_LEN: usize = 12 + 2 * SLOT_LEN + 3 * 8 + 4;
/// Bytes of a version-1 record.
pub const V1_RECORD_LEN: usize = 12 + 2 * SLOT_LEN + 4;

/// Byte offsets of the fields.
pub mod field {
    use super::SLOT_LEN;
    /// Magic, `u32`.
    pub const MAGIC: usize = 0;
    /// Version, `u16`.
    pub const VERSION: usize = 4;
    /// Record length, `u16`.
    pub const LENGTH: usize = 6;
    /// Revision, `u32`.
    pub const REVISION: usize = 8;
    /// Slot A's entry.
    pub const SLOT_A: usize = 12;
    /// Slot B's entry.
    pub const SLOT_B: usize = SLOT_A + SLOT_LEN;
    /// Anti-rollback floor, `u64` (version 2).
    pub const FLOOR: usize = SLOT_B + SLOT_LEN;
    /// Slot A's security version, `u64`; slot B's follows (version 2).
    pub const SECURITY_VERSION: usize = FLOOR + 8;
    /// CRC, `u32` (version 2).
    pub const CRC: usize = SECURITY_VERSION + 16;
    /// CRC, `u32`, of a version-1 record.
    pub const V1_CRC: usize = FLOOR;
    /// Within a slot entry: priority.
    pub const SLOT_PRIORITY: usize = 0;
    /// Within a slot entry: tries left.
    pub const SLOT_TRIES: usize = 1;
    /// Within a slot entry: flags.
    pub const SLOT_FLAGS: usize = 2;
    /// Within a slot entry: name length.
    pub const SLOT_NAME_LEN: usize = 3;
    /// Within a slot entry: name bytes.
    pub const SLOT_NAME: usize = 4;
}

/// Slot flag: the slot is successful.
pub const FLAG_SUCCESSFUL: u8 = 0x01;

/// Errors reading a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum RecordError {
    /// Fewer bytes than a record of its version ([`RECORD_LEN`], [`V1_RECORD_LEN`]).
    TooShort {
        /// Bytes given.
        len: usize,
    },
    /// The magic is wrong (erased or foreign data).
    BadMagic {
        /// What was found.
        found: u32,
    },
    /// A version this crate does not read.
    UnsupportedVersion {
        /// The version found.
        version: u16,
    },
    /// The length field is not the length of its version.
    BadLength {
        /// The length found.
        length: u16,
        /// The length of the record's version.
        expected: usize,
    },
    /// The CRC does not match (torn or corrupted write).
    BadCrc {
        /// Stored CRC.
        stored: u32,
        /// Computed CRC.
        computed: u32,
    },
    /// A slot entry is invalid (unknown flag bits, name too long or with invalid bytes).
    BadSlot {
        /// Which slot.
        slot: Slot,
    },
    /// Neither copy is valid.
    NoValidCopy {
        /// Why the first copy is invalid.
        first: RecordFault,
        /// Why the second copy is invalid.
        second: RecordFault,
    },
}

/// The kind of [`RecordError`] of one copy, for [`RecordError::NoValidCopy`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum RecordFault {
    /// Too short.
    TooShort,
    /// Bad magic (e.g. erased).
    BadMagic,
    /// Unknown version.
    UnsupportedVersion,
    /// Bad length.
    BadLength,
    /// Bad CRC.
    BadCrc,
    /// Bad slot entry.
    BadSlot,
}

impl RecordError {
    fn fault(&self) -> RecordFault {
        match self {
            RecordError::TooShort { .. } => RecordFault::TooShort,
            RecordError::BadMagic { .. } => RecordFault::BadMagic,
            RecordError::UnsupportedVersion { .. } => RecordFault::UnsupportedVersion,
            RecordError::BadLength { .. } => RecordFault::BadLength,
            RecordError::BadCrc { .. } | RecordError::NoValidCopy { .. } => RecordFault::BadCrc,
            RecordError::BadSlot { .. } => RecordFault::BadSlot,
        }
    }
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            RecordError::TooShort { len } => write!(
                f,
                "{len} bytes is shorter than a boot-state record ({RECORD_LEN} bytes, {V1_RECORD_LEN} for version 1)"
            ),
            RecordError::BadMagic { found } => write!(
                f,
                "no boot-state record here (magic {found:08x}, expected {MAGIC:08x}); erased or foreign data"
            ),
            RecordError::UnsupportedVersion { version } => write!(
                f,
                "boot-state record version {version} is not supported (this build reads {VERSION_1} and {VERSION})"
            ),
            RecordError::BadLength { length, expected } => write!(
                f,
                "boot-state record length field is {length}, expected {expected}"
            ),
            RecordError::BadCrc { stored, computed } => write!(
                f,
                "boot-state record CRC mismatch (stored {stored:08x}, computed {computed:08x}): torn or corrupted write"
            ),
            RecordError::BadSlot { slot } => write!(
                f,
                "slot {slot} entry of the boot-state record is invalid (flags or name)"
            ),
            RecordError::NoValidCopy { first, second } => write!(
                f,
                "neither copy of the boot-state record is valid ({first:?}, {second:?}); the bootloader must fall back to its default slot"
            ),
        }
    }
}

impl core::error::Error for RecordError {}

fn u16_at(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}

fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}

fn u64_at(b: &[u8], o: usize) -> u64 {
    u64::from(u32_at(b, o)) | u64::from(u32_at(b, o + 4)) << 32
}

/// Parses one copy: a version-2 record (the first [`RECORD_LEN`] bytes of `buf`) or a
/// version-1 one (the first [`V1_RECORD_LEN`], floor and security versions 0); more bytes are
/// ignored.
pub fn parse(buf: &[u8]) -> Result<BootState, RecordError> {
    let too_short = RecordError::TooShort { len: buf.len() };
    if buf.len() < V1_RECORD_LEN {
        return Err(too_short);
    }
    let magic = u32_at(buf, field::MAGIC);
    if magic != MAGIC {
        return Err(RecordError::BadMagic { found: magic });
    }
    let version = u16_at(buf, field::VERSION);
    let (len, crc_at) = match version {
        VERSION => (RECORD_LEN, field::CRC),
        VERSION_1 => (V1_RECORD_LEN, field::V1_CRC),
        _ => return Err(RecordError::UnsupportedVersion { version }),
    };
    let b = buf.get(..len).ok_or(too_short)?;
    let length = u16_at(b, field::LENGTH);
    if length as usize != len {
        return Err(RecordError::BadLength {
            length,
            expected: len,
        });
    }
    let stored = u32_at(b, crc_at);
    let computed = crate::crc32(&b[..crc_at]);
    if stored != computed {
        return Err(RecordError::BadCrc { stored, computed });
    }
    let v2 = version == VERSION;
    let mut st = BootState {
        revision: u32_at(b, field::REVISION),
        floor: if v2 { u64_at(b, field::FLOOR) } else { 0 },
        ..BootState::default()
    };
    for s in Slot::ALL {
        let e = &b[field::SLOT_A + s.index() * SLOT_LEN..][..SLOT_LEN];
        let flags = e[field::SLOT_FLAGS];
        let name_len = e[field::SLOT_NAME_LEN] as usize;
        if flags & !FLAG_SUCCESSFUL != 0 || name_len > MAX_NAME_LEN {
            return Err(RecordError::BadSlot { slot: s });
        }
        let name = SlotName::from_bytes(&e[field::SLOT_NAME..field::SLOT_NAME + name_len])
            .map_err(|_| RecordError::BadSlot { slot: s })?;
        *st.slot_mut(s) = SlotState {
            priority: e[field::SLOT_PRIORITY],
            tries_left: e[field::SLOT_TRIES],
            successful: flags & FLAG_SUCCESSFUL != 0,
            name,
            security_version: if v2 {
                u64_at(b, field::SECURITY_VERSION + 8 * s.index())
            } else {
                0
            },
        };
    }
    Ok(st)
}

/// Writes `state` as one record into `out[..RECORD_LEN]`.
///
/// # Panics
/// If `out` is shorter than [`RECORD_LEN`] (a programming error: the size is a constant).
pub fn emit(state: &BootState, out: &mut [u8]) {
    let b = &mut out[..RECORD_LEN];
    b.fill(0);
    b[field::MAGIC..field::MAGIC + 4].copy_from_slice(&MAGIC.to_le_bytes());
    b[field::VERSION..field::VERSION + 2].copy_from_slice(&VERSION.to_le_bytes());
    b[field::LENGTH..field::LENGTH + 2].copy_from_slice(&(RECORD_LEN as u16).to_le_bytes());
    b[field::REVISION..field::REVISION + 4].copy_from_slice(&state.revision.to_le_bytes());
    b[field::FLOOR..field::FLOOR + 8].copy_from_slice(&state.floor.to_le_bytes());
    for s in Slot::ALL {
        let st = state.slot(s);
        let e = &mut b[field::SLOT_A + s.index() * SLOT_LEN..][..SLOT_LEN];
        e[field::SLOT_PRIORITY] = st.priority;
        e[field::SLOT_TRIES] = st.tries_left;
        e[field::SLOT_FLAGS] = if st.successful { FLAG_SUCCESSFUL } else { 0 };
        e[field::SLOT_NAME_LEN] = st.name.len() as u8;
        e[field::SLOT_NAME..field::SLOT_NAME + st.name.len()].copy_from_slice(st.name.as_bytes());
        let at = field::SECURITY_VERSION + 8 * s.index();
        b[at..at + 8].copy_from_slice(&st.security_version.to_le_bytes());
    }
    let crc = crate::crc32(&b[..field::CRC]);
    b[field::CRC..field::CRC + 4].copy_from_slice(&crc.to_le_bytes());
}

/// Whether revision `a` is newer than `b` (wrapping, as `(int32_t)(a - b) > 0`).
pub fn is_newer(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

/// Reads a pair of copies: the index of the current copy and its state.
pub fn select(first: &[u8], second: &[u8]) -> Result<(usize, BootState), RecordError> {
    match (parse(first), parse(second)) {
        (Ok(a), Ok(b)) => Ok(if is_newer(b.revision, a.revision) {
            (1, b)
        } else {
            (0, a)
        }),
        (Ok(a), Err(_)) => Ok((0, a)),
        (Err(_), Ok(b)) => Ok((1, b)),
        (Err(e0), Err(e1)) => Err(RecordError::NoValidCopy {
            first: e0.fault(),
            second: e1.fault(),
        }),
    }
}

/// Where to write a new state given the pair: the copy that is not current (copy 0 if neither
/// is valid). Returns the copy index and the revision to write (one newer than the current).
pub fn next_write(first: &[u8], second: &[u8]) -> (usize, Option<u32>) {
    match select(first, second) {
        Ok((i, st)) => (1 - i, Some(st.revision.wrapping_add(1))),
        Err(_) => (0, None),
    }
}

/// Encodes `state` for the copy that is not current: returns the copy index to write `out`
/// to. The written revision is `state.revision` if that is newer than the current copy's,
/// otherwise the current revision plus one, so the new copy always wins once complete.
pub fn prepare_write(first: &[u8], second: &[u8], state: &BootState, out: &mut [u8]) -> usize {
    let (target, min_rev) = next_write(first, second);
    let mut st = *state;
    if let Some(min) = min_rev {
        if !is_newer(st.revision, min.wrapping_sub(1)) {
            st.revision = min;
        }
    }
    emit(&st, out);
    target
}

#[cfg(test)]
mod test {
    use super::*;

    fn sample() -> BootState {
        let mut s = BootState::initial(Slot::A, SlotName::from_str("c0ffee").unwrap());
        s.floor = 0x0102_0304_0506_0708;
        s.stage_versioned(
            Slot::B,
            3,
            SlotName::from_str("b4dc0de").unwrap(),
            0x1_0000_0009,
        )
        .unwrap();
        s
    }

    /// `s` as a version-1 record (what an older build wrote).
    fn emit_v1(s: &BootState) -> [u8; V1_RECORD_LEN] {
        let mut full = [0u8; RECORD_LEN];
        emit(s, &mut full);
        let mut b = [0u8; V1_RECORD_LEN];
        b[..field::V1_CRC].copy_from_slice(&full[..field::V1_CRC]);
        b[4..8].copy_from_slice(&[1, 0, 0x18, 0x01]);
        let crc = crate::crc32(&b[..field::V1_CRC]);
        b[field::V1_CRC..].copy_from_slice(&crc.to_le_bytes());
        b
    }

    #[test]
    fn emit_parse_roundtrip_and_layout() {
        let s = sample();
        let mut b = [0xFFu8; RECORD_LEN];
        emit(&s, &mut b);
        assert_eq!(&b[0..4], b"ECBS");
        assert_eq!(&b[4..8], &[2, 0, 0x30, 0x01]);
        assert_eq!(u32_at(&b, 8), s.revision);
        assert_eq!(&b[field::SLOT_B..field::SLOT_B + 4], &[2, 3, 0, 7]);
        assert_eq!(&b[field::SLOT_A..field::SLOT_A + 4], &[1, 0, 1, 6]);
        assert_eq!(&b[field::SLOT_B + 4..field::SLOT_B + 11], b"b4dc0de");
        assert_eq!(&b[276..284], &[8, 7, 6, 5, 4, 3, 2, 1]);
        assert_eq!(&b[284..292], &[0; 8]);
        assert_eq!(&b[292..300], &[9, 0, 0, 0, 1, 0, 0, 0]);
        assert_eq!(u32_at(&b, 300), crate::crc32(&b[..300]));
        assert_eq!(parse(&b), Ok(s));
        assert_eq!((RECORD_LEN, V1_RECORD_LEN, field::CRC), (304, 280, 300));
    }

    #[test]
    fn version_1_decodes_with_floor_0_and_is_rewritten_as_version_2() {
        let s = sample();
        let v1 = emit_v1(&s);
        let mut want = s;
        want.floor = 0;
        want.slots[1].security_version = 0;
        assert_eq!(parse(&v1), Ok(want));
        let mut c = v1;
        c[100] ^= 1;
        assert!(matches!(parse(&c), Err(RecordError::BadCrc { .. })));
        // a version-2 length in a version-1 record is refused
        let mut c = v1;
        c[6..8].copy_from_slice(&(RECORD_LEN as u16).to_le_bytes());
        let crc = crate::crc32(&c[..field::V1_CRC]);
        c[field::V1_CRC..].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(
            parse(&c),
            Err(RecordError::BadLength {
                length: 304,
                expected: 280
            })
        );
        // a version-2 record cut to version-1 length is too short
        let mut b = [0u8; RECORD_LEN];
        emit(&s, &mut b);
        assert_eq!(parse(&b[..290]), Err(RecordError::TooShort { len: 290 }));
        // the next write is version 2 in the other copy, and wins
        let mut first = [0xFFu8; RECORD_LEN];
        first[..V1_RECORD_LEN].copy_from_slice(&v1);
        let second = [0xFFu8; RECORD_LEN];
        let mut next = want;
        next.mark_good(Slot::B);
        let mut out = [0u8; RECORD_LEN];
        assert_eq!(prepare_write(&first, &second, &next, &mut out), 1);
        assert_eq!(u16_at(&out, field::VERSION), VERSION);
        assert_eq!(
            select(&first, &out).map(|(i, st)| (i, st.floor)),
            Ok((1, 0))
        );
    }

    #[test]
    fn parse_rejects() {
        let s = sample();
        let mut b = [0u8; RECORD_LEN];
        emit(&s, &mut b);
        assert_eq!(parse(&b[..10]), Err(RecordError::TooShort { len: 10 }));
        let mut c = b;
        c[100] ^= 1;
        assert!(matches!(parse(&c), Err(RecordError::BadCrc { .. })));
        assert!(matches!(
            parse(&[0xFF; RECORD_LEN]),
            Err(RecordError::BadMagic { found: 0xFFFF_FFFF })
        ));
        let mut c = b;
        c[field::SLOT_A + field::SLOT_FLAGS] = 0x80;
        let crc = crate::crc32(&c[..field::CRC]);
        c[field::CRC..].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(parse(&c), Err(RecordError::BadSlot { slot: Slot::A }));
    }

    #[test]
    fn newer_revision_wins_with_wrap() {
        assert!(is_newer(1, 0));
        assert!(is_newer(0, u32::MAX));
        assert!(!is_newer(5, 5));
        let mut old = sample();
        old.revision = u32::MAX;
        let mut new = old;
        new.revision = 0;
        new.slot_mut(Slot::B).tries_left = 2;
        let (mut a, mut b) = ([0u8; RECORD_LEN], [0u8; RECORD_LEN]);
        emit(&old, &mut a);
        emit(&new, &mut b);
        assert_eq!(select(&a, &b), Ok((1, new)));
        assert_eq!(select(&b, &a), Ok((0, new)));
    }

    #[test]
    fn torn_write_at_every_byte_gives_old_or_new() {
        let old = sample();
        let mut a = [0xFFu8; RECORD_LEN];
        let b_erased = [0xFFu8; RECORD_LEN];
        emit(&old, &mut a);
        let mut new = old.decide().state;
        new.revision += 1; // prepare_write makes the new copy newer than the current one
        let mut rec = [0u8; RECORD_LEN];
        let target = prepare_write(&a, &b_erased, &new, &mut rec);
        assert_eq!(target, 1);
        for cut in 0..=RECORD_LEN {
            let mut b = b_erased;
            b[..cut].copy_from_slice(&rec[..cut]);
            let (_, got) = select(&a, &b).unwrap();
            if cut == RECORD_LEN {
                assert_eq!(got, new);
            } else {
                assert_eq!(got, old, "cut at {cut}");
            }
        }
    }
}
