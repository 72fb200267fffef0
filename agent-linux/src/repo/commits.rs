//! Commits: reading them, recording a new one on a ref, detached ed25519 signatures, and
//! the history back from a commit.

use std::fs;
use std::io;
use std::path::PathBuf;

use agent_core::object::{Commit, ObjectId, ObjectKind};
use sha2::{Digest, Sha256};

use super::{io_err, validate_ref, Repo, RepoError};

/// A commit read from the repository, with owned fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitInfo {
    /// The commit's id.
    pub id: ObjectId,
    /// The previous commit on the ref.
    pub parent: Option<ObjectId>,
    /// Seconds since the epoch, UTC.
    pub timestamp: u64,
    /// Root dirtree.
    pub root_tree: ObjectId,
    /// Root dirmeta.
    pub root_meta: ObjectId,
    /// Version string.
    pub version: String,
    /// Subject line.
    pub subject: String,
    /// Body.
    pub body: String,
    /// Anti-rollback security version (0 for a commit that carries none).
    pub security_version: u64,
}

impl CommitInfo {
    /// The checksum of the commit's content alone: SHA-256 of the root dirtree id followed by
    /// the root dirmeta id. Two commits of the same tree share it (as OSTree's
    /// `ContentChecksum`).
    pub fn content_checksum(&self) -> ObjectId {
        let mut h = Sha256::new();
        h.update(self.root_tree.0);
        h.update(self.root_meta.0);
        ObjectId(h.finalize().into())
    }
}

/// What a new commit says about itself; the parent is the ref's current head.
#[derive(Debug, Clone, Default)]
pub struct CommitMeta {
    /// Version string (at most 255 bytes).
    pub version: String,
    /// Subject line.
    pub subject: String,
    /// Body.
    pub body: String,
    /// Seconds since the epoch, UTC.
    pub timestamp: u64,
}

/// The root of a tree written into the repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TreeRoot {
    /// The root dirtree.
    pub tree: ObjectId,
    /// The root dirmeta.
    pub meta: ObjectId,
}

impl Repo {
    /// Reads a commit.
    pub fn read_commit(&self, id: &ObjectId) -> Result<CommitInfo, RepoError> {
        let bytes = self.read_metadata_object(ObjectKind::Commit, id)?;
        let c = Commit::parse(&bytes).map_err(|error| RepoError::CorruptObject {
            kind: ObjectKind::Commit,
            id: *id,
            error,
        })?;
        Ok(CommitInfo {
            id: *id,
            parent: c.parent,
            timestamp: c.timestamp,
            root_tree: c.root_tree,
            root_meta: c.root_meta,
            version: c.version.to_string(),
            subject: c.subject.to_string(),
            body: c.body.to_string(),
            security_version: c.security_version,
        })
    }

    /// Records a new commit of `root` on `ref_name`: its parent is the ref's current head.
    /// The commit object is written (it names only objects already in place), then the ref.
    /// Its security version is the parent's (0 without a parent): see
    /// [`Repo::commit_with_security_version`].
    pub fn commit(
        &self,
        ref_name: &str,
        root: TreeRoot,
        meta: &CommitMeta,
    ) -> Result<ObjectId, RepoError> {
        self.commit_with_security_version(ref_name, root, meta, None)
    }

    /// [`Repo::commit`] at security version `security_version`; `None` takes the parent's
    /// (0 without a parent). A version below the parent's is refused
    /// ([`RepoError::SecurityVersionBelowParent`]) before anything is written.
    pub fn commit_with_security_version(
        &self,
        ref_name: &str,
        root: TreeRoot,
        meta: &CommitMeta,
        security_version: Option<u64>,
    ) -> Result<ObjectId, RepoError> {
        validate_ref(ref_name)?;
        for (kind, id) in [
            (ObjectKind::DirTree, root.tree),
            (ObjectKind::DirMeta, root.meta),
        ] {
            if !self.has_object(kind, &id)? {
                return Err(RepoError::MissingObject { kind, id });
            }
        }
        let parent = self.read_ref(ref_name)?;
        let parent_sv = match parent {
            Some(p) => self.read_commit(&p)?.security_version,
            None => 0,
        };
        let security_version = security_version.unwrap_or(parent_sv);
        if let (Some(parent), true) = (parent, security_version < parent_sv) {
            return Err(RepoError::SecurityVersionBelowParent {
                given: security_version,
                parent,
                parent_security_version: parent_sv,
            });
        }
        let c = Commit {
            parent,
            timestamp: meta.timestamp,
            root_tree: root.tree,
            root_meta: root.meta,
            version: &meta.version,
            subject: &meta.subject,
            body: &meta.body,
            security_version,
        };
        let bytes = c.to_vec().map_err(|error| RepoError::CorruptObject {
            kind: ObjectKind::Commit,
            id: ObjectId::ZERO,
            error,
        })?;
        let id = self.write_metadata_object(ObjectKind::Commit, &bytes)?;
        self.write_ref(ref_name, &id)?;
        Ok(id)
    }

    /// Where a commit's detached signature lives: `R/objects/ab/cdef….commitsig`.
    pub fn commitsig_path(&self, id: &ObjectId) -> PathBuf {
        let hex = id.to_hex();
        let (dir, rest) = hex.as_str().split_at(2);
        self.root
            .join("objects")
            .join(dir)
            .join(format!("{rest}.commitsig"))
    }

    /// Signs a commit with an ed25519 secret seed: `R/objects/ab/cdef….commitsig` holds
    /// `ed25519 <public key hex> <signature hex>`, the signature over the commit object's bytes.
    pub fn sign_commit(&self, id: &ObjectId, seed: &[u8; 32]) -> Result<(), RepoError> {
        use ed25519_dalek::Signer;
        let bytes = self.read_metadata_object(ObjectKind::Commit, id)?;
        let key = ed25519_dalek::SigningKey::from_bytes(seed);
        let sig = key.sign(&bytes).to_bytes();
        let sig_hex: String = sig.iter().map(|b| format!("{b:02x}")).collect();
        let text = format!(
            "ed25519 {} {sig_hex}\n",
            ObjectId(key.verifying_key().to_bytes())
        );
        self.write_atomic(&self.commitsig_path(id), text.as_bytes())
    }

    /// The public key that validly signed the commit, if it has a detached signature that
    /// verifies (a signature that does not verify is reported as an error).
    pub fn commit_signer(&self, id: &ObjectId) -> Result<Option<[u8; 32]>, RepoError> {
        let p = self.commitsig_path(id);
        let text = match fs::read_to_string(&p) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err("read", &p)(e)),
        };
        let bad = || RepoError::BadSignature(p.clone());
        let mut parts = text.split_whitespace();
        if parts.next() != Some("ed25519") {
            return Err(bad());
        }
        let public = ObjectId::from_hex(parts.next().ok_or_else(bad)?).map_err(|_| bad())?;
        let sig_hex = parts.next().ok_or_else(bad)?;
        if sig_hex.len() != 128 {
            return Err(bad());
        }
        let (a, b) = sig_hex.split_at(64);
        let (a, b) = (
            ObjectId::from_hex(a).map_err(|_| bad())?,
            ObjectId::from_hex(b).map_err(|_| bad())?,
        );
        let mut sig = [0u8; 64];
        sig[..32].copy_from_slice(&a.0);
        sig[32..].copy_from_slice(&b.0);
        let key = ed25519_dalek::VerifyingKey::from_bytes(&public.0).map_err(|_| bad())?;
        let bytes = self.read_metadata_object(ObjectKind::Commit, id)?;
        key.verify_strict(&bytes, &ed25519_dalek::Signature::from_bytes(&sig))
            .map_err(|_| bad())?;
        Ok(Some(public.0))
    }

    /// Every complete commit in the repository.
    pub fn list_commits(&self) -> Result<Vec<ObjectId>, RepoError> {
        self.list_objects(ObjectKind::Commit, "")
    }

    /// The history from `id` back: the commit, its parent, ... until a commit without a
    /// parent or whose parent is not in the repository (the second value is then that
    /// missing parent).
    pub fn history(&self, id: &ObjectId) -> Result<(Vec<CommitInfo>, Option<ObjectId>), RepoError> {
        let mut out = Vec::new();
        let mut next = Some(*id);
        while let Some(c) = next {
            if !self.has_commit(&c)? {
                return Ok((out, Some(c)));
            }
            let info = self.read_commit(&c)?;
            next = info.parent;
            out.push(info);
        }
        Ok((out, None))
    }
}
