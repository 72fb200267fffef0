//! Converting OSTree objects into ours: a ref's history matched against what was imported
//! before ([`Converter::plan`]), then its trees, directories and files staged in one
//! [`Transaction`].

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use agent_core::object::{self, Commit, ObjectId, ObjectKind, S_IPERM};
use sha2::{Digest, Sha256};

use crate::repo::{Repo, Transaction, TreeRoot, MAX_TREE_DEPTH};
use crate::tree::{self, BuildStats, Node};

use super::error::{build_err, build_err_id};
use super::source::{self, OstreeCommit, OstreeKind, OstreeRepo};
use super::{HistoryEnd, ImportError, ImportedCommit, RefImport};

/// One ref's import, decided and staged, not yet written.
pub(super) struct Plan {
    pub(super) report: RefImport,
    pub(super) new_commits: Vec<Vec<u8>>,
    pub(super) head: ObjectId,
    pub(super) moved: bool,
}

pub(super) struct Converter<'a> {
    pub(super) src: &'a OstreeRepo,
    pub(super) txn: Transaction<'a>,
    pub(super) stats: BuildStats,
    /// OSTree file object → ours.
    pub(super) files: HashMap<ObjectId, ObjectId>,
    /// OSTree (dirtree, dirmeta) → our (dirtree, dirmeta).
    pub(super) dirs: HashMap<(ObjectId, ObjectId), (ObjectId, ObjectId)>,
    pub(super) progress: &'a mut dyn FnMut(&BuildStats),
}

/// A directory being converted (the explicit stack of [`Converter::tree`]).
pub(super) struct Frame {
    key: (ObjectId, ObjectId),
    path: PathBuf,
    /// Subdirectories still to convert: name, dirtree, dirmeta.
    todo: std::vec::IntoIter<(Vec<u8>, ObjectId, ObjectId)>,
    /// The name the directory has in its parent.
    name: Vec<u8>,
    entries: Vec<(Vec<u8>, Node)>,
}

impl Converter<'_> {
    /// Reads the ref's history, finds what is imported already and converts the rest.
    pub(super) fn plan(
        &mut self,
        ours: &Repo,
        name: &str,
        head: &ObjectId,
    ) -> Result<Plan, ImportError> {
        // The history, newest first, as far as the parents are present.
        let mut chain = vec![self.src.read_commit(head)?];
        let mut history = HistoryEnd::Root;
        while let Some(parent) = chain.last().and_then(|c| c.parent) {
            if !self.src.has_commit(&parent) {
                history = HistoryEnd::MissingParent(parent);
                break;
            }
            if chain.iter().any(|c| c.id == parent) {
                // Not possible with SHA-256; refuse rather than loop.
                return Err(ImportError::CorruptObject {
                    kind: OstreeKind::Commit,
                    id: parent,
                    path: self.src.object_path(OstreeKind::Commit, &parent),
                    problem: "the history loops back to it",
                });
            }
            chain.push(self.src.read_commit(&parent)?);
        }
        chain.reverse();
        // Which of them our branch's head is, if any: compare the commit's fields first and
        // the converted tree only for a candidate.
        let ours_head = ours.read_ref(name)?;
        let mut start = 0;
        let mut parent = None;
        let mut security_version = 0;
        let mut roots: HashMap<ObjectId, TreeRoot> = HashMap::new();
        if let Some(h) = ours_head {
            let info = ours.read_commit(&h)?;
            let mut found = None;
            for (i, c) in chain.iter().enumerate().rev() {
                if c.timestamp != info.timestamp
                    || c.version != info.version
                    || c.subject != info.subject
                    || c.body != info.body
                {
                    continue;
                }
                let root = self.tree(c)?;
                roots.insert(c.id, root);
                if root.tree == info.root_tree && root.meta == info.root_meta {
                    found = Some(i);
                    break;
                }
            }
            match found {
                Some(i) => {
                    start = i + 1;
                    parent = Some(h);
                    security_version = info.security_version;
                }
                None => {
                    return Err(ImportError::Diverged {
                        branch: name.to_string(),
                        head: h,
                        ostree_commits: chain.len(),
                    })
                }
            }
        }
        // Ours, before the match: the history of our head (already there).
        let mut commits = Vec::new();
        if let Some(h) = ours_head {
            let (mut old, _) = ours.history(&h)?;
            old.reverse();
            let skip = old.len().saturating_sub(start);
            for (c, o) in chain[..start].iter().zip(old.iter().skip(skip)) {
                commits.push(ImportedCommit {
                    ostree: c.id.to_string(),
                    commit: o.id.to_string(),
                    version: c.version.clone(),
                    subject: c.subject.clone(),
                    timestamp: c.timestamp,
                    new: false,
                });
            }
        }
        let mut new_commits = Vec::new();
        for c in &chain[start..] {
            let root = match roots.get(&c.id) {
                Some(r) => *r,
                None => self.tree(c)?,
            };
            let commit = Commit {
                parent,
                timestamp: c.timestamp,
                root_tree: root.tree,
                root_meta: root.meta,
                version: &c.version,
                subject: &c.subject,
                body: &c.body,
                security_version,
            };
            let bytes = commit
                .to_vec()
                .map_err(|error| ImportError::Unrepresentable {
                    commit: c.id,
                    path: PathBuf::from("(commit version, subject or body)"),
                    error,
                })?;
            let id = ObjectId::of(&bytes);
            commits.push(ImportedCommit {
                ostree: c.id.to_string(),
                commit: id.to_string(),
                version: c.version.clone(),
                subject: c.subject.clone(),
                timestamp: c.timestamp,
                new: true,
            });
            new_commits.push(bytes);
            parent = Some(id);
        }
        let head = parent.unwrap_or(ObjectId::ZERO);
        Ok(Plan {
            report: RefImport {
                name: name.to_string(),
                commits,
                history,
                head: head.to_string(),
            },
            moved: !new_commits.is_empty(),
            new_commits,
            head,
        })
    }

    /// Converts a commit's tree (depth-first with an explicit stack, bounded by
    /// [`MAX_TREE_DEPTH`]), reusing directories and files converted before.
    fn tree(&mut self, c: &OstreeCommit) -> Result<TreeRoot, ImportError> {
        let root_key = (c.root_tree, c.root_meta);
        if let Some((tree, meta)) = self.dirs.get(&root_key) {
            return Ok(TreeRoot {
                tree: *tree,
                meta: *meta,
            });
        }
        let mut stack = vec![self.enter(c, root_key, PathBuf::from("/"), Vec::new())?];
        loop {
            let Some(top) = stack.last_mut() else {
                return Err(ImportError::LogicBug(
                    "the tree stack emptied before its root",
                ));
            };
            let next = top.todo.next();
            match next {
                Some((name, t, m)) => {
                    let parent = stack.last().map(|f| f.path.clone()).unwrap_or_default();
                    let path = parent.join(OsStr::from_bytes(&name));
                    if let Some((tree, meta)) = self.dirs.get(&(t, m)) {
                        let node = Node::Dir {
                            tree: *tree,
                            meta: *meta,
                        };
                        if let Some(top) = stack.last_mut() {
                            top.entries.push((name, node));
                        }
                        continue;
                    }
                    if stack.len() > MAX_TREE_DEPTH {
                        return Err(ImportError::TooDeep { commit: c.id, path });
                    }
                    let frame = self.enter(c, (t, m), path, name)?;
                    stack.push(frame);
                }
                None => {
                    let Some(mut done) = stack.pop() else {
                        return Err(ImportError::LogicBug(
                            "the tree stack emptied before its root",
                        ));
                    };
                    let ids = self.leave(c, &mut done)?;
                    self.dirs.insert(done.key, ids);
                    match stack.last_mut() {
                        Some(top) => top.entries.push((
                            done.name,
                            Node::Dir {
                                tree: ids.0,
                                meta: ids.1,
                            },
                        )),
                        None => {
                            return Ok(TreeRoot {
                                tree: ids.0,
                                meta: ids.1,
                            })
                        }
                    }
                }
            }
        }
    }

    /// Reads a directory's dirtree, converts its files, and returns its frame.
    fn enter(
        &mut self,
        c: &OstreeCommit,
        key: (ObjectId, ObjectId),
        path: PathBuf,
        name: Vec<u8>,
    ) -> Result<Frame, ImportError> {
        let dt = self.src.read_dirtree(&key.0)?;
        self.stats.dirs += 1;
        let mut entries = Vec::with_capacity(dt.files.len() + dt.dirs.len());
        for (fname, id) in &dt.files {
            let fpath = path.join(OsStr::from_bytes(fname));
            Self::check_name(&key.0, &path, fname)?;
            let ours = match self.files.get(id) {
                Some(o) => *o,
                None => {
                    let o = self.file(c, id, &fpath)?;
                    self.files.insert(*id, o);
                    o
                }
            };
            entries.push((fname.clone(), Node::File(ours)));
        }
        for (dname, _, _) in &dt.dirs {
            Self::check_name(&key.0, &path, dname)?;
        }
        Ok(Frame {
            key,
            path,
            todo: dt.dirs.into_iter(),
            name,
            entries,
        })
    }

    fn check_name(dirtree: &ObjectId, dir: &Path, name: &[u8]) -> Result<(), ImportError> {
        object::validate_name(name).map_err(|error| ImportError::BadName {
            dirtree: *dirtree,
            dir: dir.to_path_buf(),
            name: name.to_vec(),
            error,
        })
    }

    /// Writes a finished directory's dirtree and dirmeta.
    fn leave(
        &mut self,
        c: &OstreeCommit,
        f: &mut Frame,
    ) -> Result<(ObjectId, ObjectId), ImportError> {
        let dm = self.src.read_dirmeta(&f.key.1)?;
        let unrep = |path: &Path, error| ImportError::Unrepresentable {
            commit: c.id,
            path: path.to_path_buf(),
            error,
        };
        let xattrs = crate::fsmeta::encode_xattrs(&dm.xattrs).map_err(|e| unrep(&f.path, e))?;
        let mut entries = std::mem::take(&mut f.entries);
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        let tree = tree::write_dirtree(&mut self.txn, &f.path, &entries, &mut self.stats)
            .map_err(|e| build_err(c, e))?;
        let meta = tree::write_dirmeta(
            &mut self.txn,
            &f.path,
            dm.mode & S_IPERM,
            dm.uid,
            dm.gid,
            &xattrs,
            &mut self.stats,
        )
        .map_err(|e| build_err(c, e))?;
        Ok((tree, meta))
    }

    /// Converts one file object: verified while its content is copied into our staging
    /// area and hashed as our object, published only when its OSTree checksum matched.
    fn file(
        &mut self,
        c: &OstreeCommit,
        id: &ObjectId,
        path: &Path,
    ) -> Result<ObjectId, ImportError> {
        let repo = self.txn.repo();
        let (tmp, tmp_path) = repo.create_tmp("ostree")?;
        let mut st = Staging {
            commit: c.id,
            path,
            tmp,
            hash: Sha256::new(),
            header: Vec::new(),
            xattrs: Vec::new(),
        };
        let meta = match self.src.read_file(id, &mut st) {
            Ok(m) => m,
            Err(e) => {
                let _ = fs::remove_file(&tmp_path);
                return Err(e);
            }
        };
        self.stats.files += 1;
        if meta.is_symlink() {
            let _ = fs::remove_file(&tmp_path);
            let id = tree::write_symlink(
                &mut self.txn,
                path,
                &meta.target,
                meta.uid,
                meta.gid,
                &st.xattrs,
                &mut self.stats,
            )
            .map_err(|e| build_err(c, e))?;
            (self.progress)(&self.stats);
            return Ok(id);
        }
        let our_id = ObjectId(st.hash.finalize().into());
        self.stats.bytes += meta.size;
        if self.txn.has_object(ObjectKind::File, &our_id)? {
            let _ = fs::remove_file(&tmp_path);
        } else {
            self.txn
                .publish_file_object(&our_id, &st.header, Some((st.tmp, tmp_path)))?;
            self.stats.new_objects += 1;
        }
        (self.progress)(&self.stats);
        Ok(our_id)
    }
}

/// A file object on its way into our repository: the staged content and our object's hash
/// (our header, then the content).
pub(super) struct Staging<'p> {
    commit: ObjectId,
    path: &'p Path,
    tmp: fs::File,
    hash: Sha256,
    header: Vec<u8>,
    xattrs: Vec<u8>,
}

impl source::FileSink for Staging<'_> {
    fn start(&mut self, meta: &source::FileMeta) -> Result<(), ImportError> {
        self.xattrs = crate::fsmeta::encode_xattrs(&meta.xattrs()).map_err(|error| {
            ImportError::Unrepresentable {
                commit: self.commit,
                path: self.path.to_path_buf(),
                error,
            }
        })?;
        if !meta.is_symlink() {
            self.header = tree::file_meta(
                self.path,
                object::S_IFREG | (meta.mode & S_IPERM),
                meta.uid,
                meta.gid,
                meta.size,
                b"",
                &self.xattrs,
            )
            .map_err(|e| build_err_id(self.commit, e))?;
            self.hash.update(&self.header);
        }
        Ok(())
    }

    fn data(&mut self, chunk: &[u8]) -> io::Result<()> {
        self.hash.update(chunk);
        self.tmp.write_all(chunk)
    }
}
