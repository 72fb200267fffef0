//! Walking a commit's tree: every object it reaches ([`ObjectSet`]), its depth, and the
//! complete check of every object ([`Repo::fsck_commit`]).

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;

use agent_core::object::{self, ObjectError, ObjectId, ObjectKind};
use sha2::{Digest, Sha256};

use super::{io_err, OwnedEntry, Repo, RepoError, MAX_TREE_DEPTH};

/// Every object a commit's tree references (not the commit itself).
#[derive(Debug, Clone, Default)]
pub struct ObjectSet {
    /// File objects.
    pub files: HashSet<ObjectId>,
    /// Dirtree objects.
    pub dirtrees: HashSet<ObjectId>,
    /// Dirmeta objects.
    pub dirmetas: HashSet<ObjectId>,
}

impl ObjectSet {
    /// Whether the set holds the object.
    pub fn contains(&self, kind: ObjectKind, id: &ObjectId) -> bool {
        match kind {
            ObjectKind::File => self.files.contains(id),
            ObjectKind::DirTree => self.dirtrees.contains(id),
            ObjectKind::DirMeta => self.dirmetas.contains(id),
            _ => false,
        }
    }
}

/// What [`Repo::fsck_commit`] checked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct FsckStats {
    /// File objects (files and symlinks).
    pub files: u64,
    /// Dirtree objects.
    pub dirtrees: u64,
    /// Dirmeta objects.
    pub dirmetas: u64,
    /// Content bytes hashed.
    pub bytes: u64,
}

impl Repo {
    /// Checks a commit completely: the commit and every object its tree references are
    /// present, parse, and hash to their names (file contents are streamed); a regular
    /// file's content has the object's permission bits and a symlink object is a symlink to
    /// the object's target, as hard-linked deployments need.
    pub fn fsck_commit(&self, id: &ObjectId) -> Result<FsckStats, RepoError> {
        let set = self.reachable(id)?;
        let mut stats = FsckStats {
            dirtrees: set.dirtrees.len() as u64,
            ..FsckStats::default()
        };
        for m in &set.dirmetas {
            self.read_metadata_object(ObjectKind::DirMeta, m)?;
            stats.dirmetas += 1;
        }
        let mut buf = vec![0u8; 64 * 1024];
        for f in &set.files {
            let kind = ObjectKind::File;
            let obj = self.open_file_object(f)?;
            let p = self.object_path(kind, f);
            let md = fs::symlink_metadata(&p).map_err(io_err("stat", &p))?;
            let mut h = Sha256::new();
            h.update(&obj.meta);
            let mode_ok = if obj.header.is_symlink() {
                let target = fs::read_link(&p).map_err(io_err("read symlink", &p))?;
                md.file_type().is_symlink() && target.as_os_str().as_bytes() == obj.target()
            } else {
                use std::os::unix::fs::MetadataExt;
                md.file_type().is_file()
                    && md.mode() & object::S_IPERM == obj.header.mode & object::S_IPERM
            };
            if !mode_ok {
                return Err(RepoError::CorruptObject {
                    kind,
                    id: *f,
                    error: ObjectError::BadMode(obj.header.mode),
                });
            }
            if let Some(mut c) = obj.content {
                loop {
                    let n = c.read(&mut buf).map_err(io_err("read", &p))?;
                    if n == 0 {
                        break;
                    }
                    stats.bytes += n as u64;
                    h.update(&buf[..n]);
                }
            }
            let found = ObjectId(h.finalize().into());
            if found != *f {
                return Err(RepoError::HashMismatch {
                    kind,
                    id: *f,
                    found,
                });
            }
            stats.files += 1;
        }
        Ok(stats)
    }

    /// The depth of dirtree `id` (0 without subdirectories, else one more than its deepest
    /// subdirectory's), counted without recursion; `memo` remembers the depths computed, so
    /// asking about every dirtree of a tree costs one read of each. Counting stops past
    /// [`MAX_TREE_DEPTH`] (the answer is then `MAX_TREE_DEPTH + 1`).
    pub fn tree_depth(
        &self,
        id: &ObjectId,
        memo: &mut HashMap<ObjectId, u16>,
    ) -> Result<u16, RepoError> {
        let cap = agent_core::object::MAX_TREE_DEPTH + 1;
        if let Some(d) = memo.get(id) {
            return Ok(*d);
        }
        // One frame per level of the path being walked: a dirtree, its subdirectories and how
        // many of them are counted, and the deepest of those.
        struct Frame {
            tree: ObjectId,
            kids: Vec<ObjectId>,
            next: usize,
            deepest: Option<u16>,
        }
        let kids_of = |t: &ObjectId| -> Result<Vec<ObjectId>, RepoError> {
            Ok(self
                .read_dirtree(t)?
                .into_iter()
                .filter_map(|e| match e {
                    OwnedEntry::Dir { tree, .. } => Some(tree),
                    OwnedEntry::File { .. } => None,
                })
                .collect())
        };
        let mut stack = vec![Frame {
            tree: *id,
            kids: kids_of(id)?,
            next: 0,
            deepest: None,
        }];
        loop {
            let levels = stack.len();
            let Some(top) = stack.last_mut() else { break };
            if let Some(k) = top.kids.get(top.next).copied() {
                top.next += 1;
                let d = match memo.get(&k) {
                    Some(d) => *d,
                    None if levels > MAX_TREE_DEPTH => cap,
                    None => {
                        let kids = kids_of(&k)?;
                        stack.push(Frame {
                            tree: k,
                            kids,
                            next: 0,
                            deepest: None,
                        });
                        continue;
                    }
                };
                top.deepest = Some(top.deepest.map_or(d, |x| x.max(d)));
                continue;
            }
            let done = stack.pop().expect("a frame is on the stack");
            let d = done.deepest.map_or(0, |x| x.saturating_add(1)).min(cap);
            memo.insert(done.tree, d);
            if let Some(parent) = stack.last_mut() {
                parent.deepest = Some(parent.deepest.map_or(d, |x| x.max(d)));
            }
        }
        Ok(memo.get(id).copied().unwrap_or(cap))
    }

    /// Every object the tree of `commit` references.
    pub fn reachable(&self, commit: &ObjectId) -> Result<ObjectSet, RepoError> {
        let c = self.read_commit(commit)?;
        let mut set = ObjectSet::default();
        set.dirmetas.insert(c.root_meta);
        let mut stack = vec![(c.root_tree, 0usize)];
        while let Some((tree, depth)) = stack.pop() {
            if !set.dirtrees.insert(tree) {
                continue;
            }
            if depth > MAX_TREE_DEPTH {
                return Err(RepoError::TooDeep(*commit));
            }
            for e in self.read_dirtree(&tree)? {
                match e {
                    OwnedEntry::File { id, .. } => {
                        set.files.insert(id);
                    }
                    OwnedEntry::Dir { tree, meta, .. } => {
                        set.dirmetas.insert(meta);
                        stack.push((tree, depth + 1));
                    }
                }
            }
        }
        Ok(set)
    }
}
