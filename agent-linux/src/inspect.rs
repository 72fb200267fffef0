//! `delta show`: what an `.update` file holds, read with agent-core's wire views, without
//! touching any store.
//!
//! The header, the superblock and the signature are parsed as the installer parses them;
//! the parts are read through and each one's SHA-256 compared with the superblock's, so a
//! damaged file is an error ([`InspectError`]) that names the part and the numbers. A part
//! codec this agent does not know is reported by its code (`unknown(N)`), not refused. The
//! signature is verified (ed25519 `verify_strict` over `header || superblock`, as the format
//! specifies) against the keys given; which key verified it, or that none did, is reported.

use std::fmt;
use std::io::{self, Read};

use agent_core::object::ObjectId;
use agent_core::wire::{
    FormatError, Header, HeaderRepr, SignatureKind, Superblock, FORMAT_VERSION, HEADER_LEN,
    SIGNATURE_LEN,
};
use serde::Serialize;
use sha2::{Digest, Sha256};

/// One part as the superblock lists it.
#[derive(Debug, Clone, Serialize)]
pub struct PartInfo {
    /// The codec's name (`stored`, `deflate`, ...) or `unknown(N)` for a code this agent does
    /// not know.
    pub codec: String,
    /// The codec's wire code.
    pub codec_code: u8,
    /// The BCJ filter of an xz part (`none`, `x86`, ...; `unknown(N)` for a code this agent
    /// does not know).
    pub filter: String,
    /// Bytes of the part in the file.
    pub size: u32,
    /// Bytes of operation records once decoded.
    pub uncompressed_size: u32,
    /// Operation records in the part.
    pub ops: u32,
    /// The SHA-256 the superblock gives (checked against the bytes in the file).
    pub sha256: String,
}

/// What the signature says.
#[derive(Debug, Clone, Serialize)]
pub struct SignatureInfo {
    /// `none`, `ed25519` or `unknown(N)`.
    pub algorithm: String,
    /// Whether a given, not revoked key verifies it (`false` for an unsigned file).
    pub verified: bool,
    /// The public key (hex) that verifies it, when one does.
    pub key: Option<String>,
    /// The key that verifies it is revoked (the installer refuses it).
    pub revoked: bool,
    /// How many trusted keys it was checked against.
    pub keys_checked: usize,
}

/// Everything `delta show` reports.
#[derive(Debug, Clone, Serialize)]
pub struct UpdateSummary {
    /// The format version of the header.
    pub format_version: u16,
    /// The ref the update moves.
    #[serde(rename = "ref")]
    pub ref_name: String,
    /// The source commit of a delta (hex); `None` for a from-scratch file.
    pub from: Option<String>,
    /// The target commit (hex).
    pub to: String,
    /// The target's version string.
    pub version: String,
    /// The target's subject.
    pub subject: String,
    /// The target's timestamp, seconds since the epoch (UTC).
    pub timestamp: u64,
    /// The target's security version (anti-rollback).
    pub security_version: u64,
    /// Objects the file writes or reuses.
    pub objects: u32,
    /// The LZMA2 dictionary (or deflate window) a device lends to install the file, in bytes.
    pub dictionary: u32,
    /// The parts, in file order.
    pub parts: Vec<PartInfo>,
    /// Bytes of the whole file.
    pub size: u64,
    /// The signature.
    pub signature: SignatureInfo,
}

/// Why a file cannot be shown.
#[derive(Debug)]
#[non_exhaustive]
pub enum InspectError {
    /// Reading failed.
    Io(io::Error),
    /// The file ends before what its header and superblock announce.
    Truncated {
        /// What was being read.
        what: String,
        /// The byte offset where it starts.
        offset: u64,
        /// Bytes it needs.
        needed: u64,
        /// Bytes there were.
        have: u64,
    },
    /// The header or superblock is not valid.
    Format(FormatError),
    /// A part's bytes do not hash to what the superblock says.
    PartHash {
        /// The part (0-based).
        part: usize,
        /// Parts in the file.
        parts: usize,
        /// Its byte offset.
        offset: u64,
    },
    /// Bytes follow the last part.
    Trailing {
        /// Where the last part ends.
        end: u64,
    },
}

impl fmt::Display for InspectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InspectError::Io(e) => write!(f, "cannot read the update: {e}"),
            InspectError::Truncated {
                what,
                offset,
                needed,
                have,
            } => write!(
                f,
                "the update is truncated: {what} at byte {offset} needs {needed} bytes, only {have} are there"
            ),
            InspectError::Format(e) => write!(f, "the update is damaged or not an update: {e}"),
            InspectError::PartHash {
                part,
                parts,
                offset,
            } => write!(
                f,
                "part {part} of {parts} (at byte {offset}) is damaged: its SHA-256 differs from the superblock's"
            ),
            InspectError::Trailing { end } => write!(
                f,
                "the update has bytes after its last part, which ends at byte {end}"
            ),
        }
    }
}

/// Transparent to the errors its messages include.
impl std::error::Error for InspectError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            InspectError::Io(e) => e.source(),
            _ => None,
        }
    }
}

/// Reads exactly `n` bytes, or says how many there were.
fn read_n(r: &mut dyn Read, n: usize, what: &str, offset: u64) -> Result<Vec<u8>, InspectError> {
    let mut buf = Vec::with_capacity(n);
    r.take(n as u64)
        .read_to_end(&mut buf)
        .map_err(InspectError::Io)?;
    if buf.len() < n {
        return Err(InspectError::Truncated {
            what: what.to_string(),
            offset,
            needed: n as u64,
            have: buf.len() as u64,
        });
    }
    Ok(buf)
}

/// A code's name in the report: its name (the code enums' `name()`), or `unknown(N)`.
fn code_name(name: Option<&str>, code: u8) -> String {
    name.map_or_else(|| format!("unknown({code})"), str::to_string)
}

/// Decodes a superblock; a part codec this agent does not know is kept (by its code), so
/// that the file can still be described. From format version 2 on, the superblock is
/// [`Superblock`] as postcard encodes it (version 1 predates any codec but deflate).
fn superblock(bytes: &[u8], version: u16) -> Result<Superblock<'_>, FormatError> {
    match Superblock::parse_version(bytes, version) {
        Err(FormatError::UnknownCodec { .. }) if (2..=FORMAT_VERSION).contains(&version) => {
            match postcard::take_from_bytes::<Superblock<'_>>(bytes) {
                Ok((sb, [])) => Ok(sb),
                _ => Err(FormatError::BadSuperblock),
            }
        }
        r => r,
    }
}

/// Reads a whole `.update` file from `r` and describes it; its signature is checked against
/// `trusted` (a key also in `revoked` is reported as such and does not count as verified).
pub fn inspect(
    r: &mut dyn Read,
    trusted: &[[u8; 32]],
    revoked: &[[u8; 32]],
) -> Result<UpdateSummary, InspectError> {
    let head = read_n(r, HEADER_LEN, "the header", 0)?;
    let hdr = HeaderRepr::parse(&Header::new_unchecked(&head[..])).map_err(InspectError::Format)?;
    let sb_len = hdr.superblock_len as usize;
    let sb_bytes = read_n(r, sb_len, "the superblock", HEADER_LEN as u64)?;
    let sb = superblock(&sb_bytes, hdr.version).map_err(InspectError::Format)?;
    let mut offset = (HEADER_LEN + sb_len) as u64;
    let alg = read_n(r, 1, "the signature algorithm", offset)?[0];
    offset += 1;
    let kind = SignatureKind::from_code(alg);
    let sig_len = kind
        .len()
        .ok_or(InspectError::Format(FormatError::UnknownSignature(alg)))?;
    let sig = read_n(r, sig_len, "the signature", offset)?;
    offset += sig_len as u64;
    let mut signature = SignatureInfo {
        algorithm: code_name(kind.name(), kind.code()),
        verified: false,
        key: None,
        revoked: false,
        keys_checked: 0,
    };
    if kind == SignatureKind::Ed25519 {
        let mut message = head.clone();
        message.extend_from_slice(&sb_bytes);
        let mut s = [0u8; SIGNATURE_LEN];
        s.copy_from_slice(&sig);
        let s = ed25519_dalek::Signature::from_bytes(&s);
        let keys: Vec<&[u8; 32]> = trusted.iter().chain(revoked.iter()).collect();
        signature.keys_checked = trusted.len();
        for k in keys {
            let ok = ed25519_dalek::VerifyingKey::from_bytes(k)
                .is_ok_and(|vk| vk.verify_strict(&message, &s).is_ok());
            if ok {
                signature.key = Some(ObjectId(*k).to_string());
                signature.revoked = revoked.contains(k);
                signature.verified = !signature.revoked && trusted.contains(k);
                break;
            }
        }
    }
    let mut parts = Vec::with_capacity(sb.parts.len());
    let mut buf = vec![0u8; 64 * 1024];
    for (i, p) in sb.parts.iter().enumerate() {
        let start = offset;
        let mut left = u64::from(p.size);
        let mut h = Sha256::new();
        while left > 0 {
            let want = left.min(buf.len() as u64) as usize;
            let n = match r.read(&mut buf[..want]) {
                Ok(0) => {
                    return Err(InspectError::Truncated {
                        what: format!("part {i} of {}", sb.parts.len()),
                        offset: start,
                        needed: u64::from(p.size),
                        have: u64::from(p.size) - left,
                    })
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(InspectError::Io(e)),
            };
            h.update(&buf[..n]);
            left -= n as u64;
        }
        offset += u64::from(p.size);
        if h.finalize().as_slice() != p.sha256 {
            return Err(InspectError::PartHash {
                part: i,
                parts: sb.parts.len(),
                offset: start,
            });
        }
        parts.push(PartInfo {
            codec: code_name(p.codec.name(), p.codec.code()),
            codec_code: p.codec.into(),
            filter: code_name(p.filter.name(), p.filter.code()),
            size: p.size,
            uncompressed_size: p.uncompressed_size,
            ops: p.ops,
            sha256: ObjectId(p.sha256).to_string(),
        });
    }
    if read_n(r, 1, "", offset).is_ok() {
        return Err(InspectError::Trailing { end: offset });
    }
    Ok(UpdateSummary {
        format_version: hdr.version,
        ref_name: sb.ref_name.to_string(),
        from: sb.from.map(|f| f.to_string()),
        to: sb.to.to_string(),
        version: sb.meta.version.to_string(),
        subject: sb.meta.subject.to_string(),
        timestamp: sb.meta.timestamp,
        security_version: sb.security_version,
        objects: sb.objects,
        dictionary: sb.dictionary,
        parts,
        size: offset,
        signature,
    })
}
