//! Importing the commits of an OSTree repository (`ecu-agent import-ostree`), so that the
//! `.update` files are generated from what an OSTree release pipeline already builds.
//!
//! The OSTree repository is read natively ([`source`]: archive, bare-user and bare modes),
//! every object verified against its checksum before anything from it is used. Each OSTree
//! commit becomes a normal commit of ours ([`crate::repo`]): its tree converted object by
//! object (names, modes with setuid/setgid/sticky bits, owners, xattrs, symlink targets,
//! contents), its version (`version` metadata key), subject, body and timestamp kept. The
//! history of a ref is imported oldest first, as far back as its parents are present in the
//! OSTree repository; each OSTree ref becomes our branch of the same name.
//!
//! Our commit ids differ from OSTree's (our objects are encoded differently), so a
//! re-import recognizes what it imported before by content: the head of our branch is
//! matched with the OSTree commit of the same timestamp, version, subject, body and tree,
//! and only the commits after it are added. Re-importing an unchanged repository writes
//! nothing; a branch whose head is none of the OSTree ref's commits is refused, never
//! rewritten.
//!
//! All of it is one transaction: the objects of every ref are staged and published
//! together, then the commits are written, then the refs move. An error (a corrupted object,
//! a tree our format cannot hold) leaves every branch where it was. `docs/OSTREE-IMPORT.md`
//! lists what is mapped and what is not.

pub mod source;

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use agent_core::object::{self, Commit, ObjectError, ObjectId, ObjectKind, S_IPERM};
use sha2::{Digest, Sha256};

use crate::repo::{Repo, RepoError, Transaction, TreeRoot, MAX_TREE_DEPTH};
use crate::tree::{self, BuildError, BuildStats, Node};
pub use source::{Mode, OstreeCommit, OstreeKind, OstreeRepo};

/// Why an import failed. Nothing of ours moved.
#[derive(Debug)]
#[non_exhaustive]
pub enum ImportError {
    /// Reading the OSTree repository failed.
    Io {
        /// What was being done.
        what: &'static str,
        /// On which path.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The directory has no OSTree `config` and `objects/`.
    NotOstreeRepo(PathBuf),
    /// The repository's mode is one this importer does not read.
    UnsupportedMode {
        /// The repository.
        path: PathBuf,
        /// Its `mode=`.
        mode: String,
    },
    /// No `refs/heads/<name>`.
    NoSuchRef {
        /// The repository.
        repo: PathBuf,
        /// The ref asked for.
        name: String,
    },
    /// The repository has no ref at all under `refs/heads`.
    NoRefs(PathBuf),
    /// A ref file does not hold a checksum.
    BadRef {
        /// The ref.
        name: String,
        /// Its file.
        path: PathBuf,
    },
    /// A FIFO, device, directory or symlink where the repository keeps a file.
    NotAFile(PathBuf),
    /// A file of the repository is over its bound.
    TooLarge {
        /// What it is.
        what: &'static str,
        /// Where.
        path: PathBuf,
        /// The bound.
        max: u64,
    },
    /// An object a commit or dirtree names is not in the repository.
    MissingObject {
        /// Its kind.
        kind: OstreeKind,
        /// Its checksum.
        id: ObjectId,
        /// Where it should be.
        path: PathBuf,
    },
    /// An object's bytes do not hash to its name.
    ChecksumMismatch {
        /// Its kind.
        kind: OstreeKind,
        /// Its name.
        id: ObjectId,
        /// What its bytes hash to.
        found: ObjectId,
        /// Its file.
        path: PathBuf,
    },
    /// An object is malformed.
    CorruptObject {
        /// Its kind.
        kind: OstreeKind,
        /// Its name.
        id: ObjectId,
        /// Its file.
        path: PathBuf,
        /// What is wrong.
        problem: &'static str,
    },
    /// A file object's content cannot be read back (bad deflate, wrong size).
    CorruptContent {
        /// Its name.
        id: ObjectId,
        /// Its file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// Something in a commit that our object format cannot hold (a name, an xattr block,
    /// a symlink target or a text over our bounds).
    Unrepresentable {
        /// The OSTree commit.
        commit: ObjectId,
        /// The path in its tree (or the commit field).
        path: PathBuf,
        /// Why.
        error: ObjectError,
    },
    /// A dirtree names an entry that is not a single path component (`..`, `a/b`, empty).
    BadName {
        /// The dirtree.
        dirtree: ObjectId,
        /// Its path in the tree.
        dir: PathBuf,
        /// The name.
        name: Vec<u8>,
        /// What is wrong with it.
        error: object::NameError,
    },
    /// A tree deeper than [`MAX_TREE_DEPTH`].
    TooDeep {
        /// The OSTree commit.
        commit: ObjectId,
        /// The directory past the limit.
        path: PathBuf,
    },
    /// Our branch points at a commit that is none of the OSTree ref's commits.
    Diverged {
        /// The branch (and OSTree ref).
        branch: String,
        /// Its head in our repository.
        head: ObjectId,
        /// How many commits the OSTree ref's history has.
        ostree_commits: usize,
    },
    /// The OSTree ref's name is not a valid branch name of ours.
    BadBranch {
        /// The ref.
        name: String,
        /// Why.
        error: RepoError,
    },
    /// Converting an entry failed for another reason.
    Convert {
        /// The OSTree commit.
        commit: ObjectId,
        /// Why.
        problem: String,
    },
    /// Writing into our repository failed.
    Repo(RepoError),
    /// A bug of the importer (would otherwise have been a panic).
    LogicBug(&'static str),
}

impl fmt::Display for ImportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImportError::Io { what, path, source } => {
                write!(f, "cannot {what} {}: {source}", path.display())
            }
            ImportError::NotOstreeRepo(p) => write!(
                f,
                "{} is not an OSTree repository (no config file and objects directory)",
                p.display()
            ),
            ImportError::UnsupportedMode { path, mode } => write!(
                f,
                "{} is an OSTree repository in mode {mode:?}, which cannot be imported; \
                 convert it with `ostree pull-local` into a repository made by \
                 `ostree init --mode=archive` (or bare-user, or bare) and import that",
                path.display()
            ),
            ImportError::NoSuchRef { repo, name } => write!(
                f,
                "{} has no ref {name:?} (refs/heads/{name}); `ostree refs --repo={}` lists them",
                repo.display(),
                repo.display()
            ),
            ImportError::NoRefs(p) => write!(
                f,
                "{} has no refs under refs/heads; name commits with --ref once it has",
                p.display()
            ),
            ImportError::BadRef { name, path } => write!(
                f,
                "ref {name:?} ({}) does not hold a 64-character checksum",
                path.display()
            ),
            ImportError::NotAFile(p) => write!(
                f,
                "{} is not a regular file, where the OSTree repository keeps one; the repository is damaged",
                p.display()
            ),
            ImportError::TooLarge { what, path, max } => {
                write!(f, "{what} {} is over the limit of {max}", path.display())
            }
            ImportError::MissingObject { kind, id, path } => write!(
                f,
                "{kind} object {id} is missing from the OSTree repository ({} does not exist)",
                path.display()
            ),
            ImportError::ChecksumMismatch {
                kind,
                id,
                found,
                path,
            } => write!(
                f,
                "{kind} object {id} is corrupted: {} hashes to {found}; \
                 repair the OSTree repository (`ostree fsck --delete` and pull again)",
                path.display()
            ),
            ImportError::CorruptObject {
                kind,
                id,
                path,
                problem,
            } => write!(
                f,
                "{kind} object {id} is corrupted ({}): {problem}",
                path.display()
            ),
            ImportError::CorruptContent { id, path, problem } => write!(
                f,
                "file object {id} is corrupted ({}): {problem}",
                path.display()
            ),
            ImportError::Unrepresentable {
                commit,
                path,
                error,
            } => write!(
                f,
                "OSTree commit {commit} cannot be imported: {} does not fit our object format: {error}",
                path.display()
            ),
            ImportError::BadName {
                dirtree,
                dir,
                name,
                error,
            } => write!(
                f,
                "OSTree dirtree {dirtree} ({}) names {:?}, \
                 which is not a single path component ({error}); the repository was not made by \
                 ostree from a real tree",
                dir.display(),
                String::from_utf8_lossy(name)
            ),
            ImportError::TooDeep { commit, path } => write!(
                f,
                "OSTree commit {commit} cannot be imported: {} is nested deeper than {MAX_TREE_DEPTH} directories",
                path.display()
            ),
            ImportError::Diverged {
                branch,
                head,
                ostree_commits,
            } => write!(
                f,
                "our branch {branch} points at {head}, which is none of the {ostree_commits} \
                 commits of the OSTree ref {branch}; it was committed here or the OSTree ref \
                 was reset. Nothing was changed: import into a fresh repository, or remove \
                 the branch first"
            ),
            ImportError::BadBranch { name, error } => {
                write!(f, "OSTree ref {name:?} cannot be a branch of ours: {error}")
            }
            ImportError::Convert { commit, problem } => {
                write!(f, "OSTree commit {commit} cannot be imported: {problem}")
            }
            ImportError::Repo(e) => e.fmt(f),
            ImportError::LogicBug(what) => write!(f, "bug in the importer: {what}; please report it"),
        }
    }
}

impl std::error::Error for ImportError {
    /// Transparent to the errors its messages include (each message once in a chain).
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ImportError::Io { source, .. } => source.source(),
            ImportError::Repo(e) => e.source(),
            ImportError::BadBranch { error, .. } => error.source(),
            ImportError::Unrepresentable { error, .. } => error.source(),
            _ => None,
        }
    }
}

impl From<RepoError> for ImportError {
    fn from(e: RepoError) -> Self {
        ImportError::Repo(e)
    }
}

/// What to import.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// OSTree refs (names under `refs/heads`); every ref when empty.
    pub refs: Vec<String>,
}

/// How far back an imported history goes. In JSON: `{"end": "root"}` or
/// `{"end": "missing_parent", "commit": "<hex>"}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistoryEnd {
    /// The oldest commit has no parent.
    Root,
    /// The oldest commit's parent is not in the OSTree repository (pruned or never pulled).
    MissingParent(ObjectId),
}

impl serde::Serialize for HistoryEnd {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(None)?;
        match self {
            HistoryEnd::Root => m.serialize_entry("end", "root")?,
            HistoryEnd::MissingParent(id) => {
                m.serialize_entry("end", "missing_parent")?;
                m.serialize_entry("commit", &id.to_string())?;
            }
        }
        m.end()
    }
}

/// One OSTree commit and ours.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ImportedCommit {
    /// The OSTree commit.
    pub ostree: String,
    /// Our commit.
    pub commit: String,
    /// Its version.
    pub version: String,
    /// Its subject.
    pub subject: String,
    /// Its timestamp.
    pub timestamp: u64,
    /// Whether this import added it (false: imported before).
    pub new: bool,
}

/// What happened to one ref.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RefImport {
    /// The OSTree ref, and our branch of the same name.
    #[serde(rename = "ref")]
    pub name: String,
    /// The history, oldest first.
    pub commits: Vec<ImportedCommit>,
    /// Where the history stops.
    pub history: HistoryEnd,
    /// Our branch's head after the import.
    pub head: String,
}

/// What an import did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ImportReport {
    /// The OSTree repository's mode.
    pub mode: Mode,
    /// Per ref.
    pub refs: Vec<RefImport>,
    /// Files, directories and bytes converted, new objects written.
    pub stats: BuildStats,
}

/// Imports `opts.refs` (or every ref) of `src` into `ours`. `progress` is called after every
/// file converted. The caller holds `ours`' lock.
pub fn import(
    src: &OstreeRepo,
    ours: &Repo,
    opts: &ImportOptions,
    progress: &mut dyn FnMut(&BuildStats),
) -> Result<ImportReport, ImportError> {
    let refs: Vec<(String, ObjectId)> = if opts.refs.is_empty() {
        let all = src.list_refs()?;
        if all.is_empty() {
            return Err(ImportError::NoRefs(src.path().to_path_buf()));
        }
        all
    } else {
        opts.refs
            .iter()
            .map(|r| Ok((r.clone(), src.read_ref(r)?)))
            .collect::<Result<_, ImportError>>()?
    };
    for (name, _) in &refs {
        crate::repo::validate_ref(name).map_err(|error| ImportError::BadBranch {
            name: name.clone(),
            error,
        })?;
    }
    let mut conv = Converter {
        src,
        txn: Transaction::new(ours),
        stats: BuildStats::default(),
        files: HashMap::new(),
        dirs: HashMap::new(),
        progress,
    };
    let mut plans = Vec::new();
    for (name, head) in &refs {
        plans.push(conv.plan(ours, name, head)?);
    }
    conv.txn.commit()?;
    let stats = conv.stats;
    let mut out = Vec::new();
    for p in plans {
        for bytes in &p.new_commits {
            ours.write_metadata_object(ObjectKind::Commit, bytes)?;
        }
        if p.moved {
            ours.write_ref(&p.report.name, &p.head)?;
        }
        out.push(p.report);
    }
    Ok(ImportReport {
        mode: src.mode(),
        refs: out,
        stats,
    })
}

/// One ref's import, decided and staged, not yet written.
struct Plan {
    report: RefImport,
    new_commits: Vec<Vec<u8>>,
    head: ObjectId,
    moved: bool,
}

struct Converter<'a> {
    src: &'a OstreeRepo,
    txn: Transaction<'a>,
    stats: BuildStats,
    /// OSTree file object → ours.
    files: HashMap<ObjectId, ObjectId>,
    /// OSTree (dirtree, dirmeta) → our (dirtree, dirmeta).
    dirs: HashMap<(ObjectId, ObjectId), (ObjectId, ObjectId)>,
    progress: &'a mut dyn FnMut(&BuildStats),
}

/// A directory being converted (the explicit stack of [`Converter::tree`]).
struct Frame {
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
    fn plan(&mut self, ours: &Repo, name: &str, head: &ObjectId) -> Result<Plan, ImportError> {
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
struct Staging<'p> {
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

fn build_err(c: &OstreeCommit, e: BuildError) -> ImportError {
    build_err_id(c.id, e)
}

fn build_err_id(commit: ObjectId, e: BuildError) -> ImportError {
    match e {
        BuildError::Repo(r) => ImportError::Repo(r),
        BuildError::Object { path, error } => ImportError::Unrepresentable {
            commit,
            path,
            error,
        },
        BuildError::Io { what, path, source } => ImportError::Io { what, path, source },
        other => ImportError::Convert {
            commit,
            problem: other.to_string(),
        },
    }
}

#[cfg(test)]
mod test {
    use super::source::fixture as fx;
    use super::*;

    fn setup() -> (tempfile::TempDir, OstreeRepo, Repo) {
        let d = tempfile::tempdir().unwrap();
        let src = fx::archive_repo(&d.path().join("ostree"));
        let ours = Repo::init(&d.path().join("ours")).unwrap();
        (d, src, ours)
    }

    fn run(src: &OstreeRepo, ours: &Repo) -> Result<ImportReport, ImportError> {
        import(src, ours, &ImportOptions::default(), &mut |_| {})
    }

    /// A history written object by object as OSTree writes it imports with its versions,
    /// subjects, timestamps and parents.
    #[test]
    fn synthetic_history_imports() {
        let (_d, src, ours) = setup();
        let f = fx::file(&src, b"hello\n", 0o100755, &[], &[]);
        let meta = fx::dirmeta(&src, 0o755);
        let sub = fx::dirtree(&src, &[("f", f)], &[]);
        let root = fx::dirtree(&src, &[("top", f)], &[("sub", sub, meta)]);
        let c1 = fx::commit(&src, "os/main", None, "1.0", "one", 1000, root, meta);
        let root2 = fx::dirtree(&src, &[], &[("sub", sub, meta)]);
        let c2 = fx::commit(&src, "os/main", Some(c1), "2.0", "two", 2000, root2, meta);
        let r = run(&src, &ours).unwrap();
        assert_eq!(r.refs.len(), 1);
        let commits = &r.refs[0].commits;
        assert_eq!(commits.len(), 2);
        assert_eq!(commits[0].ostree, c1.to_string());
        assert_eq!(commits[1].ostree, c2.to_string());
        let head = ours.read_ref("os/main").unwrap().unwrap();
        let info = ours.read_commit(&head).unwrap();
        assert_eq!(
            (info.version.as_str(), info.subject.as_str(), info.timestamp),
            ("2.0", "two", 2000)
        );
        let parent = ours.read_commit(&info.parent.unwrap()).unwrap();
        assert_eq!(
            (parent.version.as_str(), parent.timestamp, parent.parent),
            ("1.0", 1000, None)
        );
        let names: Vec<Vec<u8>> = ours
            .read_dirtree(&parent.root_tree)
            .unwrap()
            .iter()
            .map(|e| e.name().to_vec())
            .collect();
        assert_eq!(names, vec![b"sub".to_vec(), b"top".to_vec()]);
        assert_eq!(r.stats.files, 1, "one file object, converted once");
    }

    /// A dirtree naming `..`, `.`, `a/b` or an empty name (as a file or as a directory) is
    /// refused, naming the dirtree and the name; nothing moves.
    #[test]
    fn names_that_are_not_one_component_are_refused() {
        for bad in ["..", ".", "a/b", "", "../../etc"] {
            for as_dir in [false, true] {
                let (_d, src, ours) = setup();
                let f = fx::file(&src, b"x", 0o100644, &[], &[]);
                let meta = fx::dirmeta(&src, 0o755);
                let empty = fx::dirtree(&src, &[], &[]);
                let evil = if as_dir {
                    fx::dirtree(&src, &[], &[(bad, empty, meta)])
                } else {
                    fx::dirtree(&src, &[(bad, f)], &[])
                };
                let root = fx::dirtree(&src, &[("ok", f)], &[("d", evil, meta)]);
                fx::commit(&src, "os/main", None, "1", "s", 1, root, meta);
                let e = run(&src, &ours).unwrap_err();
                match &e {
                    ImportError::BadName { dirtree, name, .. } => {
                        assert_eq!(*dirtree, evil);
                        assert_eq!(name.as_slice(), bad.as_bytes());
                    }
                    other => panic!("{bad:?}: {other}"),
                }
                assert!(e.to_string().contains(&evil.to_string()), "{e}");
                assert_eq!(ours.read_ref("os/main").unwrap(), None);
            }
        }
    }

    /// A file and a directory of one name in one dirtree is refused; nothing moves.
    #[test]
    fn duplicate_names_are_refused() {
        let (_d, src, ours) = setup();
        let f = fx::file(&src, b"x", 0o100644, &[], &[]);
        let meta = fx::dirmeta(&src, 0o755);
        let empty = fx::dirtree(&src, &[], &[]);
        let root = fx::dirtree(&src, &[("x", f)], &[("x", empty, meta)]);
        fx::commit(&src, "os/main", None, "1", "s", 1, root, meta);
        let e = run(&src, &ours).unwrap_err();
        assert!(e.to_string().contains("twice"), "{e}");
        assert_eq!(ours.read_ref("os/main").unwrap(), None);
    }

    /// A tree one level deeper than [`MAX_TREE_DEPTH`] is refused (walked with a bounded
    /// explicit stack, never recursion); one at the limit imports.
    #[test]
    fn depth_is_bounded() {
        for (depth, ok) in [(MAX_TREE_DEPTH, true), (MAX_TREE_DEPTH + 1, false)] {
            let (_d, src, ours) = setup();
            let meta = fx::dirmeta(&src, 0o755);
            let mut t = fx::dirtree(&src, &[], &[]);
            for _ in 0..depth {
                t = fx::dirtree(&src, &[], &[("d", t, meta)]);
            }
            fx::commit(&src, "os/main", None, "1", "s", 1, t, meta);
            let r = run(&src, &ours);
            assert_eq!(r.is_ok(), ok, "depth {depth}: {r:?}");
            if !ok {
                assert!(matches!(r, Err(ImportError::TooDeep { .. })), "{r:?}");
                assert_eq!(ours.read_ref("os/main").unwrap(), None);
            }
        }
    }
}
