//! An object store in memory that checks the [`Store`] protocol.
//!
//! It behaves like a shared repository: objects of committed installs stay, an install stages
//! its objects and [`Store::commit`] makes them permanent, [`Store::abort`] drops them. Every
//! rule of the calling sequence in the [store module docs](agent_core::store) is an assertion,
//! and every finished object must hash to its id, so a test or a fuzz target that drives the
//! installer over it fails as soon as the installer breaks the protocol. (Moved here from
//! agent-core's `store::mem`, which no shipped code used.)

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;

use agent_core::install::Checkpoint;
use agent_core::object::{DirEntry, DirTree, ObjectId, ObjectKind, MAX_TREE_DEPTH};
use agent_core::store::Store;

/// Objects by kind and id, with their bytes.
pub type Objects = BTreeMap<(ObjectKind, ObjectId), Vec<u8>>;

/// An object store in memory. See the [module docs](self).
///
/// # Panics
/// The [`Store`] methods panic when called out of the protocol's order (an object begun while
/// another is open, more bytes than declared, a finished object that does not hash to its id,
/// a commit or abort with an object open): that is a bug in the caller, never bad input.
#[derive(Default, Clone, Debug)]
pub struct MemStore {
    /// Objects of committed installs.
    pub objects: Objects,
    /// Objects of the install in progress.
    pub staged: Objects,
    /// Committed commit ids.
    pub commits: BTreeSet<ObjectId>,
    /// Each ref and the commit it was last moved to.
    pub refs: BTreeMap<String, ObjectId>,
    /// The object being written: kind, id, declared length, bytes so far.
    pub current: Option<(ObjectKind, ObjectId, u64, Vec<u8>)>,
    /// Every call except `write_object`, in order (what the chunking of the input must not
    /// change).
    pub log: Vec<String>,
    /// Calls of [`Store::commit`].
    pub commit_calls: u32,
    /// Calls of [`Store::abort`].
    pub abort_calls: u32,
    /// Calls of [`Store::part_verified`].
    pub part_verified_calls: u32,
    /// Calls of [`Store::read_object`] that found their object.
    pub reads: u64,
    /// Objects finished since the last [`Store::part_verified`]: not yet covered by a verified
    /// part hash. [`Store::commit`] requires it empty.
    pub unverified: Vec<(ObjectKind, ObjectId)>,
    /// The last [`Store::checkpoint`] of the install in progress and the objects staged up to
    /// it: what a resumable store keeps across an interrupted install (kept by
    /// [`Store::abort`] and [`MemStore::after_power_cut`], dropped by [`Store::commit`]).
    pub resumable: Option<(Checkpoint, Objects)>,
}

impl MemStore {
    /// The store as a device finds it after a power cut at any point: committed objects,
    /// commits, refs and the last checkpoint with its objects survive; the install in
    /// progress (staged objects, the open object), the log and the call counts do not.
    pub fn after_power_cut(&self) -> MemStore {
        MemStore {
            objects: self.objects.clone(),
            commits: self.commits.clone(),
            refs: self.refs.clone(),
            resumable: self.resumable.clone(),
            ..MemStore::default()
        }
    }

    /// Whether the object is committed or staged.
    pub fn has(&self, kind: ObjectKind, id: &ObjectId) -> bool {
        self.objects.contains_key(&(kind, *id)) || self.staged.contains_key(&(kind, *id))
    }

    /// The depth of dirtree `id` (committed or staged), computed from the dirtrees' bytes
    /// without recursion; counting stops past [`MAX_TREE_DEPTH`]. `None` when the dirtree or
    /// one under it is missing or malformed.
    pub fn depth_of(&self, id: &ObjectId) -> Option<u16> {
        let mut depth: BTreeMap<ObjectId, u16> = BTreeMap::new();
        let mut stack = vec![(*id, false)];
        while let Some((t, expanded)) = stack.pop() {
            if depth.contains_key(&t) {
                continue;
            }
            let bytes = self
                .objects
                .get(&(ObjectKind::DirTree, t))
                .or_else(|| self.staged.get(&(ObjectKind::DirTree, t)))?;
            let kids = DirTree::parse(bytes)
                .ok()?
                .entries()
                .filter_map(|e| match e {
                    DirEntry::Dir { tree, .. } => Some(tree),
                    DirEntry::File { .. } => None,
                });
            if expanded {
                let mut d = 0u16;
                for k in kids {
                    d = d.max(depth.get(&k)?.saturating_add(1));
                }
                depth.insert(t, d.min(MAX_TREE_DEPTH + 1));
            } else {
                stack.push((t, true));
                stack.extend(kids.map(|k| (k, false)));
            }
        }
        depth.get(id).copied()
    }

    /// Checks the store after a failed install into an empty store: nothing committed,
    /// nothing staged, no object open, aborted exactly once.
    ///
    /// # Panics
    /// When any of that does not hold.
    pub fn assert_failed_cleanly(&self) {
        assert!(self.commits.is_empty(), "a failed install committed");
        assert_eq!(self.commit_calls, 0, "a failed install called commit");
        assert!(
            self.current.is_none(),
            "a failed install left an object open"
        );
        assert!(
            self.staged.is_empty(),
            "a failed install left staged objects"
        );
        assert_eq!(
            self.abort_calls, 1,
            "a failed install must abort exactly once"
        );
    }

    /// Checks the store after one successful install of commit `id` into an empty store.
    ///
    /// # Panics
    /// When that is not what happened.
    pub fn assert_committed(&self, id: &ObjectId) {
        assert_eq!(self.commit_calls, 1);
        assert_eq!(self.abort_calls, 0);
        assert!(self.current.is_none());
        assert!(self.staged.is_empty());
        assert_eq!(self.commits.iter().collect::<Vec<_>>(), [id]);
        let commit = self
            .objects
            .get(&(ObjectKind::Commit, *id))
            .expect("the committed commit object is in the store");
        assert_eq!(ObjectId::of(commit), *id);
    }
}

impl Store for MemStore {
    type Error = Infallible;

    fn has_commit(&mut self, id: &ObjectId) -> Result<bool, Infallible> {
        self.log.push(format!("has_commit {id}"));
        Ok(self.commits.contains(id))
    }

    fn has_object(&mut self, kind: ObjectKind, id: &ObjectId) -> Result<bool, Infallible> {
        self.log.push(format!("has_object {kind} {id}"));
        Ok(self.has(kind, id))
    }

    fn begin_object(
        &mut self,
        kind: ObjectKind,
        id: &ObjectId,
        len: u64,
    ) -> Result<(), Infallible> {
        assert!(
            self.current.is_none(),
            "begin_object while another object is open"
        );
        self.log.push(format!("begin {kind} {id} {len}"));
        self.current = Some((kind, *id, len, Vec::new()));
        Ok(())
    }

    fn write_object(&mut self, data: &[u8]) -> Result<(), Infallible> {
        let cur = self
            .current
            .as_mut()
            .expect("write_object without begin_object");
        cur.3.extend_from_slice(data);
        assert!(cur.3.len() as u64 <= cur.2, "more bytes than begun with");
        Ok(())
    }

    fn finish_object(&mut self) -> Result<(), Infallible> {
        let (kind, id, len, bytes) = self
            .current
            .take()
            .expect("finish_object without begin_object");
        assert_eq!(bytes.len() as u64, len, "finish_object before all bytes");
        assert_eq!(
            ObjectId::of(&bytes),
            id,
            "finish_object with bytes that do not hash to the id"
        );
        self.log.push(format!("finish {kind} {id}"));
        self.staged.insert((kind, id), bytes);
        self.unverified.push((kind, id));
        Ok(())
    }

    fn abort_object(&mut self) {
        assert!(
            self.current.take().is_some(),
            "abort_object without an open object"
        );
        self.log.push("abort_object".to_owned());
    }

    fn tree_depth(&mut self, id: &ObjectId) -> Result<Option<u16>, Infallible> {
        Ok(self.depth_of(id))
    }

    fn read_object(
        &mut self,
        kind: ObjectKind,
        id: &ObjectId,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<Option<usize>, Infallible> {
        // Only what committed installs left: the source of a delta.
        let Some(bytes) = self.objects.get(&(kind, *id)) else {
            return Ok(None);
        };
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(bytes.len());
        let n = (bytes.len() - start).min(buf.len());
        buf[..n].copy_from_slice(&bytes[start..start + n]);
        self.reads += 1;
        Ok(Some(n))
    }

    fn reuse_object(&mut self, kind: ObjectKind, id: &ObjectId) -> Result<bool, Infallible> {
        let ok = self.objects.contains_key(&(kind, *id));
        self.log.push(format!("reuse {kind} {id} {ok}"));
        Ok(ok)
    }

    fn part_verified(&mut self) -> Result<(), Infallible> {
        assert!(self.current.is_none(), "part_verified with an object open");
        self.log.push("part_verified".to_owned());
        self.part_verified_calls += 1;
        self.unverified.clear();
        Ok(())
    }

    fn commit(&mut self, ref_name: &str, id: &ObjectId) -> Result<(), Infallible> {
        assert!(self.current.is_none(), "commit with an object open");
        assert!(
            self.unverified.is_empty(),
            "commit before part_verified covered {:?}",
            self.unverified
        );
        self.log.push(format!("commit {ref_name} {id}"));
        self.commit_calls += 1;
        let staged = core::mem::take(&mut self.staged);
        self.objects.extend(staged);
        self.resumable = None;
        self.commits.insert(*id);
        self.refs.insert(ref_name.to_owned(), *id);
        Ok(())
    }

    fn abort(&mut self) {
        assert!(self.current.is_none(), "abort with an object still open");
        self.log.push("abort".to_owned());
        self.abort_calls += 1;
        self.staged.clear();
        self.unverified.clear();
    }

    fn checkpoint(&mut self, cp: &Checkpoint) -> Result<(), Infallible> {
        assert!(self.current.is_none(), "checkpoint with an object open");
        assert!(
            self.unverified.is_empty(),
            "checkpoint before part_verified covered the part's objects"
        );
        self.log.push(format!(
            "checkpoint {} {} {}",
            cp.parts, cp.offset, cp.objects
        ));
        self.resumable = Some((*cp, self.staged.clone()));
        Ok(())
    }

    fn resume(&mut self, cp: &Checkpoint) -> Result<bool, Infallible> {
        assert!(
            self.current.is_none() && self.staged.is_empty(),
            "resume after the install began"
        );
        let ok = match self.resumable.take() {
            Some((kept, staged)) if kept == *cp => {
                self.staged = staged.clone();
                self.resumable = Some((kept, staged));
                true
            }
            _ => false,
        };
        self.log.push(format!("resume {} {ok}", cp.parts));
        Ok(ok)
    }
}
