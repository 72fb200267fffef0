//! File objects: [`OstreeRepo::read_file`] reads one in any of the three modes (an archive
//! `.filez` inflated by [`Inflater`], refusing more than its declared size) and checks its
//! checksum over the length-prefixed header ([`file_header`]) and the content.

use std::fs::{self, File};
use std::io::{self, Read};

use agent_core::object::ObjectId;
use gvariant::aligned_bytes::AlignedBuf;
use gvariant::{gv, Marker, Structure};
use miniz_oxide::inflate::stream::{inflate, InflateState};
use miniz_oxide::{DataFormat, MZError, MZFlush, MZStatus};
use sha2::{Digest, Sha256};

use crate::ostree_import::ImportError;

use super::{
    io_at, open_regular, FileMeta, FileSink, Mode, OstreeKind, OstreeRepo, BUF, MAX_FILE_HEADER,
    MAX_OSTREE_SYMLINK, S_IFLNK, S_IFMT, S_IFREG,
};

impl OstreeRepo {
    /// Reads a file object: its metadata (handed to `sink.start` first), and its content
    /// (a regular file's exactly `size` bytes; nothing for a symlink) into `sink.data`,
    /// verifying the object's checksum over both. `sink` may have received content when the
    /// checksum then fails: the caller discards it.
    pub fn read_file(
        &self,
        id: &ObjectId,
        sink: &mut dyn FileSink,
    ) -> Result<FileMeta, ImportError> {
        let path = self.object_path(OstreeKind::File, id);
        let bad = |problem| self.corrupt(OstreeKind::File, id, problem);
        let md = match fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(ImportError::MissingObject {
                    kind: OstreeKind::File,
                    id: *id,
                    path,
                })
            }
            Err(e) => return Err(io_at("stat", &path)(e)),
        };
        let (meta, content): (FileMeta, Option<Box<dyn Read>>) = match self.mode {
            Mode::Archive => {
                if !md.is_file() {
                    return Err(bad("it is not a regular file"));
                }
                let mut f = open_regular(&path)?;
                let mut pre = [0u8; 8];
                f.read_exact(&mut pre)
                    .map_err(|_| bad("it is shorter than its 8-byte header prefix"))?;
                let hlen = u64::from(u32::from_be_bytes([pre[0], pre[1], pre[2], pre[3]]));
                if hlen == 0 || hlen > MAX_FILE_HEADER || hlen + 8 > md.len() {
                    return Err(bad(
                        "its header length is 0, over 1 MiB or past the end of the file",
                    ));
                }
                let mut h = vec![0u8; hlen as usize];
                f.read_exact(&mut h).map_err(io_at("read", &path))?;
                let h = AlignedBuf::from(h);
                let (size, uid, gid, mode, rdev, target, xattrs) =
                    gv!("(tuuuusa(ayay))").cast(h.as_ref()).to_tuple();
                if *rdev != 0 {
                    return Err(bad("its header has a device number (rdev)"));
                }
                let meta = FileMeta {
                    uid: u32::from_be(*uid),
                    gid: u32::from_be(*gid),
                    mode: u32::from_be(*mode),
                    size: u64::from_be(*size),
                    target: target.as_bytes_non_conformant().to_vec(),
                    raw_xattrs: xattrs
                        .iter()
                        .map(|x| {
                            let (n, v) = x.to_tuple();
                            (n.to_vec(), v.to_vec())
                        })
                        .collect(),
                };
                let content = match meta.mode & S_IFMT {
                    S_IFREG => Some(Box::new(Inflater::new(f, meta.size)) as Box<dyn Read>),
                    _ => None,
                };
                (meta, content)
            }
            Mode::BareUser => {
                if !md.is_file() {
                    return Err(bad(
                        "it is not a regular file (bare-user stores every object as one)",
                    ));
                }
                let f = open_regular(&path)?;
                let mut raw = vec![0u8; MAX_FILE_HEADER as usize];
                let n = rustix::fs::fgetxattr(&f, "user.ostreemeta", &mut raw[..])
                    .map_err(|e| io_at("read the user.ostreemeta xattr of", &path)(e.into()))?;
                raw.truncate(n);
                let raw = AlignedBuf::from(raw);
                let (uid, gid, mode, xattrs) = gv!("(uuua(ayay))").cast(raw.as_ref()).to_tuple();
                let mut meta = FileMeta {
                    uid: u32::from_be(*uid),
                    gid: u32::from_be(*gid),
                    mode: u32::from_be(*mode),
                    size: 0,
                    target: Vec::new(),
                    raw_xattrs: xattrs
                        .iter()
                        .map(|x| {
                            let (n, v) = x.to_tuple();
                            (n.to_vec(), v.to_vec())
                        })
                        .collect(),
                };
                let content = match meta.mode & S_IFMT {
                    S_IFLNK => {
                        if md.len() > MAX_OSTREE_SYMLINK {
                            return Err(bad("its symlink target is longer than 4096 bytes"));
                        }
                        let mut t = Vec::new();
                        (&f).take(MAX_OSTREE_SYMLINK)
                            .read_to_end(&mut t)
                            .map_err(io_at("read", &path))?;
                        // Written with its C string's NUL; read as OSTree does (strndup).
                        if let Some(nul) = t.iter().position(|b| *b == 0) {
                            t.truncate(nul);
                        }
                        meta.target = t;
                        None
                    }
                    _ => {
                        meta.size = md.len();
                        Some(Box::new(f.take(md.len())) as Box<dyn Read>)
                    }
                };
                (meta, content)
            }
            Mode::Bare => {
                use std::os::unix::ffi::OsStrExt;
                use std::os::unix::fs::MetadataExt;
                let pairs = crate::fsmeta::read_xattrs(&path, crate::fsmeta::XattrPolicy::All)
                    .map_err(io_at("read the xattrs of", &path))?;
                let mut meta = FileMeta {
                    uid: md.uid(),
                    gid: md.gid(),
                    mode: md.mode(),
                    size: 0,
                    target: Vec::new(),
                    raw_xattrs: pairs
                        .into_iter()
                        .map(|(mut n, v)| {
                            n.push(0);
                            (n, v)
                        })
                        .collect(),
                };
                let content = if md.file_type().is_symlink() {
                    meta.target = fs::read_link(&path)
                        .map_err(io_at("read the symlink", &path))?
                        .as_os_str()
                        .as_bytes()
                        .to_vec();
                    None
                } else if md.is_file() {
                    meta.size = md.len();
                    let f = open_regular(&path)?;
                    Some(Box::new(f.take(md.len())) as Box<dyn Read>)
                } else {
                    return Err(bad("it is neither a regular file nor a symlink"));
                };
                (meta, content)
            }
        };
        match meta.mode & S_IFMT {
            S_IFREG if meta.target.is_empty() => {}
            S_IFLNK if meta.size == 0 && !meta.target.is_empty() => {}
            _ => {
                return Err(bad(
                    "its mode is neither a regular file nor a symlink with a target",
                ))
            }
        }
        if meta.target.contains(&0) {
            return Err(bad("its symlink target holds a NUL byte"));
        }
        let target = std::str::from_utf8(&meta.target)
            .map_err(|_| bad("its symlink target is not UTF-8, which OSTree cannot store"))?;
        sink.start(&meta)?;
        // The header as OSTree hashes it: xattrs sorted by name (OSTree 2023.2 and later) or
        // in the order stored (earlier versions); the checksum must match one of them.
        let mut sorted = meta.raw_xattrs.clone();
        sorted.sort();
        let mut hashers = vec![Sha256::new()];
        hashers[0].update(file_header(&meta, target, &sorted));
        if sorted != meta.raw_xattrs {
            let mut h = Sha256::new();
            h.update(file_header(&meta, target, &meta.raw_xattrs));
            hashers.push(h);
        }
        if let Some(mut r) = content {
            let mut buf = vec![0u8; BUF];
            let mut total = 0u64;
            loop {
                let n = match r.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                        return Err(ImportError::CorruptContent {
                            id: *id,
                            path,
                            problem: e.to_string(),
                        })
                    }
                    Err(e) => return Err(io_at("read", &path)(e)),
                };
                total += n as u64;
                for h in &mut hashers {
                    h.update(&buf[..n]);
                }
                sink.data(&buf[..n])
                    .map_err(io_at("copy the content of", &path))?;
            }
            if total != meta.size {
                return Err(ImportError::CorruptContent {
                    id: *id,
                    path,
                    problem: format!(
                        "it holds {total} bytes of content, its header says {}",
                        meta.size
                    ),
                });
            }
        }
        let found: Vec<ObjectId> = hashers
            .into_iter()
            .map(|h| ObjectId(h.finalize().into()))
            .collect();
        if !found.contains(id) {
            return Err(ImportError::ChecksumMismatch {
                kind: OstreeKind::File,
                id: *id,
                found: found[0],
                path,
            });
        }
        Ok(meta)
    }
}

/// The length-prefixed `(uuuusa(ayay))` header a file object's checksum starts with.
pub(super) fn file_header(meta: &FileMeta, target: &str, xattrs: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let x: Vec<(&[u8], &[u8])> = xattrs
        .iter()
        .map(|(n, v)| (n.as_slice(), v.as_slice()))
        .collect();
    let v = gv!("(uuuusa(ayay))").serialize_to_vec(&(
        meta.uid.to_be(),
        meta.gid.to_be(),
        meta.mode.to_be(),
        0u32,
        target,
        &x,
    ));
    let mut out = Vec::with_capacity(8 + v.len());
    out.extend_from_slice(&(v.len() as u32).to_be_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&v);
    out
}

/// Raw deflate (an archive `.filez` body) inflated, refusing to produce more than the
/// declared size: a bomb stops at its header's word.
pub(super) struct Inflater {
    src: File,
    state: Box<InflateState>,
    input: Vec<u8>,
    start: usize,
    end: usize,
    eof: bool,
    done: bool,
    left: u64,
}

impl Inflater {
    pub(super) fn new(src: File, size: u64) -> Inflater {
        Inflater {
            src,
            state: InflateState::new_boxed(DataFormat::Raw),
            input: vec![0u8; BUF],
            start: 0,
            end: 0,
            eof: false,
            done: false,
            left: size,
        }
    }
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

impl Read for Inflater {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        let mut stalled = false;
        loop {
            if self.done {
                return Ok(0);
            }
            if (self.start == self.end || stalled) && !self.eof {
                // Keep what is not consumed yet, read more behind it.
                self.input.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
                if self.end == self.input.len() {
                    return Err(invalid(
                        "its compressed content is not valid deflate (no progress)".into(),
                    ));
                }
                let n = self.src.read(&mut self.input[self.end..])?;
                self.end += n;
                self.eof = n == 0;
            }
            // One byte more than what is left, so a stream longer than declared shows.
            let room = usize::try_from(self.left.saturating_add(1))
                .unwrap_or(usize::MAX)
                .min(out.len());
            let flush = if self.eof {
                MZFlush::Finish
            } else {
                MZFlush::None
            };
            let r = inflate(
                &mut self.state,
                &self.input[self.start..self.end],
                &mut out[..room],
                flush,
            );
            self.start += r.bytes_consumed;
            let written = r.bytes_written as u64;
            if written > self.left {
                return Err(invalid(format!(
                    "its content inflates to more than the {} bytes its header declares",
                    self.left
                )));
            }
            self.left -= written;
            match r.status {
                Ok(MZStatus::StreamEnd) => self.done = true,
                Ok(_) | Err(MZError::Buf) => {}
                Err(e) => {
                    return Err(invalid(format!(
                        "its compressed content is not valid deflate ({e:?})"
                    )))
                }
            }
            if written > 0 || self.done {
                return Ok(r.bytes_written);
            }
            if self.eof && r.bytes_consumed == 0 {
                return Err(invalid(
                    "its compressed content ends before the deflate stream does".into(),
                ));
            }
            stalled = r.bytes_consumed == 0;
        }
    }
}
