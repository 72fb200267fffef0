//! The superblock: what a file installs ([`Superblock`], [`TargetMeta`]) and its part table
//! ([`PartEntry`]), postcard-encoded in each format version's layout.

use serde::{Deserialize, Serialize};

use super::{
    dictionary_is_valid, Codec, Filter, FormatError, DEFLATE_DICTIONARY, FORMAT_VERSION, MAX_PARTS,
    MAX_REF_LEN, PATCH_FORMAT_VERSION,
};
use crate::object::{ObjectId, MAX_SUBJECT_LEN, MAX_VERSION_LEN};

/// One part as the superblock describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct PartEntry {
    /// How the part is encoded.
    pub codec: Codec,
    /// The filter an [`Codec::Xz`] part's records went through (format version 3 on;
    /// [`Filter::None`] for every other codec).
    pub filter: Filter,
    /// Bytes of the part in the file.
    pub size: u32,
    /// Bytes of operation records once decoded.
    pub uncompressed_size: u32,
    /// Operations in the part.
    pub ops: u32,
    /// SHA-256 of the part's bytes as they stand in the file.
    pub sha256: [u8; 32],
}

/// The target commit's metadata, carried in the superblock so that a device can show what a
/// file holds before installing it.
///
/// The installer checks `timestamp` against the commit object's timestamp
/// (`InstallError::MetaMismatch`). `version` and `subject` are informational: they are signed
/// with the superblock, and the commit object that carries the authoritative copies is named
/// by the signed target id and verified by its hash, but the installer does not compare the
/// strings byte for byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetMeta<'a> {
    /// Seconds since the epoch, UTC.
    pub timestamp: u64,
    /// The commit's version string.
    pub version: &'a str,
    /// The commit's subject.
    pub subject: &'a str,
}

/// The superblock: what the file updates from and to, and its parts. Encoded with postcard,
/// in field order. [`Superblock::security_version`] exists from format version 2 on;
/// [`PartEntry::filter`] and [`Superblock::dictionary`] from version 3 on
/// ([`Superblock::parse_version`], [`Superblock::emit_version`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Superblock<'a> {
    /// The ref this update moves, e.g. `ecu/armv7/main`.
    pub ref_name: &'a str,
    /// The commit a delta applies to; `None` for a from-scratch file.
    pub from: Option<ObjectId>,
    /// The commit the file installs.
    pub to: ObjectId,
    /// The target commit's metadata.
    #[serde(borrow)]
    pub meta: TargetMeta<'a>,
    /// Objects the file writes or reuses, over all parts.
    pub objects: u32,
    /// The parts, in file order.
    pub parts: heapless::Vec<PartEntry, MAX_PARTS>,
    /// The target commit's security version (anti-rollback): the installer checks it against
    /// the device's floor before anything reaches the store, and against the commit object.
    /// Format version 2 on; 0 for a version-1 file.
    pub security_version: u64,
    /// The window the parts need, in bytes: every deflate part's back-references reach at most
    /// this far (and never beyond 32 KiB), and every xz part is decoded with an LZMA2
    /// dictionary of exactly this size. A valid size ([`dictionary_is_valid`]); format version
    /// 3 on, [`DEFLATE_DICTIONARY`] for older files. A device that lends less refuses the file
    /// before anything reaches its store.
    pub dictionary: u32,
}

/// A part entry of format versions 1 and 2: [`PartEntry`] without its filter.
type PartEntryV1 = (Codec, u32, u32, u32, [u8; 32]);

/// A format-version-1 superblock: [`Superblock`] without its last two fields, and parts
/// without a filter.
type SuperblockV1<'a> = (
    &'a str,
    Option<ObjectId>,
    ObjectId,
    TargetMeta<'a>,
    u32,
    heapless::Vec<PartEntryV1, MAX_PARTS>,
);

/// A format-version-2 superblock: version 1 and the security version.
type SuperblockV2<'a> = (
    &'a str,
    Option<ObjectId>,
    ObjectId,
    TargetMeta<'a>,
    u32,
    heapless::Vec<PartEntryV1, MAX_PARTS>,
    u64,
);

fn parts_v3(v1: &heapless::Vec<PartEntryV1, MAX_PARTS>) -> heapless::Vec<PartEntry, MAX_PARTS> {
    v1.iter()
        .map(|&(codec, size, uncompressed_size, ops, sha256)| PartEntry {
            codec,
            filter: Filter::None,
            size,
            uncompressed_size,
            ops,
            sha256,
        })
        .collect()
}

impl<'a> Superblock<'a> {
    /// Decodes and validates a superblock of the current format ([`FORMAT_VERSION`]).
    pub fn parse(bytes: &'a [u8]) -> Result<Superblock<'a>, FormatError> {
        Superblock::parse_version(bytes, FORMAT_VERSION)
    }

    /// Decodes and validates a superblock of format `version` (as the header says).
    pub fn parse_version(bytes: &'a [u8], version: u16) -> Result<Superblock<'a>, FormatError> {
        let bad = |_| FormatError::BadSuperblock;
        let (sb, rest) = match version {
            1 => {
                let ((ref_name, from, to, meta, objects, parts), rest): (SuperblockV1<'a>, _) =
                    postcard::take_from_bytes(bytes).map_err(bad)?;
                let sb = Superblock {
                    ref_name,
                    from,
                    to,
                    meta,
                    objects,
                    parts: parts_v3(&parts),
                    security_version: 0,
                    dictionary: DEFLATE_DICTIONARY,
                };
                (sb, rest)
            }
            2 => {
                let ((ref_name, from, to, meta, objects, parts, security_version), rest): (
                    SuperblockV2<'a>,
                    _,
                ) = postcard::take_from_bytes(bytes).map_err(bad)?;
                let sb = Superblock {
                    ref_name,
                    from,
                    to,
                    meta,
                    objects,
                    parts: parts_v3(&parts),
                    security_version,
                    dictionary: DEFLATE_DICTIONARY,
                };
                (sb, rest)
            }
            // Version 3 adds patch records, part filters and the dictionary; versions 4
            // (redeflate records) and 5 (reuse-entries records) keep version 3's superblock.
            PATCH_FORMAT_VERSION..=FORMAT_VERSION => {
                postcard::take_from_bytes(bytes).map_err(bad)?
            }
            v => return Err(FormatError::UnsupportedVersion(v)),
        };
        if !rest.is_empty() {
            return Err(FormatError::BadSuperblock);
        }
        if sb.ref_name.is_empty() || sb.ref_name.len() > MAX_REF_LEN {
            return Err(FormatError::BadRef);
        }
        if sb.meta.version.len() > MAX_VERSION_LEN || sb.meta.subject.len() > MAX_SUBJECT_LEN {
            return Err(FormatError::BadMeta);
        }
        if sb.parts.is_empty() {
            return Err(FormatError::NoParts);
        }
        for (i, p) in sb.parts.iter().enumerate() {
            check_part(i as u32, p)?;
        }
        if !dictionary_is_valid(sb.dictionary) {
            return Err(FormatError::BadDictionary(sb.dictionary));
        }
        Ok(sb)
    }

    /// Total bytes of all parts.
    pub fn parts_size(&self) -> u64 {
        self.parts.iter().map(|p| u64::from(p.size)).sum()
    }

    /// Encodes the superblock in the current format ([`FORMAT_VERSION`]) into `out`,
    /// returning the bytes used.
    pub fn emit<'o>(&self, out: &'o mut [u8]) -> Result<&'o mut [u8], FormatError> {
        self.emit_version(out, FORMAT_VERSION)
    }

    /// Encodes the superblock in format `version` into `out`, returning the bytes used.
    /// Version 1 has no security version: one other than 0 is
    /// [`FormatError::SecurityVersionNeedsV2`]. Versions 1 and 2 have no filters, no xz parts
    /// and a 32 KiB window: anything else is [`FormatError::NeedsV3`].
    pub fn emit_version<'o>(
        &self,
        out: &'o mut [u8],
        version: u16,
    ) -> Result<&'o mut [u8], FormatError> {
        let full = |_| FormatError::BufferTooSmall;
        if version < PATCH_FORMAT_VERSION
            && (self.dictionary != DEFLATE_DICTIONARY
                || self
                    .parts
                    .iter()
                    .any(|p| p.codec == Codec::Xz || p.filter != Filter::None))
        {
            return Err(FormatError::NeedsV3);
        }
        let v1_parts = || -> heapless::Vec<PartEntryV1, MAX_PARTS> {
            self.parts
                .iter()
                .map(|p| (p.codec, p.size, p.uncompressed_size, p.ops, p.sha256))
                .collect()
        };
        match version {
            1 if self.security_version != 0 => Err(FormatError::SecurityVersionNeedsV2),
            1 => {
                let v1: SuperblockV1<'_> = (
                    self.ref_name,
                    self.from,
                    self.to,
                    self.meta,
                    self.objects,
                    v1_parts(),
                );
                postcard::to_slice(&v1, out).map_err(full)
            }
            2 => {
                let v2: SuperblockV2<'_> = (
                    self.ref_name,
                    self.from,
                    self.to,
                    self.meta,
                    self.objects,
                    v1_parts(),
                    self.security_version,
                );
                postcard::to_slice(&v2, out).map_err(full)
            }
            PATCH_FORMAT_VERSION..=FORMAT_VERSION => postcard::to_slice(self, out).map_err(full),
            v => Err(FormatError::UnsupportedVersion(v)),
        }
    }
}

/// The checks of one part entry, in order: a known codec (`UnknownCodec`), a stored part's
/// sizes (`StoredSize`), a known filter (`UnknownFilter`), a filter only on an xz part
/// (`FilterWithoutXz`).
pub fn check_part(part: u32, p: &PartEntry) -> Result<(), FormatError> {
    if let Codec::Unknown(codec) = p.codec {
        return Err(FormatError::UnknownCodec { part, codec });
    }
    if p.codec == Codec::Stored && p.size != p.uncompressed_size {
        return Err(FormatError::StoredSize { part });
    }
    if let Filter::Unknown(filter) = p.filter {
        return Err(FormatError::UnknownFilter { part, filter });
    }
    if p.filter != Filter::None && p.codec != Codec::Xz {
        return Err(FormatError::FilterWithoutXz {
            part,
            codec: p.codec.into(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod test {
    extern crate std;

    use super::*;
    use crate::wire::MAX_DICTIONARY;

    #[test]
    fn superblock_round_trip() {
        let mut parts = heapless::Vec::new();
        parts
            .push(PartEntry {
                codec: Codec::Deflate,
                filter: Filter::None,
                size: 10,
                uncompressed_size: 20,
                ops: 2,
                sha256: [7; 32],
            })
            .unwrap();
        let sb = Superblock {
            ref_name: "ecu/main",
            from: Some(ObjectId([1; 32])),
            to: ObjectId([2; 32]),
            meta: TargetMeta {
                timestamp: 5,
                version: "1.0",
                subject: "s",
            },
            objects: 2,
            parts,
            security_version: 0,
            dictionary: DEFLATE_DICTIONARY,
        };
        let mut buf = [0u8; 256];
        let n = sb.emit_version(&mut buf, 2).unwrap().len();
        assert_eq!(Superblock::parse_version(&buf[..n], 2).unwrap(), sb);
        // Version 1: the same fields without the last; version 2 appends it.
        let mut v1 = [0u8; 256];
        let n1 = sb.emit_version(&mut v1, 1).unwrap().len();
        assert_eq!((n1, &v1[..n1]), (n - 1, &buf[..n - 1]));
        assert_eq!(buf[n - 1], 0);
        assert_eq!(Superblock::parse_version(&v1[..n1], 1).unwrap(), sb);
        assert_eq!(
            Superblock::parse_version(&v1[..n1], 2),
            Err(FormatError::BadSuperblock)
        );
        assert_eq!(
            Superblock::parse_version(&buf[..n], 1),
            Err(FormatError::BadSuperblock)
        );
        assert_eq!(
            Superblock::parse_version(&buf[..n], 6),
            Err(FormatError::UnsupportedVersion(6))
        );
        // Version 3: a filter byte after each part's codec, the dictionary after the security
        // version.
        let mut v3 = [0u8; 256];
        let n3 = sb.emit(&mut v3).unwrap().len();
        assert_eq!(n3, n + 1 + 3);
        let codec_at = n - 1 - 32 - 3 - 1;
        assert_eq!(&v3[..=codec_at], &buf[..=codec_at]);
        assert_eq!(v3[codec_at + 1], 0, "filter none");
        assert_eq!(&v3[codec_at + 2..n + 1], &buf[codec_at + 1..n]);
        assert_eq!(&v3[n + 1..n3], &[0x80, 0x80, 0x02], "dictionary 32768");
        assert_eq!(Superblock::parse(&v3[..n3]).unwrap(), sb);
        // Version 4 (redeflate records) keeps version 3's superblock, byte for byte.
        assert_eq!(Superblock::parse_version(&v3[..n3], 4).unwrap(), sb);
        let mut v4 = [0u8; 256];
        assert_eq!(sb.emit_version(&mut v4, 4).unwrap(), &v3[..n3]);
        assert_eq!(
            Superblock::parse_version(&v3[..n3], 2),
            Err(FormatError::BadSuperblock)
        );
        // Version 2 reads and writes as before.
        assert_eq!(Superblock::parse_version(&buf[..n], 2).unwrap(), sb);
        let mut v2 = [0u8; 256];
        let n2 = sb.emit_version(&mut v2, 2).unwrap().len();
        assert_eq!(&v2[..n2], &buf[..n]);
        let sv = Superblock {
            security_version: 300,
            ..sb.clone()
        };
        let mut sv_buf = [0u8; 256];
        let m = sv.emit_version(&mut sv_buf, 2).unwrap().len();
        assert_eq!((m, &sv_buf[m - 2..m]), (n + 1, &[0xac, 0x02][..]));
        assert_eq!(Superblock::parse_version(&sv_buf[..m], 2).unwrap(), sv);
        let m3 = sv.emit(&mut sv_buf).unwrap().len();
        assert_eq!(Superblock::parse(&sv_buf[..m3]).unwrap(), sv);
        assert_eq!(
            sv.emit_version(&mut v1, 1),
            Err(FormatError::SecurityVersionNeedsV2)
        );
        assert_eq!(
            Superblock::parse_version(&buf[..n - 1], 2),
            Err(FormatError::BadSuperblock)
        );
        assert_eq!(
            Superblock::parse(&v3[..n3 - 1]),
            Err(FormatError::BadSuperblock)
        );
        let mut longer = buf;
        longer[n] = 0;
        assert_eq!(
            Superblock::parse_version(&longer[..n + 1], 2),
            Err(FormatError::BadSuperblock)
        );
        let mut longer = v3;
        longer[n3] = 0;
        assert_eq!(
            Superblock::parse(&longer[..n3 + 1]),
            Err(FormatError::BadSuperblock)
        );
        // What only version 3 carries.
        let mut xz = sb.clone();
        xz.parts[0].codec = Codec::Xz;
        assert_eq!(xz.emit_version(&mut v1, 2), Err(FormatError::NeedsV3));
        let mut small = sb.clone();
        small.dictionary = 8192;
        assert_eq!(small.emit_version(&mut v1, 1), Err(FormatError::NeedsV3));
        let n = small.emit(&mut v3).unwrap().len();
        assert_eq!(Superblock::parse(&v3[..n]).unwrap(), small);
    }

    #[test]
    fn superblock_validation() {
        let part = PartEntry {
            codec: Codec::Stored,
            filter: Filter::None,
            size: 10,
            uncompressed_size: 10,
            ops: 1,
            sha256: [0; 32],
        };
        let sb = |parts: &[PartEntry], version: &'static str, subject: &'static str| {
            let mut v = heapless::Vec::new();
            for p in parts {
                v.push(*p).unwrap();
            }
            Superblock {
                ref_name: "r",
                from: None,
                to: ObjectId::ZERO,
                meta: TargetMeta {
                    timestamp: 0,
                    version,
                    subject,
                },
                objects: 1,
                parts: v,
                security_version: 0,
                dictionary: DEFLATE_DICTIONARY,
            }
        };
        let check = |s: Superblock<'_>| {
            let mut buf = [0u8; 4096];
            let n = s.emit(&mut buf).unwrap().len();
            Superblock::parse(&buf[..n]).map(|_| ())
        };
        assert_eq!(check(sb(&[part], "1", "s")), Ok(()));
        assert_eq!(check(sb(&[], "1", "s")), Err(FormatError::NoParts));
        let long_version: &'static str = "v".repeat(256).leak();
        assert_eq!(
            check(sb(&[part], long_version, "s")),
            Err(FormatError::BadMeta)
        );
        let long_subject: &'static str = "s".repeat(1025).leak();
        assert_eq!(
            check(sb(&[part], "1", long_subject)),
            Err(FormatError::BadMeta)
        );
        let odd = PartEntry {
            uncompressed_size: 11,
            ..part
        };
        assert_eq!(
            check(sb(&[part, odd], "1", "s")),
            Err(FormatError::StoredSize { part: 1 })
        );
        let deflated = PartEntry {
            codec: Codec::Deflate,
            ..odd
        };
        assert_eq!(check(sb(&[deflated], "1", "s")), Ok(()));
        let unknown = PartEntry {
            codec: Codec::Unknown(3),
            ..part
        };
        assert_eq!(
            check(sb(&[part, unknown], "1", "s")),
            Err(FormatError::UnknownCodec { part: 1, codec: 3 })
        );
        // Filters: known, and only on xz parts.
        let xz = PartEntry {
            codec: Codec::Xz,
            filter: Filter::Arm64,
            ..odd
        };
        assert_eq!(check(sb(&[xz], "1", "s")), Ok(()));
        let strange = PartEntry {
            filter: Filter::Unknown(5),
            ..xz
        };
        let e = check(sb(&[xz, strange], "1", "s")).unwrap_err();
        assert_eq!(e, FormatError::UnknownFilter { part: 1, filter: 5 });
        assert!(std::format!("{e}").contains("filter 5"), "{e}");
        let misplaced = PartEntry {
            codec: Codec::Deflate,
            ..xz
        };
        assert_eq!(
            check(sb(&[misplaced], "1", "s")),
            Err(FormatError::FilterWithoutXz { part: 0, codec: 1 })
        );
        // The dictionary: 2^n or 3 * 2^(n-1), 4 KiB ..= 1.5 GiB.
        for (d, ok) in [
            (4096, true),
            (6144, true),
            (8 << 20, true),
            (12 << 20, true),
            (MAX_DICTIONARY, true),
            (2048, false),
            (5000, false),
            (5 << 12, false),
            (1 << 31, false),
            (0, false),
        ] {
            let mut s = sb(&[xz], "1", "s");
            s.dictionary = d;
            let want = if ok {
                Ok(())
            } else {
                Err(FormatError::BadDictionary(d))
            };
            assert_eq!(check(s), want, "{d}");
        }
    }
}
