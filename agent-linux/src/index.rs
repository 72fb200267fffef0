//! The index of a published folder (`docs/PUBLISH.md`): what `generate-deltas` wrote, signed
//! with the key of the updates, so that a device can pick the file that fits
//! (`ecu-agent upgrade`) from a folder or a web server it does not trust.
//!
//! The layout is hand-laid-out (it is signed): a 16-byte header, a body of fixed-width
//! little-endian integers and length-prefixed strings, and the signature as `.update` files
//! carry it (an algorithm byte, then 64 bytes of Ed25519 over `header || body`). [`emit`]
//! writes it, [`verify`] checks the signature under the device's keys (the same rules as
//! for updates, `docs/FORMAT.md` section 4) and only then [`parse`]s the body.

use std::fmt;

use agent_core::object::ObjectId;
use serde::Serialize;

/// The index's file name in a published folder.
pub const INDEX_FILE: &str = "updates.index";

/// The magic at byte 0, ASCII `ECUINDEX`.
pub const MAGIC: [u8; 8] = *b"ECUINDEX";

/// The format version this agent writes and reads.
pub const VERSION: u16 = 1;

/// Bytes of the header.
pub const HEADER_LEN: usize = 16;

/// Bytes of the body before the first entry (serial, created, expires, count).
pub const BODY_FIXED_LEN: usize = 28;

/// The longest body accepted: 1 MiB (a few thousand entries). A device reads at most
/// [`MAX_INDEX_LEN`] bytes of an index.
pub const MAX_BODY_LEN: u32 = 1 << 20;

/// The longest index file: header, the longest body and a signature.
pub const MAX_INDEX_LEN: usize = HEADER_LEN + MAX_BODY_LEN as usize + 1 + 64;

/// One file of the folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    /// The ref the update moves.
    #[serde(rename = "ref")]
    pub ref_name: String,
    /// The source commit of a delta; `None` for a from-scratch file.
    pub from: Option<ObjectId>,
    /// The commit the update installs.
    pub to: ObjectId,
    /// Its version string (at most 255 bytes).
    pub version: String,
    /// Its security version (0 when it carries none).
    pub security_version: u64,
    /// The file's name in the folder: one path component (no `/`, not `.` or `..`, no NUL).
    pub file: String,
    /// The file's length in bytes.
    pub size: u64,
    /// The SHA-256 of the whole file.
    #[serde(serialize_with = "hex32")]
    pub sha256: [u8; 32],
}

fn hex32<S: serde::Serializer>(h: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&ObjectId(*h).to_string())
}

/// A whole index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Index {
    /// Grows with every index published for the folder; a device refuses an index whose
    /// serial is below the highest it has accepted (a rollback to an older index).
    pub serial: u64,
    /// When it was written, seconds since 1970 UTC.
    pub created: u64,
    /// After this time (seconds since 1970 UTC) a device refuses it (a frozen mirror); 0:
    /// never.
    pub expires: u64,
    /// The files, in the order they were written.
    pub entries: Vec<Entry>,
}

/// A small index for tests and fuzz seeds (`fuzz/src/corpus.rs`): serial 7, never expiring,
/// two files of `os/main` to commit `22…` (from scratch, and a delta from `11…`). No folder
/// publishes it.
pub fn sample_index() -> Index {
    Index {
        serial: 7,
        created: 1_700_000_000,
        expires: 0,
        entries: vec![
            Entry {
                ref_name: "os/main".into(),
                from: None,
                to: ObjectId([0x22; 32]),
                version: "1.2".into(),
                security_version: 3,
                file: "os-main-2222.update".into(),
                size: 1000,
                sha256: [0x33; 32],
            },
            Entry {
                ref_name: "os/main".into(),
                from: Some(ObjectId([0x11; 32])),
                to: ObjectId([0x22; 32]),
                version: "1.2".into(),
                security_version: 3,
                file: "os-main-1111-2222.update".into(),
                size: 100,
                sha256: [0x44; 32],
            },
        ],
    }
}

/// How an index was signed, once verified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Signature {
    /// `none` or `ed25519`.
    pub algorithm: &'static str,
    /// The trusted key (hex) that verified it.
    pub key: Option<String>,
}

/// Why an index is refused. Nothing is downloaded or installed after any of them.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum IndexError {
    /// Shorter than its header, or another length than its header announces.
    Length {
        /// Bytes there are.
        found: usize,
        /// Bytes the header announces (0 when the header itself is incomplete).
        expected: usize,
    },
    /// Not an index (the magic is not `ECUINDEX`).
    BadMagic,
    /// A format version this agent does not read.
    UnsupportedVersion(u16),
    /// Reserved flag bits are set.
    UnknownFlags(u16),
    /// The body length is out of range.
    BodyLength(u32),
    /// An unknown signature algorithm byte.
    UnknownSignature(u8),
    /// Unsigned, and unsigned indexes are not allowed.
    Unsigned,
    /// Signed, but there is no trusted key to check it with.
    NoTrustedKeys,
    /// The signature verifies under none of the trusted keys.
    BadSignature {
        /// How many keys were tried.
        keys: usize,
    },
    /// The signature verifies under a revoked key.
    RevokedKey(ObjectId),
    /// The body does not decode (what, and at which body offset).
    Malformed {
        /// What is wrong.
        what: &'static str,
        /// Byte offset in the body.
        offset: usize,
    },
    /// An entry's ref is not a valid ref name.
    BadRef {
        /// Entry (0-based).
        entry: usize,
    },
    /// An entry's file name is not a single path component of printable ASCII.
    BadFileName {
        /// Entry (0-based).
        entry: usize,
    },
    /// Two entries of one ref name different targets, or the same source twice.
    Inconsistent {
        /// The later entry (0-based).
        entry: usize,
    },
}

impl fmt::Display for IndexError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IndexError::Length { found, expected: 0 } => write!(
                f,
                "the index is {found} bytes, shorter than its {HEADER_LEN}-byte header; publish it again with `ecu-agent generate-deltas`"
            ),
            IndexError::Length { found, expected } => write!(
                f,
                "the index is {found} bytes but its header announces {expected}; it is truncated or has bytes appended: publish it again"
            ),
            IndexError::BadMagic => write!(
                f,
                "this is not an update index (it does not start with ECUINDEX); point --from at a folder written by `ecu-agent generate-deltas`"
            ),
            IndexError::UnsupportedVersion(v) => write!(
                f,
                "the index has format version {v}, this agent reads version {VERSION}; upgrade the agent"
            ),
            IndexError::UnknownFlags(x) => write!(
                f,
                "the index sets flags {x:#06x}, which this agent does not know; upgrade the agent"
            ),
            IndexError::BodyLength(n) => write!(
                f,
                "the index's body length {n} is outside {BODY_FIXED_LEN}..={MAX_BODY_LEN}"
            ),
            IndexError::UnknownSignature(c) => write!(
                f,
                "the index's signature algorithm {c} is unknown to this agent; upgrade the agent"
            ),
            IndexError::Unsigned => f.write_str(
                "refused: the index is not signed and this device requires signatures; publish with `generate-deltas --sign-key K` (or pass --allow-unsigned to accept files nobody signed)",
            ),
            IndexError::NoTrustedKeys => f.write_str(
                "refused: no trusted key to check the index's signature with; add `trusted-key = ...` to the sysroot's agent.conf or pass --trusted-key K.pub",
            ),
            IndexError::BadSignature { keys } => write!(
                f,
                "refused: the index's signature verifies under none of the {keys} trusted keys; it was altered, or signed by a key this device does not trust"
            ),
            IndexError::RevokedKey(k) => write!(
                f,
                "refused: the index is signed by the revoked key {k}; publish it again signed with a current key"
            ),
            IndexError::Malformed { what, offset } => write!(
                f,
                "the index's body is malformed at byte {offset}: {what}; publish it again"
            ),
            IndexError::BadRef { entry } => write!(
                f,
                "entry {entry} of the index names an invalid ref; publish it again"
            ),
            IndexError::BadFileName { entry } => write!(
                f,
                "entry {entry} of the index names a file that is not a plain file name (a `/`, `.`, `..` or a control character); refused"
            ),
            IndexError::Inconsistent { entry } => write!(
                f,
                "entry {entry} of the index contradicts an earlier one (another target for the same ref, or the same source twice); publish it again"
            ),
        }
    }
}

impl std::error::Error for IndexError {}

/// Writes `index` in the index format, signed with `sign_key` (an ed25519 secret seed) or
/// unsigned.
///
/// # Panics
///
/// When a string is longer than the format allows (a ref, version or file name over 255
/// bytes) or the body exceeds [`MAX_BODY_LEN`]; `generate-deltas` never writes such entries.
pub fn emit(index: &Index, sign_key: Option<&[u8; 32]>) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&index.serial.to_le_bytes());
    body.extend_from_slice(&index.created.to_le_bytes());
    body.extend_from_slice(&index.expires.to_le_bytes());
    body.extend_from_slice(&(index.entries.len() as u32).to_le_bytes());
    let short = |b: &mut Vec<u8>, s: &str| {
        let len = u8::try_from(s.len()).expect("strings of an index are at most 255 bytes");
        b.push(len);
        b.extend_from_slice(s.as_bytes());
    };
    for e in &index.entries {
        short(&mut body, &e.ref_name);
        match &e.from {
            Some(f) => {
                body.push(1);
                body.extend_from_slice(&f.0);
            }
            None => body.push(0),
        }
        body.extend_from_slice(&e.to.0);
        body.extend_from_slice(&e.security_version.to_le_bytes());
        short(&mut body, &e.version);
        short(&mut body, &e.file);
        body.extend_from_slice(&e.size.to_le_bytes());
        body.extend_from_slice(&e.sha256);
    }
    assert!(body.len() <= MAX_BODY_LEN as usize, "index body too long");
    let mut out = Vec::with_capacity(HEADER_LEN + body.len() + 65);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&body);
    match sign_key {
        Some(seed) => {
            use ed25519_dalek::Signer;
            let sig = ed25519_dalek::SigningKey::from_bytes(seed).sign(&out);
            out.push(1);
            out.extend_from_slice(&sig.to_bytes());
        }
        None => out.push(0),
    }
    out
}

/// What the device accepts: the same keys and rules as for updates.
#[derive(Debug, Clone, Copy)]
pub struct KeyPolicy<'a> {
    /// Keys whose signatures are accepted.
    pub trusted: &'a [[u8; 32]],
    /// Keys whose signatures are refused, also when trusted.
    pub revoked: &'a [[u8; 32]],
    /// Whether an unsigned index is accepted (`--allow-unsigned`).
    pub allow_unsigned: bool,
}

/// Checks the header and the signature of `bytes` under `policy`, then parses the body.
/// The signature rules are those of `.update` files (`docs/FORMAT.md` section 4): a
/// signature by one trusted key, by no revoked key; unsigned only with `allow_unsigned`; a
/// signature is never accepted unchecked.
pub fn verify(bytes: &[u8], policy: &KeyPolicy<'_>) -> Result<(Index, Signature), IndexError> {
    let header = bytes.get(..HEADER_LEN).ok_or(IndexError::Length {
        found: bytes.len(),
        expected: 0,
    })?;
    if header[..8] != MAGIC {
        return Err(IndexError::BadMagic);
    }
    let version = u16::from_le_bytes([header[8], header[9]]);
    if version != VERSION {
        return Err(IndexError::UnsupportedVersion(version));
    }
    let flags = u16::from_le_bytes([header[10], header[11]]);
    if flags != 0 {
        return Err(IndexError::UnknownFlags(flags));
    }
    let n = u32::from_le_bytes([header[12], header[13], header[14], header[15]]);
    if !(BODY_FIXED_LEN as u32..=MAX_BODY_LEN).contains(&n) {
        return Err(IndexError::BodyLength(n));
    }
    let signed_len = HEADER_LEN + n as usize;
    let alg = *bytes.get(signed_len).ok_or(IndexError::Length {
        found: bytes.len(),
        expected: signed_len + 1,
    })?;
    let sig_len = match alg {
        0 => 0,
        1 => 64,
        c => return Err(IndexError::UnknownSignature(c)),
    };
    let total = signed_len + 1 + sig_len;
    if bytes.len() != total {
        return Err(IndexError::Length {
            found: bytes.len(),
            expected: total,
        });
    }
    let message = &bytes[..signed_len];
    let signature = match alg {
        0 if policy.allow_unsigned => Signature {
            algorithm: "none",
            key: None,
        },
        0 => return Err(IndexError::Unsigned),
        _ => {
            let mut s = [0u8; 64];
            s.copy_from_slice(&bytes[signed_len + 1..]);
            let s = ed25519_dalek::Signature::from_bytes(&s);
            let verifies = |k: &[u8; 32]| {
                ed25519_dalek::VerifyingKey::from_bytes(k)
                    .is_ok_and(|vk| vk.verify_strict(message, &s).is_ok())
            };
            if let Some(k) = policy.revoked.iter().find(|k| verifies(k)) {
                return Err(IndexError::RevokedKey(ObjectId(*k)));
            }
            if policy.trusted.is_empty() {
                return Err(IndexError::NoTrustedKeys);
            }
            match policy.trusted.iter().find(|k| verifies(k)) {
                Some(k) => Signature {
                    algorithm: "ed25519",
                    key: Some(ObjectId(*k).to_string()),
                },
                None => {
                    return Err(IndexError::BadSignature {
                        keys: policy.trusted.len(),
                    })
                }
            }
        }
    };
    Ok((parse(&bytes[HEADER_LEN..signed_len])?, signature))
}

/// A cursor over the body.
struct Body<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Body<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], IndexError> {
        let s = self
            .at
            .checked_add(n)
            .and_then(|end| self.b.get(self.at..end))
            .ok_or(IndexError::Malformed {
                what,
                offset: self.at,
            })?;
        self.at += n;
        Ok(s)
    }
    fn u8(&mut self, what: &'static str) -> Result<u8, IndexError> {
        Ok(self.take(1, what)?[0])
    }
    fn u64(&mut self, what: &'static str) -> Result<u64, IndexError> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8, what)?);
        Ok(u64::from_le_bytes(a))
    }
    fn id(&mut self, what: &'static str) -> Result<[u8; 32], IndexError> {
        let mut a = [0u8; 32];
        a.copy_from_slice(self.take(32, what)?);
        Ok(a)
    }
    fn string(&mut self, what: &'static str) -> Result<String, IndexError> {
        let at = self.at;
        let n = self.u8(what)? as usize;
        let s = self.take(n, what)?;
        String::from_utf8(s.to_vec()).map_err(|_| IndexError::Malformed {
            what: "a string is not UTF-8",
            offset: at,
        })
    }
}

/// Whether `name` can name a file of the folder: 1..=255 bytes of printable ASCII without
/// `/`, not `.` or `..`, not starting with `.` (no hidden or temporary files).
pub fn valid_file_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && !name.starts_with('.')
        && name.bytes().all(|b| b.is_ascii_graphic() && b != b'/')
}

/// Parses a body (after [`verify`] checked what signs it). Every entry is checked: a valid
/// ref, a plain file name, and per ref one target and no source twice.
pub fn parse(body: &[u8]) -> Result<Index, IndexError> {
    let mut b = Body { b: body, at: 0 };
    let serial = b.u64("the serial")?;
    let created = b.u64("the creation time")?;
    let expires = b.u64("the expiry time")?;
    let mut c = [0u8; 4];
    c.copy_from_slice(b.take(4, "the entry count")?);
    let count = u32::from_le_bytes(c) as usize;
    // Each entry is at least 1+1+1+32+8+1+1+1+8+32 bytes: the count cannot exceed that.
    const MIN_ENTRY: usize = 86;
    if count > (body.len() - BODY_FIXED_LEN) / MIN_ENTRY {
        return Err(IndexError::Malformed {
            what: "the entry count is larger than the body can hold",
            offset: 24,
        });
    }
    let mut entries: Vec<Entry> = Vec::with_capacity(count);
    for i in 0..count {
        let ref_name = b.string("an entry's ref")?;
        if crate::repo::validate_ref(&ref_name).is_err() {
            return Err(IndexError::BadRef { entry: i });
        }
        let at = b.at;
        let from = match b.u8("an entry's source flag")? {
            0 => None,
            1 => Some(ObjectId(b.id("an entry's source commit")?)),
            _ => {
                return Err(IndexError::Malformed {
                    what: "a source flag other than 0 or 1",
                    offset: at,
                })
            }
        };
        let to = ObjectId(b.id("an entry's target commit")?);
        let security_version = b.u64("an entry's security version")?;
        let version = b.string("an entry's version")?;
        let file = b.string("an entry's file name")?;
        if !valid_file_name(&file) {
            return Err(IndexError::BadFileName { entry: i });
        }
        let size = b.u64("an entry's size")?;
        let sha256 = b.id("an entry's SHA-256")?;
        let clash = entries
            .iter()
            .any(|e| e.ref_name == ref_name && (e.to != to || e.from == from || e.file == file))
            || entries.iter().any(|e| e.file == file)
            || from == Some(to);
        if clash {
            return Err(IndexError::Inconsistent { entry: i });
        }
        entries.push(Entry {
            ref_name,
            from,
            to,
            version,
            security_version,
            file,
            size,
            sha256,
        });
    }
    if b.at != body.len() {
        return Err(IndexError::Malformed {
            what: "bytes follow the last entry",
            offset: b.at,
        });
    }
    Ok(Index {
        serial,
        created,
        expires,
        entries,
    })
}

/// The serial in the header and body of `bytes`, if they hold an index (not verified: only
/// to number the next index of a folder).
pub fn peek_serial(bytes: &[u8]) -> Option<u64> {
    if bytes.get(..8)? != MAGIC {
        return None;
    }
    let s = bytes.get(HEADER_LEN..HEADER_LEN + 8)?;
    Some(u64::from_le_bytes(s.try_into().ok()?))
}

/// Writes the index of `files` (written by [`crate::generate::generate_deltas`] into `dir`)
/// as `dir/updates.index`, atomically, signed with `sign_key` when given. Each file is read
/// again for its SHA-256; versions and security versions come from the commits in `repo`.
/// The serial is `serial`, or else the larger of the clock (seconds since 1970) and one more
/// than the serial of the index already in `dir`. `valid_for` seconds after now it expires
/// (`None`: never).
pub fn publish(
    repo: &crate::Repo,
    dir: &std::path::Path,
    files: &[crate::generate::GeneratedFile],
    sign_key: Option<&[u8; 32]>,
    serial: Option<u64>,
    valid_for: Option<u64>,
) -> Result<Index, crate::generate::GenerateError> {
    use crate::generate::GenerateError;
    use sha2::Digest;
    let path = dir.join(INDEX_FILE);
    let io = |what: &'static str, p: &std::path::Path| {
        let p = p.to_path_buf();
        move |source| GenerateError::Io {
            what,
            path: p,
            source,
        }
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let previous = std::fs::read(&path)
        .ok()
        .and_then(|b| peek_serial(&b))
        .map_or(0, |s| s.saturating_add(1));
    let mut entries = Vec::with_capacity(files.len());
    for f in files {
        let s = &f.summary;
        let bad_id = |x: &str| {
            io("index", &f.path)(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{x:?} is not a commit id"),
            ))
        };
        let to = ObjectId::from_hex(&s.to).map_err(|_| bad_id(&s.to))?;
        let from = match &s.from {
            Some(x) => Some(ObjectId::from_hex(x).map_err(|_| bad_id(x))?),
            None => None,
        };
        let commit = repo.read_commit(&to)?;
        let mut file = std::fs::File::open(&f.path).map_err(io("open", &f.path))?;
        let mut h = sha2::Sha256::new();
        let mut size = 0u64;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match std::io::Read::read(&mut file, &mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io("read", &f.path)(e)),
            };
            h.update(&buf[..n]);
            size += n as u64;
        }
        let name = f
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        entries.push(Entry {
            ref_name: s.ref_name.clone(),
            from,
            to,
            version: commit.version.clone(),
            security_version: commit.security_version,
            file: name,
            size,
            sha256: h.finalize().into(),
        });
    }
    let index = Index {
        serial: serial.unwrap_or(now.max(previous)),
        created: now,
        expires: valid_for.map_or(0, |v| now.saturating_add(v).max(1)),
        entries,
    };
    crate::fsops::write_atomic(&path, &emit(&index, sign_key), 0o644)
        .map_err(io("write", &path))?;
    Ok(index)
}

#[cfg(test)]
mod test {
    use super::*;

    const SEED: [u8; 32] = [9; 32];

    fn policy(keys: &[[u8; 32]]) -> KeyPolicy<'_> {
        KeyPolicy {
            trusted: keys,
            revoked: &[],
            allow_unsigned: false,
        }
    }

    /// The example of docs/PUBLISH.md: one delta, signed with the seed `09` × 32.
    fn example() -> Index {
        Index {
            serial: 1_700_000_100,
            created: 1_700_000_000,
            expires: 1_702_592_000,
            entries: vec![Entry {
                ref_name: "os/main".into(),
                from: Some(ObjectId([0x11; 32])),
                to: ObjectId([0x22; 32]),
                version: "1.2".into(),
                security_version: 3,
                file: "u.update".into(),
                size: 4660,
                sha256: [0x33; 32],
            }],
        }
    }

    fn hex_dump(b: &[u8]) -> String {
        let mut s = String::new();
        for (i, line) in b.chunks(16).enumerate() {
            s.push_str(&format!("{:04x}:", i * 16));
            for x in line {
                s.push_str(&format!(" {x:02x}"));
            }
            s.push('\n');
        }
        s
    }

    #[test]
    fn example_matches_the_spec() {
        let b = emit(&example(), Some(&SEED));
        let key = [crate::keys::public_key(&SEED)];
        assert_eq!(verify(&b, &policy(&key)).unwrap().0, example());
        let dump = hex_dump(&b);
        if std::env::var_os("PRINT_INDEX_EXAMPLE").is_some() {
            println!("public key: {}", ObjectId(key[0]));
            println!("{dump}");
        }
        let doc =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/PUBLISH.md"))
                .expect("docs/PUBLISH.md");
        assert!(
            doc.contains(&dump),
            "the hex example in docs/PUBLISH.md is out of date; run with PRINT_INDEX_EXAMPLE=1 and paste"
        );
    }

    #[test]
    fn round_trip_signed_and_unsigned() {
        let key = [crate::keys::public_key(&SEED)];
        let b = emit(&sample_index(), Some(&SEED));
        let (i, s) = verify(&b, &policy(&key)).unwrap();
        assert_eq!(i, sample_index());
        assert_eq!(s.key, Some(ObjectId(key[0]).to_string()));
        let u = emit(&sample_index(), None);
        assert_eq!(verify(&u, &policy(&key)), Err(IndexError::Unsigned));
        let allow = KeyPolicy {
            allow_unsigned: true,
            ..policy(&key)
        };
        assert_eq!(verify(&u, &allow).unwrap().0, sample_index());
        // A signed index is still checked when unsigned ones are allowed.
        assert_eq!(verify(&b, &allow).unwrap().1.algorithm, "ed25519");
        assert_eq!(
            verify(&b, &policy(&[])),
            Err(IndexError::NoTrustedKeys),
            "a signature is never accepted unchecked"
        );
    }

    #[test]
    fn every_altered_byte_is_refused() {
        let key = [crate::keys::public_key(&SEED)];
        let b = emit(&sample_index(), Some(&SEED));
        for i in 0..b.len() {
            let mut x = b.clone();
            x[i] ^= 0x01;
            assert!(verify(&x, &policy(&key)).is_err(), "byte {i} altered");
        }
        for len in 0..b.len() {
            assert!(verify(&b[..len], &policy(&key)).is_err(), "cut to {len}");
        }
        let mut long = b.clone();
        long.push(0);
        assert!(matches!(
            verify(&long, &policy(&key)),
            Err(IndexError::Length { .. })
        ));
    }

    #[test]
    fn revoked_and_foreign_keys_are_refused() {
        let key = [crate::keys::public_key(&SEED)];
        let other = [crate::keys::public_key(&[5; 32])];
        let b = emit(&sample_index(), Some(&SEED));
        assert_eq!(
            verify(&b, &policy(&other)),
            Err(IndexError::BadSignature { keys: 1 })
        );
        let revoked = KeyPolicy {
            revoked: &key,
            ..policy(&key)
        };
        assert_eq!(
            verify(&b, &revoked),
            Err(IndexError::RevokedKey(ObjectId(key[0])))
        );
    }

    #[test]
    fn hostile_bodies_are_refused() {
        let mut bad = sample_index();
        bad.entries[1].file = "../etc/passwd".into();
        assert_eq!(
            parse(&emit(&bad, None)[HEADER_LEN..emit(&bad, None).len() - 1]),
            Err(IndexError::BadFileName { entry: 1 })
        );
        let mut bad = sample_index();
        bad.entries[1].to = ObjectId([0x55; 32]);
        let b = emit(&bad, None);
        assert_eq!(
            parse(&b[HEADER_LEN..b.len() - 1]),
            Err(IndexError::Inconsistent { entry: 1 })
        );
        let mut bad = sample_index();
        bad.entries[0].ref_name = "../x".into();
        let b = emit(&bad, None);
        assert_eq!(
            parse(&b[HEADER_LEN..b.len() - 1]),
            Err(IndexError::BadRef { entry: 0 })
        );
        // A count larger than the body can hold is refused before anything is allocated.
        let mut body = emit(&sample_index(), None)[HEADER_LEN..].to_vec();
        body.pop();
        body[24..28].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(parse(&body), Err(IndexError::Malformed { .. })));
        for name in ["", ".", "..", ".hidden", "a/b", "a\nb", "a b"] {
            assert!(!valid_file_name(name), "{name:?}");
        }
        assert!(valid_file_name("os-main-ab.update"));
    }
}
