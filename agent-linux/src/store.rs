//! [`agent_core::store::Store`] over a [`Repo`]: what the installer writes through on Linux.
//!
//! - Files, dirtrees and dirmetas are staged in `R/tmp` as the installer verifies them, in a
//!   [`Transaction`]: no fsync per object. [`Store::commit`] makes them all durable with one
//!   `syncfs` and renames them into place (leaves first, then dirtrees bottom-up, each phase
//!   followed by one fsync per touched directory), so the bottom-up invariant holds at every
//!   point. Only then is the commit object written (temp + fsync + rename + directory fsync),
//!   and last the ref (the same). Until then [`Store::has_commit`] is false for it and the ref
//!   is unchanged, so a failed or interrupted install never shows up as installed.
//! - Objects arrive verified: the installer checked each one's SHA-256 against its id and its
//!   encoding as it streamed ([`Store::finish_object`]), so nothing is hashed or parsed again
//!   here but a file's header (to find where its content starts) and a dirtree (for its depth);
//!   both are handed on parsed ([`Transaction::stage_verified_file`],
//!   [`Transaction::stage_verified_metadata`]).
//! - [`Store::has_object`] is "staged by this install, or present": the repository keeps the
//!   bottom-up invariant (a dirtree is present only once its whole tree is), and
//!   [`Store::reuse_object`] checks presence, since a shared store holds the source commit's
//!   objects already.
//! - Nothing from a part gets privilege before the part's hash matched: a staged file object
//!   stays a 0600 file owned by the installing user, without xattrs, in the 0700 `R/tmp`, until
//!   [`Store::part_verified`]; only then are its owner, capabilities and setuid, setgid and
//!   executable bits applied.
//! - Creating a file is most of the kernel's work per file object: once the install has staged
//!   a few file objects, empty staging files are created ahead on another thread
//!   ([`TmpPool`]), so that it runs on a second core while this one decodes and hashes.
//! - [`Store::abort`] (and dropping the store) removes everything the install staged: a failed
//!   install leaves the repository as it was.
//! - A **resumable** store ([`RepoStore::resumable`]) also takes checkpoints: after each verified
//!   part (but the last) it commits the transaction (the part's objects become durable and
//!   present, unreferenced until the commit) and records the installer's checkpoint with the
//!   list of those objects in `R/state/` ([`crate::resume`]). An abort keeps them, so a later
//!   install of the same file resumes after that part ([`Store::resume`] checks that the
//!   objects are still there); `cleanup` removes both when the install is abandoned.

use std::collections::HashMap;
use std::fs::File;
use std::path::PathBuf;

use agent_core::install::Checkpoint;
use agent_core::object::{
    DirEntry, DirTree, FileHeader, ObjectError, ObjectId, ObjectKind, FILE_HEADER_LEN,
    MAX_COMMIT_LEN,
};
use agent_core::store::{Declared, Store};

use crate::repo::{
    io_err, validate_ref, Chunked, Repo, RepoError, TmpPool, Transaction, MAX_METADATA_OBJECT,
};

/// The installer's view of a repository. See the [module docs](self).
#[derive(Debug)]
pub struct RepoStore<'r> {
    repo: &'r Repo,
    txn: Transaction<'r>,
    current: Option<Current>,
    staged_commit: Option<(ObjectId, Vec<u8>)>,
    /// Depths of the dirtrees this install wrote or asked about.
    depths: HashMap<ObjectId, u16>,
    /// Checkpoints are taken (`R/state/`).
    resumable: bool,
    /// Objects finished or reused by this install since its last checkpoint (for the next
    /// one: the earlier ones are listed in `R/state/` already).
    done: Chunked<(ObjectKind, ObjectId)>,
    /// `R/state/` holds a checkpoint of this install (taken by it, or resumed from), whose
    /// objects the next checkpoint lists before `done`.
    checkpointed: bool,
    /// The source object patch records read, kept open between reads.
    source: Option<Source>,
    /// Staging files created ahead on another core, once the install has written
    /// [`POOL_AFTER`] file objects.
    pool: Option<TmpPool>,
    /// File objects whose content this install staged.
    files_staged: usize,
}

/// File objects an install writes before it creates staging files on another core
/// ([`TmpPool`]): a small delta is not worth a thread.
const POOL_AFTER: usize = 16;

/// Bytes of a file's content read ahead for [`Store::read_object`]: the installer asks for a
/// few dozen bytes at a time, mostly in order.
const READ_AHEAD: usize = 64 * 1024;

/// A repository object open for [`Store::read_object`]: its metadata bytes (a whole dirtree or
/// dirmeta; a file's header, target and xattrs), then its content file, read ahead.
#[derive(Debug)]
struct Source {
    kind: ObjectKind,
    id: ObjectId,
    meta: Vec<u8>,
    content: Option<File>,
    /// Content offset of `ahead[0]`.
    at: u64,
    ahead: Vec<u8>,
}

impl Source {
    /// Fills `out` from `offset` of the canonical bytes; fewer bytes only at the end.
    fn read(&mut self, offset: u64, out: &mut [u8]) -> std::io::Result<usize> {
        use std::os::unix::fs::FileExt;
        let meta_len = self.meta.len() as u64;
        let mut n = 0;
        while n < out.len() {
            let pos = offset + n as u64;
            if pos < meta_len {
                let from = &self.meta[pos as usize..];
                let k = from.len().min(out.len() - n);
                out[n..n + k].copy_from_slice(&from[..k]);
                n += k;
                continue;
            }
            let Some(f) = &self.content else { break };
            let cpos = pos - meta_len;
            if cpos < self.at || cpos >= self.at + self.ahead.len() as u64 {
                self.ahead.resize(READ_AHEAD, 0);
                let mut got = 0;
                while got < READ_AHEAD {
                    match f.read_at(&mut self.ahead[got..], cpos + got as u64) {
                        Ok(0) => break,
                        Ok(k) => got += k,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                }
                self.ahead.truncate(got);
                self.at = cpos;
                if got == 0 {
                    break;
                }
            }
            let from = &self.ahead[(cpos - self.at) as usize..];
            let k = from.len().min(out.len() - n);
            out[n..n + k].copy_from_slice(&from[..k]);
            n += k;
        }
        Ok(n)
    }
}

#[derive(Debug)]
struct Current {
    kind: ObjectKind,
    id: ObjectId,
    len: u64,
    written: u64,
    /// Metadata objects whole; for a file, its header, target and xattrs.
    bytes: Vec<u8>,
    /// For a file: its header, once parsed (the only parse of it after the installer's).
    header: Option<FileHeader>,
    /// For a regular file: the staged content.
    content: Option<(File, PathBuf)>,
}

impl<'r> RepoStore<'r> {
    /// A store over `repo`.
    pub fn new(repo: &'r Repo) -> RepoStore<'r> {
        RepoStore {
            repo,
            txn: Transaction::new(repo),
            current: None,
            staged_commit: None,
            depths: HashMap::new(),
            resumable: false,
            done: Chunked::default(),
            checkpointed: false,
            source: None,
            pool: None,
            files_staged: 0,
        }
    }

    /// A store over `repo` that takes checkpoints, so that an interrupted install of the same
    /// file can resume after its last verified part (see the [module docs](self)).
    pub fn resumable(repo: &'r Repo) -> RepoStore<'r> {
        let mut s = RepoStore::new(repo);
        s.resumable = true;
        s
    }

    /// The repository.
    pub fn repo(&self) -> &'r Repo {
        self.repo
    }

    fn drop_current(&mut self) {
        if let Some(c) = self.current.take() {
            if let Some((f, p)) = c.content {
                drop(f);
                let _ = crate::fsops::remove_file(&p);
            }
        }
    }
}

impl RepoStore<'_> {
    /// The depth of a dirtree in place: remembered from when this install wrote it, or
    /// counted in the repository (and remembered).
    fn depth(&mut self, id: &ObjectId) -> Result<u16, RepoError> {
        match self.depths.get(id) {
            Some(d) => Ok(*d),
            None => self.repo.tree_depth(id, &mut self.depths),
        }
    }
}

impl Drop for RepoStore<'_> {
    fn drop(&mut self) {
        self.drop_current();
    }
}

impl Store for RepoStore<'_> {
    type Error = RepoError;

    fn has_commit(&mut self, id: &ObjectId) -> Result<bool, RepoError> {
        self.repo.has_commit(id)
    }

    /// Refuses, before anything is written, when the filesystem holding the repository has
    /// fewer bytes available (statvfs: `f_bavail * f_frsize`) than the object bytes the update
    /// declares (at least: its record bytes less their framing).
    fn declared(&mut self, declared: &Declared) -> Result<(), RepoError> {
        let bytes = declared.object_bytes_at_least();
        let path = self.repo.path();
        let st = rustix::fs::statvfs(path).map_err(|e| RepoError::Io {
            what: "statvfs",
            path: path.to_path_buf(),
            source: e.into(),
        })?;
        let available = st.f_bavail.saturating_mul(st.f_frsize);
        if bytes > available {
            return Err(RepoError::NoSpace {
                path: path.to_path_buf(),
                needed: bytes,
                available,
            });
        }
        Ok(())
    }

    fn has_object(&mut self, kind: ObjectKind, id: &ObjectId) -> Result<bool, RepoError> {
        self.txn.has_object(kind, id)
    }

    fn begin_object(&mut self, kind: ObjectKind, id: &ObjectId, len: u64) -> Result<(), RepoError> {
        if self.current.is_some() {
            self.drop_current();
            return Err(RepoError::Sequence(
                "an object was begun while another was open",
            ));
        }
        let max = match kind {
            ObjectKind::File => u64::MAX,
            ObjectKind::Commit => MAX_COMMIT_LEN as u64,
            ObjectKind::DirTree | ObjectKind::DirMeta => MAX_METADATA_OBJECT,
            k => return Err(RepoError::UnknownKind(k)),
        };
        if len > max {
            return Err(RepoError::ObjectTooLarge { kind, id: *id, len });
        }
        self.current = Some(Current {
            kind,
            id: *id,
            len,
            written: 0,
            bytes: Vec::with_capacity(if kind == ObjectKind::File {
                FILE_HEADER_LEN
            } else {
                len as usize
            }),
            header: None,
            content: None,
        });
        Ok(())
    }

    fn write_object(&mut self, mut data: &[u8]) -> Result<(), RepoError> {
        let repo = self.repo;
        let (pool, files_staged) = (&mut self.pool, &mut self.files_staged);
        let Some(c) = self.current.as_mut() else {
            return Err(RepoError::Sequence(
                "object bytes arrived with no object begun",
            ));
        };
        let too_long = |c: &Current, extra: usize| RepoError::ObjectLength {
            kind: c.kind,
            id: c.id,
            expected: c.len,
            found: c.written + extra as u64,
        };
        if c.written + data.len() as u64 > c.len {
            return Err(too_long(c, data.len()));
        }
        if c.kind != ObjectKind::File {
            c.bytes.extend_from_slice(data);
            c.written += data.len() as u64;
            return Ok(());
        }
        while !data.is_empty() {
            match c.header.map(|h| h.meta_len()) {
                None => {
                    let take = (FILE_HEADER_LEN - c.bytes.len()).min(data.len());
                    c.bytes.extend_from_slice(&data[..take]);
                    c.written += take as u64;
                    data = &data[take..];
                    if c.bytes.len() == FILE_HEADER_LEN {
                        let h = FileHeader::parse(&c.bytes).map_err(|error| {
                            RepoError::CorruptObject {
                                kind: c.kind,
                                id: c.id,
                                error,
                            }
                        })?;
                        if h.object_len() != c.len {
                            return Err(RepoError::ObjectLength {
                                kind: c.kind,
                                id: c.id,
                                expected: c.len,
                                found: h.object_len(),
                            });
                        }
                        c.header = Some(h);
                        if !h.is_symlink() {
                            *files_staged += 1;
                            if *files_staged == POOL_AFTER {
                                *pool = TmpPool::start(repo, "install");
                            }
                            c.content = Some(match pool.as_mut() {
                                Some(p) => p.take()?,
                                None => repo.create_tmp("install")?,
                            });
                        }
                    }
                }
                Some(meta_len) if (c.bytes.len() as u64) < meta_len => {
                    let take = ((meta_len - c.bytes.len() as u64) as usize).min(data.len());
                    c.bytes.extend_from_slice(&data[..take]);
                    c.written += take as u64;
                    data = &data[take..];
                }
                Some(_) => {
                    let Some((f, p)) = c.content.as_mut() else {
                        return Err(RepoError::CorruptObject {
                            kind: c.kind,
                            id: c.id,
                            error: ObjectError::BadSymlinkTarget,
                        });
                    };
                    crate::fsops::write_all(f, p, data).map_err(io_err("write", p))?;
                    c.written += data.len() as u64;
                    data = &[];
                }
            }
        }
        Ok(())
    }

    fn finish_object(&mut self) -> Result<(), RepoError> {
        let Some(mut c) = self.current.take() else {
            return Err(RepoError::Sequence(
                "an object was finished with none begun",
            ));
        };
        if c.written != c.len {
            let (kind, id, expected, found) = (c.kind, c.id, c.len, c.written);
            self.current = Some(c);
            self.drop_current();
            return Err(RepoError::ObjectLength {
                kind,
                id,
                expected,
                found,
            });
        }
        match c.kind {
            ObjectKind::File => {
                let Some(header) = c.header else {
                    return Err(RepoError::CorruptObject {
                        kind: c.kind,
                        id: c.id,
                        error: ObjectError::Truncated {
                            needed: FILE_HEADER_LEN,
                            have: c.bytes.len(),
                        },
                    });
                };
                // Verified by the installer as it streamed, and its content counted here.
                self.txn
                    .stage_verified_file(&c.id, header, &c.bytes, c.content.take())?;
                self.done.push((c.kind, c.id));
                Ok(())
            }
            // The installer checked the object's SHA-256 against its id and its encoding as
            // it streamed (`Store::finish_object`): it is neither hashed nor checked again.
            ObjectKind::Commit => {
                self.staged_commit = Some((c.id, c.bytes));
                Ok(())
            }
            kind => {
                let tree = match kind {
                    ObjectKind::DirTree => Some(DirTree::parse(&c.bytes).map_err(|error| {
                        RepoError::CorruptObject {
                            kind,
                            id: c.id,
                            error,
                        }
                    })?),
                    _ => None,
                };
                if let Some(tree) = &tree {
                    // Its depth, while its bytes are at hand: everything it names is in place
                    // and was asked about by the installer already.
                    let mut depth = 0u16;
                    for e in tree.entries() {
                        if let DirEntry::Dir { tree, .. } = e {
                            let d = self.depth(&tree)?;
                            depth = depth.max(d.saturating_add(1));
                        }
                    }
                    self.depths.insert(c.id, depth);
                }
                self.txn
                    .stage_verified_metadata(kind, &c.id, &c.bytes, tree.as_ref())?;
                self.done.push((kind, c.id));
                Ok(())
            }
        }
    }

    fn abort_object(&mut self) {
        self.drop_current();
    }

    /// The part that carried the file objects staged since the last call matched its hash:
    /// their owners, xattrs and modes are applied now ([`Transaction::part_verified`]). Until
    /// then a staged file is a private 0600 file in the private `R/tmp`.
    fn part_verified(&mut self) -> Result<(), RepoError> {
        self.txn.part_verified()
    }

    fn tree_depth(&mut self, id: &ObjectId) -> Result<Option<u16>, RepoError> {
        self.depth(id).map(Some)
    }

    /// Reads an object of the repository (never one staged by this install), keeping it
    /// open and reading its content ahead between the installer's small reads.
    fn read_object(
        &mut self,
        kind: ObjectKind,
        id: &ObjectId,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<Option<usize>, RepoError> {
        if !matches!(&self.source, Some(s) if s.kind == kind && s.id == *id) {
            let opened = match kind {
                ObjectKind::File => self.repo.open_file_object(id).map(|o| (o.meta, o.content)),
                ObjectKind::DirTree | ObjectKind::DirMeta => {
                    self.repo.read_metadata_object(kind, id).map(|m| (m, None))
                }
                _ => return Ok(None),
            };
            let (meta, content) = match opened {
                Ok(o) => o,
                Err(RepoError::MissingObject { .. }) => return Ok(None),
                Err(e) => return Err(e),
            };
            self.source = Some(Source {
                kind,
                id: *id,
                meta,
                content,
                at: 0,
                ahead: Vec::new(),
            });
        }
        let Some(s) = self.source.as_mut() else {
            return Ok(None);
        };
        let path = self.repo.object_path(kind, id);
        s.read(offset, buf).map(Some).map_err(io_err("read", &path))
    }

    fn reuse_object(&mut self, kind: ObjectKind, id: &ObjectId) -> Result<bool, RepoError> {
        match kind {
            ObjectKind::Commit => self.repo.has_commit(id),
            k => {
                let there = self.txn.has_object(k, id)?;
                if there {
                    self.done.push((k, *id));
                }
                Ok(there)
            }
        }
    }

    fn commit(&mut self, ref_name: &str, id: &ObjectId) -> Result<(), RepoError> {
        // Every object is written: the staging files made ahead and not needed go.
        self.pool = None;
        // The ref comes from the update file: never let it name a path outside refs/heads.
        validate_ref(ref_name)?;
        match self.staged_commit.take() {
            Some((staged, bytes)) if staged == *id => {
                // Everything the commit names, durable and in place; then the commit; then
                // the ref.
                self.txn.commit()?;
                if !self.repo.has_commit(id)? {
                    self.repo
                        .write_atomic(&self.repo.object_path(ObjectKind::Commit, id), &bytes)?;
                }
            }
            Some((staged, _)) => {
                return Err(RepoError::CommitMismatch {
                    expected: *id,
                    staged: Some(staged),
                })
            }
            None => {
                return Err(RepoError::CommitMismatch {
                    expected: *id,
                    staged: None,
                })
            }
        }
        self.repo.write_ref(ref_name, id)?;
        if self.resumable {
            // Installed: nothing to resume any more.
            if let Err(e) = crate::resume::discard(self.repo) {
                log::warn!("cannot remove the install checkpoint: {e}");
            }
        }
        Ok(())
    }

    fn abort(&mut self) {
        self.drop_current();
        self.pool = None;
        self.source = None;
        self.txn.abort();
        self.staged_commit = None;
        self.done.clear();
    }

    fn checkpoint(&mut self, checkpoint: &Checkpoint) -> Result<(), RepoError> {
        if !self.resumable {
            return Ok(());
        }
        // The objects of the verified parts: durable and in place, then the checkpoint.
        self.txn.commit()?;
        crate::resume::save_more(self.repo, checkpoint, self.checkpointed, self.done.iter())?;
        self.checkpointed = true;
        self.done.clear();
        Ok(())
    }

    fn resume(&mut self, checkpoint: &Checkpoint) -> Result<bool, RepoError> {
        if !self.resumable {
            return Ok(false);
        }
        if let Some(saved) = crate::resume::load(self.repo)? {
            if saved.checkpoint == *checkpoint && crate::resume::objects_present(self.repo, &saved)?
            {
                // Listed in `R/state/` already: the next checkpoint copies them from there.
                self.done.clear();
                self.checkpointed = true;
                return Ok(true);
            }
            log::info!("the saved install checkpoint no longer applies: it is discarded");
        }
        crate::resume::discard(self.repo)?;
        Ok(false)
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use agent_core::object::{Commit, DirMeta, Xattrs, S_IFDIR};
    use std::fs;

    fn file_object(content: &[u8]) -> Vec<u8> {
        agent_core::object::file_object(0o640, 0, 0, content)
    }

    #[test]
    fn objects_publish_early_commit_and_ref_only_at_commit() {
        let d = tempfile::tempdir().unwrap();
        let repo = Repo::init(&d.path().join("r")).unwrap();
        let mut s = RepoStore::new(&repo);
        // A file object split at every possible point.
        let obj = file_object(b"hello world");
        let id = ObjectId::of(&obj);
        s.begin_object(ObjectKind::File, &id, obj.len() as u64)
            .unwrap();
        for b in obj.chunks(1) {
            s.write_object(b).unwrap();
        }
        s.finish_object().unwrap();
        // Staged for this install, not yet visible in the repository.
        assert!(s.has_object(ObjectKind::File, &id).unwrap());
        assert!(!repo.has_object(ObjectKind::File, &id).unwrap());

        let tree = 0u32.to_le_bytes().to_vec();
        let mb = DirMeta {
            mode: S_IFDIR | 0o755,
            uid: 0,
            gid: 0,
            xattrs: Xattrs::EMPTY,
        }
        .to_vec();
        for (k, b) in [(ObjectKind::DirTree, &tree), (ObjectKind::DirMeta, &mb)] {
            s.begin_object(k, &ObjectId::of(b), b.len() as u64).unwrap();
            s.write_object(b).unwrap();
            s.finish_object().unwrap();
        }
        let c = Commit {
            parent: None,
            timestamp: 1,
            root_tree: ObjectId::of(&tree),
            root_meta: ObjectId::of(&mb),
            version: "1",
            subject: "",
            body: "",
            security_version: 0,
        };
        let cb = c.to_vec().unwrap();
        let cid = ObjectId::of(&cb);
        s.begin_object(ObjectKind::Commit, &cid, cb.len() as u64)
            .unwrap();
        s.write_object(&cb).unwrap();
        s.finish_object().unwrap();
        // Verified but not committed: invisible.
        assert!(!s.has_commit(&cid).unwrap());
        assert!(!repo.object_path(ObjectKind::Commit, &cid).exists());
        // A ref from the file that would escape refs/heads is refused.
        assert!(matches!(
            s.commit("../../evil", &cid),
            Err(RepoError::BadRefName { .. })
        ));
        assert!(matches!(
            s.commit("main", &ObjectId::ZERO),
            Err(RepoError::CommitMismatch { .. })
        ));
        // The staged commit was consumed by the failed call above: stage it again.
        s.begin_object(ObjectKind::Commit, &cid, cb.len() as u64)
            .unwrap();
        s.write_object(&cb).unwrap();
        s.finish_object().unwrap();
        s.commit("main", &cid).unwrap();
        assert!(repo.has_commit(&cid).unwrap());
        assert_eq!(repo.read_ref("main").unwrap(), Some(cid));
        assert_eq!(
            fs::read(repo.object_path(ObjectKind::File, &id)).unwrap(),
            b"hello world"
        );
        assert_eq!(fs::read_dir(repo.tmp_dir()).unwrap().count(), 0);
    }

    #[test]
    fn bad_sequences_and_lengths_are_errors_and_leave_nothing_staged() {
        let d = tempfile::tempdir().unwrap();
        let repo = Repo::init(&d.path().join("r")).unwrap();
        let mut s = RepoStore::new(&repo);
        let obj = file_object(&[7u8; 100]);
        let id = ObjectId::of(&obj);
        assert!(matches!(s.write_object(b"x"), Err(RepoError::Sequence(_))));
        // The header says 124 bytes, the installer announced 50: caught once the header is in.
        s.begin_object(ObjectKind::File, &id, 50).unwrap();
        s.write_object(&obj[..20]).unwrap();
        assert!(matches!(
            s.write_object(&obj[20..40]),
            Err(RepoError::ObjectLength {
                expected: 50,
                found: 124,
                ..
            })
        ));
        s.abort_object();
        // More bytes than announced.
        s.begin_object(ObjectKind::DirTree, &id, 4).unwrap();
        assert!(matches!(
            s.write_object(&[0; 5]),
            Err(RepoError::ObjectLength { .. })
        ));
        s.abort_object();
        // Short object.
        s.begin_object(ObjectKind::File, &id, obj.len() as u64)
            .unwrap();
        s.write_object(&obj[..60]).unwrap();
        assert!(matches!(
            s.finish_object(),
            Err(RepoError::ObjectLength { .. })
        ));
        // Aborted midway: the staged content file is removed.
        s.begin_object(ObjectKind::File, &id, obj.len() as u64)
            .unwrap();
        s.write_object(&obj[..60]).unwrap();
        s.abort();
        assert_eq!(fs::read_dir(repo.tmp_dir()).unwrap().count(), 0);
        assert!(!repo.has_object(ObjectKind::File, &id).unwrap());
        assert!(matches!(
            s.begin_object(ObjectKind::Unknown(9), &id, 1),
            Err(RepoError::UnknownKind(_))
        ));
        assert!(matches!(
            s.begin_object(ObjectKind::Commit, &id, 1 << 20),
            Err(RepoError::ObjectTooLarge { .. })
        ));
    }

    /// Stages `files` (whole objects), an empty root, and commits it on `main`.
    fn commit_files(s: &mut RepoStore<'_>, files: &[Vec<u8>]) {
        let tree = 0u32.to_le_bytes().to_vec();
        let mb = DirMeta {
            mode: S_IFDIR | 0o755,
            uid: 0,
            gid: 0,
            xattrs: Xattrs::EMPTY,
        }
        .to_vec();
        let mut objs: Vec<(ObjectKind, Vec<u8>)> = files
            .iter()
            .map(|f| (ObjectKind::File, f.clone()))
            .collect();
        objs.push((ObjectKind::DirTree, tree.clone()));
        objs.push((ObjectKind::DirMeta, mb.clone()));
        let c = Commit {
            parent: None,
            timestamp: 1,
            root_tree: ObjectId::of(&tree),
            root_meta: ObjectId::of(&mb),
            version: "1",
            subject: "",
            body: "",
            security_version: 0,
        };
        let cb = c.to_vec().unwrap();
        objs.push((ObjectKind::Commit, cb.clone()));
        for (k, b) in &objs {
            s.begin_object(*k, &ObjectId::of(b), b.len() as u64)
                .unwrap();
            s.write_object(b).unwrap();
            s.finish_object().unwrap();
        }
        s.commit("main", &ObjectId::of(&cb)).unwrap();
    }

    /// Reads a whole object through `read_object` in `window`-byte reads.
    fn read_all(s: &mut RepoStore<'_>, kind: ObjectKind, id: &ObjectId, window: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; window];
        loop {
            let n = s
                .read_object(kind, id, out.len() as u64, &mut buf)
                .unwrap()
                .expect("the object is there");
            out.extend_from_slice(&buf[..n]);
            if n < window {
                return out;
            }
        }
    }

    #[test]
    fn read_object_reads_committed_objects_in_any_window() {
        let d = tempfile::tempdir().unwrap();
        let repo = Repo::init(&d.path().join("r")).unwrap();
        let big: Vec<u8> = (0..200_000u32).map(|i| (i * 31 % 251) as u8).collect();
        let small = file_object(b"hello world");
        let large = file_object(&big);
        let mut s = RepoStore::new(&repo);
        commit_files(&mut s, &[small.clone(), large.clone()]);
        let mut s = RepoStore::new(&repo);
        for w in [1, 7, 128, 65_536, 300_000] {
            assert_eq!(
                read_all(&mut s, ObjectKind::File, &ObjectId::of(&small), w),
                small
            );
            assert_eq!(
                read_all(&mut s, ObjectKind::File, &ObjectId::of(&large), w),
                large
            );
        }
        // Random access across the metadata, the read-ahead and the end.
        let id = ObjectId::of(&large);
        for at in [150_000u64, 3, 24, 100_000, 65_560, (large.len() - 5) as u64] {
            let mut b = [0u8; 40];
            let n = s
                .read_object(ObjectKind::File, &id, at, &mut b)
                .unwrap()
                .unwrap();
            let want = &large[at as usize..(at as usize + 40).min(large.len())];
            assert_eq!(&b[..n], want, "at {at}");
        }
        let past = s.read_object(ObjectKind::File, &id, 1 << 40, &mut [0u8; 8]);
        assert_eq!(past.unwrap(), Some(0));
        // Metadata objects too; missing ones, and ones only staged by this install, are not held.
        let meta = read_all(
            &mut s,
            ObjectKind::DirTree,
            &ObjectId::of(&0u32.to_le_bytes()),
            3,
        );
        assert_eq!(meta, 0u32.to_le_bytes());
        let other = file_object(b"staged only");
        let oid = ObjectId::of(&other);
        s.begin_object(ObjectKind::File, &oid, other.len() as u64)
            .unwrap();
        s.write_object(&other).unwrap();
        s.finish_object().unwrap();
        assert_eq!(
            s.read_object(ObjectKind::File, &oid, 0, &mut [0u8; 8])
                .unwrap(),
            None
        );
        assert_eq!(
            s.read_object(ObjectKind::Commit, &oid, 0, &mut [0u8; 8])
                .unwrap(),
            None
        );
        s.abort();
    }

    #[test]
    fn checkpoints_list_every_completed_object_but_only_the_last_ones_stay_in_memory() {
        let d = tempfile::tempdir().unwrap();
        let repo = Repo::init(&d.path().join("r")).unwrap();
        let cp = |parts: u32| Checkpoint {
            file: [1; 32],
            target: ObjectId([2; 32]),
            offset: 1000 * u64::from(parts),
            parts,
            objects: 2 * parts,
        };
        let stage = |s: &mut RepoStore<'_>, content: &[u8]| {
            let obj = file_object(content);
            let id = ObjectId::of(&obj);
            s.begin_object(ObjectKind::File, &id, obj.len() as u64)
                .unwrap();
            s.write_object(&obj).unwrap();
            s.finish_object().unwrap();
            s.part_verified().unwrap();
            (ObjectKind::File, id)
        };
        let mut s = RepoStore::resumable(&repo);
        let a = [stage(&mut s, b"a1"), stage(&mut s, b"a2")];
        s.checkpoint(&cp(1)).unwrap();
        // Listed on disk; nothing of them kept in memory.
        assert!(s.done.is_empty());
        let saved = crate::resume::load(&repo).unwrap().unwrap();
        assert_eq!((saved.checkpoint, &saved.objects[..]), (cp(1), &a[..]));
        let b = [stage(&mut s, b"b1"), stage(&mut s, b"b2")];
        s.checkpoint(&cp(2)).unwrap();
        assert!(s.done.is_empty());
        let saved = crate::resume::load(&repo).unwrap().unwrap();
        assert_eq!(saved.checkpoint, cp(2));
        assert_eq!(saved.objects, [a, b].concat());
        s.abort();
        drop(s);
        // A later install resumes from it; its next checkpoint lists the earlier objects too.
        let mut s = RepoStore::resumable(&repo);
        assert!(s.resume(&cp(2)).unwrap());
        let c = [stage(&mut s, b"c1")];
        s.checkpoint(&cp(3)).unwrap();
        let saved = crate::resume::load(&repo).unwrap().unwrap();
        assert_eq!(saved.checkpoint, cp(3));
        assert_eq!(saved.objects, [&a[..], &b[..], &c[..]].concat());
        // The earlier list gone from under it: the checkpoint is refused rather than lose it.
        crate::resume::discard(&repo).unwrap();
        stage(&mut s, b"d1");
        assert!(s.checkpoint(&cp(4)).is_err());
        s.abort();
    }
}
