//! Generating `.update` files from a repository with [`agent_core::write::UpdateWriter`].
//!
//! Operations go bottom-up: every file and dirmeta a dirtree names, and every subtree, before
//! the dirtree; the root dirmeta before the commit; the commit last. For a delta, any object
//! the source commit already has becomes a `Reuse` operation instead of a `Write`, and a
//! dirtree the source has is reused whole without descending into it: so the file lists a
//! `Reuse` for every maximal unchanged subtree or file that the new tree references (a store
//! that copies, like flash A/B, gets everything it needs; a shared store just checks
//! presence). Each object appears once.
//!
//! **Patches.** In a delta, a new regular file is paired with a file of the source commit: the
//! one at the same path, else a renamed sibling (same directory, same name once its digits are
//! dropped: `libfoo.so.1.2` for `libfoo.so.1.3`). The pair is diffed (bsdiff's suffix-array
//! matching, [`agent_core::write::diff`]) on every core, and the file becomes a patch record
//! when the patch, compressed, is smaller than the file compressed
//! ([`agent_core::write::patch_pays`]); otherwise it is written whole. A new dirtree is paired
//! with the source's dirtree at the same path the same way: most of its entries (names and
//! the ids they name, 32 bytes that no codec shrinks) are the source's.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::fs;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use agent_core::object::{ObjectId, ObjectKind};
use agent_core::wire::Codec;
use agent_core::write::{RedeflateMode, UpdateWriter, WriteError, WriteSummary};

use crate::repo::{io_err, ObjectSet, OwnedEntry, Repo, RepoError, MAX_TREE_DEPTH};

/// Objects up to this size are read whole and handed over in memory; larger ones stream.
const IN_MEMORY_OBJECT: u64 = 64 * 1024;

/// Files are paired for a patch only when both are at least this long (smaller ones compress
/// as well as a patch would)...
const MIN_PATCH_FILE: u64 = 256;
/// ...and at most this long: bsdiff's suffix array takes 16 bytes of memory per source byte.
pub const MAX_PATCH_FILE: u64 = 64 * 1024 * 1024;

/// Why an update could not be generated.
#[derive(Debug)]
#[non_exhaustive]
pub enum GenerateError {
    /// Reading the repository failed.
    Repo(RepoError),
    /// The writer refused or failed.
    Write(WriteError),
    /// Handing an object to the writer, or writing the output, failed.
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The commit is on no ref, so the update would not know which ref to move.
    NoRef(ObjectId),
}

impl fmt::Display for GenerateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GenerateError::Repo(e) => e.fmt(f),
            GenerateError::Write(e) => e.fmt(f),
            GenerateError::Io { what, path, source } => {
                write!(f, "cannot {what} {}: {source}", path.display())
            }
            GenerateError::NoRef(id) => write!(
                f,
                "commit {id} is in the history of no ref; name the ref with --ref"
            ),
        }
    }
}

/// Transparent to the errors its messages include.
impl std::error::Error for GenerateError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            GenerateError::Repo(e) => e.source(),
            GenerateError::Write(e) => e.source(),
            GenerateError::Io { source, .. } => source.source(),
            GenerateError::NoRef(_) => None,
        }
    }
}

impl From<RepoError> for GenerateError {
    fn from(e: RepoError) -> Self {
        GenerateError::Repo(e)
    }
}

impl From<WriteError> for GenerateError {
    fn from(e: WriteError) -> Self {
        GenerateError::Write(e)
    }
}

/// How files are written.
#[derive(Debug, Clone, Copy)]
pub struct GenerateOptions {
    /// ed25519 secret seed to sign with (unsigned when `None`).
    pub sign_key: Option<[u8; 32]>,
    /// Target decoded size of a part (the writer's default when `None`).
    pub part_size: Option<usize>,
    /// Compression level: deflate 0..=10, xz 0..=9 (the writer's default when `None`).
    pub compression: Option<u8>,
    /// Write every new file whole, never as a patch of a source file.
    pub no_patches: bool,
    /// Reuse each unchanged object by a record of its own, never by a reuse-entries record
    /// (for an agent that reads format version 4 at most).
    pub no_reuse_entries: bool,
    /// Which gzip files are carried inflated in redeflate records ([`RedeflateMode::Off`] for
    /// a device whose installer has no deflate encoder).
    pub redeflate: RedeflateMode,
    /// Codec of the parts: [`Codec::Xz`] (the default) or [`Codec::Deflate`].
    pub codec: Codec,
    /// The largest window a device must lend (the writer's default, 8 MiB, when `None`).
    pub max_dictionary: Option<u64>,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions {
            sign_key: None,
            part_size: None,
            compression: None,
            no_patches: false,
            no_reuse_entries: false,
            redeflate: RedeflateMode::Zlib,
            codec: Codec::Xz,
            max_dictionary: None,
        }
    }
}

/// What one generated file holds.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct UpdateSummary {
    /// The ref the update moves.
    #[serde(rename = "ref")]
    pub ref_name: String,
    /// Source commit of a delta.
    pub from: Option<String>,
    /// Target commit.
    pub to: String,
    /// Bytes of the file.
    pub bytes: u64,
    /// Parts.
    pub parts: u32,
    /// Operations.
    pub objects: u32,
    /// Objects written (the rest are reused).
    pub written: u32,
    /// Objects reused from the source.
    pub reused: u32,
    /// Objects written as patches of a source object (counted in `written`).
    pub patched: u32,
    /// Dirtrees among them: patches of the source's dirtree at the same path.
    pub patched_dirtrees: u32,
    /// Gzip files among the written objects carried as the text they inflate to (redeflate
    /// records; counted in `written`).
    pub redeflated: u32,
}

/// Writes the update of `ref_name` to commit `to` (a delta from `from`, or from scratch) to
/// `out`. `progress` is called with (objects done, bytes of objects written) as the tree is
/// walked.
pub fn generate(
    repo: &Repo,
    ref_name: &str,
    from: Option<ObjectId>,
    to: &ObjectId,
    opts: &GenerateOptions,
    out: &mut dyn Write,
    progress: &mut dyn FnMut(u32, u64),
) -> Result<UpdateSummary, GenerateError> {
    let target = repo.read_commit(to)?;
    let (source, pairs) = match from {
        Some(f) if !opts.no_patches || !opts.no_reuse_entries => SourceFiles::of(repo, &f)?,
        Some(f) => (repo.reachable(&f)?, SourceFiles::default()),
        None => (ObjectSet::default(), SourceFiles::default()),
    };
    let mut writer = UpdateWriter::new(
        ref_name,
        from,
        *to,
        target.timestamp,
        &target.version,
        &target.subject,
    );
    if let Some(p) = opts.part_size {
        writer = writer.part_size(p);
    }
    if let Some(l) = opts.compression {
        writer = writer.compression(l);
    }
    writer = writer.codec(opts.codec).redeflate_mode(opts.redeflate);
    if let Some(d) = opts.max_dictionary {
        writer = writer.max_dictionary(d);
    }
    let mut walk = Walk::new(repo, &source, &pairs);
    walk.patches = !opts.no_patches;
    walk.entries = !opts.no_reuse_entries;
    walk.tree(&target.root_tree, 0)?;
    walk.object(ObjectKind::DirMeta, &target.root_meta, None)?;
    let patches = patches(repo, &walk.plan);
    let mut emit = Emit {
        repo,
        writer,
        written: 0,
        reused: 0,
        patched: 0,
        patched_dirtrees: 0,
        bytes: 0,
        progress,
    };
    for (step, patch) in walk.plan.iter().zip(patches) {
        emit.step(step, patch)?;
    }
    let mut walk = emit;
    let commit = repo.read_metadata_object(ObjectKind::Commit, to)?;
    walk.writer
        .write_object(ObjectKind::Commit, *to, &commit)
        .map_err(|e| GenerateError::Io {
            what: "add commit",
            path: repo.object_path(ObjectKind::Commit, to),
            source: e,
        })?;
    let (written, reused, patched) = (walk.written + 1, walk.reused, walk.patched);
    let patched_dirtrees = walk.patched_dirtrees;
    let summary: WriteSummary = walk.writer.finish(opts.sign_key.as_ref(), out)?;
    Ok(UpdateSummary {
        ref_name: ref_name.to_string(),
        from: from.map(|f| f.to_string()),
        to: to.to_string(),
        bytes: summary.bytes,
        parts: summary.parts,
        objects: summary.objects,
        written,
        reused,
        patched,
        patched_dirtrees,
        redeflated: summary.redeflated,
    })
}

/// [`generate`] into a file, atomically (a temp file beside it, renamed into place).
pub fn generate_file(
    repo: &Repo,
    ref_name: &str,
    from: Option<ObjectId>,
    to: &ObjectId,
    opts: &GenerateOptions,
    path: &Path,
    progress: &mut dyn FnMut(u32, u64),
) -> Result<UpdateSummary, GenerateError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let io = |what| {
        move |source| GenerateError::Io {
            what,
            path: path.to_path_buf(),
            source,
        }
    };
    let res = (|| {
        let f = fs::File::create(&tmp).map_err(io("create"))?;
        let mut w = BufWriter::new(f);
        let s = generate(repo, ref_name, from, to, opts, &mut w, progress)?;
        let f = w.into_inner().map_err(|e| io("write")(e.into_error()))?;
        f.sync_all().map_err(io("fsync"))?;
        fs::rename(&tmp, path).map_err(io("rename into"))?;
        Ok(s)
    })();
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    res
}

/// One file written by [`generate_deltas`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct GeneratedFile {
    /// Where it was written.
    pub path: PathBuf,
    /// What it holds.
    #[serde(flatten)]
    pub summary: UpdateSummary,
}

/// The file name of an update: `<ref with / as ->-<to>.update` from scratch, or
/// `<ref with / as ->-<from>-<to>.update` for a delta (ids in full hex).
pub fn update_file_name(ref_name: &str, from: Option<&ObjectId>, to: &ObjectId) -> String {
    let r = ref_name.replace('/', "-");
    match from {
        Some(f) => format!("{r}-{f}-{to}.update"),
        None => format!("{r}-{to}.update"),
    }
}

/// For the newest commit of every ref: one from-scratch file, and one delta from each of up
/// to `depth` previous commits (those in the repository), written into `out_dir`.
/// `on_file` is called after each file.
pub fn generate_deltas(
    repo: &Repo,
    out_dir: &Path,
    depth: usize,
    opts: &GenerateOptions,
    on_file: &mut dyn FnMut(&GeneratedFile),
) -> Result<Vec<GeneratedFile>, GenerateError> {
    fs::create_dir_all(out_dir).map_err(io_err("create", out_dir))?;
    let mut out = Vec::new();
    for (ref_name, head) in repo.list_refs()? {
        let (history, _) = repo.history(&head)?;
        let mut sources = vec![None];
        sources.extend(history.iter().skip(1).take(depth).map(|c| Some(c.id)));
        for from in sources {
            let path = out_dir.join(update_file_name(&ref_name, from.as_ref(), &head));
            let summary = generate_file(repo, &ref_name, from, &head, opts, &path, &mut |_, _| {})?;
            let f = GeneratedFile { path, summary };
            on_file(&f);
            out.push(f);
        }
    }
    Ok(out)
}

/// The regular files of a source commit, by path and by sibling key (see the module docs).
#[derive(Default)]
struct SourceFiles {
    by_path: HashMap<Vec<u8>, ObjectId>,
    /// (directory, name without digits) -> the first such file by name.
    by_sibling: BTreeMap<(Vec<u8>, Vec<u8>), ObjectId>,
    /// Directory path (`/`-separated from the root, "" for the root) -> its dirtree.
    dirs: HashMap<Vec<u8>, ObjectId>,
}

/// The name of `libfoo.so.1.2` without its digits: `libfoo.so..`.
fn sibling_key(name: &[u8]) -> Vec<u8> {
    name.iter()
        .copied()
        .filter(|b| !b.is_ascii_digit())
        .collect()
}

impl SourceFiles {
    /// The objects of `commit` (what [`Repo::reachable`] gives) and every regular file of its
    /// tree, in one walk (with an explicit stack) that reads each directory once.
    fn of(repo: &Repo, commit: &ObjectId) -> Result<(ObjectSet, SourceFiles), GenerateError> {
        let c = repo.read_commit(commit)?;
        let mut set = ObjectSet::default();
        set.dirmetas.insert(c.root_meta);
        let mut files = SourceFiles::default();
        let mut stack = vec![(c.root_tree, Vec::new(), 0usize)];
        while let Some((tree, dir, depth)) = stack.pop() {
            if depth > MAX_TREE_DEPTH {
                return Err(RepoError::TooDeep(*commit).into());
            }
            set.dirtrees.insert(tree);
            files.dirs.insert(dir.clone(), tree);
            for e in repo.read_dirtree(&tree)? {
                match e {
                    OwnedEntry::File { name, id } => {
                        set.files.insert(id);
                        let mut path = dir.clone();
                        path.push(b'/');
                        path.extend_from_slice(&name);
                        files
                            .by_sibling
                            .entry((dir.clone(), sibling_key(&name)))
                            .or_insert(id);
                        files.by_path.insert(path, id);
                    }
                    OwnedEntry::Dir { name, tree, meta } => {
                        set.dirmetas.insert(meta);
                        let mut path = dir.clone();
                        path.push(b'/');
                        path.extend_from_slice(&name);
                        stack.push((tree, path, depth + 1));
                    }
                }
            }
        }
        Ok((set, files))
    }

    /// The source dirtree to patch the dirtree at `dir` from, if any.
    fn dir(&self, dir: &[u8]) -> Option<ObjectId> {
        self.dirs.get(dir).copied()
    }

    /// The source file to patch `dir/name` from, if any.
    fn pair(&self, dir: &[u8], name: &[u8]) -> Option<ObjectId> {
        let mut path = dir.to_vec();
        path.push(b'/');
        path.extend_from_slice(name);
        self.by_path.get(&path).copied().or_else(|| {
            self.by_sibling
                .get(&(dir.to_vec(), sibling_key(name)))
                .copied()
        })
    }
}

/// One operation of the update, in file order: a write (with the source file to try a patch
/// from) or a reuse.
enum Step {
    /// Kind, id, the patch source paired with it, its file name (for the writer's locality).
    Write(ObjectKind, ObjectId, Option<ObjectId>, Option<Box<[u8]>>),
    Reuse(ObjectKind, ObjectId),
    /// The source dirtree, the bitmap over its references, and how many bits are set.
    ReuseEntries(ObjectId, Vec<u8>, u32),
}

/// The reuses of one new directory's entries that its source dirtree (the source commit's
/// directory at the same path) names: gathered as one reuse-entries record, a bit for each
/// reference, instead of a 34-byte record for each object. The record goes before anything
/// else of the directory, so every object it reuses is in place before any dirtree below
/// that names it (a copying store needs them there: docs/FORMAT.md §6, rule 1).
struct Group {
    source: ObjectId,
    /// Each reference's index in the source dirtree, by kind code and id (the first when
    /// an object is named twice).
    index: HashMap<(u8, ObjectId), usize>,
    bits: Vec<u8>,
    set: u32,
}

impl Group {
    /// The group of dirtree `source`'s references.
    fn of(repo: &Repo, source: ObjectId) -> Result<Group, GenerateError> {
        let refs = repo.dirtree_references(&source)?;
        let mut index = HashMap::new();
        for (i, (kind, id)) in refs.iter().enumerate() {
            index.entry((kind.code(), *id)).or_insert(i);
        }
        Ok(Group {
            source,
            index,
            bits: vec![0; refs.len().div_ceil(8)],
            set: 0,
        })
    }

    /// Takes the reuse of an object when the source dirtree names it.
    fn take(&mut self, kind: ObjectKind, id: &ObjectId) -> bool {
        let Some(&i) = self.index.get(&(kind.code(), *id)) else {
            return false;
        };
        let bit = 1 << (i % 8);
        if self.bits[i / 8] & bit != 0 {
            return false;
        }
        self.bits[i / 8] |= bit;
        self.set += 1;
        true
    }
}

/// A write's patch, when it pays: the source object and the patch.
type Patch = Option<(ObjectId, Vec<u8>)>;

/// Whole canonical bytes of a dirtree, or of a regular file object of a patchable size;
/// `None` otherwise.
fn patchable(
    repo: &Repo,
    kind: ObjectKind,
    id: &ObjectId,
) -> Result<Option<Vec<u8>>, GenerateError> {
    if kind != ObjectKind::File {
        return Ok(Some(repo.read_metadata_object(kind, id)?));
    }
    let obj = repo.open_file_object(id)?;
    let len = obj.header.object_len();
    if obj.header.is_symlink() || !(MIN_PATCH_FILE..=MAX_PATCH_FILE).contains(&len) {
        return Ok(None);
    }
    let path = repo.object_path(ObjectKind::File, id);
    let mut bytes = Vec::with_capacity(len as usize);
    obj.into_reader()
        .read_to_end(&mut bytes)
        .map_err(io_err("read", &path))?;
    Ok(Some(bytes))
}

/// Bytes of an object's file in the repository (for a file object its content, or a
/// symlink's target), 0 when it cannot be read: a size to order work by, nothing more.
fn stored_len(repo: &Repo, kind: ObjectKind, id: &ObjectId) -> u64 {
    std::fs::symlink_metadata(repo.object_path(kind, id)).map_or(0, |m| m.len())
}

/// The patch of each write that has a source, when it pays: computed on every core (each
/// pair is independent), in the plan's order. A pair that cannot be read is written whole
/// (the write reports the error).
fn patches(repo: &Repo, plan: &[Step]) -> Vec<Patch> {
    let mut jobs: Vec<(u64, usize)> = plan
        .iter()
        .enumerate()
        .filter_map(|(i, s)| match s {
            Step::Write(kind, id, Some(_), _) => Some((stored_len(repo, *kind, id), i)),
            _ => None,
        })
        .collect();
    // The largest pairs first, so that the cores finish together.
    jobs.sort_unstable_by(|a, b| b.cmp(a));
    let jobs: Vec<usize> = jobs.into_iter().map(|(_, i)| i).collect();
    let results: Vec<Mutex<Patch>> = plan.iter().map(|_| Mutex::new(None)).collect();
    let next = AtomicUsize::new(0);
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(jobs.len());
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                while let Some(&i) = jobs.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let Step::Write(kind, id, Some(src), _) = &plan[i] else {
                        continue;
                    };
                    let (Ok(Some(new)), Ok(Some(old))) =
                        (patchable(repo, *kind, id), patchable(repo, *kind, src))
                    else {
                        continue;
                    };
                    let p = agent_core::write::diff(&old, &new);
                    if agent_core::write::patch_pays(&new, &p) {
                        if let Ok(mut slot) = results[i].lock() {
                            *slot = Some((*src, p));
                        }
                    }
                }
            });
        }
    });
    results
        .into_iter()
        .map(|m| m.into_inner().unwrap_or(None))
        .collect()
}

struct Walk<'a> {
    repo: &'a Repo,
    source: &'a ObjectSet,
    pairs: &'a SourceFiles,
    plan: Vec<Step>,
    done: HashSet<(u8, ObjectId)>,
    /// The directory being walked, `/`-separated from the root ("" for the root).
    path: Vec<u8>,
    /// The file name of the object planned next.
    next_name: Option<Box<[u8]>>,
    /// Pair written files and dirtrees with source objects to patch from.
    patches: bool,
    /// Gather the reuses of a new directory's entries into a reuse-entries record.
    entries: bool,
}

impl<'a> Walk<'a> {
    /// A walk that plans nothing yet: `source` is what the device has, `pairs` the source's
    /// files to patch from.
    fn new(repo: &'a Repo, source: &'a ObjectSet, pairs: &'a SourceFiles) -> Walk<'a> {
        Walk {
            repo,
            source,
            pairs,
            plan: Vec::new(),
            done: HashSet::new(),
            path: Vec::new(),
            next_name: None,
            patches: true,
            entries: false,
        }
    }

    /// Plans a dirtree and, first, everything under it (or reuses it whole).
    fn tree(&mut self, id: &ObjectId, depth: usize) -> Result<(), GenerateError> {
        if depth > MAX_TREE_DEPTH {
            return Err(RepoError::TooDeep(*id).into());
        }
        if self.done.contains(&(ObjectKind::DirTree.code(), *id)) {
            return Ok(());
        }
        let pair = self.pairs.dir(&self.path);
        if !self.source.contains(ObjectKind::DirTree, id) {
            let (mut files, mut dirs) = (Vec::new(), Vec::new());
            for e in self.repo.read_dirtree(id)? {
                match e {
                    OwnedEntry::File { id, name } => {
                        files.push((stored_len(self.repo, ObjectKind::File, &id), name, id));
                    }
                    OwnedEntry::Dir { tree, meta, name } => dirs.push((tree, meta, name)),
                }
            }
            // A directory's files by size, then name: the builds of one package (similar
            // code) tend to be of similar sizes, so they come within the dictionary of each
            // other. Ordered so, `usr/bin` of the default corpus's V3 compresses 2.4% smaller
            // with an 8 MiB dictionary, about as well as by name with 32 MiB
            // (docs/PERFORMANCE.md, "A directory's files by size").
            files.sort_unstable();
            if let (true, Some(source)) = (self.entries, pair) {
                self.group(source, &files, &dirs)?;
            }
            for (_, name, id) in files {
                let pair = self.pairs.pair(&self.path, &name).filter(|_| self.patches);
                // The name: a hint for the writer's locality (similar files together).
                self.next_name = Some(name.into_boxed_slice());
                self.object(ObjectKind::File, &id, pair)?;
            }
            for (tree, meta, name) in dirs {
                let len = self.path.len();
                self.path.push(b'/');
                self.path.extend_from_slice(&name);
                let r = self.tree(&tree, depth + 1);
                self.path.truncate(len);
                r?;
                self.object(ObjectKind::DirMeta, &meta, None)?;
            }
        }
        self.object(ObjectKind::DirTree, id, pair.filter(|_| self.patches))
    }

    /// Plans, as one reuse-entries record over dirtree `source`, the reuses of the objects
    /// that a new directory's entries (`files`, `dirs`) name and `source` names too.
    fn group(
        &mut self,
        source: ObjectId,
        files: &[(u64, Vec<u8>, ObjectId)],
        dirs: &[(ObjectId, ObjectId, Vec<u8>)],
    ) -> Result<(), GenerateError> {
        let mut g = Group::of(self.repo, source)?;
        let refs =
            files
                .iter()
                .map(|(_, _, id)| (ObjectKind::File, id))
                .chain(dirs.iter().flat_map(|(tree, meta, _)| {
                    [(ObjectKind::DirTree, tree), (ObjectKind::DirMeta, meta)]
                }));
        for (kind, id) in refs {
            let key = (kind.code(), *id);
            if !self.done.contains(&key) && self.source.contains(kind, id) && g.take(kind, id) {
                self.done.insert(key);
            }
        }
        if g.set > 0 {
            self.plan.push(Step::ReuseEntries(g.source, g.bits, g.set));
        }
        Ok(())
    }

    /// Plans one object as a reuse (when the source has it) or a write (patched from `pair`
    /// if that pays).
    fn object(
        &mut self,
        kind: ObjectKind,
        id: &ObjectId,
        pair: Option<ObjectId>,
    ) -> Result<(), GenerateError> {
        let name = self.next_name.take();
        if !self.done.insert((kind.code(), *id)) {
            return Ok(());
        }
        if self.source.contains(kind, id) {
            self.plan.push(Step::Reuse(kind, *id));
        } else {
            self.plan.push(Step::Write(kind, *id, pair, name));
        }
        Ok(())
    }
}

/// Hands the planned operations to the writer.
struct Emit<'a> {
    repo: &'a Repo,
    writer: UpdateWriter,
    written: u32,
    reused: u32,
    patched: u32,
    patched_dirtrees: u32,
    bytes: u64,
    progress: &'a mut dyn FnMut(u32, u64),
}

impl Emit<'_> {
    fn step(&mut self, step: &Step, patch: Patch) -> Result<(), GenerateError> {
        if let Step::Write(_, _, _, Some(name)) = step {
            self.writer.name_next(name);
        }
        match (step, patch) {
            (Step::Reuse(kind, id), _) => {
                self.writer.reuse_object(*kind, *id);
                self.reused += 1;
            }
            (Step::ReuseEntries(source, bits, set), _) => {
                self.writer
                    .reuse_entries(*source, bits)
                    .map_err(|e| GenerateError::Io {
                        what: "add reuse of the entries of",
                        path: self.repo.object_path(ObjectKind::DirTree, source),
                        source: e,
                    })?;
                self.reused += set;
            }
            (Step::Write(kind, id, _, _), Some((source, p))) => {
                let len = agent_core::write::patch_len(&p).unwrap_or(0);
                self.writer
                    .patch_object(*kind, *id, len, source, &p)
                    .map_err(|source| GenerateError::Io {
                        what: "add patch of",
                        path: self.repo.object_path(*kind, id),
                        source,
                    })?;
                self.bytes += len;
                self.written += 1;
                self.patched += 1;
                self.patched_dirtrees += u32::from(*kind == ObjectKind::DirTree);
            }
            (Step::Write(kind, id, _, _), None) => {
                self.write(*kind, id)?;
                self.written += 1;
            }
        }
        (self.progress)(self.written + self.reused, self.bytes);
        Ok(())
    }

    /// Writes one object whole.
    fn write(&mut self, kind: ObjectKind, id: &ObjectId) -> Result<(), GenerateError> {
        let path = self.repo.object_path(kind, id);
        let add = |source| GenerateError::Io {
            what: "add object",
            path: path.clone(),
            source,
        };
        match kind {
            ObjectKind::File => {
                let obj = self.repo.open_file_object(id)?;
                let len = obj.header.object_len();
                let mut r = obj.into_reader();
                if len <= IN_MEMORY_OBJECT {
                    let mut bytes = Vec::with_capacity(len as usize);
                    r.read_to_end(&mut bytes).map_err(io_err("read", &path))?;
                    self.writer.write_object(kind, *id, &bytes).map_err(add)?;
                } else {
                    self.writer
                        .write_object_from(kind, *id, len, &mut r)
                        .map_err(add)?;
                }
                self.bytes += len;
            }
            _ => {
                let bytes = self.repo.read_metadata_object(kind, id)?;
                self.writer.write_object(kind, *id, &bytes).map_err(add)?;
                self.bytes += bytes.len() as u64;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::tree::{build_mem, MemDir, MemNode};

    fn file(len: usize, byte: u8) -> MemNode {
        MemNode::File {
            mode: 0o644,
            content: vec![byte; len],
            xattrs: vec![],
        }
    }

    #[test]
    fn a_directory_s_files_are_planned_by_size_then_name_before_its_subdirectories() {
        let d = tempfile::tempdir().unwrap();
        let repo = Repo::init(&d.path().join("r")).unwrap();
        let tree = MemDir::new()
            .with(b"a", file(300, b'a'))
            .with(b"b", file(100, b'b'))
            .with(b"c", file(200, b'c'))
            .with(b"d", file(100, b'd'))
            .with(
                b"sub",
                MemNode::Dir(MemDir::new().with(b"x", file(1, b'x'))),
            );
        let (root, _) = build_mem(&repo, &tree).unwrap();
        let (source, pairs) = (ObjectSet::default(), SourceFiles::default());
        let mut walk = Walk::new(&repo, &source, &pairs);
        walk.tree(&root.tree, 0).unwrap();
        let order: Vec<String> = walk
            .plan
            .iter()
            .map(|s| match s {
                Step::Write(ObjectKind::File, _, _, Some(n)) => String::from_utf8_lossy(n).into(),
                Step::Write(ObjectKind::DirTree, id, _, _) if *id == root.tree => "/".into(),
                Step::Write(k, ..) | Step::Reuse(k, _) => format!("{k:?}"),
                Step::ReuseEntries(..) => "entries".into(),
            })
            .collect();
        // The root's files by size (b and d of 100 bytes by name), then the subdirectory's
        // file, its dirtree and dirmeta, and last the root's dirtree.
        assert_eq!(order, ["b", "d", "c", "a", "x", "DirTree", "DirMeta", "/"]);
    }
}
