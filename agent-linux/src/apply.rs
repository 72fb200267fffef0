//! Installing an `.update` stream into a repository: a thin loop that reads into a buffer and
//! feeds [`agent_core::install::Installer`] over a [`RepoStore`].
//!
//! Installs are resumable (`docs/RESUME.md`): after each verified part the store records a
//! checkpoint in `R/state/`; the next install of the same file resumes after the last verified
//! part. A seekable input ([`Input::Seekable`]) seeks over the verified parts; a stream sent
//! again from its start has those bytes read and skipped; a stream holding only the rest of
//! the file ([`Input::Stream`] with an `offset`) is preceded by the file's signed prefix kept in
//! `R/state/`, verified again.

use std::fmt;
use std::io::{self, Read, Seek, SeekFrom};

use agent_core::install::{
    InstallError, Installer, PartCheck, Policy, Progress, XzDecoder, INFLATE_WINDOW,
};
use agent_core::object::ObjectId;

use crate::repo::{Repo, RepoError};
use crate::store::RepoStore;

/// Bytes read and fed per step.
pub const READ_CHUNK: usize = 64 * 1024;

/// The largest dictionary an update may need to apply here: 8 MiB
/// ([`agent_core::write::DEFAULT_MAX_DICTIONARY`], what the generators write by default). An
/// update that needs more is refused before anything reaches the repository
/// ([`InstallError::DictionaryTooLarge`]). With it, an apply stays within 16 MiB of memory.
pub const MAX_DICTIONARY: u32 = agent_core::write::DEFAULT_MAX_DICTIONARY;

/// Why an install failed. The repository is left without the new commit in every case.
#[derive(Debug)]
#[non_exhaustive]
pub enum ApplyError {
    /// The update was refused or the repository failed (see the installer's message).
    Install(InstallError<RepoError>),
    /// Reading the input failed.
    Read(io::Error),
    /// The file is damaged: a part's bytes do not hash to the SHA-256 its superblock gives
    /// (checked to the part's end when the install failed inside it: what failed there came
    /// from the damage).
    Damaged {
        /// The part (0-based).
        part: u32,
        /// Parts in the file.
        parts: u32,
        /// The part's first byte in the file.
        start: u64,
        /// The byte after its last.
        end: u64,
    },
    /// No key to check a signature with, and unsigned files were not allowed.
    NoTrustedKeys,
    /// Reading the input failed after some parts were verified: the install can resume.
    Interrupted {
        /// What failed.
        error: io::Error,
        /// The file offset the next attempt resumes at (a stream may start there).
        resume_at: u64,
    },
    /// A stream that starts inside the file, with no checkpoint of that file to resume from.
    NoResumePoint {
        /// Where the stream starts.
        offset: u64,
    },
    /// A stream that starts after the point the install can resume at.
    ResumeGap {
        /// Where the stream starts.
        offset: u64,
        /// Where the install can resume.
        resume_at: u64,
    },
}

impl fmt::Display for ApplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApplyError::Install(InstallError::Store(e @ RepoError::NoSpace { .. })) => e.fmt(f),
            ApplyError::Install(InstallError::Store(e)) => write!(f, "the repository failed: {e}"),
            ApplyError::Install(e @ InstallError::RefNotFollowed { ref_name, cut: false }) => write!(
                f,
                "{e}; to make the device follow it, install with `--rebase {}`",
                ref_name.as_str()
            ),
            ApplyError::Install(e) => e.fmt(f),
            ApplyError::Read(e) => write!(f, "reading the update failed: {e}"),
            ApplyError::Damaged {
                part,
                parts,
                start,
                end,
            } => write!(
                f,
                "the file is damaged: part {part} of {parts} (bytes {start} to {end}) does not hash to the SHA-256 its superblock gives; get the file again"
            ),
            ApplyError::NoTrustedKeys => f.write_str(
                "refused: no trusted key to check the update's signature with; add `trusted-key = <64 hex characters or the path of a K.pub file>` to the sysroot's agent.conf (docs/SYSROOT.md) or pass --trusted-key K.pub (to install a file nobody signed, pass --allow-unsigned)",
            ),
            ApplyError::Interrupted { error, resume_at } => write!(
                f,
                "reading the update failed: {error}; the parts before byte {resume_at} are verified and kept: install the same file again (or send the rest from byte {resume_at} with --resume-from-offset {resume_at}) to resume"
            ),
            ApplyError::NoResumePoint { offset } => write!(
                f,
                "the input starts at byte {offset} of the update, but no interrupted install of this file can be resumed; send the whole file from byte 0"
            ),
            ApplyError::ResumeGap { offset, resume_at } => write!(
                f,
                "the input starts at byte {offset} of the update, but the install can only resume at byte {resume_at}; send the file from byte {resume_at} (or from 0)"
            ),
        }
    }
}

/// Transparent to the errors its messages include.
impl std::error::Error for ApplyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ApplyError::Install(InstallError::Store(e)) => e.source(),
            ApplyError::Read(e) | ApplyError::Interrupted { error: e, .. } => e.source(),
            _ => None,
        }
    }
}

/// What was installed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Applied {
    /// The commit now on the ref.
    pub commit: String,
    /// The source commit of a delta.
    pub from: Option<String>,
    /// The ref moved.
    #[serde(rename = "ref")]
    pub ref_name: String,
    /// The commit's version.
    pub version: String,
    /// The commit's subject.
    pub subject: String,
    /// The commit's timestamp.
    pub timestamp: u64,
    /// Whether the file carried a signature.
    pub signed: bool,
    /// Whether the signature was verified against a trusted key.
    pub verified: bool,
    /// Whether unsigned files were allowed (`--allow-unsigned`).
    pub allow_unsigned: bool,
    /// The update's security version (0 for a format-version-1 file).
    pub security_version: u64,
    /// Bytes of the file.
    pub bytes: u64,
    /// Operations in the file.
    pub objects: u32,
    /// The byte of the file the install resumed at, after an interrupted attempt
    /// (`null` when it ran from byte 0).
    pub resumed_from: Option<u64>,
}

/// Something seekable to read an update from.
pub trait ReadSeek: Read + Seek {}
impl<T: Read + Seek> ReadSeek for T {}

/// Where an update's bytes come from.
pub enum Input<'a> {
    /// A file (or anything seekable) holding the whole update: a resumed install seeks over
    /// the verified parts.
    Seekable(&'a mut dyn ReadSeek),
    /// A stream holding the update from byte `offset` on: 0 for the whole file (a resumed
    /// install reads and skips the verified parts), more for the rest of an interrupted
    /// transfer (the install must have a checkpoint of that file at or after `offset`).
    Stream {
        /// The stream.
        read: &'a mut dyn Read,
        /// The file offset of its first byte.
        offset: u64,
    },
}

/// What a device accepts, owned: built from the sysroot's `agent.conf`, its anti-rollback
/// floor and the command line (`crate::deploy::Deployer::trust`), handed to the installer as
/// one `agent_core::install::Policy`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Trust {
    /// Keys whose signatures install.
    pub trusted_keys: Vec<[u8; 32]>,
    /// Keys whose signatures are refused even when trusted.
    pub revoked_keys: Vec<[u8; 32]>,
    /// Whether an unsigned file installs (`--allow-unsigned`).
    pub allow_unsigned: bool,
    /// The lowest security version accepted.
    pub floor: u64,
    /// The refs accepted; `None`: any.
    pub refs: Option<Vec<String>>,
}

/// Installs the update read from `input` into `repo`, holding the repository's write lock,
/// accepting only what `trust` accepts: a signature by one of its trusted keys and none of
/// its revoked ones (or no signature with [`Trust::allow_unsigned`]), a security version at
/// least its floor, one of its refs. With neither a trusted key nor
/// [`Trust::allow_unsigned`], refuses before reading anything ([`ApplyError::NoTrustedKeys`]).
/// `progress` is called after each chunk. Resumes an interrupted install of the same file
/// ([`apply_from`]).
pub fn apply(
    repo: &Repo,
    input: &mut dyn Read,
    trust: &Trust,
    progress: &mut dyn FnMut(&Progress),
) -> Result<Applied, ApplyError> {
    let input = Input::Stream {
        read: input,
        offset: 0,
    };
    apply_from(repo, input, trust, progress)
}

/// As [`apply`], from any [`Input`]. If `R/state/` holds a checkpoint of this very file (its
/// signature and superblock verified again) whose objects are still in the repository, the
/// install resumes after the last verified part ([`Applied::resumed_from`]); a checkpoint of
/// another file is discarded.
pub fn apply_from(
    repo: &Repo,
    input: Input<'_>,
    trust: &Trust,
    progress: &mut dyn FnMut(&Progress),
) -> Result<Applied, ApplyError> {
    if trust.trusted_keys.is_empty() && !trust.allow_unsigned {
        return Err(ApplyError::NoTrustedKeys);
    }
    let refs: Option<Vec<&str>> = trust
        .refs
        .as_ref()
        .map(|r| r.iter().map(String::as_str).collect());
    let mut policy = Policy::require(&trust.trusted_keys)
        .with_revoked(&trust.revoked_keys)
        .with_floor(trust.floor);
    if let Some(r) = &refs {
        policy = policy.with_refs(r);
    }
    if trust.allow_unsigned {
        policy = policy.allow_unsigned();
    }
    let store_err = |e| ApplyError::Install(InstallError::Store(e));
    let _lock = repo.lock().map_err(store_err)?;
    // The window the installer decodes through (32 KiB for deflate), and the LZMA2 decoder
    // with its dictionary; pages of it are touched only as a part needs them.
    let mut window = vec![0u8; INFLATE_WINDOW];
    let mut decoder = crate::xz::decoder(MAX_DICTIONARY);
    let mut xz = XzDecoder::with_decoder(&mut *decoder);
    // zlib's and GNU gzip's encoders for redeflate records (gzip files carried inflated):
    // about 270 and 330 KiB, each taken at the first record that names it.
    let mut zlib = agent_core::install::Deflaters::new();
    let mut inst = Box::new(
        Installer::new(policy, &mut window)
            .with_xz(&mut xz)
            .with_redeflate(&mut zlib),
    );
    let mut store = RepoStore::resumable(repo);
    let saved = crate::resume::load(repo).map_err(store_err)?;
    if let Some(s) = &saved {
        let _ = inst.resume(s.checkpoint);
    }
    let mut src = match input {
        Input::Seekable(r) => Src::Seek(r),
        Input::Stream { read, offset } => {
            if offset > 0 {
                if let Err(e) = resume_stream(repo, &mut inst, &mut store, read, offset) {
                    inst.abort(&mut store);
                    return Err(e);
                }
            }
            Src::Read(read)
        }
    };
    let mut buf = vec![0u8; READ_CHUNK];
    // The signed prefix first, read no further than it goes (it is saved for a later resume),
    // then over the verified parts of an interrupted install, then the rest of the file.
    if inst.prefix_left().is_some() {
        feed_prefix(repo, &mut inst, &mut store, &mut src, &mut buf, progress)?;
    }
    if inst.superblock_info().is_some() {
        if saved.is_some() && inst.progress().resume_offset.is_none() {
            // Another file's checkpoint (or one whose objects are gone).
            let _ = crate::resume::discard(repo);
        }
        if let Src::Seek(r) = &mut src {
            if inst.progress().resume_offset > Some(inst.progress().bytes) {
                let to = inst.skip();
                if let Err(e) = r.seek(SeekFrom::Start(to)) {
                    return Err(interrupted(&mut inst, &mut store, e));
                }
            }
        }
    }
    loop {
        let n = match src.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(interrupted(&mut inst, &mut store, e)),
        };
        let at = inst.progress().bytes;
        match inst.feed(&mut store, &buf[..n]) {
            Ok(p) => progress(&p),
            Err(e) => {
                // The bytes the installer did not take.
                let rest = buf[..n].get((inst.progress().bytes - at) as usize..);
                return Err(damaged_or(e, &mut inst, rest.unwrap_or(&[]), &mut src));
            }
        }
    }
    let installed = inst.finish(&mut store).map_err(ApplyError::Install)?;
    let info = inst.superblock_info();
    Ok(Applied {
        commit: installed.commit.to_string(),
        from: installed.from.map(|f: ObjectId| f.to_string()),
        ref_name: installed.ref_name.to_string(),
        version: info.map(|i| i.version.to_string()).unwrap_or_default(),
        subject: info.map(|i| i.subject.to_string()).unwrap_or_default(),
        timestamp: info.map(|i| i.timestamp).unwrap_or_default(),
        signed: info.is_some_and(|i| i.signed),
        verified: info.is_some_and(|i| i.verified),
        allow_unsigned: trust.allow_unsigned,
        security_version: info.map(|i| i.security_version).unwrap_or_default(),
        bytes: info.map(|i| i.bytes).unwrap_or_default(),
        objects: info.map(|i| i.objects).unwrap_or_default(),
        resumed_from: inst.progress().resume_offset,
    })
}

/// Reads and feeds the file's signed prefix (`header || superblock || signature`) and nothing
/// after it ([`Installer::prefix_left`]), then keeps it in `R/state/`: a stream that later
/// brings only the rest of the file is preceded by it, verified again. Stops early when the
/// input ends (finishing then says the file is truncated).
fn feed_prefix(
    repo: &Repo,
    inst: &mut Installer<'_>,
    store: &mut RepoStore<'_>,
    src: &mut Src<'_>,
    buf: &mut [u8],
    progress: &mut dyn FnMut(&Progress),
) -> Result<(), ApplyError> {
    let mut prefix: Vec<u8> = Vec::new();
    while let Some(left) = inst.prefix_left() {
        let n = match src.read(&mut buf[..left.min(READ_CHUNK)]) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(interrupted(inst, store, e)),
        };
        if prefix.len() < crate::resume::MAX_PREFIX_LEN {
            prefix.extend_from_slice(&buf[..n]);
        }
        match inst.feed(store, &buf[..n]) {
            Ok(p) => progress(&p),
            Err(e) => return Err(damaged_or(e, inst, &[], src)),
        }
    }
    if inst.superblock_info().is_some() && prefix.len() <= crate::resume::MAX_PREFIX_LEN {
        crate::resume::save_prefix(repo, &prefix)
            .map_err(|e| ApplyError::Install(InstallError::Store(e)))?;
    }
    Ok(())
}

/// The input, seekable or not.
enum Src<'a> {
    Seek(&'a mut dyn ReadSeek),
    Read(&'a mut dyn Read),
}

impl Src<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Src::Seek(r) => r.read(buf),
            Src::Read(r) => r.read(buf),
        }
    }
}

/// The installer failed with `error`: when it failed inside a part, reads the rest of that
/// part (`rest`, then `src`) to check it against its SHA-256. A damaged part is the failure
/// ([`ApplyError::Damaged`]: what failed inside it followed from the damage); otherwise, or
/// when the rest cannot be read, `error` is.
fn damaged_or(
    error: InstallError<RepoError>,
    inst: &mut Installer<'_>,
    rest: &[u8],
    src: &mut Src<'_>,
) -> ApplyError {
    let mut check = inst.check_part(rest);
    let mut buf = vec![0u8; READ_CHUNK];
    while check == PartCheck::NeedMore {
        match src.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => check = inst.check_part(&buf[..n]),
        }
    }
    match check {
        PartCheck::Damaged { part, start, end } => {
            log::debug!("part {part} is damaged; the installer had stopped with: {error}");
            ApplyError::Damaged {
                part,
                parts: inst.superblock_info().map_or(0, |i| i.parts),
                start,
                end,
            }
        }
        _ => ApplyError::Install(error),
    }
}

/// A read error: abort (the store keeps its last checkpoint) and say where to resume.
fn interrupted(
    inst: &mut Installer<'_>,
    store: &mut RepoStore<'_>,
    error: io::Error,
) -> ApplyError {
    let cp = inst.checkpoint();
    inst.abort(store);
    match cp {
        Some(cp) => ApplyError::Interrupted {
            error,
            resume_at: cp.offset,
        },
        None => ApplyError::Read(error),
    }
}

/// A stream that starts at `offset` of the file: feed the saved signed prefix (verified again),
/// then skip to the resume point, dropping the stream's bytes before it.
fn resume_stream(
    repo: &Repo,
    inst: &mut Installer<'_>,
    store: &mut RepoStore<'_>,
    read: &mut dyn Read,
    offset: u64,
) -> Result<(), ApplyError> {
    let prefix = crate::resume::load_prefix(repo)
        .map_err(|e| ApplyError::Install(InstallError::Store(e)))?
        .ok_or(ApplyError::NoResumePoint { offset })?;
    let p = inst.feed(store, &prefix).map_err(ApplyError::Install)?;
    match p.resume_offset {
        Some(resume_at) if offset <= resume_at => {
            let to = inst.skip();
            let drop = to - offset;
            let n = io::copy(&mut read.take(drop), &mut io::sink()).map_err(ApplyError::Read)?;
            if n < drop {
                return Err(ApplyError::Install(InstallError::Truncated {
                    expected: Some(p.bytes_total.unwrap_or(0)),
                    got: offset + n,
                }));
            }
            Ok(())
        }
        Some(resume_at) => Err(ApplyError::ResumeGap { offset, resume_at }),
        None => Err(ApplyError::NoResumePoint { offset }),
    }
}
