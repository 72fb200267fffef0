//! `ecu-agent upgrade`: take the update that fits from a published folder (`docs/PUBLISH.md`),
//! on a local path or a web server, and install it as `install` does.
//!
//! 1. The folder's index ([`crate::index`]) is read (at most [`index::MAX_INDEX_LEN`] bytes),
//!    its signature checked under the device's keys, its serial against the highest one the
//!    device accepted (`S/index-serial`), its expiry against the clock.
//! 2. [`plan`] picks, for the ref the device runs, the delta from the booted commit if the
//!    index has one, else the from-scratch file; nothing, when the booted (or already staged)
//!    commit is the target.
//! 3. [`install`] streams the file into [`Deployer::install_from`] (the same checks, staging
//!    and anti-rollback floor as `install`) through a reader that counts and hashes it: more
//!    bytes than the index says, fewer at the end, or another SHA-256 fail the read before
//!    the installer commits anything. Over HTTP(S) (ureq with rustls) an interrupted transfer
//!    is resumed with a `Range` request from the last verified part (`docs/RESUME.md`),
//!    a bounded number of times; `Content-Length` and `Content-Range` must agree with the
//!    index's size.

use std::fmt;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::apply::{ApplyError, Input};
use crate::deploy::{DeployError, Deployer, InstallOptions, StageReport};
use crate::index::{self, Entry, Index, IndexError, KeyPolicy};

/// The file in a sysroot holding the highest index serial the device accepted.
pub const SERIAL_FILE: &str = "index-serial";

/// The hash of a transfer is kept at every multiple of this many bytes, so that a resumed
/// transfer re-reads at most this much before its resume point (and the whole file's SHA-256
/// is still checked): 256 KiB, about 110 bytes of memory per granule of the file.
pub const HASH_GRANULE: u64 = 256 * 1024;

/// Where a published folder is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A directory on this machine.
    Dir(PathBuf),
    /// A base URL (`http://` or `https://`), ending with `/`.
    Url(String),
}

impl Source {
    /// `http://...` and `https://...` are URLs (a `/` is added when missing); anything else
    /// with `://` is refused; the rest is a directory.
    pub fn parse(s: &str) -> Result<Source, UpgradeError> {
        let lower = s.to_ascii_lowercase();
        if lower.starts_with("http://") || lower.starts_with("https://") {
            let mut u = s.to_string();
            if !u.ends_with('/') {
                u.push('/');
            }
            Ok(Source::Url(u))
        } else if s.contains("://") {
            Err(UpgradeError::Scheme(s.to_string()))
        } else {
            Ok(Source::Dir(PathBuf::from(s)))
        }
    }

    /// Where `file` of the folder is, for messages and reports.
    pub fn locate(&self, file: &str) -> String {
        match self {
            Source::Dir(d) => d.join(file).display().to_string(),
            Source::Url(u) => format!("{u}{file}"),
        }
    }
}

/// Why a transfer was refused: the file is not the one the index names. Carried inside the
/// `io::Error` the reader returns, so the installer stops before committing; never retried.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Mismatch {
    /// More bytes arrived than the index's size.
    TooLong {
        /// The index's size.
        size: u64,
    },
    /// The whole file's SHA-256 is not the index's.
    Hash {
        /// The index's.
        expected: String,
        /// The file's.
        found: String,
    },
    /// The file's length (local file, `Content-Length`) is not the index's size.
    Length {
        /// Bytes announced or found.
        found: u64,
        /// Bytes the index says.
        expected: u64,
    },
    /// A `206` answer whose `Content-Range` is not the range asked for, of a file of the
    /// index's size.
    ContentRange {
        /// The header as received (or `missing`).
        found: String,
        /// What it had to be.
        expected: String,
    },
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mismatch::TooLong { size } => write!(
                f,
                "more than the {size} bytes the index says arrived; the file does not belong to this index"
            ),
            Mismatch::Hash { expected, found } => write!(
                f,
                "the file's SHA-256 is {found}, the index says {expected}; it was altered or replaced"
            ),
            Mismatch::Length { found, expected } => write!(
                f,
                "the file is {found} bytes, the index says {expected}; it was altered or replaced (or the index is stale)"
            ),
            Mismatch::ContentRange { found, expected } => write!(
                f,
                "the server answered the range request with Content-Range {found}, expected {expected}"
            ),
        }
    }
}

impl std::error::Error for Mismatch {}

/// Why `upgrade` did nothing or failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum UpgradeError {
    /// `--from` names a scheme other than http and https.
    Scheme(String),
    /// The index could not be read.
    IndexRead {
        /// Where.
        location: String,
        /// Why.
        error: String,
    },
    /// The index is longer than [`index::MAX_INDEX_LEN`].
    IndexTooLarge(String),
    /// The index was refused.
    Index(IndexError),
    /// The index's serial is below the highest the device accepted.
    Rollback {
        /// The index's serial.
        serial: u64,
        /// The highest accepted.
        seen: u64,
    },
    /// The index has expired.
    Expired {
        /// Its expiry, seconds since 1970.
        expires: u64,
        /// The clock, seconds since 1970.
        now: u64,
    },
    /// `S/index-serial` could not be read or written, or holds no number.
    SerialFile {
        /// The file.
        path: PathBuf,
        /// Why.
        error: String,
    },
    /// The index has no file for the ref the device runs (or was told).
    NoRef {
        /// The ref wanted (`None`: the device runs none and the index has several).
        wanted: Option<String>,
        /// The refs the index has.
        refs: Vec<String>,
    },
    /// The index has no delta from the booted commit and no from-scratch file.
    NothingApplicable {
        /// The ref.
        ref_name: String,
        /// The booted commit.
        booted: Option<String>,
        /// The sources the index's deltas start from.
        sources: Vec<String>,
    },
    /// The target's security version is below the device's floor.
    BelowFloor {
        /// The target's.
        security_version: u64,
        /// The device's.
        floor: u64,
    },
    /// The server's answer was not the file.
    Http {
        /// The URL.
        url: String,
        /// The status code.
        status: u16,
    },
    /// The file is not what the index says.
    Mismatch {
        /// Where.
        location: String,
        /// What.
        mismatch: Mismatch,
    },
    /// A `--ca-cert` file holds no usable certificate.
    CaCert {
        /// The file.
        path: PathBuf,
        /// Why.
        error: String,
    },
    /// The file the index names cannot be opened.
    FileRead {
        /// Where.
        location: String,
        /// Why.
        error: String,
    },
    /// The transfer kept failing.
    GaveUp {
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        last: String,
    },
    /// Installing failed (as `install` fails).
    Deploy(DeployError),
}

impl fmt::Display for UpgradeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UpgradeError::Scheme(s) => write!(
                f,
                "{s:?} is neither a directory nor an http:// or https:// URL"
            ),
            UpgradeError::IndexRead { location, error } => {
                write!(f, "cannot read the index {location}: {error}")
            }
            UpgradeError::IndexTooLarge(l) => write!(
                f,
                "the index {l} is longer than {} bytes; refused",
                index::MAX_INDEX_LEN
            ),
            UpgradeError::Index(e) => e.fmt(f),
            UpgradeError::Rollback { serial, seen } => write!(
                f,
                "refused: the index has serial {serial}, older than serial {seen} this device already accepted (a stale mirror or a rollback attack); publish a newer index"
            ),
            UpgradeError::Expired { expires, now } => write!(
                f,
                "refused: the index expired at {expires} (seconds since 1970), the clock says {now} (a frozen mirror?); publish a fresh index, or check the clock"
            ),
            UpgradeError::SerialFile { path, error } => write!(
                f,
                "cannot use {}: {error}; it must hold the highest index serial the device accepted (write it back, or remove it to accept any)",
                path.display()
            ),
            UpgradeError::NoRef { wanted: Some(w), refs } => write!(
                f,
                "nothing applicable: the index has no update for ref {w} (it has: {})",
                list(refs)
            ),
            UpgradeError::NoRef { wanted: None, refs } => write!(
                f,
                "the index has updates for several refs ({}) and the device runs none of them; name one with --ref",
                list(refs)
            ),
            UpgradeError::NothingApplicable { ref_name, booted, sources } => write!(
                f,
                "nothing applicable: the index has no from-scratch file for {ref_name} and no delta from the booted commit {} (its deltas start from: {})",
                booted.as_deref().unwrap_or("(none)"),
                list(sources)
            ),
            UpgradeError::BelowFloor { security_version, floor } => write!(
                f,
                "refused: the index offers security version {security_version}, below this device's anti-rollback floor {floor}"
            ),
            UpgradeError::Http { url, status } => write!(
                f,
                "the server answered {status} for {url}"
            ),
            UpgradeError::Mismatch { location, mismatch } => {
                write!(f, "refused {location}: {mismatch}; nothing was installed")
            }
            UpgradeError::CaCert { path, error } => write!(
                f,
                "cannot use {} as a certificate authority: {error}; give a PEM file (-----BEGIN CERTIFICATE-----)",
                path.display()
            ),
            UpgradeError::FileRead { location, error } => write!(
                f,
                "cannot read {location}, which the index lists: {error}; publish the folder again"
            ),
            UpgradeError::GaveUp { attempts, last } => write!(
                f,
                "the transfer failed {attempts} times, the last time with: {last}; run the upgrade again to resume after the verified parts"
            ),
            UpgradeError::Deploy(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for UpgradeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        // Display shows the inner error already: its causes follow.
        match self {
            UpgradeError::Deploy(e) => e.source(),
            _ => None,
        }
    }
}

fn list(v: &[String]) -> String {
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

/// How the folder is reached.
pub struct Fetcher {
    source: Source,
    agent: ureq::Agent,
}

/// A failure opening or reading: retried or not.
enum Failure {
    /// Worth another attempt (a connection error, a 5xx, a timeout).
    Transient(String),
    /// Final.
    Final(UpgradeError),
}

impl Fetcher {
    /// A fetcher for `source`; `timeout` bounds connecting, waiting for an answer and each
    /// read (a slow server is fine as long as bytes keep coming). HTTPS servers are checked
    /// against the Mozilla root certificates (webpki-roots).
    pub fn new(source: Source, timeout: Duration) -> Fetcher {
        Fetcher::build(source, timeout, ureq::tls::RootCerts::WebPki)
    }

    /// As [`Fetcher::new`], HTTPS servers checked against the certificates in `pem` (one or
    /// more PEM files' contents: a fleet's own certificate authority) instead of the Mozilla
    /// roots.
    pub fn with_roots(
        source: Source,
        timeout: Duration,
        pem: &[(PathBuf, Vec<u8>)],
    ) -> Result<Fetcher, UpgradeError> {
        let mut roots = Vec::new();
        for (path, bytes) in pem {
            let bad = |error: String| UpgradeError::CaCert {
                path: path.clone(),
                error,
            };
            let before = roots.len();
            for item in ureq::tls::parse_pem(bytes) {
                if let ureq::tls::PemItem::Certificate(c) = item.map_err(|e| bad(e.to_string()))? {
                    roots.push(c);
                }
            }
            if roots.len() == before {
                return Err(bad("it holds no PEM certificate".into()));
            }
        }
        Ok(Fetcher::build(
            source,
            timeout,
            ureq::tls::RootCerts::new_with_certs(&roots),
        ))
    }

    fn build(source: Source, timeout: Duration, roots: ureq::tls::RootCerts) -> Fetcher {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(timeout))
            .timeout_recv_response(Some(timeout))
            .timeout_per_read(Some(timeout))
            .tls_config(ureq::tls::TlsConfig::builder().root_certs(roots).build())
            .build()
            .new_agent();
        Fetcher { source, agent }
    }

    /// The source.
    pub fn source(&self) -> &Source {
        &self.source
    }

    /// The index's bytes (at most [`index::MAX_INDEX_LEN`]).
    pub fn index_bytes(&self) -> Result<Vec<u8>, UpgradeError> {
        let location = self.source.locate(index::INDEX_FILE);
        let read_err = |error: String| UpgradeError::IndexRead {
            location: location.clone(),
            error,
        };
        let mut r: Box<dyn Read> = match &self.source {
            Source::Dir(d) => Box::new(
                File::open(d.join(index::INDEX_FILE)).map_err(|e| read_err(e.to_string()))?,
            ),
            Source::Url(_) => {
                let resp = self
                    .agent
                    .get(&location)
                    .call()
                    .map_err(|e| read_err(e.to_string()))?;
                let status = resp.status().as_u16();
                if status != 200 {
                    return Err(UpgradeError::Http {
                        url: location,
                        status,
                    });
                }
                Box::new(resp.into_body().into_reader())
            }
        };
        let mut b = Vec::new();
        r.by_ref()
            .take(index::MAX_INDEX_LEN as u64 + 1)
            .read_to_end(&mut b)
            .map_err(|e| read_err(e.to_string()))?;
        if b.len() > index::MAX_INDEX_LEN {
            return Err(UpgradeError::IndexTooLarge(location));
        }
        Ok(b)
    }

    /// Opens `entry`'s file from byte `offset`; returns the reader and the byte it starts at
    /// (0 when a server ignored the range).
    fn open(&self, entry: &Entry, offset: u64) -> Result<(Box<dyn Read>, u64), Failure> {
        let location = self.source.locate(&entry.file);
        let mismatch = |m| {
            Failure::Final(UpgradeError::Mismatch {
                location: location.clone(),
                mismatch: m,
            })
        };
        match &self.source {
            Source::Dir(d) => {
                let p = d.join(&entry.file);
                let mut f = File::open(&p).map_err(|e| {
                    Failure::Final(UpgradeError::FileRead {
                        location: location.clone(),
                        error: e.to_string(),
                    })
                })?;
                let len = f
                    .metadata()
                    .map_err(|e| Failure::Transient(e.to_string()))?
                    .len();
                if len != entry.size {
                    return Err(mismatch(Mismatch::Length {
                        found: len,
                        expected: entry.size,
                    }));
                }
                f.seek(SeekFrom::Start(offset))
                    .map_err(|e| Failure::Transient(e.to_string()))?;
                Ok((Box::new(f), offset))
            }
            Source::Url(_) => {
                let mut req = self.agent.get(&location);
                if offset > 0 {
                    req = req.header("Range", format!("bytes={offset}-"));
                }
                let resp = req
                    .call()
                    .map_err(|e| Failure::Transient(format!("{location}: {e}")))?;
                let status = resp.status().as_u16();
                let header = |name: &str| {
                    resp.headers()
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string)
                };
                let length = header("content-length");
                let length = match length {
                    Some(l) => Some(l.trim().parse::<u64>().map_err(|_| {
                        mismatch(Mismatch::Length {
                            found: u64::MAX,
                            expected: entry.size,
                        })
                    })?),
                    None => None,
                };
                let start = match status {
                    200 => 0,
                    206 if offset > 0 => {
                        let expected = format!("bytes {offset}-{}/{}", entry.size - 1, entry.size);
                        let found = header("content-range").unwrap_or_else(|| "missing".into());
                        if found.trim() != expected {
                            return Err(mismatch(Mismatch::ContentRange { found, expected }));
                        }
                        offset
                    }
                    408 | 429 | 500..=599 => {
                        return Err(Failure::Transient(format!(
                            "the server answered {status} for {location}"
                        )))
                    }
                    _ => {
                        return Err(Failure::Final(UpgradeError::Http {
                            url: location,
                            status,
                        }))
                    }
                };
                if let Some(l) = length {
                    if l != entry.size - start {
                        return Err(mismatch(Mismatch::Length {
                            found: l + start,
                            expected: entry.size,
                        }));
                    }
                }
                Ok((Box::new(resp.into_body().into_reader()), start))
            }
        }
    }
}

/// What the index is, once accepted.
#[derive(Debug, Clone, Serialize)]
pub struct IndexInfo {
    /// Its serial.
    pub serial: u64,
    /// When it was written.
    pub created: u64,
    /// When it expires (0: never).
    pub expires: u64,
    /// Its signature.
    pub signature: index::Signature,
    /// Entries it lists.
    pub entries: usize,
}

/// What `upgrade` takes (or why it takes nothing).
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// `install` (a file is taken), `up-to-date` (the booted commit is the target) or
    /// `staged` (the target is already what the next boot tries).
    pub action: &'static str,
    /// The index.
    pub index: IndexInfo,
    /// The ref.
    #[serde(rename = "ref")]
    pub ref_name: String,
    /// The booted commit, if any.
    pub booted: Option<String>,
    /// The target commit.
    pub to: String,
    /// The target's version.
    pub version: String,
    /// The target's security version.
    pub security_version: u64,
    /// `delta` or `from-scratch` (for `install`).
    pub kind: Option<&'static str>,
    /// The file taken (for `install`).
    pub file: Option<Entry>,
    /// Where the file is (for `install`).
    pub location: Option<String>,
}

/// Checks the index (signature, serial against `seen`, expiry against `now`) and picks what
/// to take for `ref_name` (or the ref the booted deployment is on, or the index's only ref).
pub fn plan(
    d: &Deployer,
    bytes: &[u8],
    source: &Source,
    opts: &InstallOptions,
    ref_name: Option<&str>,
    now: u64,
) -> Result<(Plan, Index), UpgradeError> {
    let trust = d.trust(opts).map_err(UpgradeError::Deploy)?;
    let (idx, signature) = index::verify(
        bytes,
        &KeyPolicy {
            trusted: &trust.trusted_keys,
            revoked: &trust.revoked_keys,
            allow_unsigned: trust.allow_unsigned,
        },
    )
    .map_err(UpgradeError::Index)?;
    let seen = read_serial(d.sysroot().path())?;
    if idx.serial < seen {
        return Err(UpgradeError::Rollback {
            serial: idx.serial,
            seen,
        });
    }
    if idx.expires != 0 && now > idx.expires {
        return Err(UpgradeError::Expired {
            expires: idx.expires,
            now,
        });
    }
    let st = d.status().map_err(UpgradeError::Deploy)?;
    let booted = st
        .deployments
        .iter()
        .find(|x| x.booted && !x.commit.is_empty());
    let mut refs: Vec<String> = Vec::new();
    for e in &idx.entries {
        if !refs.contains(&e.ref_name) {
            refs.push(e.ref_name.clone());
        }
    }
    let booted_ref = booted.and_then(|b| b.ref_name.clone());
    let chosen = match ref_name {
        Some(r) => Some(r.to_string()),
        None => booted_ref
            .filter(|r| refs.contains(r))
            .or_else(|| {
                let followed: Vec<&String> = refs
                    .iter()
                    .filter(|r| st.refs_followed.contains(r))
                    .collect();
                (followed.len() == 1).then(|| followed[0].clone())
            })
            .or_else(|| (refs.len() == 1).then(|| refs[0].clone())),
    };
    let Some(chosen) = chosen else {
        return Err(UpgradeError::NoRef { wanted: None, refs });
    };
    let mine: Vec<&Entry> = idx
        .entries
        .iter()
        .filter(|e| e.ref_name == chosen)
        .collect();
    let Some(first) = mine.first() else {
        return Err(UpgradeError::NoRef {
            wanted: Some(chosen),
            refs,
        });
    };
    let booted_commit = booted.map(|b| b.commit.clone());
    let info = IndexInfo {
        serial: idx.serial,
        created: idx.created,
        expires: idx.expires,
        signature,
        entries: idx.entries.len(),
    };
    let mut p = Plan {
        action: "install",
        index: info,
        ref_name: chosen.clone(),
        booted: booted_commit.clone(),
        to: first.to.to_string(),
        version: first.version.clone(),
        security_version: first.security_version,
        kind: None,
        file: None,
        location: None,
    };
    if booted_commit.as_deref() == Some(p.to.as_str()) {
        p.action = "up-to-date";
        return Ok((p, idx));
    }
    if st
        .deployments
        .iter()
        .any(|x| x.next_boot && !x.booted && x.commit == p.to)
    {
        p.action = "staged";
        return Ok((p, idx));
    }
    if first.security_version < trust.floor {
        return Err(UpgradeError::BelowFloor {
            security_version: first.security_version,
            floor: trust.floor,
        });
    }
    let repo = d.sysroot().repo();
    let delta = mine.iter().find(|e| {
        e.from.is_some_and(|f| {
            Some(f.to_string()) == booted_commit
                && repo
                    .has_object(agent_core::object::ObjectKind::Commit, &f)
                    .unwrap_or(false)
        })
    });
    let (kind, entry) = match delta {
        Some(e) => ("delta", *e),
        None => match mine.iter().find(|e| e.from.is_none()) {
            Some(e) => ("from-scratch", *e),
            None => {
                return Err(UpgradeError::NothingApplicable {
                    ref_name: chosen,
                    booted: booted_commit,
                    sources: mine
                        .iter()
                        .filter_map(|e| e.from.map(|f| f.to_string()))
                        .collect(),
                })
            }
        },
    };
    p.kind = Some(kind);
    p.location = Some(source.locate(&entry.file));
    p.file = Some(entry.clone());
    Ok((p, idx))
}

/// The highest index serial the sysroot at `root` accepted (0 when none).
pub fn read_serial(root: &Path) -> Result<u64, UpgradeError> {
    let p = root.join(SERIAL_FILE);
    let err = |error: String| UpgradeError::SerialFile {
        path: p.clone(),
        error,
    };
    let text = match std::fs::read(&p) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(err(e.to_string())),
    };
    let t = String::from_utf8_lossy(&text[..text.len().min(32)]).into_owned();
    let t = t.strip_suffix('\n').unwrap_or(&t);
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
        return Err(err(format!("it holds {t:?}, not a number")));
    }
    t.parse().map_err(|_| err(format!("{t:?} is out of range")))
}

/// Records `serial` as the highest accepted (atomically), when it is higher.
pub fn record_serial(root: &Path, serial: u64) -> Result<(), UpgradeError> {
    if serial <= read_serial(root)? {
        return Ok(());
    }
    let p = root.join(SERIAL_FILE);
    crate::fsops::write_atomic(&p, format!("{serial}\n").as_bytes(), 0o644).map_err(|e| {
        UpgradeError::SerialFile {
            path: p.clone(),
            error: e.to_string(),
        }
    })
}

/// The whole file's SHA-256 as it streams, with the hasher's state kept at every
/// [`HASH_GRANULE`] so that a resumed transfer continues it.
struct Hashing {
    hasher: Sha256,
    hashed: u64,
    /// `snaps[k]`: the state after `k * HASH_GRANULE` bytes.
    snaps: Vec<Sha256>,
}

impl Hashing {
    fn new() -> Hashing {
        Hashing {
            hasher: Sha256::new(),
            hashed: 0,
            snaps: vec![Sha256::new()],
        }
    }

    /// The largest kept point at or before `at`.
    fn point_before(&self, at: u64) -> u64 {
        (at / HASH_GRANULE).min(self.snaps.len() as u64 - 1) * HASH_GRANULE
    }

    /// Goes back to `at`, a kept point.
    fn rewind(&mut self, at: u64) {
        let k = (at / HASH_GRANULE) as usize;
        self.snaps.truncate(k + 1);
        self.hasher = self.snaps[k].clone();
        self.hashed = k as u64 * HASH_GRANULE;
    }

    fn absorb(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let next = (self.hashed / HASH_GRANULE + 1) * HASH_GRANULE;
            let take = data.len().min((next - self.hashed) as usize);
            self.hasher.update(&data[..take]);
            self.hashed += take as u64;
            data = &data[take..];
            if self.hashed == next {
                self.snaps.push(self.hasher.clone());
            }
        }
    }
}

/// The reader the installer reads from: at most the index's size, hashed; the end of the
/// stream is reported only when the size and the SHA-256 match.
struct Checked<'a> {
    inner: Box<dyn Read>,
    pos: u64,
    entry: &'a Entry,
    hash: &'a mut Hashing,
    received: &'a mut u64,
}

fn refuse(m: Mismatch) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, m)
}

impl Read for Checked<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let size = self.entry.size;
        if self.pos >= size {
            let mut one = [0u8; 1];
            if self.inner.read(&mut one)? > 0 {
                return Err(refuse(Mismatch::TooLong { size }));
            }
            let found: [u8; 32] = self.hash.hasher.clone().finalize().into();
            if found != self.entry.sha256 {
                return Err(refuse(Mismatch::Hash {
                    expected: agent_core::object::ObjectId(self.entry.sha256).to_string(),
                    found: agent_core::object::ObjectId(found).to_string(),
                }));
            }
            return Ok(0);
        }
        let want = buf
            .len()
            .min((size - self.pos).min(usize::MAX as u64) as usize);
        let n = self.inner.read(&mut buf[..want]).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "the transfer broke off after {} of {size} bytes: {e}",
                    self.pos
                ),
            )
        })?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("the transfer ended after {} of {size} bytes", self.pos),
            ));
        }
        self.hash.absorb(&buf[..n]);
        self.pos += n as u64;
        *self.received += n as u64;
        Ok(n)
    }
}

/// How a transfer went.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Transfer {
    /// Requests made (1 when nothing was interrupted).
    pub attempts: u32,
    /// The byte each retry started at (a `Range` request over HTTP when not 0).
    pub resumed_at: Vec<u64>,
    /// Bytes received over all attempts.
    pub received: u64,
}

/// Whether a failed install is worth another attempt, and from which byte of the file.
fn retry_from(e: &UpgradeError) -> Option<(u64, String)> {
    let UpgradeError::Deploy(DeployError::Apply(a)) = e else {
        return None;
    };
    let (error, at) = match a {
        ApplyError::Interrupted { error, resume_at } => (error, *resume_at),
        ApplyError::Read(error) => (error, 0),
        _ => return None,
    };
    if error
        .get_ref()
        .is_some_and(|i| i.downcast_ref::<Mismatch>().is_some())
    {
        return None;
    }
    Some((at, error.to_string()))
}

/// The refusal inside a failed install, if the file did not match the index.
fn mismatch_of(e: &UpgradeError) -> Option<Mismatch> {
    let UpgradeError::Deploy(DeployError::Apply(
        ApplyError::Interrupted { error, .. } | ApplyError::Read(error),
    )) = e
    else {
        return None;
    };
    error
        .get_ref()
        .and_then(|i| i.downcast_ref::<Mismatch>())
        .cloned()
}

/// Downloads (or reads) `entry` and installs it with [`Deployer::install_from`]. A transient
/// failure (a connection cut, a timeout, a 5xx) is retried up to `retries` times, each time
/// from the last verified part (a `Range` request), after a pause that doubles from 250 ms
/// up to 8 s.
pub fn install(
    d: &Deployer,
    fetcher: &Fetcher,
    entry: &Entry,
    opts: &InstallOptions,
    retries: u32,
    progress: &mut dyn FnMut(&agent_core::install::Progress),
) -> Result<(StageReport, Transfer), UpgradeError> {
    let location = fetcher.source.locate(&entry.file);
    let mut hash = Hashing::new();
    let mut t = Transfer::default();
    let mut offset = 0u64;
    loop {
        t.attempts += 1;
        if offset > 0 || t.attempts > 1 {
            t.resumed_at.push(offset);
        }
        let res = match fetcher.open(entry, offset) {
            Ok((inner, start)) => {
                hash.rewind(start);
                let mut r = Checked {
                    inner,
                    pos: start,
                    entry,
                    hash: &mut hash,
                    received: &mut t.received,
                };
                let input = Input::Stream {
                    read: &mut r,
                    offset: start,
                };
                d.install_from(input, opts, progress)
                    .map_err(|e| Failure::Final(UpgradeError::Deploy(e)))
            }
            Err(f) => Err(f),
        };
        let last = match res {
            Ok(report) => return Ok((report, t)),
            Err(Failure::Final(e)) => {
                if let Some(m) = mismatch_of(&e) {
                    return Err(UpgradeError::Mismatch {
                        location,
                        mismatch: m,
                    });
                }
                match retry_from(&e) {
                    Some((at, why)) => {
                        offset = hash.point_before(at);
                        why
                    }
                    None => return Err(e),
                }
            }
            Err(Failure::Transient(why)) => why,
        };
        if t.attempts > retries {
            return Err(UpgradeError::GaveUp {
                attempts: t.attempts,
                last,
            });
        }
        log::warn!("the transfer of {location} failed ({last}); resuming at byte {offset}");
        let pause = 250u64 << (t.attempts - 1).min(5);
        std::thread::sleep(Duration::from_millis(pause));
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn sources() {
        assert_eq!(
            Source::parse("http://h:8/x").unwrap(),
            Source::Url("http://h:8/x/".into())
        );
        assert_eq!(
            Source::parse("HTTPS://h/").unwrap(),
            Source::Url("HTTPS://h/".into())
        );
        assert_eq!(Source::parse("d/x").unwrap(), Source::Dir("d/x".into()));
        assert!(Source::parse("ftp://h/").is_err());
    }

    #[test]
    fn a_rewound_hash_continues_as_if_never_cut() {
        let data: Vec<u8> = (0..HASH_GRANULE * 3 + 77).map(|i| (i * 7) as u8).collect();
        let whole: [u8; 32] = Sha256::digest(&data).into();
        for cut in [0, 1, HASH_GRANULE - 1, HASH_GRANULE, HASH_GRANULE * 2 + 5] {
            let mut h = Hashing::new();
            // The first attempt got further than the resume point.
            let got = (cut as usize + 1000).min(data.len());
            h.absorb(&data[..got]);
            let at = h.point_before(cut);
            assert!(at <= cut && cut - at < HASH_GRANULE);
            h.rewind(at);
            h.absorb(&data[at as usize..]);
            assert_eq!(<[u8; 32]>::from(h.hasher.finalize()), whole, "cut {cut}");
        }
    }
}
