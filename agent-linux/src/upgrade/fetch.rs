//! Reaching the published folder: [`Source`] (a directory or an HTTP(S) URL) and
//! [`Fetcher`], which reads the index and opens a file at an offset (a `Range` request over
//! HTTP), telling transient failures from final ones.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::time::Duration;

use crate::index::{self, Entry};

use super::{Mismatch, UpgradeError};

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

/// How the folder is reached.
pub struct Fetcher {
    pub(super) source: Source,
    agent: ureq::Agent,
}

/// A failure opening or reading: retried or not.
pub(super) enum Failure {
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
    pub(super) fn open(&self, entry: &Entry, offset: u64) -> Result<(Box<dyn Read>, u64), Failure> {
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
}
