//! Objects written together: [`Transaction`] stages them and publishes them in durable
//! waves; [`TmpPool`] creates staging files ahead on another thread.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::Ordering;

use agent_core::object::{DirEntry, DirTree, FileHeader, ObjectId, ObjectKind};

use super::objects::{Deferred, TmpRef};
use super::{check_metadata, io_err, sync_dir, Repo, RepoError};

/// Objects written together, fast and safely: each is staged in `R/tmp` without an fsync;
/// [`Transaction::commit`] makes them all durable with one `syncfs`, then publishes them by
/// rename in waves, with one fsync of every directory a wave renamed into before the next
/// wave starts: files, file metadata and dirmetas first, then dirtrees by height (those
/// whose subdirectories are all outside the transaction, then those whose highest staged
/// subdirectory is in the wave before, ...). So the bottom-up invariant holds after a power
/// loss at any point without relying on renames reaching the disk in order, and nothing is
/// visible before everything is durable. Dropping it (or [`Transaction::abort`]) removes what
/// it staged.
///
/// A file object staged by [`Transaction::publish_file_object`] stays a 0600 file owned by
/// the writer, without xattrs, until [`Transaction::part_verified`]: what an object's own
/// hash proves is nothing until the part that carries it (which the signature covers) has
/// matched its hash. Only then do setuid/setgid and executable bits, owners and capabilities
/// reach it; [`Transaction::commit`] applies whatever is still deferred (an installer commits
/// only once everything is verified).
#[derive(Debug)]
pub struct Transaction<'r> {
    repo: &'r Repo,
    /// `.filemeta` side files (published first), then file objects and dirmetas.
    sides: Vec<Staged>,
    leaves: Chunked<Staged>,
    /// Dirtrees staged, with their height (1 + the highest of their subdirectories staged in
    /// this transaction, 0 without one).
    trees: Vec<(Staged, u32)>,
    /// Heights of the dirtrees staged since the last commit.
    heights: HashMap<ObjectId, u32>,
    pending: HashSet<(u8, ObjectId)>,
    /// `leaves[unverified..]` are those staged since the last [`Transaction::part_verified`]:
    /// the file objects among them wait for it.
    unverified: usize,
    /// How many of them hold their staged file open.
    open_files: usize,
}

/// An object staged, small (a transaction holds one per object until its commit): its id, its
/// staging file, and which of its paths it is renamed to (derived, not stored).
#[derive(Debug)]
struct Staged {
    id: ObjectId,
    tmp: TmpRef,
    /// `None`: the `.filemeta` side file of the file object `id`.
    kind: Option<ObjectKind>,
    /// A file object's metadata still to apply, until its part is verified.
    waiting: Option<Deferred>,
}

impl Staged {
    fn new(repo: &Repo, id: ObjectId, tmp: PathBuf, kind: Option<ObjectKind>) -> Staged {
        Staged {
            id,
            tmp: TmpRef::new(repo, tmp),
            kind,
            waiting: None,
        }
    }

    /// The staging file and where it is published.
    fn paths(&self, repo: &Repo) -> (PathBuf, PathBuf) {
        let dest = match self.kind {
            Some(k) => repo.object_path(k, &self.id),
            None => repo.filemeta_path(&self.id),
        };
        (self.tmp.path(repo), dest)
    }
}

/// A list grown a chunk of [`Chunked::CHUNK`] entries at a time, for the long lists of a
/// transaction: growing it never copies it (a `Vec` doubling holds the old buffer and one
/// twice as large at once), and at most one chunk is unused.
#[derive(Debug)]
pub(crate) struct Chunked<T> {
    chunks: Vec<Vec<T>>,
    len: usize,
}

impl<T> Default for Chunked<T> {
    fn default() -> Self {
        Chunked {
            chunks: Vec::new(),
            len: 0,
        }
    }
}

impl<T> Chunked<T> {
    const CHUNK: usize = 256;

    /// Appends `v`.
    pub(crate) fn push(&mut self, v: T) {
        match self.chunks.last_mut() {
            Some(c) if c.len() < Self::CHUNK => c.push(v),
            _ => {
                let mut c = Vec::with_capacity(Self::CHUNK);
                c.push(v);
                self.chunks.push(c);
            }
        }
        self.len += 1;
    }

    /// How many entries it holds.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Whether it holds none.
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Drops every entry and frees the chunks.
    pub(crate) fn clear(&mut self) {
        *self = Chunked::default();
    }

    /// Entry `i` (every chunk but the last is full); panics past the end, as indexing does.
    fn get_mut(&mut self, i: usize) -> &mut T {
        &mut self.chunks[i / Self::CHUNK][i % Self::CHUNK]
    }

    /// The entries in order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &T> {
        self.chunks.iter().flatten()
    }
}

impl<T> IntoIterator for Chunked<T> {
    type Item = T;
    type IntoIter = std::iter::Flatten<std::vec::IntoIter<Vec<T>>>;

    fn into_iter(self) -> Self::IntoIter {
        self.chunks.into_iter().flatten()
    }
}

/// Most directories a wave of [`Transaction::commit`] fsyncs one by one; a wave that renamed
/// into more is made durable with one `syncfs` of the repository's filesystem instead.
pub const MAX_DIR_FSYNCS: usize = 8;

/// Most staged files a [`Transaction`] keeps open until their part is verified (so that
/// their metadata is applied without opening them again); more are closed and reopened.
pub const MAX_OPEN_STAGED: usize = 256;

impl<'r> Transaction<'r> {
    /// An empty transaction on `repo`.
    pub fn new(repo: &'r Repo) -> Transaction<'r> {
        Transaction {
            repo,
            sides: Vec::new(),
            leaves: Chunked::default(),
            trees: Vec::new(),
            heights: HashMap::new(),
            pending: HashSet::new(),
            unverified: 0,
            open_files: 0,
        }
    }

    /// The repository.
    pub fn repo(&self) -> &'r Repo {
        self.repo
    }

    /// Whether the object is staged in this transaction or already in the repository.
    pub fn has_object(&self, kind: ObjectKind, id: &ObjectId) -> Result<bool, RepoError> {
        Ok(self.pending.contains(&(kind.code(), *id)) || self.repo.has_object(kind, id)?)
    }

    /// Stages a dirtree or dirmeta from its canonical bytes (parsed first) unless it is there
    /// already, and returns its id. Everything a dirtree names must have been staged (or be
    /// present) before it.
    pub fn write_metadata_object(
        &mut self,
        kind: ObjectKind,
        bytes: &[u8],
    ) -> Result<ObjectId, RepoError> {
        let id = ObjectId::of(bytes);
        check_metadata(kind, &id, bytes)?;
        let tree = match kind {
            ObjectKind::DirTree => DirTree::parse(bytes).ok(),
            _ => None,
        };
        self.stage_verified_metadata(kind, &id, bytes, tree.as_ref())?;
        Ok(id)
    }

    /// Stages a dirtree or dirmeta that the installer verified (its SHA-256 is `id`, its
    /// encoding was checked as it streamed), unless it is there already: it is neither hashed
    /// nor parsed again. `tree` is the dirtree parsed (`None` for a dirmeta).
    pub fn stage_verified_metadata(
        &mut self,
        kind: ObjectKind,
        id: &ObjectId,
        bytes: &[u8],
        tree: Option<&DirTree<'_>>,
    ) -> Result<(), RepoError> {
        if kind == ObjectKind::Commit {
            return Err(RepoError::Sequence(
                "a commit is not part of a transaction; write it after commit()",
            ));
        }
        if !self.has_object(kind, id)? {
            let tmp = self.repo.write_tmp(bytes, false)?;
            let staged = Staged::new(self.repo, *id, tmp, Some(kind));
            if kind == ObjectKind::DirTree {
                let height = tree
                    .and_then(|t| {
                        t.entries()
                            .filter_map(|e| match e {
                                DirEntry::Dir { tree, .. } => {
                                    self.heights.get(&tree).map(|h| h + 1)
                                }
                                DirEntry::File { .. } => None,
                            })
                            .max()
                    })
                    .unwrap_or(0);
                self.heights.insert(*id, height);
                self.trees.push((staged, height));
            } else {
                self.leaves.push(staged);
            }
            self.pending.insert((kind.code(), *id));
        }
        Ok(())
    }

    /// Stages a file object whose own hash matched, as [`Repo::publish_file_object`]
    /// describes, but with its owner, xattrs and mode deferred to
    /// [`Transaction::part_verified`] (see the type's docs). Consumes `content` in every case.
    pub fn publish_file_object(
        &mut self,
        id: &ObjectId,
        meta: &[u8],
        content: Option<(File, PathBuf)>,
    ) -> Result<(), RepoError> {
        self.stage_file(id, None, meta, content)
    }

    /// As [`Transaction::publish_file_object`], for a file object the installer verified as
    /// it streamed (its SHA-256, header, symlink target and xattrs): `header` is its header,
    /// parsed by the caller, and `content` holds exactly `header.size` bytes (the caller
    /// counted them). Its metadata is neither parsed again nor its content's size read back.
    pub fn stage_verified_file(
        &mut self,
        id: &ObjectId,
        header: FileHeader,
        meta: &[u8],
        content: Option<(File, PathBuf)>,
    ) -> Result<(), RepoError> {
        self.stage_file(id, Some(header), meta, content)
    }

    fn stage_file(
        &mut self,
        id: &ObjectId,
        verified: Option<FileHeader>,
        meta: &[u8],
        content: Option<(File, PathBuf)>,
    ) -> Result<(), RepoError> {
        if self.has_object(ObjectKind::File, id)? {
            if let Some((_, p)) = content {
                let _ = crate::fsops::remove_file(&p);
            }
            return Ok(());
        }
        let open = Some(&mut self.open_files);
        let (tmp, deferred) = self
            .repo
            .stage_file_object(id, meta, verified, content, open)?;
        let mut staged = Staged::new(self.repo, *id, tmp, Some(ObjectKind::File));
        staged.waiting = Some(deferred);
        self.leaves.push(staged);
        self.pending.insert((ObjectKind::File.code(), *id));
        Ok(())
    }

    /// The part that carried the file objects staged since the last call has matched its
    /// hash: their owners, xattrs (capabilities included) and modes (setuid, setgid and
    /// executable bits included) are applied now.
    pub fn part_verified(&mut self) -> Result<(), RepoError> {
        self.open_files = 0;
        let from = std::mem::replace(&mut self.unverified, self.leaves.len());
        for i in from..self.leaves.len() {
            let s = self.leaves.get_mut(i);
            let Some(d) = s.waiting.take() else {
                continue;
            };
            let tmp = s.tmp.path(self.repo);
            let side = match self.repo.finish_file_meta(&s.id, &tmp, &d, false) {
                Ok(side) => side,
                Err(e) => {
                    // Still waiting, from this one on.
                    s.waiting = Some(d);
                    self.unverified = i;
                    return Err(e);
                }
            };
            if let Some(side) = side {
                let id = s.id;
                self.sides.push(Staged::new(self.repo, id, side, None));
            }
        }
        Ok(())
    }

    /// How many staged file objects still wait for [`Transaction::part_verified`].
    pub fn unverified(&self) -> usize {
        self.leaves
            .iter()
            .skip(self.unverified)
            .filter(|s| s.waiting.is_some())
            .count()
    }

    /// Makes everything staged durable and visible (see the type's docs). Metadata still
    /// deferred is applied first: call this only once everything staged is verified.
    pub fn commit(&mut self) -> Result<(), RepoError> {
        if let Err(e) = self.part_verified() {
            self.abort();
            return Err(e);
        }
        if self.sides.is_empty() && self.leaves.is_empty() && self.trees.is_empty() {
            return Ok(());
        }
        let tmp = self.repo.tmp_dir();
        crate::fsops::syncfs(&tmp).map_err(io_err("sync the filesystem of", &tmp))?;
        let mut trees = std::mem::take(&mut self.trees);
        trees.sort_by_key(|t| t.1);
        // Waves: side files before the objects they describe (an object's presence means it
        // is whole), then dirtrees by height; each entry tagged with its wave.
        let first = std::mem::take(&mut self.sides)
            .into_iter()
            .chain(std::mem::take(&mut self.leaves))
            .map(|s| (0u32, s));
        let (mut wave, mut height) = (0u32, None);
        let then = trees.into_iter().map(move |(s, h)| {
            if height != Some(h) {
                (wave, height) = (wave + 1, Some(h));
            }
            (wave, s)
        });
        let repo = self.repo;
        let mut all = first.chain(then).peekable();
        let mut dirs = std::collections::BTreeSet::<PathBuf>::new();
        let mut current = 0;
        loop {
            let next = all.peek().map(|(w, _)| *w);
            if next != Some(current) {
                // The wave is renamed: durable before the next one starts.
                if dirs.len() > MAX_DIR_FSYNCS {
                    // One flush of the filesystem instead of an fsync per directory.
                    crate::fsops::syncfs(&tmp).map_err(io_err("sync the filesystem of", &tmp))?;
                } else {
                    for d in &dirs {
                        sync_dir(d)?;
                    }
                }
                dirs.clear();
                match next {
                    Some(w) => current = w,
                    None => break,
                }
            }
            let Some((_, r)) = all.next() else { break };
            let (tmp, dest) = r.paths(repo);
            let d = dest.parent().unwrap_or(repo.path()).to_path_buf();
            let mut res = Ok(());
            if !dirs.contains(&d) {
                if let Err(e) = crate::fsops::mkdir_all(&d, 0o755) {
                    res = Err(io_err("create", &d)(e));
                }
                dirs.insert(d);
            }
            if res.is_ok() {
                res = crate::fsops::rename(&tmp, &dest).map_err(io_err("rename into", &dest));
            }
            if let Err(e) = res {
                let _ = crate::fsops::remove_file(&tmp);
                for (_, r) in all {
                    let _ = crate::fsops::remove_file(&r.tmp.path(repo));
                }
                self.abort();
                return Err(e);
            }
        }
        // Everything staged is in place: no later dirtree's height counts these.
        self.heights.clear();
        self.pending.clear();
        self.unverified = 0;
        Ok(())
    }

    /// Drops everything staged.
    pub fn abort(&mut self) {
        let repo = self.repo;
        let trees = self.trees.drain(..).map(|(s, _)| s);
        let leaves = self.sides.drain(..).chain(std::mem::take(&mut self.leaves));
        for s in leaves.chain(trees) {
            drop(s.waiting);
            let _ = crate::fsops::remove_file(&s.tmp.path(repo));
        }
        self.heights.clear();
        self.pending.clear();
        self.unverified = 0;
        self.open_files = 0;
    }
}

impl Drop for Transaction<'_> {
    fn drop(&mut self) {
        self.abort();
    }
}

/// Empty staging files created ahead of need on another thread: creating a file is most of
/// the kernel's work per file object, so an install creates them on a second core while it
/// decodes and hashes on the first. The thread stays at most [`TmpPool::AHEAD`] files ahead;
/// dropping the pool stops it and removes the files it made that were not taken.
///
/// Not used when interruption points are cut at or traced ([`crate::fsops`]): the power-loss
/// tests count them, and another thread's creates would move them from run to run.
#[derive(Debug)]
pub struct TmpPool {
    repo: Repo,
    prefix: &'static str,
    rx: std::sync::mpsc::Receiver<Result<(File, PathBuf), RepoError>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TmpPool {
    /// Most files created ahead.
    pub const AHEAD: usize = 32;

    /// Starts the thread, unless fault injection is on or there is one core only.
    pub fn start(repo: &Repo, prefix: &'static str) -> Option<TmpPool> {
        if crate::fsops::points_observed()
            || std::thread::available_parallelism().map_or(1, |n| n.get()) < 2
        {
            return None;
        }
        let (tx, rx) = std::sync::mpsc::sync_channel(Self::AHEAD);
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (r, halt) = (repo.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("ecu-agent-tmp".into())
            .spawn(move || {
                while !halt.load(Ordering::Relaxed) {
                    let made = r.create_tmp(prefix);
                    let failed = made.is_err();
                    if let Err(std::sync::mpsc::SendError(Ok((f, p)))) = tx.send(made) {
                        drop(f);
                        let _ = crate::fsops::remove_file(&p);
                        break;
                    }
                    if failed {
                        break;
                    }
                }
            })
            .ok()?;
        Some(TmpPool {
            repo: repo.clone(),
            prefix,
            rx,
            stop,
            thread: Some(thread),
        })
    }

    /// A new, empty staging file (mode 0600) and its path, as [`Repo::create_tmp`] makes.
    pub fn take(&mut self) -> Result<(File, PathBuf), RepoError> {
        match self.rx.recv() {
            Ok(made) => made,
            // The thread stopped (after an error it reported): create here.
            Err(_) => self.repo.create_tmp(self.prefix),
        }
    }
}

impl Drop for TmpPool {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Unblocks the thread if it waits on a full channel; ends when it has exited.
        while let Ok(made) = self.rx.recv() {
            if let Ok((f, p)) = made {
                drop(f);
                let _ = crate::fsops::remove_file(&p);
            }
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod test {
    use super::Chunked;

    #[test]
    fn chunked_keeps_order_and_indexes_across_chunks() {
        let mut c = Chunked::default();
        assert!(c.is_empty());
        let n = 2 * Chunked::<u32>::CHUNK + 7;
        for i in 0..n as u32 {
            c.push(i);
        }
        assert_eq!(c.len(), n);
        for i in [0, Chunked::<u32>::CHUNK - 1, Chunked::<u32>::CHUNK, n - 1] {
            assert_eq!(*c.get_mut(i), i as u32);
        }
        *c.get_mut(300) = 9999;
        let all: Vec<u32> = c.iter().copied().collect();
        assert_eq!(all.len(), n);
        assert_eq!((all[299], all[300], all[301]), (299, 9999, 301));
        assert_eq!(c.into_iter().filter(|&v| v != 9999).count(), n - 1);
        let mut c = Chunked::default();
        c.push(1u8);
        c.clear();
        assert!(c.is_empty() && c.iter().next().is_none());
    }
}
