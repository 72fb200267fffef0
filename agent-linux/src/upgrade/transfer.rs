//! The transfer into the installer: [`install`] streams the file through a reader that counts
//! and hashes it against the index, and resumes an interrupted transfer from the last
//! verified part.

use std::io::{self, Read};
use std::time::Duration;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::apply::{ApplyError, Input};
use crate::deploy::{DeployError, Deployer, InstallOptions, StageReport};
use crate::index::Entry;

use super::fetch::Failure;
use super::{Fetcher, Mismatch, UpgradeError, HASH_GRANULE};

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
