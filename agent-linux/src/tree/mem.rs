//! A tree held in memory ([`MemDir`]) built into a repository ([`build_mem`]).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use agent_core::object::{self, ObjectId};

use crate::fsmeta;
use crate::repo::{Repo, Transaction, TreeRoot, MAX_TREE_DEPTH};

use super::{
    write_dirmeta, write_dirtree, write_small_file, write_symlink, BuildError, BuildStats, Node,
};

/// A tree held in memory, for programs and tests that make trees a filesystem cannot hold.
/// Owners are 0:0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemNode {
    /// A regular file.
    File {
        /// Permission bits.
        mode: u32,
        /// Content.
        content: Vec<u8>,
        /// Extended attributes.
        xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    },
    /// A symlink.
    Symlink {
        /// Its target.
        target: Vec<u8>,
    },
    /// A directory.
    Dir(MemDir),
}

/// A directory held in memory. Entries may come in any order; names are checked when the tree
/// is built.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MemDir {
    /// Permission bits.
    pub mode: u32,
    /// Extended attributes.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// Entries: name and node.
    pub entries: Vec<(Vec<u8>, MemNode)>,
}

impl MemDir {
    /// An empty directory with mode 0755.
    pub fn new() -> MemDir {
        MemDir {
            mode: 0o755,
            xattrs: Vec::new(),
            entries: Vec::new(),
        }
    }

    /// Adds an entry (builder style).
    pub fn with(mut self, name: &[u8], node: MemNode) -> MemDir {
        self.entries.push((name.to_vec(), node));
        self
    }
}

/// Builds an in-memory tree into `repo`. Names are validated like those read from disk.
pub fn build_mem(repo: &Repo, dir: &MemDir) -> Result<(TreeRoot, BuildStats), BuildError> {
    let mut stats = BuildStats::default();
    let mut txn = Transaction::new(repo);
    let (tree, meta) = mem_dir(&mut txn, dir, Path::new("/"), 0, &mut stats)?;
    txn.commit()?;
    Ok((TreeRoot { tree, meta }, stats))
}

fn mem_dir(
    txn: &mut Transaction<'_>,
    dir: &MemDir,
    path: &Path,
    depth: usize,
    stats: &mut BuildStats,
) -> Result<(ObjectId, ObjectId), BuildError> {
    if depth > MAX_TREE_DEPTH {
        return Err(BuildError::TooDeep(path.to_path_buf()));
    }
    stats.dirs += 1;
    let mut sorted: Vec<&(Vec<u8>, MemNode)> = dir.entries.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut entries = Vec::with_capacity(sorted.len());
    for (name, node) in sorted {
        object::validate_name(name).map_err(|error| BuildError::BadName {
            dir: path.to_path_buf(),
            name: name.clone(),
            error,
        })?;
        let child = path.join(OsStr::from_bytes(name));
        let obj_err = |error| BuildError::Object {
            path: child.clone(),
            error,
        };
        let n = match node {
            MemNode::File {
                mode,
                content,
                xattrs,
            } => {
                stats.files += 1;
                stats.bytes += content.len() as u64;
                let x = fsmeta::encode_xattrs(xattrs).map_err(obj_err)?;
                Node::File(write_small_file(txn, &child, *mode, content, &x, stats)?)
            }
            MemNode::Symlink { target } => {
                stats.files += 1;
                Node::File(write_symlink(txn, &child, target, 0, 0, b"", stats)?)
            }
            MemNode::Dir(d) => {
                let (tree, meta) = mem_dir(txn, d, &child, depth + 1, stats)?;
                Node::Dir { tree, meta }
            }
        };
        entries.push((name.clone(), n));
    }
    let tree = write_dirtree(txn, path, &entries, stats)?;
    let x = fsmeta::encode_xattrs(&dir.xattrs).map_err(|error| BuildError::Object {
        path: path.to_path_buf(),
        error,
    })?;
    let meta = write_dirmeta(txn, path, dir.mode, 0, 0, &x, stats)?;
    Ok((tree, meta))
}
