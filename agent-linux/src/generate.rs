//! Generating `.update` files from a repository with [`agent_core::write::UpdateWriter`].
//!
//! Operations go bottom-up: every file and dirmeta a dirtree names, and every subtree, before
//! the dirtree; the root dirmeta before the commit; the commit last. For a delta, any object
//! the source commit already has becomes a `Reuse` operation instead of a `Write`, and a
//! dirtree the source has is reused whole without descending into it: so the file lists a
//! `Reuse` for every maximal unchanged subtree or file that the new tree references (a store
//! that copies, like flash A/B, gets everything it needs; a shared store just checks
//! presence). Each object appears once.

use std::collections::HashSet;
use std::fmt;
use std::fs;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use agent_core::object::{ObjectId, ObjectKind};
use agent_core::write::{UpdateWriter, WriteError, WriteSummary};

use crate::repo::{io_err, ObjectSet, OwnedEntry, Repo, RepoError, MAX_TREE_DEPTH};

/// Objects up to this size are read whole and handed over in memory; larger ones stream.
const IN_MEMORY_OBJECT: u64 = 64 * 1024;

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

impl std::error::Error for GenerateError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            GenerateError::Repo(e) => Some(e),
            GenerateError::Write(e) => Some(e),
            GenerateError::Io { source, .. } => Some(source),
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
#[derive(Debug, Clone, Copy, Default)]
pub struct GenerateOptions {
    /// ed25519 secret seed to sign with (unsigned when `None`).
    pub sign_key: Option<[u8; 32]>,
    /// Target decoded size of a part (the writer's default when `None`).
    pub part_size: Option<usize>,
    /// Deflate level 0..=10 (the writer's default when `None`).
    pub compression: Option<u8>,
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
}

/// Finds a ref whose history contains `commit` (the first by name).
pub fn ref_for_commit(repo: &Repo, commit: &ObjectId) -> Result<String, GenerateError> {
    for (name, head) in repo.list_refs()? {
        let (history, _) = repo.history(&head)?;
        if history.iter().any(|c| c.id == *commit) {
            return Ok(name);
        }
    }
    Err(GenerateError::NoRef(*commit))
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
    let source = match from {
        Some(f) => repo.reachable(&f)?,
        None => ObjectSet::default(),
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
    let mut walk = Walk {
        repo,
        source: &source,
        writer,
        done: HashSet::new(),
        written: 0,
        reused: 0,
        bytes: 0,
        progress,
    };
    walk.tree(&target.root_tree, 0)?;
    walk.object(ObjectKind::DirMeta, &target.root_meta)?;
    let commit = repo.read_metadata_object(ObjectKind::Commit, to)?;
    walk.writer
        .write_object(ObjectKind::Commit, *to, &commit)
        .map_err(|e| GenerateError::Io {
            what: "add commit",
            path: repo.object_path(ObjectKind::Commit, to),
            source: e,
        })?;
    let (written, reused) = (walk.written + 1, walk.reused);
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

struct Walk<'a> {
    repo: &'a Repo,
    source: &'a ObjectSet,
    writer: UpdateWriter,
    done: HashSet<(u8, ObjectId)>,
    written: u32,
    reused: u32,
    bytes: u64,
    progress: &'a mut dyn FnMut(u32, u64),
}

impl Walk<'_> {
    /// Emits a dirtree and, first, everything under it (or reuses it whole).
    fn tree(&mut self, id: &ObjectId, depth: usize) -> Result<(), GenerateError> {
        if depth > MAX_TREE_DEPTH {
            return Err(RepoError::TooDeep(*id).into());
        }
        if self.done.contains(&(ObjectKind::DirTree.code(), *id)) {
            return Ok(());
        }
        if !self.source.contains(ObjectKind::DirTree, id) {
            for e in self.repo.read_dirtree(id)? {
                match e {
                    OwnedEntry::File { id, .. } => self.object(ObjectKind::File, &id)?,
                    OwnedEntry::Dir { tree, meta, .. } => {
                        self.tree(&tree, depth + 1)?;
                        self.object(ObjectKind::DirMeta, &meta)?;
                    }
                }
            }
        }
        self.object(ObjectKind::DirTree, id)
    }

    /// Emits one object as a reuse (when the source has it) or a write.
    fn object(&mut self, kind: ObjectKind, id: &ObjectId) -> Result<(), GenerateError> {
        if !self.done.insert((kind.code(), *id)) {
            return Ok(());
        }
        if self.source.contains(kind, id) {
            self.writer.reuse_object(kind, *id);
            self.reused += 1;
        } else {
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
            self.written += 1;
        }
        (self.progress)(self.written + self.reused, self.bytes);
        Ok(())
    }
}
