//! Building trees into a repository: a directory on disk (or a tree held in memory) becomes
//! file, dirtree and dirmeta objects, written bottom-up so that a dirtree is only ever
//! present once everything under it is.
//!
//! File contents are streamed (hashed in 64 KiB blocks, then copied once if the object is new),
//! so a tree of any size is built in constant memory per file.

mod error;
mod mem;
mod objects;

pub use error::BuildError;
pub use mem::{build_mem, MemDir, MemNode};
pub(crate) use objects::{file_meta, write_dirmeta, write_dirtree, write_symlink, Node};
use objects::{hash_stream, write_small_file};

use std::ffi::OsStr;
use std::fs::{self, OpenOptions};
use std::io::{self, Seek, SeekFrom};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

use agent_core::object::{self, ObjectId, ObjectKind, S_IFREG, S_IPERM};

use crate::fsmeta::{self, XattrPolicy};
use crate::repo::{Repo, Transaction, TreeRoot, MAX_TREE_DEPTH};

const COPY_BUF: usize = 64 * 1024;

fn io_at<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> BuildError + 'a {
    move |source| BuildError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// How a directory is read into objects.
#[derive(Debug, Clone, Copy, Default)]
pub struct BuildOptions {
    /// Which extended attributes to record.
    pub xattrs: XattrPolicy,
    /// Record this `(uid, gid)` for every entry instead of the owner on disk.
    pub owner: Option<(u32, u32)>,
}

/// Counts of what a build read and wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct BuildStats {
    /// Files and symlinks read.
    pub files: u64,
    /// Directories read.
    pub dirs: u64,
    /// Content bytes read.
    pub bytes: u64,
    /// Objects that were not in the repository yet.
    pub new_objects: u64,
}

/// Builds the directory `root` into `repo` and returns the root's dirtree and dirmeta.
/// `progress` is called after every file.
pub fn build_dir(
    repo: &Repo,
    root: &Path,
    opts: &BuildOptions,
    progress: &mut dyn FnMut(&BuildStats),
) -> Result<(TreeRoot, BuildStats), BuildError> {
    let md = fs::metadata(root).map_err(io_at("stat", root))?;
    if !md.is_dir() {
        return Err(BuildError::NotADirectory(root.to_path_buf()));
    }
    let mut b = DirBuilder {
        txn: Transaction::new(repo),
        opts,
        stats: BuildStats::default(),
        progress,
    };
    let (tree, meta) = b.dir(root, &md, 0)?;
    b.txn.commit()?;
    Ok((TreeRoot { tree, meta }, b.stats))
}

struct DirBuilder<'a> {
    txn: Transaction<'a>,
    opts: &'a BuildOptions,
    stats: BuildStats,
    progress: &'a mut dyn FnMut(&BuildStats),
}

impl DirBuilder<'_> {
    fn owner(&self, md: &fs::Metadata) -> (u32, u32) {
        self.opts.owner.unwrap_or((md.uid(), md.gid()))
    }

    fn xattrs(&self, path: &Path) -> Result<Vec<u8>, BuildError> {
        let pairs =
            fsmeta::read_xattrs(path, self.opts.xattrs).map_err(io_at("read xattrs of", path))?;
        fsmeta::encode_xattrs(&pairs).map_err(|error| BuildError::Object {
            path: path.to_path_buf(),
            error,
        })
    }

    fn dir(
        &mut self,
        path: &Path,
        md: &fs::Metadata,
        depth: usize,
    ) -> Result<(ObjectId, ObjectId), BuildError> {
        if depth > MAX_TREE_DEPTH {
            return Err(BuildError::TooDeep(path.to_path_buf()));
        }
        self.stats.dirs += 1;
        let mut names = Vec::new();
        for e in fs::read_dir(path).map_err(io_at("read directory", path))? {
            let e = e.map_err(io_at("read directory", path))?;
            names.push(e.file_name().as_bytes().to_vec());
        }
        names.sort();
        let mut entries = Vec::with_capacity(names.len());
        for name in names {
            object::validate_name(&name).map_err(|error| BuildError::BadName {
                dir: path.to_path_buf(),
                name: name.clone(),
                error,
            })?;
            let child = path.join(OsStr::from_bytes(&name));
            let cmd = fs::symlink_metadata(&child).map_err(io_at("stat", &child))?;
            let ft = cmd.file_type();
            let entry = if ft.is_dir() {
                let (tree, meta) = self.dir(&child, &cmd, depth + 1)?;
                Node::Dir { tree, meta }
            } else if ft.is_file() {
                Node::File(self.file(&child, &cmd)?)
            } else if ft.is_symlink() {
                Node::File(self.symlink(&child, &cmd)?)
            } else {
                use std::os::unix::fs::FileTypeExt;
                let kind = if ft.is_fifo() {
                    "FIFO"
                } else if ft.is_socket() {
                    "socket"
                } else if ft.is_block_device() {
                    "block device"
                } else {
                    "character device"
                };
                return Err(BuildError::UnsupportedType { path: child, kind });
            };
            entries.push((name, entry));
        }
        let tree = write_dirtree(&mut self.txn, path, &entries, &mut self.stats)?;
        let (uid, gid) = self.owner(md);
        let xattrs = self.xattrs(path)?;
        let meta = write_dirmeta(
            &mut self.txn,
            path,
            md.mode() & S_IPERM,
            uid,
            gid,
            &xattrs,
            &mut self.stats,
        )?;
        Ok((tree, meta))
    }

    fn symlink(&mut self, path: &Path, md: &fs::Metadata) -> Result<ObjectId, BuildError> {
        let target = fs::read_link(path).map_err(io_at("read symlink", path))?;
        let (uid, gid) = self.owner(md);
        let xattrs = self.xattrs(path)?;
        self.stats.files += 1;
        let id = write_symlink(
            &mut self.txn,
            path,
            target.as_os_str().as_bytes(),
            uid,
            gid,
            &xattrs,
            &mut self.stats,
        )?;
        (self.progress)(&self.stats);
        Ok(id)
    }

    fn file(&mut self, path: &Path, md: &fs::Metadata) -> Result<ObjectId, BuildError> {
        let (uid, gid) = self.owner(md);
        let xattrs = self.xattrs(path)?;
        let mut f = OpenOptions::new()
            .read(true)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(path)
            .map_err(io_at("open", path))?;
        let size = f.metadata().map_err(io_at("stat", path))?.len();
        let meta = file_meta(
            path,
            S_IFREG | (md.mode() & S_IPERM),
            uid,
            gid,
            size,
            b"",
            &xattrs,
        )?;
        // First pass: hash only, so an object already in the repository costs no write.
        let id = hash_stream(&meta, &mut f, size, path, None)?;
        self.stats.files += 1;
        self.stats.bytes += size;
        if !self.txn.has_object(ObjectKind::File, &id)? {
            let (mut tmp, tmp_path) = self.txn.repo().create_tmp("build")?;
            let copied = (|| {
                // The same descriptor (opened with O_NOFOLLOW), from the start again.
                f.seek(SeekFrom::Start(0)).map_err(io_at("rewind", path))?;
                let again = hash_stream(&meta, &mut f, size, path, Some(&mut tmp))?;
                if again != id {
                    return Err(BuildError::Changed(path.to_path_buf()));
                }
                Ok(())
            })();
            if let Err(e) = copied {
                let _ = fs::remove_file(&tmp_path);
                return Err(e);
            }
            self.txn
                .publish_file_object(&id, &meta, Some((tmp, tmp_path)))?;
            self.stats.new_objects += 1;
        }
        (self.progress)(&self.stats);
        Ok(id)
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn mem_tree_rejects_bad_names() {
        let d = tempfile::tempdir().unwrap();
        let repo = Repo::init(&d.path().join("r")).unwrap();
        for bad in [&b".."[..], b"a/b", b"a\0b", b"", b"."] {
            let t = MemDir::new().with(
                bad,
                MemNode::File {
                    mode: 0o644,
                    content: b"x".to_vec(),
                    xattrs: vec![],
                },
            );
            assert!(
                matches!(build_mem(&repo, &t), Err(BuildError::BadName { .. })),
                "{bad:?}"
            );
            let nested = MemDir::new().with(
                b"ok",
                MemNode::Dir(MemDir::new().with(bad, MemNode::Dir(MemDir::new()))),
            );
            assert!(
                matches!(build_mem(&repo, &nested), Err(BuildError::BadName { .. })),
                "{bad:?}"
            );
        }
        let dup = MemDir::new().with(b"a", MemNode::Dir(MemDir::new())).with(
            b"a",
            MemNode::Symlink {
                target: b"x".to_vec(),
            },
        );
        assert!(matches!(
            build_mem(&repo, &dup),
            Err(BuildError::DuplicateName { .. })
        ));
        // Nothing was written for the refused trees except leaf objects, and no dirtree names
        // a bad entry: every dirtree in the repository parses.
        let ok = MemDir::new().with(
            b"f",
            MemNode::File {
                mode: 0o755,
                content: b"hi".to_vec(),
                xattrs: vec![],
            },
        );
        let (root, stats) = build_mem(&repo, &ok).unwrap();
        assert!(repo.read_dirtree(&root.tree).is_ok());
        assert_eq!(stats.files, 1);
    }

    #[test]
    fn build_dir_is_deterministic_and_dedups() {
        let d = tempfile::tempdir().unwrap();
        let repo = Repo::init(&d.path().join("r")).unwrap();
        let src = d.path().join("src");
        fs::create_dir_all(src.join("a/b")).unwrap();
        fs::write(src.join("a/b/f"), b"content").unwrap();
        fs::write(src.join("g"), b"content").unwrap();
        std::os::unix::fs::symlink("a/b/f", src.join("link")).unwrap();
        let opts = BuildOptions::default();
        let (r1, s1) = build_dir(&repo, &src, &opts, &mut |_| {}).unwrap();
        let (r2, s2) = build_dir(&repo, &src, &opts, &mut |_| {}).unwrap();
        assert_eq!(r1, r2);
        assert_eq!(s1.files, 3);
        assert!(s1.new_objects > 0);
        assert_eq!(s2.new_objects, 0);
        let set_entries = repo.read_dirtree(&r1.tree).unwrap();
        let names: Vec<&[u8]> = set_entries.iter().map(|e| e.name()).collect();
        assert_eq!(names, vec![&b"a"[..], b"g", b"link"]);
    }
}
