//! Reading an OSTree repository natively: its `config` (the mode), its refs, and its
//! commit, dirtree, dirmeta and file objects, each verified against its checksum as it is
//! read.
//!
//! The object formats are OSTree's (`src/libostree/ostree-core.h`): GVariants whose integers
//! OSTree stores big-endian.
//!
//! | object | GVariant |
//! | --- | --- |
//! | commit | `(a{sv}aya(say)sstayay)`: metadata, parent, related, subject, body, timestamp, root dirtree, root dirmeta |
//! | dirtree | `(a(say)a(sayay))`: files (name, checksum), directories (name, dirtree, dirmeta) |
//! | dirmeta | `(uuua(ayay))`: uid, gid, mode, xattrs |
//! | archive `.filez` | `u32` BE header length, 4 zero bytes, header `(tuuuusa(ayay))` (size, uid, gid, mode, rdev, symlink target, xattrs), then the content as raw deflate |
//! | bare-user `.file` | the content (a symlink's target for a symlink) in a regular file; `(uuua(ayay))` (uid, gid, mode, xattrs) in its `user.ostreemeta` xattr |
//! | bare `.file` | the file or symlink itself, with its owner, mode and xattrs |
//!
//! A metadata object's checksum is the SHA-256 of its bytes. A file object's is the SHA-256
//! of the length-prefixed header `(uuuusa(ayay))` (`u32` BE length, 4 zero bytes, the
//! GVariant; xattrs sorted by name, as OSTree 2023.2 and later write them, or in the order
//! stored, as older versions did) followed by the content of a regular file.
//!
//! Everything here is untrusted input: lengths are bounded before they are used, a
//! decompressed file must inflate to exactly its declared size, and no GVariant is trusted
//! before its object's checksum matched (the parsers of the `gvariant` crate never panic on
//! any bytes; data not in normal form reads as default values, which the checksum then
//! refuses).

mod file;

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use agent_core::object::ObjectId;
use gvariant::aligned_bytes::AlignedBuf;
use gvariant::{gv, Marker, Structure};
use sha2::{Digest, Sha256};

use super::ImportError;

/// Largest metadata object (commit, dirtree, dirmeta) read, in bytes: a dirtree of a
/// directory with a few hundred thousand entries.
pub const MAX_METADATA_OBJECT: u64 = 64 << 20;
/// Largest file header (archive header, bare-user `user.ostreemeta`) read, in bytes.
pub const MAX_FILE_HEADER: u64 = 1 << 20;
/// Longest symlink target OSTree can hold (`PATH_MAX`), in bytes.
pub const MAX_OSTREE_SYMLINK: u64 = 4096;
/// Largest `config` file read, in bytes.
pub const MAX_CONFIG: u64 = 1 << 20;
/// Deepest nesting of `refs/heads` followed.
pub const MAX_REF_DEPTH: usize = 64;

const S_IFMT: u32 = 0o170000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;
const BUF: usize = 64 * 1024;

/// How an OSTree repository stores its objects (`mode=` in its `config`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// `archive` (a.k.a. `archive-z2`): compressed `.filez` objects, what servers publish.
    Archive,
    /// `bare-user`: content in plain files, metadata in the `user.ostreemeta` xattr.
    BareUser,
    /// `bare`: the files themselves, with their owners, modes and xattrs.
    Bare,
}

impl Mode {
    /// The name OSTree's `config` uses.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Archive => "archive",
            Mode::BareUser => "bare-user",
            Mode::Bare => "bare",
        }
    }
}

/// Which kind of OSTree object, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OstreeKind {
    /// A commit.
    Commit,
    /// A directory listing.
    DirTree,
    /// A directory's metadata.
    DirMeta,
    /// A file or symlink.
    File,
}

impl OstreeKind {
    /// The object file's suffix in this repository mode.
    fn suffix(self, mode: Mode) -> &'static str {
        match (self, mode) {
            (OstreeKind::Commit, _) => "commit",
            (OstreeKind::DirTree, _) => "dirtree",
            (OstreeKind::DirMeta, _) => "dirmeta",
            (OstreeKind::File, Mode::Archive) => "filez",
            (OstreeKind::File, _) => "file",
        }
    }
}

impl std::fmt::Display for OstreeKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            OstreeKind::Commit => "commit",
            OstreeKind::DirTree => "dirtree",
            OstreeKind::DirMeta => "dirmeta",
            OstreeKind::File => "file",
        })
    }
}

/// An OSTree commit, verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OstreeCommit {
    /// Its checksum.
    pub id: ObjectId,
    /// Its parent, if it names one (which may be absent from the repository).
    pub parent: Option<ObjectId>,
    /// The `version` key of its metadata (empty without one).
    pub version: String,
    /// Subject line.
    pub subject: String,
    /// Body.
    pub body: String,
    /// Seconds since the epoch, UTC.
    pub timestamp: u64,
    /// Root dirtree.
    pub root_tree: ObjectId,
    /// Root dirmeta.
    pub root_meta: ObjectId,
}

/// An OSTree dirtree, verified: names are raw bytes, not yet checked as path components.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OstreeDirTree {
    /// Files and symlinks: name, file object.
    pub files: Vec<(Vec<u8>, ObjectId)>,
    /// Subdirectories: name, dirtree, dirmeta.
    pub dirs: Vec<(Vec<u8>, ObjectId, ObjectId)>,
}

/// An OSTree dirmeta, verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OstreeDirMeta {
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Mode, with the file type bits.
    pub mode: u32,
    /// Extended attributes (names without OSTree's trailing NUL).
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// A file object's metadata, from its header (archive), `user.ostreemeta` (bare-user) or the
/// inode (bare).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileMeta {
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Mode, with the file type bits (regular file or symlink).
    pub mode: u32,
    /// Content size (0 for a symlink).
    pub size: u64,
    /// Symlink target (empty for a regular file).
    pub target: Vec<u8>,
    /// Extended attributes as OSTree stores them: names with their trailing NUL, in the
    /// stored order.
    pub raw_xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl FileMeta {
    /// Whether it is a symlink.
    pub fn is_symlink(&self) -> bool {
        self.mode & S_IFMT == S_IFLNK
    }

    /// The xattrs with names as the kernel knows them (without the trailing NUL).
    pub fn xattrs(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.raw_xattrs
            .iter()
            .map(|(n, v)| (strip_nul(n).to_vec(), v.clone()))
            .collect()
    }
}

/// Where [`OstreeRepo::read_file`] delivers a file object.
pub trait FileSink {
    /// The object's metadata, before any content.
    fn start(&mut self, meta: &FileMeta) -> Result<(), ImportError>;
    /// The next bytes of a regular file's content.
    fn data(&mut self, chunk: &[u8]) -> io::Result<()>;
}

/// An OSTree repository opened for reading.
#[derive(Debug)]
pub struct OstreeRepo {
    root: PathBuf,
    mode: Mode,
}

fn io_at<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> ImportError + 'a {
    move |source| ImportError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// Opens `path` for reading if it is a regular file: never through a symlink, and without
/// blocking on a FIFO or a device planted where a file belongs.
fn open_regular(path: &Path) -> Result<File, ImportError> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = fs::OpenOptions::new()
        .read(true)
        .custom_flags((rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK).bits() as i32)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) {
                ImportError::NotAFile(path.to_path_buf())
            } else {
                io_at("open", path)(e)
            }
        })?;
    let md = f.metadata().map_err(io_at("stat", path))?;
    if !md.is_file() {
        return Err(ImportError::NotAFile(path.to_path_buf()));
    }
    Ok(f)
}

/// Reads at most `max` bytes of `path`; a longer file is refused.
fn read_bounded(path: &Path, max: u64, what: &'static str) -> Result<Vec<u8>, ImportError> {
    let f = open_regular(path)?;
    let mut buf = Vec::new();
    f.take(max + 1)
        .read_to_end(&mut buf)
        .map_err(io_at("read", path))?;
    if buf.len() as u64 > max {
        return Err(ImportError::TooLarge {
            what,
            path: path.to_path_buf(),
            max,
        });
    }
    Ok(buf)
}

fn strip_nul(name: &[u8]) -> &[u8] {
    name.strip_suffix(b"\0").unwrap_or(name)
}

fn checksum_of(bytes: &[u8]) -> Option<ObjectId> {
    <[u8; 32]>::try_from(bytes).ok().map(ObjectId)
}

impl OstreeRepo {
    /// Opens the repository at `path`: reads `config` for the mode and refuses the modes this
    /// importer does not read (`bare-user-only`, `bare-split-xattrs`).
    pub fn open(path: &Path) -> Result<OstreeRepo, ImportError> {
        let config = path.join("config");
        if !config.is_file() || !path.join("objects").is_dir() {
            return Err(ImportError::NotOstreeRepo(path.to_path_buf()));
        }
        let text = read_bounded(&config, MAX_CONFIG, "config file")?;
        let text = String::from_utf8_lossy(&text);
        let mode = match config_value(&text, "core", "mode").unwrap_or("bare") {
            "archive" | "archive-z2" => Mode::Archive,
            "bare-user" => Mode::BareUser,
            "bare" => Mode::Bare,
            other => {
                return Err(ImportError::UnsupportedMode {
                    path: path.to_path_buf(),
                    mode: other.to_string(),
                })
            }
        };
        Ok(OstreeRepo {
            root: path.to_path_buf(),
            mode,
        })
    }

    /// The repository's mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The repository's directory.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// Where an object lives: `objects/ab/cdef….<suffix>`.
    pub fn object_path(&self, kind: OstreeKind, id: &ObjectId) -> PathBuf {
        let hex = id.to_string();
        self.root.join("objects").join(&hex[..2]).join(format!(
            "{}.{}",
            &hex[2..],
            kind.suffix(self.mode)
        ))
    }

    /// Every ref under `refs/heads`, sorted by name.
    pub fn list_refs(&self) -> Result<Vec<(String, ObjectId)>, ImportError> {
        let base = self.root.join("refs/heads");
        let mut out = Vec::new();
        let mut stack = vec![(base, String::new(), 0usize)];
        while let Some((dir, prefix, depth)) = stack.pop() {
            let rd = match fs::read_dir(&dir) {
                Ok(rd) => rd,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_at("read directory", &dir)(e)),
            };
            for e in rd {
                let e = e.map_err(io_at("read directory", &dir))?;
                let name = e.file_name().to_string_lossy().into_owned();
                let full = if prefix.is_empty() {
                    name
                } else {
                    format!("{prefix}/{name}")
                };
                let ft = e.file_type().map_err(io_at("stat", &e.path()))?;
                if ft.is_dir() {
                    if depth >= MAX_REF_DEPTH {
                        return Err(ImportError::TooLarge {
                            what: "nesting of refs/heads",
                            path: e.path(),
                            max: MAX_REF_DEPTH as u64,
                        });
                    }
                    stack.push((e.path(), full, depth + 1));
                } else if ft.is_file() {
                    let id = self.read_ref_file(&e.path(), &full)?;
                    out.push((full, id));
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// The commit `refs/heads/<name>` points to.
    pub fn read_ref(&self, name: &str) -> Result<ObjectId, ImportError> {
        if name.is_empty()
            || name
                .split('/')
                .any(|c| c.is_empty() || c == "." || c == "..")
        {
            return Err(ImportError::NoSuchRef {
                repo: self.root.clone(),
                name: name.to_string(),
            });
        }
        let p = self.root.join("refs/heads").join(name);
        if !p.is_file() {
            return Err(ImportError::NoSuchRef {
                repo: self.root.clone(),
                name: name.to_string(),
            });
        }
        self.read_ref_file(&p, name)
    }

    fn read_ref_file(&self, path: &Path, name: &str) -> Result<ObjectId, ImportError> {
        let text = read_bounded(path, 1024, "ref file")?;
        let text = String::from_utf8_lossy(&text);
        ObjectId::from_hex(text.trim()).map_err(|_| ImportError::BadRef {
            name: name.to_string(),
            path: path.to_path_buf(),
        })
    }

    /// Whether a commit object is present.
    pub fn has_commit(&self, id: &ObjectId) -> bool {
        self.object_path(OstreeKind::Commit, id).is_file()
    }

    /// Reads a metadata object and checks its checksum.
    fn read_metadata(&self, kind: OstreeKind, id: &ObjectId) -> Result<AlignedBuf, ImportError> {
        let path = self.object_path(kind, id);
        let bytes = match read_bounded(&path, MAX_METADATA_OBJECT, "metadata object") {
            Err(ImportError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                return Err(ImportError::MissingObject {
                    kind,
                    id: *id,
                    path,
                })
            }
            r => r?,
        };
        let found = ObjectId(Sha256::digest(&bytes).into());
        if found != *id {
            return Err(ImportError::ChecksumMismatch {
                kind,
                id: *id,
                found,
                path,
            });
        }
        Ok(AlignedBuf::from(bytes))
    }

    fn corrupt(&self, kind: OstreeKind, id: &ObjectId, problem: &'static str) -> ImportError {
        ImportError::CorruptObject {
            kind,
            id: *id,
            path: self.object_path(kind, id),
            problem,
        }
    }

    /// Reads and verifies a commit.
    pub fn read_commit(&self, id: &ObjectId) -> Result<OstreeCommit, ImportError> {
        let buf = self.read_metadata(OstreeKind::Commit, id)?;
        let (meta, parent, _related, subject, body, timestamp, root_tree, root_meta) =
            gv!("(a{sv}aya(say)sstayay)").cast(buf.as_ref()).to_tuple();
        let mut version = String::new();
        for entry in meta.iter() {
            let (key, value) = entry.to_tuple();
            if key.to_str() == "version" {
                if let Some(v) = value.get(gv!("s")) {
                    version = v.to_str().to_string();
                }
            }
        }
        let bad = |problem| self.corrupt(OstreeKind::Commit, id, problem);
        let parent = match parent.len() {
            0 => None,
            _ => Some(checksum_of(parent).ok_or_else(|| bad("its parent is not a checksum"))?),
        };
        Ok(OstreeCommit {
            id: *id,
            parent,
            version,
            subject: subject.to_str().to_string(),
            body: body.to_str().to_string(),
            timestamp: u64::from_be(*timestamp),
            root_tree: checksum_of(root_tree)
                .ok_or_else(|| bad("its root dirtree is not a checksum"))?,
            root_meta: checksum_of(root_meta)
                .ok_or_else(|| bad("its root dirmeta is not a checksum"))?,
        })
    }

    /// Reads and verifies a dirtree.
    pub fn read_dirtree(&self, id: &ObjectId) -> Result<OstreeDirTree, ImportError> {
        let buf = self.read_metadata(OstreeKind::DirTree, id)?;
        let (files, dirs) = gv!("(a(say)a(sayay))").cast(buf.as_ref()).to_tuple();
        let bad = |problem| self.corrupt(OstreeKind::DirTree, id, problem);
        let mut out = OstreeDirTree {
            files: Vec::with_capacity(files.len()),
            dirs: Vec::with_capacity(dirs.len()),
        };
        for f in files.iter() {
            let (name, cs) = f.to_tuple();
            let cs = checksum_of(cs).ok_or_else(|| bad("a file's checksum is not 32 bytes"))?;
            out.files
                .push((name.as_bytes_non_conformant().to_vec(), cs));
        }
        for d in dirs.iter() {
            let (name, tree, meta) = d.to_tuple();
            let tree =
                checksum_of(tree).ok_or_else(|| bad("a directory's dirtree is not 32 bytes"))?;
            let meta =
                checksum_of(meta).ok_or_else(|| bad("a directory's dirmeta is not 32 bytes"))?;
            out.dirs
                .push((name.as_bytes_non_conformant().to_vec(), tree, meta));
        }
        Ok(out)
    }

    /// Reads and verifies a dirmeta.
    pub fn read_dirmeta(&self, id: &ObjectId) -> Result<OstreeDirMeta, ImportError> {
        let buf = self.read_metadata(OstreeKind::DirMeta, id)?;
        let (uid, gid, mode, xattrs) = gv!("(uuua(ayay))").cast(buf.as_ref()).to_tuple();
        Ok(OstreeDirMeta {
            uid: u32::from_be(*uid),
            gid: u32::from_be(*gid),
            mode: u32::from_be(*mode),
            xattrs: xattrs
                .iter()
                .map(|x| {
                    let (n, v) = x.to_tuple();
                    (strip_nul(n).to_vec(), v.to_vec())
                })
                .collect(),
        })
    }
}

/// The value of `key` in `[section]` of an INI text (GLib's key file format, as OSTree's
/// `config` is written): the last one wins, as in GLib.
fn config_value<'a>(text: &'a str, section: &str, key: &str) -> Option<&'a str> {
    let mut current = "";
    let mut found = None;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = s;
        } else if let Some((k, v)) = line.split_once('=') {
            if current == section && k.trim() == key {
                found = Some(v.trim());
            }
        }
    }
    found
}

/// Synthetic OSTree repositories for tests: objects written as OSTree writes them, so that
/// trees no `ostree commit` would make (a `..` entry, duplicate names) can be fed to the
/// importer.
#[cfg(test)]
pub(crate) mod fixture {
    use gvariant::VariantWrap;

    use super::file::file_header;
    use super::*;

    /// An empty archive repository at `dir`.
    pub fn archive_repo(dir: &Path) -> OstreeRepo {
        fs::create_dir_all(dir.join("objects")).unwrap();
        fs::write(
            dir.join("config"),
            "[core]\nrepo_version=1\nmode=archive-z2\n",
        )
        .unwrap();
        OstreeRepo::open(dir).unwrap()
    }

    /// Writes a metadata object; returns its checksum.
    pub fn metadata(repo: &OstreeRepo, kind: OstreeKind, bytes: &[u8]) -> ObjectId {
        let id = ObjectId(Sha256::digest(bytes).into());
        let p = repo.object_path(kind, &id);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, bytes).unwrap();
        id
    }

    /// A regular file object (archive): header listing `stored` xattrs, checksum over the
    /// header listing `hashed`.
    pub fn file(
        repo: &OstreeRepo,
        content: &[u8],
        mode: u32,
        stored: &[(Vec<u8>, Vec<u8>)],
        hashed: &[(Vec<u8>, Vec<u8>)],
    ) -> ObjectId {
        let meta = FileMeta {
            uid: 1000,
            gid: 1001,
            mode,
            size: content.len() as u64,
            target: Vec::new(),
            raw_xattrs: hashed.to_vec(),
        };
        let mut h = Sha256::new();
        h.update(file_header(&meta, "", hashed));
        h.update(content);
        let id = ObjectId(h.finalize().into());
        let x: Vec<(&[u8], &[u8])> = stored
            .iter()
            .map(|(n, v)| (n.as_slice(), v.as_slice()))
            .collect();
        let header = gv!("(tuuuusa(ayay))").serialize_to_vec(&(
            meta.size.to_be(),
            meta.uid.to_be(),
            meta.gid.to_be(),
            meta.mode.to_be(),
            0u32,
            "",
            &x,
        ));
        let mut bytes = (header.len() as u32).to_be_bytes().to_vec();
        bytes.extend_from_slice(&[0; 4]);
        bytes.extend_from_slice(&header);
        bytes.extend_from_slice(&miniz_oxide::deflate::compress_to_vec(content, 9));
        let path = repo.object_path(OstreeKind::File, &id);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, bytes).unwrap();
        id
    }

    /// A dirmeta object: root-owned directory with `perm`.
    pub fn dirmeta(repo: &OstreeRepo, perm: u32) -> ObjectId {
        let none: Vec<(&[u8], &[u8])> = Vec::new();
        let b =
            gv!("(uuua(ayay))").serialize_to_vec(&(0u32, 0u32, (0o040000 | perm).to_be(), &none));
        metadata(repo, OstreeKind::DirMeta, &b)
    }

    /// A dirtree object.
    pub fn dirtree(
        repo: &OstreeRepo,
        files: &[(&str, ObjectId)],
        dirs: &[(&str, ObjectId, ObjectId)],
    ) -> ObjectId {
        let f: Vec<(&str, &[u8])> = files.iter().map(|(n, id)| (*n, &id.0[..])).collect();
        let d: Vec<(&str, &[u8], &[u8])> = dirs
            .iter()
            .map(|(n, t, m)| (*n, &t.0[..], &m.0[..]))
            .collect();
        let b = gv!("(a(say)a(sayay))").serialize_to_vec(&(&f, &d));
        metadata(repo, OstreeKind::DirTree, &b)
    }

    /// A commit object with a `version`, and `refs/heads/<name>` pointing at it.
    #[allow(clippy::too_many_arguments)]
    pub fn commit(
        repo: &OstreeRepo,
        name: &str,
        parent: Option<ObjectId>,
        version: &str,
        subject: &str,
        timestamp: u64,
        root_tree: ObjectId,
        root_meta: ObjectId,
    ) -> ObjectId {
        let meta = [("version", VariantWrap(gv!("s"), version))];
        let parent: &[u8] = match &parent {
            Some(p) => &p.0[..],
            None => &[],
        };
        let related: Vec<(&str, &[u8])> = Vec::new();
        let b = gv!("(a{sv}aya(say)sstayay)").serialize_to_vec(&(
            &meta[..],
            parent,
            &related,
            subject,
            "",
            timestamp.to_be(),
            &root_tree.0[..],
            &root_meta.0[..],
        ));
        let id = metadata(repo, OstreeKind::Commit, &b);
        let r = repo.path().join("refs/heads").join(name);
        fs::create_dir_all(r.parent().unwrap()).unwrap();
        fs::write(r, format!("{id}\n")).unwrap();
        id
    }
}

#[cfg(test)]
mod test {
    use super::file::Inflater;
    use super::*;
    use test_support::rng::{XorShift64, GOLDEN};

    #[test]
    fn config_mode() {
        let t = "[core]\nrepo_version=1\nmode=archive-z2\n[remote \"x\"]\nmode=bare\n";
        assert_eq!(config_value(t, "core", "mode"), Some("archive-z2"));
        assert_eq!(
            config_value("[core]\nrepo_version=1\n", "core", "mode"),
            None
        );
    }

    /// Arbitrary bytes as any of the GVariant types read here: never a panic.
    #[test]
    fn gvariant_garbage_never_panics() {
        let mut rng = XorShift64::from_state(0x2545_f491_4f6c_dd1d);
        let mut seen = 0usize;
        for len in 0..300usize {
            for _ in 0..20 {
                let bytes: Vec<u8> = (0..len)
                    .map(|_| {
                        let x = rng.next_u64();
                        // Many small values so that offsets often land inside the buffer.
                        if x.is_multiple_of(3) {
                            (x >> 8) as u8 % 8
                        } else {
                            (x >> 8) as u8
                        }
                    })
                    .collect();
                let b = AlignedBuf::from(bytes);
                let c = gv!("(a{sv}aya(say)sstayay)").cast(b.as_ref()).to_tuple();
                for e in c.0.iter() {
                    let (k, v) = e.to_tuple();
                    let _ = (k.to_str(), v.get(gv!("s")));
                }
                let _ = c.2.iter().count();
                let (f, d) = gv!("(a(say)a(sayay))").cast(b.as_ref()).to_tuple();
                for e in f.iter() {
                    let (n, c) = e.to_tuple();
                    seen += n.as_bytes_non_conformant().len() + c.len();
                }
                for e in d.iter() {
                    let (n, t, m) = e.to_tuple();
                    seen += n.to_str().len() + t.len() + m.len();
                }
                let m = gv!("(uuua(ayay))").cast(b.as_ref()).to_tuple();
                for e in m.3.iter() {
                    seen += e.to_tuple().0.len() + e.to_tuple().1.len();
                }
                let h = gv!("(tuuuusa(ayay))").cast(b.as_ref()).to_tuple();
                for e in h.6.iter() {
                    seen += e.to_tuple().0.len() + e.to_tuple().1.len();
                }
                seen += h.5.as_bytes_non_conformant().len();
            }
        }
        // Something was read (the loop is not optimized into nothing).
        assert!(seen > 0);
    }

    struct Collect(Vec<u8>);
    impl FileSink for Collect {
        fn start(&mut self, _: &FileMeta) -> Result<(), ImportError> {
            Ok(())
        }
        fn data(&mut self, chunk: &[u8]) -> io::Result<()> {
            self.0.extend_from_slice(chunk);
            Ok(())
        }
    }

    /// A file object's checksum is over its xattrs sorted by name (OSTree 2023.2 and later)
    /// or in the order its header lists them (earlier versions): both are accepted, any
    /// other order is not.
    #[test]
    fn file_checksum_xattr_orders() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir_all(d.path().join("objects")).unwrap();
        fs::write(
            d.path().join("config"),
            "[core]\nrepo_version=1\nmode=archive-z2\n",
        )
        .unwrap();
        let repo = OstreeRepo::open(d.path()).unwrap();
        assert_eq!(repo.mode(), Mode::Archive);
        let x = |n: &str, v: &str| (format!("{n}\0").into_bytes(), v.as_bytes().to_vec());
        let listed = vec![x("user.zz", "1"), x("user.aaa", "2"), x("security.m", "3")];
        let mut sorted = listed.clone();
        sorted.sort();
        let mut other = listed.clone();
        other.swap(0, 1);
        let content = b"content of the file\n".repeat(1000);
        for (hashed, ok) in [(&sorted, true), (&listed, true), (&other, false)] {
            let id = fixture::file(&repo, &content, S_IFREG | 0o4755, &listed, hashed);
            let mut sink = Collect(Vec::new());
            let r = repo.read_file(&id, &mut sink);
            if ok {
                let meta = r.unwrap();
                assert_eq!(sink.0, content);
                assert_eq!(
                    (meta.uid, meta.gid, meta.mode),
                    (1000, 1001, S_IFREG | 0o4755)
                );
                assert_eq!(meta.raw_xattrs, listed);
                assert_eq!(meta.xattrs()[0], (b"user.zz".to_vec(), b"1".to_vec()));
            } else {
                assert!(
                    matches!(r, Err(ImportError::ChecksumMismatch { kind: OstreeKind::File, id: i, .. }) if i == id),
                    "{r:?}"
                );
            }
        }
    }

    /// Objects of random bytes and valid objects with random damage, read as every kind in
    /// archive and bare-user repositories: each read returns (an error, mostly), none panics,
    /// and no file delivers more content than its header declares.
    #[test]
    fn damaged_objects_are_errors_not_panics() {
        let d = tempfile::tempdir().unwrap();
        let archive = d.path().join("archive");
        let bare_user = d.path().join("bare-user");
        for (dir, mode) in [(&archive, "archive-z2"), (&bare_user, "bare-user")] {
            fs::create_dir_all(dir.join("objects")).unwrap();
            fs::write(dir.join("config"), format!("[core]\nmode={mode}\n")).unwrap();
        }
        let archive = OstreeRepo::open(&archive).unwrap();
        let bare_user = OstreeRepo::open(&bare_user).unwrap();
        let x = |n: &str, v: &str| (format!("{n}\0").into_bytes(), v.as_bytes().to_vec());
        let xattrs = vec![x("user.a", "1"), x("security.b", "2")];
        let content = b"some content, some content, some content\n".repeat(40);
        let valid_id = fixture::file(&archive, &content, S_IFREG | 0o4755, &xattrs, &xattrs);
        let valid = fs::read(archive.object_path(OstreeKind::File, &valid_id)).unwrap();
        let mut rng = XorShift64::from_state(GOLDEN);
        let mut oks = 0;
        for round in 0..1000 {
            let r = rng.next_u64();
            let bytes: Vec<u8> = if round % 2 == 0 {
                // A valid archive object with a few bytes changed, cut or extended.
                let mut b = valid.clone();
                for _ in 0..1 + r % 4 {
                    let at = (rng.next_u64() as usize) % b.len();
                    b[at] ^= 1 << (rng.next_u64() % 8);
                }
                match r % 5 {
                    0 => b.truncate((rng.next_u64() as usize) % b.len()),
                    1 => b.extend_from_slice(&b.clone()[..64]),
                    _ => {}
                }
                b
            } else {
                let len = (r % 200) as usize;
                (0..len).map(|_| (rng.next_u64() % 7) as u8 * 37).collect()
            };
            // As metadata objects, named by their checksum so the parsers see them.
            let id = ObjectId(Sha256::digest(&bytes).into());
            for kind in [OstreeKind::Commit, OstreeKind::DirTree, OstreeKind::DirMeta] {
                let p = archive.object_path(kind, &id);
                fs::create_dir_all(p.parent().unwrap()).unwrap();
                fs::write(&p, &bytes).unwrap();
            }
            oks += usize::from(archive.read_commit(&id).is_ok());
            oks += usize::from(archive.read_dirtree(&id).is_ok());
            oks += usize::from(archive.read_dirmeta(&id).is_ok());
            // As an archive file object, and as a bare-user object's metadata xattr.
            let p = archive.object_path(OstreeKind::File, &id);
            fs::write(&p, &bytes).unwrap();
            let mut sink = Counting(0, u64::MAX);
            if let Ok(m) = archive.read_file(&id, &mut sink) {
                assert_eq!(sink.0, m.size);
            }
            assert!(sink.0 <= sink.1, "more content than the header declares");
            let p = bare_user.object_path(OstreeKind::File, &id);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(&p, &content).unwrap();
            rustix::fs::setxattr(
                &p,
                "user.ostreemeta",
                &bytes,
                rustix::fs::XattrFlags::empty(),
            )
            .unwrap();
            let _ = bare_user.read_file(&id, &mut Counting(0, u64::MAX));
        }
        // Random bytes are mostly refused, but some parse (GVariant reads any bytes).
        assert!(oks > 0);
    }

    /// Counts content and remembers the declared size.
    struct Counting(u64, u64);
    impl FileSink for Counting {
        fn start(&mut self, meta: &FileMeta) -> Result<(), ImportError> {
            self.1 = meta.size;
            Ok(())
        }
        fn data(&mut self, chunk: &[u8]) -> io::Result<()> {
            self.0 += chunk.len() as u64;
            Ok(())
        }
    }

    /// A FIFO, a symlink or a directory where an object or the config belongs is refused,
    /// never opened (a FIFO would block the import forever).
    #[test]
    fn non_files_are_refused_without_blocking() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir_all(d.path().join("objects")).unwrap();
        fs::write(d.path().join("config"), "[core]\nmode=archive\n").unwrap();
        let repo = OstreeRepo::open(d.path()).unwrap();
        let id = ObjectId([0xab; 32]);
        let fifo = |p: &Path| {
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            rustix::fs::mknodat(
                rustix::fs::CWD,
                p,
                rustix::fs::FileType::Fifo,
                rustix::fs::Mode::from_raw_mode(0o644),
                0,
            )
            .unwrap();
        };
        fifo(&repo.object_path(OstreeKind::Commit, &id));
        fifo(&repo.object_path(OstreeKind::File, &id));
        fs::create_dir_all(repo.object_path(OstreeKind::DirTree, &id)).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", repo.object_path(OstreeKind::DirMeta, &id))
            .unwrap();
        fs::create_dir_all(d.path().join("refs/heads")).unwrap();
        fifo(&d.path().join("refs/heads/main"));
        let not_a_file = |r: Result<(), ImportError>| {
            assert!(matches!(r, Err(ImportError::NotAFile(_))), "{r:?}");
        };
        not_a_file(repo.read_commit(&id).map(|_| ()));
        not_a_file(repo.read_dirmeta(&id).map(|_| ()));
        assert!(repo.read_ref("main").is_err());
        assert!(repo.list_refs().unwrap().is_empty());
        assert!(repo.read_dirtree(&id).is_err());
        assert!(repo.read_file(&id, &mut Counting(0, 0)).is_err());
        fs::remove_file(d.path().join("config")).unwrap();
        fifo(&d.path().join("config"));
        assert!(OstreeRepo::open(d.path()).is_err());
    }

    /// A deflate stream that inflates to more than declared is cut at the declared size.
    #[test]
    fn inflater_enforces_declared_size() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("z");
        let data = vec![7u8; 100_000];
        fs::write(&p, miniz_oxide::deflate::compress_to_vec(&data, 6)).unwrap();
        let mut ok = Vec::new();
        Inflater::new(File::open(&p).unwrap(), 100_000)
            .read_to_end(&mut ok)
            .unwrap();
        assert_eq!(ok, data);
        let e = Inflater::new(File::open(&p).unwrap(), 99_999)
            .read_to_end(&mut Vec::new())
            .unwrap_err();
        assert!(e.to_string().contains("more than the"), "{e}");
        let mut short = Vec::new();
        Inflater::new(File::open(&p).unwrap(), 200_000)
            .read_to_end(&mut short)
            .unwrap();
        assert_eq!(short.len(), 100_000);
        // Truncated stream.
        let z = miniz_oxide::deflate::compress_to_vec(&data, 6);
        fs::write(&p, &z[..z.len() / 2]).unwrap();
        let e = Inflater::new(File::open(&p).unwrap(), 100_000)
            .read_to_end(&mut Vec::new())
            .unwrap_err();
        assert!(e.to_string().contains("ends before"), "{e}");
    }
}
