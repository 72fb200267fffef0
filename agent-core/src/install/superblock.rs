//! The installer's superblock decoder and its part table.
//!
//! [`decode`] reads the superblock field by field, straight into the installer's own copies
//! ([`Meta`]) and its part table ([`Parts`]), instead of building a [`crate::wire::Superblock`]
//! value: that value holds a 3 KB `heapless::Vec<PartEntry, 64>` which serde moves by value
//! through several frames, and cost the install about 12 KB of stack. The encoding read is the
//! same (postcard, `docs/FORMAT.md` section 2), and so are the checks, their order and their
//! errors: [`crate::wire::Superblock::parse`] stays the reference, and a test compares the two.
//!
//! [`Parts`] keeps each part in 44 bytes (sizes, op count, SHA-256) with the codecs in a bit
//! mask, instead of 48-byte [`PartEntry`] values: 260 bytes less installer RAM. Xz parts and
//! their filters (feature `xz`) take a second mask and a byte a part; without the feature an
//! xz part is refused here ([`FormatError::CodecNotBuilt`]).

use serde::de::{DeserializeSeed, Error as _, SeqAccess, Visitor};
use serde::Deserialize;

use super::policy::{check_signature, check_superblock};
use super::{prefix, InstallError, Installer, Meta, Res, INFLATE_WINDOW, INFO_SUBJECT_LEN};
use crate::object::{ObjectId, MAX_SUBJECT_LEN, MAX_VERSION_LEN};
use crate::store::Store;
use crate::wire::HEADER_LEN;
use crate::wire::{
    check_part, dictionary_is_valid, Codec, Filter, FormatError, PartEntry, DEFLATE_DICTIONARY,
    MAX_PARTS, MAX_REF_LEN,
};

// One bit of `Parts::deflate` per part.
const _: () = assert!(MAX_PARTS <= 64);

/// One part as the installer keeps it (its codec is a bit of [`Parts::deflate`]).
#[derive(Clone, Copy)]
struct Slot {
    size: u32,
    uncompressed_size: u32,
    ops: u32,
    sha256: [u8; 32],
}

/// The verified superblock's part table, in fixed memory: at most [`MAX_PARTS`] parts, each
/// stored, deflate- or (feature `xz`) xz-coded (a decoded table never holds another codec).
pub(crate) struct Parts {
    /// Bit `i` set: part `i` is [`Codec::Deflate`], else [`Codec::Stored`] (or xz).
    deflate: u64,
    /// Bit `i` set: part `i` is [`Codec::Xz`].
    #[cfg(feature = "xz")]
    xz: u64,
    /// Each xz part's filter code.
    #[cfg(feature = "xz")]
    filters: [u8; MAX_PARTS],
    /// A `heapless::Vec`, not an array: a new one is not zeroed, so [`Parts::new`] (and the
    /// installer's) builds no 2.8 KB temporary on the stack.
    slots: heapless::Vec<Slot, MAX_PARTS, u8>,
}

impl Parts {
    pub(crate) const fn new() -> Parts {
        Parts {
            deflate: 0,
            #[cfg(feature = "xz")]
            xz: 0,
            #[cfg(feature = "xz")]
            filters: [0; MAX_PARTS],
            slots: heapless::Vec::new(),
        }
    }

    pub(crate) fn clear(&mut self) {
        self.deflate = 0;
        #[cfg(feature = "xz")]
        {
            self.xz = 0;
        }
        self.slots.clear();
    }

    /// Whether any part is deflate-coded.
    pub(crate) fn any_deflate(&self) -> bool {
        self.deflate != 0
    }

    /// Whether any part is xz-coded.
    pub(crate) fn any_xz(&self) -> bool {
        #[cfg(feature = "xz")]
        return self.xz != 0;
        #[cfg(not(feature = "xz"))]
        false
    }

    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Part `i`, if there is one.
    pub(crate) fn get(&self, i: usize) -> Option<PartEntry> {
        let s = self.slots.get(i)?;
        #[allow(unused_mut)]
        let (mut codec, mut filter) = if self.deflate >> i & 1 == 1 {
            (Codec::Deflate, Filter::None)
        } else {
            (Codec::Stored, Filter::None)
        };
        #[cfg(feature = "xz")]
        if self.xz >> i & 1 == 1 {
            codec = Codec::Xz;
            filter = Filter::from(self.filters.get(i).copied().unwrap_or(0));
        }
        Some(PartEntry {
            codec,
            filter,
            size: s.size,
            uncompressed_size: s.uncompressed_size,
            ops: s.ops,
            sha256: s.sha256,
        })
    }

    /// Appends a stored or deflate part; false when the table is full.
    fn push(&mut self, p: &PartEntry) -> bool {
        let i = self.len();
        let slot = Slot {
            size: p.size,
            uncompressed_size: p.uncompressed_size,
            ops: p.ops,
            sha256: p.sha256,
        };
        if self.slots.push(slot).is_err() {
            return false;
        }
        if p.codec == Codec::Deflate {
            self.deflate |= 1 << i;
        }
        #[cfg(feature = "xz")]
        if p.codec == Codec::Xz {
            self.xz |= 1 << i;
            if let Some(f) = self.filters.get_mut(i) {
                *f = p.filter.into();
            }
        }
        true
    }

    /// Bytes of all parts in the file.
    pub(crate) fn total_size(&self) -> u64 {
        self.slots.iter().map(|s| u64::from(s.size)).sum()
    }
}

/// What the installer's checks need of a decoded superblock besides [`Meta`] and [`Parts`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Target {
    /// The commit the file installs.
    pub(crate) to: ObjectId,
    /// Its timestamp.
    pub(crate) timestamp: u64,
    /// Operations in the file.
    pub(crate) objects: u32,
    /// The target commit's security version (0 in format version 1).
    pub(crate) security_version: u64,
    /// The window the parts need ([`crate::wire::Superblock::dictionary`]; 32 KiB before
    /// format version 3).
    pub(crate) dictionary: u32,
}

/// Reads the part sequence into a [`Parts`], as `heapless::Vec`'s `Deserialize` reads it into
/// a vector (one too many is an error), and remembers the first part-level error for after
/// the superblock-wide checks.
struct PartsSeed<'p> {
    parts: &'p mut Parts,
    first_bad: &'p mut Option<FormatError>,
    /// Format version 3 on: each entry has a filter byte after its codec.
    filters: bool,
}

/// Reads one part entry: its codec, its filter (format version 3 on), sizes, op count and
/// SHA-256, in one deserializer for every version (one copy of serde's code in flash).
struct EntrySeed {
    filters: bool,
}

impl<'de> DeserializeSeed<'de> for EntrySeed {
    type Value = PartEntry;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<PartEntry, D::Error> {
        d.deserialize_tuple(2 + usize::from(self.filters), self)
    }
}

impl<'de> Visitor<'de> for EntrySeed {
    type Value = PartEntry;

    fn expecting(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("a part entry")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<PartEntry, A::Error> {
        let missing = || A::Error::invalid_length(0, &"a part entry");
        let codec: u8 = seq.next_element()?.ok_or_else(missing)?;
        let filter: u8 = if self.filters {
            seq.next_element()?.ok_or_else(missing)?
        } else {
            0
        };
        // The rest in one go (postcard lays a nested tuple out flat, as the entry's fields).
        let (size, uncompressed_size, ops, sha256): (u32, u32, u32, [u8; 32]) =
            seq.next_element()?.ok_or_else(missing)?;
        Ok(PartEntry {
            codec: codec.into(),
            filter: filter.into(),
            size,
            uncompressed_size,
            ops,
            sha256,
        })
    }
}

impl<'de> DeserializeSeed<'de> for PartsSeed<'_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for PartsSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("a sequence of at most 64 parts")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(p) = seq.next_element_seed(EntrySeed {
            filters: self.filters,
        })? {
            let part = self.parts.len() as u32;
            if self.first_bad.is_none() {
                *self.first_bad = check_part(part, &p).err();
                #[cfg(not(feature = "xz"))]
                if self.first_bad.is_none() && p.codec == Codec::Xz {
                    *self.first_bad = Some(FormatError::CodecNotBuilt {
                        part,
                        codec: p.codec.into(),
                    });
                }
            }
            if !self.parts.push(&p) {
                return Err(A::Error::invalid_length(MAX_PARTS + 1, &self));
            }
        }
        Ok(())
    }
}

/// Decodes and validates the superblock `bytes` of format `version` (1, 2 or 3, as the header
/// said: version 2 ends with the security version, version 3 has part filters and ends with the
/// dictionary) into `meta` (ref, source, version, subject), `parts` and the returned [`Target`],
/// with the checks of [`crate::wire::Superblock::parse`] in its order: decodes exactly
/// (`BadSuperblock`), ref length (`BadRef`), version and subject lengths (`BadMeta`), at least
/// one part (`NoParts`), then each part's codec (`UnknownCodec`), a stored part's sizes
/// (`StoredSize`), its filter (`UnknownFilter`, `FilterWithoutXz`) and, without the `xz`
/// feature, no xz part (`CodecNotBuilt`); then the dictionary (`BadDictionary`). On error `meta` and
/// `parts` hold partial values; the installer is failed then and never reads them.
///
/// Out of line on purpose: its frame (serde's) is popped before the parts start.
#[inline(never)]
pub(crate) fn decode(
    bytes: &[u8],
    format_version: u16,
    meta: &mut Meta,
    parts: &mut Parts,
) -> Result<Target, FormatError> {
    let bad = |_| FormatError::BadSuperblock;
    let mut de = postcard::Deserializer::from_bytes(bytes);
    let ref_name = <&str>::deserialize(&mut de).map_err(bad)?;
    let from = Option::<ObjectId>::deserialize(&mut de).map_err(bad)?;
    let to = ObjectId::deserialize(&mut de).map_err(bad)?;
    let timestamp = u64::deserialize(&mut de).map_err(bad)?;
    let version = <&str>::deserialize(&mut de).map_err(bad)?;
    let subject = <&str>::deserialize(&mut de).map_err(bad)?;
    let objects = u32::deserialize(&mut de).map_err(bad)?;
    parts.clear();
    let mut first_bad = None;
    PartsSeed {
        parts,
        first_bad: &mut first_bad,
        filters: format_version >= 3,
    }
    .deserialize(&mut de)
    .map_err(bad)?;
    let security_version = if format_version >= 2 {
        u64::deserialize(&mut de).map_err(bad)?
    } else {
        0
    };
    let dictionary = if format_version >= 3 {
        u32::deserialize(&mut de).map_err(bad)?
    } else {
        DEFLATE_DICTIONARY
    };
    if !de.finalize().map_err(bad)?.is_empty() {
        return Err(FormatError::BadSuperblock);
    }
    if ref_name.is_empty() || ref_name.len() > MAX_REF_LEN {
        return Err(FormatError::BadRef);
    }
    if version.len() > MAX_VERSION_LEN || subject.len() > MAX_SUBJECT_LEN {
        return Err(FormatError::BadMeta);
    }
    if parts.is_empty() {
        return Err(FormatError::NoParts);
    }
    if let Some(e) = first_bad {
        return Err(e);
    }
    if !dictionary_is_valid(dictionary) {
        return Err(FormatError::BadDictionary(dictionary));
    }
    meta.ref_name.clear();
    meta.version.clear();
    meta.subject.clear();
    // All three are bounded by the checks above.
    let copied = meta.ref_name.push_str(ref_name).is_ok()
        && meta.version.push_str(version).is_ok()
        && meta
            .subject
            .push_str(prefix(subject, INFO_SUBJECT_LEN))
            .is_ok();
    if !copied {
        return Err(FormatError::BadSuperblock);
    }
    meta.from = from;
    Ok(Target {
        to,
        timestamp,
        objects,
        security_version,
        dictionary,
    })
}

impl Installer<'_> {
    /// The signature byte (and bytes) are in: check the signature, decode the superblock and
    /// start the parts.
    ///
    /// Each step is out of line, so that the stack holds one step's frame at a time: the
    /// signature check (ed25519, about 2.2 KB), the superblock decoding (serde, about 0.5 KB)
    /// and the store's look-up of a delta's source, rather than one frame holding all of them
    /// on the path of every part.
    pub(super) fn verified<S: Store>(&mut self, store: &mut S) -> Res<S::Error> {
        self.check_and_decode()?;
        self.start_parts(store)
    }

    /// Checks the signature, then decodes the superblock into `info`, `parts` and `ops`.
    #[inline(never)]
    pub(super) fn check_and_decode<E>(&mut self) -> Res<E> {
        let message = self
            .window
            .get(..HEADER_LEN + self.superblock_len)
            .unwrap_or(&[]);
        self.info.verified = check_signature(
            &self.policy,
            self.signature_kind,
            self.ops.signature(),
            message,
        )?;
        let target = decode(
            self.window
                .get(HEADER_LEN..HEADER_LEN + self.superblock_len)
                .unwrap_or(&[]),
            self.format_version,
            &mut self.info,
            &mut self.parts,
        )
        .map_err(InstallError::Format)?;
        check_superblock(&self.policy, &self.info.ref_name, target.security_version)?;
        self.ops.format_version = self.format_version;
        self.check_dictionary(target.dictionary)?;
        #[cfg(feature = "xz")]
        {
            self.dictionary = target.dictionary;
        }
        self.ops.start_file(
            target.to,
            target.timestamp,
            target.objects,
            target.security_version,
        );
        self.known = true;
        debug!(
            "update for {} installs {} ({} parts)",
            self.info.ref_name.as_str(),
            self.ops.to,
            self.parts.len()
        );
        Ok(())
    }

    /// The window the file's parts need against what was lent ([`InstallError::DictionaryTooLarge`]):
    /// deflate parts need a power-of-two ring of at least `dictionary` bytes (at most
    /// [`INFLATE_WINDOW`]: deflate reaches no further), xz parts an LZMA2 dictionary of
    /// `dictionary` bytes.
    pub(super) fn check_dictionary<E>(&self, dictionary: u32) -> Res<E> {
        // Lent sizes over 4 GiB count as 4 GiB: no dictionary is larger.
        let lent = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        if self.parts.any_deflate() {
            let needed = dictionary.min(INFLATE_WINDOW as u32).next_power_of_two();
            let have = lent(self.ring_len());
            if needed > have {
                return Err(InstallError::DictionaryTooLarge { needed, lent: have });
            }
        }
        if self.parts.any_xz() {
            let have = lent(self.dictionary_lent());
            if dictionary > have {
                return Err(InstallError::DictionaryTooLarge {
                    needed: dictionary,
                    lent: have,
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod test {
    extern crate std;

    use std::vec::Vec;

    use super::*;
    use crate::wire::{Superblock, TargetMeta};

    fn part(codec: Codec, size: u32, uncompressed_size: u32, seed: u8) -> PartEntry {
        PartEntry {
            codec,
            filter: if codec == Codec::Xz {
                Filter::X86
            } else {
                Filter::None
            },
            size,
            uncompressed_size,
            ops: u32::from(seed) * 3,
            sha256: [seed; 32],
        }
    }

    fn encode(sb: &Superblock<'_>) -> Vec<u8> {
        let mut buf = [0u8; 8192];
        let n = sb.emit(&mut buf).unwrap().len();
        buf[..n].to_vec()
    }

    /// `decode` and `Superblock::parse` agree: the same error, or the same fields.
    fn agree(bytes: &[u8]) {
        agree_version(bytes, 1);
        agree_version(bytes, 2);
        agree_version(bytes, 3);
    }

    fn agree_version(bytes: &[u8], version: u16) {
        let mut meta = Meta::new();
        let mut parts = Parts::new();
        let got = decode(bytes, version, &mut meta, &mut parts);
        let parsed = Superblock::parse_version(bytes, version);
        // Without the `xz` feature, an xz part the format allows is refused as not built.
        #[cfg(not(feature = "xz"))]
        if let Ok(sb) = &parsed {
            if let Some(i) = sb.parts.iter().position(|p| p.codec == Codec::Xz) {
                let e = FormatError::CodecNotBuilt {
                    part: i as u32,
                    codec: 2,
                };
                assert_eq!(got.map(|_| ()), Err(e));
                return;
            }
        }
        match parsed {
            Err(e) => assert_eq!(got.map(|_| ()), Err(e), "{bytes:02x?}"),
            Ok(sb) => {
                let t = got.unwrap();
                assert_eq!(
                    (t.to, t.timestamp, t.objects, parts.total_size()),
                    (sb.to, sb.meta.timestamp, sb.objects, sb.parts_size())
                );
                assert_eq!(t.security_version, sb.security_version);
                assert_eq!(t.dictionary, sb.dictionary);
                assert_eq!(meta.ref_name.as_str(), sb.ref_name);
                assert_eq!(meta.version.as_str(), sb.meta.version);
                let cut = prefix(sb.meta.subject, INFO_SUBJECT_LEN);
                assert_eq!(meta.subject.as_str(), cut);
                assert!(cut.len() == sb.meta.subject.len() || cut.len() >= INFO_SUBJECT_LEN - 3);
                assert_eq!(meta.from, sb.from);
                assert_eq!(parts.len(), sb.parts.len());
                for (i, p) in sb.parts.iter().enumerate() {
                    assert_eq!(parts.get(i), Some(*p));
                }
                assert_eq!(parts.get(sb.parts.len()), None);
            }
        }
    }

    fn superblocks() -> Vec<Vec<u8>> {
        // 1001 bytes: cut inside a character at INFO_SUBJECT_LEN.
        let long_subject: &'static str = std::format!("a{}", "ü".repeat(500)).leak();
        let mut out = Vec::new();
        for (n, from, subject, security_version) in [
            (1usize, None, "s", 0),
            (3, Some(ObjectId([9; 32])), "a subject", 5),
            (64, None, long_subject, 1 << 40),
            (2, None, "", 0),
        ] {
            let mut parts = heapless::Vec::new();
            for i in 0..n {
                let codec = match i % 3 {
                    0 => Codec::Deflate,
                    1 => Codec::Stored,
                    // Xz parts only where older versions are written too (to check that
                    // they are refused there).
                    _ => Codec::Xz,
                };
                let size = 300 + i as u32 * 1000;
                let un = if codec == Codec::Stored {
                    size
                } else {
                    size * 3
                };
                parts.push(part(codec, size, un, i as u8)).unwrap();
            }
            let sb = Superblock {
                ref_name: "ecu/main",
                from,
                to: ObjectId([2; 32]),
                meta: TargetMeta {
                    timestamp: 1_700_000_000,
                    version: "1.2.3",
                    subject,
                },
                objects: 17,
                parts,
                security_version,
                dictionary: 8 << 20,
            };
            let old = Superblock {
                dictionary: crate::wire::DEFLATE_DICTIONARY,
                parts: sb
                    .parts
                    .iter()
                    .filter(|p| p.codec != Codec::Xz)
                    .copied()
                    .collect(),
                ..sb.clone()
            };
            if security_version == 0 {
                let mut buf = [0u8; 8192];
                let n = old.emit_version(&mut buf, 1).unwrap().len();
                out.push(buf[..n].to_vec());
            }
            let mut buf = [0u8; 8192];
            let n = old.emit_version(&mut buf, 2).unwrap().len();
            out.push(buf[..n].to_vec());
            out.push(encode(&sb));
        }
        out
    }

    #[test]
    fn valid_superblocks_decode_as_parse_does() {
        for sb in superblocks() {
            agree(&sb);
        }
    }

    #[test]
    fn every_truncation_and_extension_fails_as_parse_does() {
        for sb in superblocks() {
            for n in 0..sb.len() {
                agree(&sb[..n]);
            }
            let mut longer = sb.clone();
            longer.push(0);
            agree(&longer);
        }
    }

    #[test]
    fn every_byte_changed_fails_or_decodes_as_parse_does() {
        for sb in superblocks().iter().take(2) {
            for i in 0..sb.len() {
                for v in [0x00, 0x01, 0x02, 0x41, 0x7f, 0x80, 0xc3, 0xff] {
                    let mut b = sb.clone();
                    b[i] = v;
                    agree(&b);
                }
            }
        }
    }

    #[test]
    fn checks_come_in_parse_order() {
        let p = part(Codec::Stored, 10, 10, 1);
        let sb = |ref_name: &'static str, version: &'static str, parts: &[PartEntry]| {
            let mut v = heapless::Vec::new();
            for p in parts {
                v.push(*p).unwrap();
            }
            encode(&Superblock {
                ref_name,
                from: None,
                to: ObjectId::ZERO,
                meta: TargetMeta {
                    timestamp: 0,
                    version,
                    subject: "s",
                },
                objects: 1,
                parts: v,
                security_version: 0,
                dictionary: 4096,
            })
        };
        let long: &'static str = "v".repeat(256).leak();
        let unknown = part(Codec::Unknown(7), 10, 10, 2);
        let odd = part(Codec::Stored, 10, 11, 3);
        let unknown_filter = PartEntry {
            filter: Filter::Unknown(9),
            ..part(Codec::Xz, 10, 30, 4)
        };
        let deflate_filter = PartEntry {
            filter: Filter::Arm,
            ..part(Codec::Deflate, 10, 30, 5)
        };
        let cases = [
            (sb("", long, &[]), FormatError::BadRef),
            (sb("r", long, &[]), FormatError::BadMeta),
            (sb("r", "1", &[]), FormatError::NoParts),
            (
                sb("r", "1", &[p, odd, unknown]),
                FormatError::StoredSize { part: 1 },
            ),
            (
                sb("r", "1", &[p, unknown, odd]),
                FormatError::UnknownCodec { part: 1, codec: 7 },
            ),
            (
                sb("r", "1", &[p, unknown_filter, unknown]),
                FormatError::UnknownFilter { part: 1, filter: 9 },
            ),
            (
                sb("r", "1", &[deflate_filter, unknown_filter]),
                FormatError::FilterWithoutXz { part: 0, codec: 1 },
            ),
        ];
        for (bytes, want) in cases {
            let mut meta = Meta::new();
            let mut parts = Parts::new();
            assert_eq!(
                decode(&bytes, 3, &mut meta, &mut parts).map(|_| ()),
                Err(want)
            );
            agree(&bytes);
        }
        // The dictionary comes last.
        let mut b = sb("r", "1", &[p]);
        let n = b.len();
        b[n - 2..].copy_from_slice(&[0x88, 0x27]); // 5000
        let mut meta = Meta::new();
        let mut parts = Parts::new();
        assert_eq!(
            decode(&b, 3, &mut meta, &mut parts).map(|_| ()),
            Err(FormatError::BadDictionary(5000))
        );
        agree(&b);
        // 65 parts: one too many for the table, as for `heapless::Vec`.
        let mut b = sb("r", "1", &[p]);
        // The security version (0: one byte) and the dictionary (4096: two bytes) end a
        // version-3 superblock.
        let tail = b.split_off(b.len() - 3);
        assert_eq!(tail, [0, 0x80, 0x20]);
        let count_at = b.len() - 1 - 2 - 3 - 32; // codec, filter, 3 one-byte varints, hash
        assert_eq!(b[count_at], 1);
        b[count_at] = 65;
        let entry = b[count_at + 1..].to_vec();
        for _ in 0..64 {
            b.extend_from_slice(&entry);
        }
        b.extend_from_slice(&tail);
        let mut meta = Meta::new();
        let mut parts = Parts::new();
        assert_eq!(
            decode(&b, 3, &mut meta, &mut parts).map(|_| ()),
            Err(FormatError::BadSuperblock)
        );
        agree(&b);
    }
}
