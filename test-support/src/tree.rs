//! A directory tree turned into objects, bottom-up, and the operations of an update to it:
//! the one builder the tests, xtask's firmware data and the fuzz seeds share.
//!
//! ```
//! use test_support::tree::{build, CommitInfo, Tree};
//!
//! let tree = Tree::default()
//!     .file("firmware.bin", vec![0x46; 1000])
//!     .link("current", "firmware.bin")
//!     .dir("etc", Tree::default().file("hostname", "ecu\n"));
//! let v1 = build(&tree, &CommitInfo::new(None, 1_700_000_000, "1"));
//! // From scratch: every object written, the root dirmeta first, the commit last.
//! let ops = v1.ops(None);
//! assert_eq!(ops.len(), v1.objects.len());
//! // The same commit again: its root dirtree covers the whole tree.
//! assert!(v1.ops(Some(&v1)).iter().all(|o| o.id() == &v1.commit || o.is_reuse()));
//! ```

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::ops::{Deref, DerefMut};

use agent_core::object::{
    self, Commit, DirEntry, DirMeta, DirTree, ObjectId, ObjectKind, Xattrs, S_IFDIR,
};
use agent_core::write::UpdateWriter;

/// A node of a [`Tree`].
#[derive(Clone, Debug)]
pub enum Node {
    /// A regular file (mode 0644, owner 0:0) with these bytes.
    File(Vec<u8>),
    /// A symlink to this target.
    Link(String),
    /// A directory (mode 0755, owner 0:0).
    Dir(Tree),
}

/// A directory: entries by name (sorted, as a dirtree lists them).
#[derive(Clone, Debug, Default)]
pub struct Tree(pub BTreeMap<String, Node>);

impl Tree {
    /// With a file `name` holding `content`.
    pub fn file(mut self, name: &str, content: impl Into<Vec<u8>>) -> Self {
        self.0.insert(name.into(), Node::File(content.into()));
        self
    }

    /// With a symlink `name` to `target`.
    pub fn link(mut self, name: &str, target: &str) -> Self {
        self.0.insert(name.into(), Node::Link(target.into()));
        self
    }

    /// With a directory `name`.
    pub fn dir(mut self, name: &str, t: Tree) -> Self {
        self.0.insert(name.into(), Node::Dir(t));
        self
    }
}

impl Deref for Tree {
    type Target = BTreeMap<String, Node>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl DerefMut for Tree {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl<S: Into<String>> FromIterator<(S, Node)> for Tree {
    fn from_iter<I: IntoIterator<Item = (S, Node)>>(iter: I) -> Self {
        Tree(iter.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }
}

/// A directory node of `entries`.
pub fn dir(entries: Vec<(&str, Node)>) -> Node {
    Node::Dir(entries.into_iter().collect())
}

/// The file object of a regular file: mode 0644, owner 0:0.
pub fn file_object(content: &[u8]) -> Vec<u8> {
    object::file_object(0o644, 0, 0, content)
}

/// The file object of a symlink to `target`, owner 0:0.
///
/// # Panics
/// When `target` is not a valid symlink target (a test's mistake).
pub fn link_object(target: &str) -> Vec<u8> {
    object::symlink_object(0, 0, target.as_bytes()).expect("a valid symlink target")
}

/// The dirmeta object of every directory: mode 0755, owner 0:0, no xattrs.
pub fn dirmeta_object() -> Vec<u8> {
    DirMeta {
        mode: S_IFDIR | 0o755,
        uid: 0,
        gid: 0,
        xattrs: Xattrs::EMPTY,
    }
    .to_vec()
}

/// Objects by kind code and id, with their bytes (ordered by code, then id).
pub type Objects = BTreeMap<(u8, ObjectId), Vec<u8>>;

/// The commit's fields besides its tree.
#[derive(Clone, Copy, Debug)]
pub struct CommitInfo<'a> {
    /// The parent commit.
    pub parent: Option<ObjectId>,
    /// Seconds since the epoch.
    pub timestamp: u64,
    /// The version string.
    pub version: &'a str,
    /// The subject line.
    pub subject: &'a str,
    /// The anti-rollback security version.
    pub security_version: u64,
}

impl<'a> CommitInfo<'a> {
    /// A commit at `timestamp` with `version`, subject "test", security version 0.
    pub fn new(parent: Option<ObjectId>, timestamp: u64, version: &'a str) -> Self {
        CommitInfo {
            parent,
            timestamp,
            version,
            subject: "test",
            security_version: 0,
        }
    }

    /// With `subject`.
    pub fn subject(self, subject: &'a str) -> Self {
        CommitInfo { subject, ..self }
    }

    /// At security version `security_version`.
    pub fn security_version(self, security_version: u64) -> Self {
        CommitInfo {
            security_version,
            ..self
        }
    }
}

/// A commit of a tree: every object, the commit's id and its root.
#[derive(Clone, Debug)]
pub struct Built {
    /// The commit's id.
    pub commit: ObjectId,
    /// Every object of the commit, the commit included.
    pub objects: Objects,
    /// The root dirtree and dirmeta.
    pub root: (ObjectId, ObjectId),
    /// The commit's timestamp.
    pub timestamp: u64,
    /// The commit's version string.
    pub version: String,
    /// The commit's security version.
    pub security_version: u64,
}

fn put(objects: &mut Objects, kind: ObjectKind, bytes: Vec<u8>) -> ObjectId {
    let id = ObjectId::of(&bytes);
    objects.insert((kind.code(), id), bytes);
    id
}

/// Puts the objects of `tree` into `objects`; returns (dirtree id, dirmeta id).
fn build_dir(tree: &Tree, objects: &mut Objects) -> (ObjectId, ObjectId) {
    let meta = put(objects, ObjectKind::DirMeta, dirmeta_object());
    let mut entries = Vec::with_capacity(tree.len());
    for (name, child) in tree.iter() {
        let name = name.as_bytes();
        let e = match child {
            Node::File(c) => DirEntry::File {
                name,
                id: put(objects, ObjectKind::File, file_object(c)),
            },
            Node::Link(t) => DirEntry::File {
                name,
                id: put(objects, ObjectKind::File, link_object(t)),
            },
            Node::Dir(d) => {
                let (tree, meta) = build_dir(d, objects);
                DirEntry::Dir { name, tree, meta }
            }
        };
        entries.push(e);
    }
    let bytes = object::dirtree_object(&entries).expect("a test tree's names are valid");
    (put(objects, ObjectKind::DirTree, bytes), meta)
}

/// The objects of `tree` and a commit of it.
pub fn build(tree: &Tree, info: &CommitInfo<'_>) -> Built {
    let mut objects = Objects::new();
    let (root_tree, root_meta) = build_dir(tree, &mut objects);
    let c = Commit {
        parent: info.parent,
        timestamp: info.timestamp,
        root_tree,
        root_meta,
        version: info.version,
        subject: info.subject,
        body: "",
        security_version: info.security_version,
    };
    let commit = put(
        &mut objects,
        ObjectKind::Commit,
        c.to_vec().expect("a test commit encodes"),
    );
    Built {
        commit,
        objects,
        root: (root_tree, root_meta),
        timestamp: info.timestamp,
        version: info.version.to_string(),
        security_version: info.security_version,
    }
}

/// One operation of an update, as the writer takes it and the installer hands it to a store.
#[derive(Clone, Debug)]
pub enum Op {
    /// An object written whole.
    Write(ObjectKind, ObjectId, Vec<u8>),
    /// An object the target already has.
    Reuse(ObjectKind, ObjectId),
}

impl Op {
    /// The object's id.
    pub fn id(&self) -> &ObjectId {
        match self {
            Op::Write(_, id, _) | Op::Reuse(_, id) => id,
        }
    }

    /// Whether it is a reuse.
    pub fn is_reuse(&self) -> bool {
        matches!(self, Op::Reuse(..))
    }
}

impl Built {
    /// The bytes of object `id` of `kind`.
    ///
    /// # Panics
    /// When the commit has no such object.
    pub fn object(&self, kind: ObjectKind, id: &ObjectId) -> &[u8] {
        &self.objects[&(kind.code(), *id)]
    }

    /// Every object id of the commit.
    pub fn ids(&self) -> HashSet<ObjectId> {
        self.objects.keys().map(|(_, id)| *id).collect()
    }

    /// The file object named `name` in the root directory, if there is one.
    pub fn root_file(&self, name: &str) -> Option<&[u8]> {
        let t = DirTree::parse(self.object(ObjectKind::DirTree, &self.root.0)).ok()?;
        t.entries().find_map(|e| match e {
            DirEntry::File { name: n, id } if n == name.as_bytes() => {
                Some(self.object(ObjectKind::File, &id))
            }
            _ => None,
        })
    }

    /// The operations of an update to this commit: from scratch (`from` = `None`), or a
    /// delta reusing every object `from` has (a reused dirtree covers its whole subtree).
    /// Bottom-up: each directory's dirmeta, then its entries, then its dirtree; the commit
    /// last.
    pub fn ops(&self, from: Option<&Built>) -> Vec<Op> {
        let have: BTreeSet<(u8, ObjectId)> = from
            .map(|f| f.objects.keys().copied().collect())
            .unwrap_or_default();
        self.ops_reusing(&|kind, id| have.contains(&(kind.code(), *id)))
    }

    /// [`Built::ops`] reusing the objects `have` says the target has.
    pub fn ops_reusing(&self, have: &dyn Fn(ObjectKind, &ObjectId) -> bool) -> Vec<Op> {
        let mut out = Vec::new();
        let mut done = BTreeSet::new();
        self.emit_tree(self.root.0, self.root.1, have, &mut done, &mut out);
        let c = self.object(ObjectKind::Commit, &self.commit).to_vec();
        out.push(Op::Write(ObjectKind::Commit, self.commit, c));
        out
    }

    /// Emits one object unless done; true when done with it (a dirtree still to be
    /// written says false).
    fn emit_one(
        &self,
        kind: ObjectKind,
        id: ObjectId,
        have: &dyn Fn(ObjectKind, &ObjectId) -> bool,
        done: &mut BTreeSet<(u8, ObjectId)>,
        out: &mut Vec<Op>,
    ) -> bool {
        if !done.insert((kind.code(), id)) {
            return true;
        }
        if have(kind, &id) {
            out.push(Op::Reuse(kind, id));
            return true;
        }
        if kind == ObjectKind::DirTree {
            return false;
        }
        out.push(Op::Write(kind, id, self.object(kind, &id).to_vec()));
        true
    }

    fn emit_tree(
        &self,
        tree: ObjectId,
        meta: ObjectId,
        have: &dyn Fn(ObjectKind, &ObjectId) -> bool,
        done: &mut BTreeSet<(u8, ObjectId)>,
        out: &mut Vec<Op>,
    ) {
        self.emit_one(ObjectKind::DirMeta, meta, have, done, out);
        if self.emit_one(ObjectKind::DirTree, tree, have, done, out) {
            return;
        }
        let body = self.object(ObjectKind::DirTree, &tree).to_vec();
        let t = DirTree::parse(&body).expect("a built dirtree parses");
        for e in t.entries() {
            match e {
                DirEntry::File { id, .. } => {
                    self.emit_one(ObjectKind::File, id, have, done, out);
                }
                DirEntry::Dir { tree, meta, .. } => self.emit_tree(tree, meta, have, done, out),
            }
        }
        out.push(Op::Write(ObjectKind::DirTree, tree, body));
    }
}

/// The source object of a patch and the patch, for a written file object (its id and
/// bytes); `None` writes the object whole.
pub type PatchFor<'a> = dyn Fn(&ObjectId, &[u8]) -> Option<(ObjectId, Vec<u8>)> + 'a;

/// Patches file objects from `source` (a file object's bytes) when the patch pays.
pub fn patch_from_one(
    source: &[u8],
) -> impl Fn(&ObjectId, &[u8]) -> Option<(ObjectId, Vec<u8>)> + '_ {
    move |_, new| {
        let p = agent_core::write::diff(source, new);
        agent_core::write::patch_pays(new, &p).then(|| (ObjectId::of(source), p))
    }
}

/// Hands `ops` to the writer: reuses, file objects `patch` gives a patch for as patch
/// records, everything else written whole (objects over `stream_over` bytes through
/// [`UpdateWriter::write_object_from`], the streaming path).
pub fn write_ops(
    w: &mut UpdateWriter,
    ops: &[Op],
    patch: &PatchFor<'_>,
    stream_over: usize,
) -> std::io::Result<()> {
    for op in ops {
        match op {
            Op::Write(k, id, b) => {
                let p = if *k == ObjectKind::File {
                    patch(id, b)
                } else {
                    None
                };
                if let Some((source, p)) = p {
                    w.patch_object(*k, *id, b.len() as u64, source, &p)?;
                } else if b.len() > stream_over {
                    w.write_object_from(*k, *id, b.len() as u64, &mut &b[..])?;
                } else {
                    w.write_object(*k, *id, b)?;
                }
            }
            Op::Reuse(k, id) => w.reuse_object(*k, *id),
        }
    }
    Ok(())
}

/// [`write_ops`] with the reuses of the objects that dirtree `source` (its canonical bytes)
/// names gathered into one reuse-entries record, written just before the write of dirtree
/// `before` (the new dirtree of the same directory); `bitmap` may turn the bitmap first (to
/// make a wrong one). Returns the bitmap written.
///
/// # Errors
/// The writer's.
///
/// # Panics
/// If `source` is not a valid dirtree.
pub fn write_ops_grouped(
    w: &mut UpdateWriter,
    ops: &[Op],
    (source, before): (&[u8], ObjectId),
    bitmap: &mut dyn FnMut(&mut Vec<u8>),
    patch: &PatchFor<'_>,
    stream_over: usize,
) -> std::io::Result<Vec<u8>> {
    let refs: Vec<_> = DirTree::parse(source)
        .expect("a valid dirtree")
        .references()
        .collect();
    let mut bits = vec![0u8; refs.len().div_ceil(8)];
    let mut rest = Vec::new();
    for op in ops {
        match op {
            Op::Reuse(k, id) => match refs.iter().position(|r| *r == (*k, *id)) {
                Some(i) => bits[i / 8] |= 1 << (i % 8),
                None => rest.push(op.clone()),
            },
            Op::Write(ObjectKind::DirTree, id, _) if *id == before => {
                write_ops(w, &rest, patch, stream_over)?;
                rest.clear();
                bitmap(&mut bits);
                w.reuse_entries(ObjectId::of(source), &bits)?;
                rest.push(op.clone());
            }
            Op::Write(..) => rest.push(op.clone()),
        }
    }
    write_ops(w, &rest, patch, stream_over)?;
    Ok(bits)
}
