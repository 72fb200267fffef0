//! Removing garbage dirtrees with a journal (`R/gc-dirtrees`), so that a cut in the middle
//! is finished by the next writer before any dirtree left without its children is used.

use std::fs;
use std::io;
use std::path::PathBuf;

use agent_core::object::{ObjectId, ObjectKind};

use super::{io_err, Repo, RepoError};

/// The journal of an interrupted dirtree removal, in the repository (see
/// [`Repo::remove_dirtrees`]).
pub const GC_JOURNAL: &str = "gc-dirtrees";

impl Repo {
    /// The journal of a dirtree removal in progress: `R/gc-dirtrees`, one id per line.
    fn gc_journal(&self) -> PathBuf {
        self.root.join(GC_JOURNAL)
    }

    /// Removes the dirtrees `ids` (garbage: no ref or deployment reaches them) in any order,
    /// with a few directory fsyncs instead of one per level of their trees: the ids are first
    /// written durably to `R/gc-dirtrees`, then removed, their directories fsynced, and the
    /// journal removed. A cut in between leaves the journal, and whoever takes the repository
    /// lock next ([`Repo::lock`]) finishes the removal before anything else, so that no dirtree
    /// left without its children is ever used. Returns the dirtrees removed and their bytes.
    /// The caller holds the repository lock.
    pub fn remove_dirtrees(&self, ids: &[ObjectId]) -> Result<(u64, u64), RepoError> {
        if ids.is_empty() {
            return Ok((0, 0));
        }
        let mut text = String::with_capacity(ids.len() * 65);
        for id in ids {
            text.push_str(&id.to_string());
            text.push('\n');
        }
        let j = self.gc_journal();
        crate::fsops::write_atomic(&j, text.as_bytes(), 0o644).map_err(io_err("write", &j))?;
        let r = self.remove_listed(ids)?;
        crate::fsops::remove_file(&j).map_err(io_err("remove", &j))?;
        crate::fsops::fsync_dir(&self.root).map_err(io_err("fsync", &self.root))?;
        Ok(r)
    }

    /// Removes the listed dirtrees (missing ones are fine) and fsyncs their directories.
    fn remove_listed(&self, ids: &[ObjectId]) -> Result<(u64, u64), RepoError> {
        let (mut n, mut bytes) = (0, 0);
        let mut dirs = std::collections::BTreeSet::new();
        for id in ids {
            let p = self.object_path(ObjectKind::DirTree, id);
            let len = fs::symlink_metadata(&p).map(|m| m.len()).unwrap_or(0);
            if crate::fsops::remove_file_if_exists(&p).map_err(io_err("remove", &p))? {
                n += 1;
                bytes += len;
                dirs.insert(crate::fsops::parent_of(&p));
            }
        }
        for d in dirs {
            crate::fsops::fsync_dir(&d).map_err(io_err("fsync", &d))?;
        }
        Ok((n, bytes))
    }

    /// Finishes a dirtree removal that a cut interrupted (see [`Repo::remove_dirtrees`]).
    pub(super) fn finish_gc(&self) -> Result<(), RepoError> {
        let j = self.gc_journal();
        let text = match fs::read_to_string(&j) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_err("read", &j)(e)),
        };
        // A torn journal cannot exist (it is written atomically); a line that is not an id
        // is skipped rather than trusted as a path.
        let ids: Vec<ObjectId> = text
            .lines()
            .filter_map(|l| ObjectId::from_hex(l.trim()).ok())
            .collect();
        self.remove_listed(&ids)?;
        crate::fsops::remove_file(&j).map_err(io_err("remove", &j))?;
        crate::fsops::fsync_dir(&self.root).map_err(io_err("fsync", &self.root))
    }
}
