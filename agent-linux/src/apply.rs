//! Installing an `.update` stream into a repository: a thin loop that reads into a buffer and
//! feeds [`agent_core::install::Installer`] over a [`RepoStore`].

use std::fmt;
use std::io::{self, Read};

use agent_core::install::{InstallError, Installer, Policy, Progress};
use agent_core::object::ObjectId;
use agent_core::wire::{SignatureKind, HEADER_LEN, MAX_SUPERBLOCK_LEN};

use crate::repo::{Repo, RepoError};
use crate::store::RepoStore;

/// Bytes read and fed per step.
pub const READ_CHUNK: usize = 64 * 1024;

/// Why an install failed. The repository is left without the new commit in every case.
#[derive(Debug)]
#[non_exhaustive]
pub enum ApplyError {
    /// The update was refused or the repository failed (see the installer's message).
    Install(InstallError<RepoError>),
    /// Reading the input failed.
    Read(io::Error),
    /// No key to check a signature with, and unsigned files were not allowed.
    NoTrustedKeys,
}

impl fmt::Display for ApplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApplyError::Install(InstallError::Store(e)) => write!(f, "the repository failed: {e}"),
            ApplyError::Install(e @ InstallError::RefNotFollowed { ref_name, cut: false }) => write!(
                f,
                "{e}; to make the device follow it, install with `--rebase {}`",
                ref_name.as_str()
            ),
            ApplyError::Install(e) => e.fmt(f),
            ApplyError::Read(e) => write!(f, "reading the update failed: {e}"),
            ApplyError::NoTrustedKeys => f.write_str(
                "refused: no trusted key to check the update's signature with; add `trusted-key = <64 hex characters or the path of a K.pub file>` to the sysroot's agent.conf (docs/SYSROOT.md) or pass --trusted-key K.pub (to install a file nobody signed, pass --allow-unsigned)",
            ),
        }
    }
}

impl std::error::Error for ApplyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ApplyError::Install(InstallError::Store(e)) => Some(e),
            ApplyError::Read(e) => Some(e),
            ApplyError::Install(_) | ApplyError::NoTrustedKeys => None,
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
/// `progress` is called after each chunk.
pub fn apply(
    repo: &Repo,
    input: &mut dyn Read,
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
    let _lock = repo
        .lock()
        .map_err(|e| ApplyError::Install(InstallError::Store(e)))?;
    let mut inst = Box::new(Installer::new(policy));
    let mut store = RepoStore::new(repo);
    let mut buf = vec![0u8; READ_CHUNK];
    // The start of the file, to tell whether it carries a signature.
    let mut prefix: Vec<u8> = Vec::new();
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                inst.abort(&mut store);
                return Err(ApplyError::Read(e));
            }
        };
        let want = HEADER_LEN + MAX_SUPERBLOCK_LEN + 1;
        if prefix.len() < want {
            prefix.extend_from_slice(&buf[..n.min(want - prefix.len())]);
        }
        let p = inst
            .feed(&mut store, &buf[..n])
            .map_err(ApplyError::Install)?;
        progress(&p);
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
        signed: signature_kind(&prefix) != Some(SignatureKind::None),
        verified: info.is_some_and(|i| i.verified),
        allow_unsigned: trust.allow_unsigned,
        security_version: 0,
        bytes: info.map(|i| i.bytes).unwrap_or_default(),
        objects: info.map(|i| i.objects).unwrap_or_default(),
    })
}

/// The signature algorithm byte of a file whose first bytes are `prefix` (the installer has
/// validated the header by the time this is asked).
fn signature_kind(prefix: &[u8]) -> Option<SignatureKind> {
    let h = agent_core::wire::Header::new_checked(prefix).ok()?;
    let at = HEADER_LEN + h.superblock_len() as usize;
    prefix.get(at).map(|c| SignatureKind::from_code(*c))
}
