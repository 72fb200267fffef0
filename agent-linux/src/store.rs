//! [`agent_core::store::Store`] over a [`Repo`]: what the installer writes through on Linux.
//!
//! - Files, dirtrees and dirmetas are staged in `R/tmp`, fsynced and renamed into place (and
//!   the directory fsynced) as soon as the installer has verified them. They are
//!   content-addressed, so publishing a verified object early is harmless: a failed install
//!   leaves only valid, unreferenced objects behind (a later prune may remove them).
//! - The commit object is held back: it is written (temp + fsync + rename) only in
//!   [`Store::commit`], followed by the ref (temp + fsync + rename). Until then
//!   [`Store::has_commit`] is false for it and the ref is unchanged, so a failed or interrupted
//!   install never shows up as installed.
//! - [`Store::has_object`] is presence on disk: the repository keeps the bottom-up invariant
//!   (a dirtree is present only once its whole tree is), and [`Store::reuse_object`] checks
//!   presence, since a shared store holds the source commit's objects already.
//! - [`Store::abort`] removes the staged temp file of the object in progress and forgets the
//!   staged commit.

use std::fs::{self, File};
use std::io::Write;
use std::path::PathBuf;

use agent_core::object::{
    Commit, FileHeader, ObjectError, ObjectId, ObjectKind, FILE_HEADER_LEN, MAX_COMMIT_LEN,
};
use agent_core::store::Store;

use crate::repo::{io_err, validate_ref, Repo, RepoError, MAX_METADATA_OBJECT};

/// The installer's view of a repository. See the [module docs](self).
#[derive(Debug)]
pub struct RepoStore<'r> {
    repo: &'r Repo,
    current: Option<Current>,
    staged_commit: Option<(ObjectId, Vec<u8>)>,
}

#[derive(Debug)]
struct Current {
    kind: ObjectKind,
    id: ObjectId,
    len: u64,
    written: u64,
    /// Metadata objects whole; for a file, its header, target and xattrs.
    bytes: Vec<u8>,
    /// For a file: where its metadata ends, once the header is parsed.
    meta_len: Option<u64>,
    /// For a regular file: the staged content.
    content: Option<(File, PathBuf)>,
}

impl<'r> RepoStore<'r> {
    /// A store over `repo`.
    pub fn new(repo: &'r Repo) -> RepoStore<'r> {
        RepoStore {
            repo,
            current: None,
            staged_commit: None,
        }
    }

    /// The repository.
    pub fn repo(&self) -> &'r Repo {
        self.repo
    }

    fn drop_current(&mut self) {
        if let Some(c) = self.current.take() {
            if let Some((f, p)) = c.content {
                drop(f);
                let _ = fs::remove_file(p);
            }
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

    fn has_object(&mut self, kind: ObjectKind, id: &ObjectId) -> Result<bool, RepoError> {
        self.repo.has_object(kind, id)
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
            meta_len: None,
            content: None,
        });
        Ok(())
    }

    fn write_object(&mut self, mut data: &[u8]) -> Result<(), RepoError> {
        let repo = self.repo;
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
            match c.meta_len {
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
                        c.meta_len = Some(h.meta_len());
                        if !h.is_symlink() {
                            c.content = Some(repo.create_tmp("install")?);
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
                    f.write_all(data).map_err(io_err("write", p))?;
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
                if c.meta_len.is_none() {
                    return Err(RepoError::CorruptObject {
                        kind: c.kind,
                        id: c.id,
                        error: ObjectError::Truncated {
                            needed: FILE_HEADER_LEN,
                            have: c.bytes.len(),
                        },
                    });
                }
                self.repo
                    .publish_file_object(&c.id, &c.bytes, c.content.take())
            }
            ObjectKind::Commit => {
                Commit::parse(&c.bytes).map_err(|error| RepoError::CorruptObject {
                    kind: c.kind,
                    id: c.id,
                    error,
                })?;
                check_id(&c)?;
                self.staged_commit = Some((c.id, c.bytes));
                Ok(())
            }
            kind => {
                check_id(&c)?;
                self.repo.write_metadata_object(kind, &c.bytes).map(|_| ())
            }
        }
    }

    fn abort_object(&mut self) {
        self.drop_current();
    }

    fn reuse_object(&mut self, kind: ObjectKind, id: &ObjectId) -> Result<bool, RepoError> {
        match kind {
            ObjectKind::Commit => self.repo.has_commit(id),
            k => self.repo.has_object(k, id),
        }
    }

    fn commit(&mut self, ref_name: &str, id: &ObjectId) -> Result<(), RepoError> {
        // The ref comes from the update file: never let it name a path outside refs/heads.
        validate_ref(ref_name)?;
        match self.staged_commit.take() {
            Some((staged, bytes)) if staged == *id => {
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
        self.repo.write_ref(ref_name, id)
    }

    fn abort(&mut self) {
        self.drop_current();
        self.staged_commit = None;
    }
}

fn check_id(c: &Current) -> Result<(), RepoError> {
    let found = ObjectId::of(&c.bytes);
    if found == c.id {
        Ok(())
    } else {
        Err(RepoError::HashMismatch {
            kind: c.kind,
            id: c.id,
            found,
        })
    }
}
