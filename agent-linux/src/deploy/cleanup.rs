//! `cleanup`: deployment directories no slot names, and objects that neither a deployment
//! nor a ref needs.
//!
//! Kept: the commits of both slots' deployments and of every ref head, and everything their
//! trees reference. Removed, in an order that keeps the repository's invariants at every
//! step (so that an interruption leaves a consistent store): unnamed deployment directories,
//! then unneeded commits (the `.commit`, then its `.commitsig`), then unneeded dirtrees
//! parents before children (a dirtree's presence promises its whole tree), then dirmetas, then
//! file objects (the content, which marks the object complete, before its `.filemeta`), and
//! finally leftovers in `R/tmp`. An interrupted install's checkpoint (`R/state/`) is removed
//! first, so its verified parts' objects go with the rest.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use agent_core::object::{ObjectId, ObjectKind};
use bootloader_hooks::{BootState, Slot};

use super::{io_err, parse_deployment_name, DeployError, Deployer};
use crate::fsops;
use crate::repo::{ObjectSet, FILEMETA_SUFFIX};

/// What `cleanup` removed.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct CleanupReport {
    /// Deployment directories removed.
    pub deployments: Vec<String>,
    /// Commits removed.
    pub commits: u64,
    /// Dirtrees removed.
    pub dirtrees: u64,
    /// Dirmetas removed.
    pub dirmetas: u64,
    /// File objects removed.
    pub files: u64,
    /// Staging leftovers removed.
    pub tmp_files: u64,
    /// The checkpoint of an interrupted install was removed (`R/state/`); the objects of its
    /// verified parts, referenced by nothing, are removed with the other unneeded objects, and
    /// the next install of that file starts from byte 0.
    pub install_checkpoint: bool,
    /// Bytes freed (files whose last link was removed).
    pub bytes_freed: u64,
    /// Commits kept.
    pub kept_commits: Vec<String>,
}

fn freed(p: &Path) -> u64 {
    match fs::symlink_metadata(p) {
        Ok(m) if m.nlink() <= 1 => m.len(),
        _ => 0,
    }
}

/// Every object in the repository, by kind (walking `R/objects/xx/`).
fn all_objects(objects: &Path) -> Result<HashMap<&'static str, Vec<ObjectId>>, DeployError> {
    let mut out: HashMap<&'static str, Vec<ObjectId>> = HashMap::new();
    let rd = match fs::read_dir(objects) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(io_err("read directory", objects)(e)),
    };
    for sub in rd {
        let sub = sub.map_err(io_err("read directory", objects))?;
        let dir = sub.file_name().to_string_lossy().into_owned();
        if dir.len() != 2 {
            continue;
        }
        let sp = sub.path();
        for e in fs::read_dir(&sp).map_err(io_err("read directory", &sp))? {
            let e = e.map_err(io_err("read directory", &sp))?;
            let name = e.file_name().to_string_lossy().into_owned();
            let Some((rest, suffix)) = name.split_once('.') else {
                continue;
            };
            let Ok(id) = ObjectId::from_hex(&format!("{dir}{rest}")) else {
                continue;
            };
            let kind = match suffix {
                "commit" => "commit",
                "commitsig" => "commitsig",
                "dirtree" => "dirtree",
                "dirmeta" => "dirmeta",
                "file" => "file",
                s if s == FILEMETA_SUFFIX => "filemeta",
                _ => continue,
            };
            out.entry(kind).or_default().push(id);
        }
    }
    Ok(out)
}

/// Entries in the repository's staging directory and their bytes.
pub(super) fn tmp_leftovers(tmp: &Path) -> (u64, u64) {
    let mut n = (0, 0);
    if let Ok(rd) = fs::read_dir(tmp) {
        for e in rd.flatten() {
            n.0 += 1;
            n.1 += freed(&e.path());
        }
    }
    n
}

pub(super) fn cleanup(d: &Deployer, state: &BootState) -> Result<CleanupReport, DeployError> {
    let mut r = CleanupReport {
        deployments: d.remove_unnamed(state)?,
        ..CleanupReport::default()
    };
    let repo = d.sysroot().repo();
    // An abandoned resumable install: its checkpoint first, then (below) its objects.
    r.install_checkpoint = crate::resume::discard(repo)?;
    let mut keep: Vec<ObjectId> = Vec::new();
    for s in Slot::ALL {
        let n = state.slot(s).name;
        if n.is_empty() {
            continue;
        }
        let (c, _) = parse_deployment_name(n.as_str())
            .ok_or_else(|| DeployError::BadDeploymentName(n.as_str().to_string()))?;
        keep.push(c);
    }
    for (_, id) in repo.list_refs()? {
        keep.push(id);
    }
    keep.sort();
    keep.dedup();
    let mut live = ObjectSet::default();
    for c in &keep {
        // A deployment's or ref's commit that cannot be read stops the cleanup: nothing is
        // removed on a guess.
        let set = repo.reachable(c)?;
        live.files.extend(set.files);
        live.dirtrees.extend(set.dirtrees);
        live.dirmetas.extend(set.dirmetas);
    }
    r.kept_commits = keep.iter().map(|c| c.to_string()).collect();
    let objects = repo.path().join("objects");
    let all = all_objects(&objects)?;
    let get = |k: &str| all.get(k).cloned().unwrap_or_default();
    let remove = |p: PathBuf, bytes: &mut u64| -> Result<bool, DeployError> {
        let f = freed(&p);
        let removed = fsops::remove_file_if_exists(&p).map_err(io_err("remove", &p))?;
        if removed {
            *bytes += f;
        }
        Ok(removed)
    };
    let keep_set: HashSet<ObjectId> = keep.iter().copied().collect();
    let mut bytes = 0u64;
    let mut touched_dirs: HashSet<PathBuf> = HashSet::new();
    // Each phase's removals are made durable before the next phase starts.
    let flush = |touched: &mut HashSet<PathBuf>| -> Result<(), DeployError> {
        let mut dirs: Vec<PathBuf> = touched.drain().collect();
        dirs.sort();
        for dir in dirs {
            fsops::fsync_dir(&dir).map_err(io_err("fsync", &dir))?;
        }
        Ok(())
    };
    // Commits.
    for c in get("commit") {
        if keep_set.contains(&c) {
            continue;
        }
        let p = repo.object_path(ObjectKind::Commit, &c);
        touched_dirs.insert(fsops::parent_of(&p));
        if remove(p, &mut bytes)? {
            r.commits += 1;
        }
    }
    for c in get("commitsig") {
        if !keep_set.contains(&c) {
            remove(repo.commitsig_path(&c), &mut bytes)?;
        }
    }
    flush(&mut touched_dirs)?;
    // Dirtrees: a dirtree's presence promises its whole tree, so removing them one by one
    // would need parents before children with a directory fsync between levels (a chain of n
    // dirtrees: n fsyncs). The repository removes them all under a journal instead: linear
    // time and a fixed number of fsyncs (see `Repo::remove_dirtrees`).
    let mut garbage: Vec<ObjectId> = get("dirtree")
        .into_iter()
        .filter(|t| !live.dirtrees.contains(t))
        .collect();
    garbage.sort();
    let (n, b) = repo.remove_dirtrees(&garbage)?;
    r.dirtrees += n;
    bytes += b;
    for m in get("dirmeta") {
        if live.dirmetas.contains(&m) {
            continue;
        }
        let p = repo.object_path(ObjectKind::DirMeta, &m);
        touched_dirs.insert(fsops::parent_of(&p));
        if remove(p, &mut bytes)? {
            r.dirmetas += 1;
        }
    }
    flush(&mut touched_dirs)?;
    let mut files: Vec<ObjectId> = get("file");
    files.extend(get("filemeta"));
    files.sort();
    files.dedup();
    for f in files {
        if live.files.contains(&f) {
            continue;
        }
        let p = repo.object_path(ObjectKind::File, &f);
        touched_dirs.insert(fsops::parent_of(&p));
        if remove(p, &mut bytes)? {
            r.files += 1;
        }
        remove(repo.filemeta_path(&f), &mut bytes)?;
    }
    let tmp = repo.tmp_dir();
    if let Ok(rd) = fs::read_dir(&tmp) {
        for e in rd.flatten() {
            let p = e.path();
            let is_dir = e.file_type().map(|t| t.is_dir()).unwrap_or(false);
            let f = if is_dir { 0 } else { freed(&p) };
            if is_dir {
                fsops::remove_tree(&p).map_err(io_err("remove", &p))?;
            } else {
                fsops::remove_file_if_exists(&p).map_err(io_err("remove", &p))?;
            }
            bytes += f;
            r.tmp_files += 1;
        }
    }
    flush(&mut touched_dirs)?;
    r.bytes_freed = bytes;
    Ok(r)
}

impl Deployer {
    /// Removes deployment directories no slot names and objects that neither a deployment
    /// nor a ref needs.
    pub fn cleanup(&self) -> Result<CleanupReport, DeployError> {
        let _lock = self.lock()?;
        // Staging leftovers of crashed writers: the repository's lock removes them.
        let tmp = tmp_leftovers(&self.sysroot.repo().tmp_dir());
        // No install may write objects while unreferenced ones are removed.
        let _repo_lock = self.sysroot.repo().lock()?;
        let (_, state) = self.ready()?;
        self.check_sources(&state)?;
        let mut r = cleanup(self, &state)?;
        r.tmp_files += tmp.0;
        r.bytes_freed += tmp.1;
        Ok(r)
    }
}
