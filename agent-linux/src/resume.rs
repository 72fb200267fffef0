//! What a resumable install keeps in `R/state/` between attempts (`docs/RESUME.md`).
//!
//! - `R/state/install.checkpoint`: the installer's [`Checkpoint`] (96 bytes) after the last
//!   verified part, then the objects the completed parts put in place: `u32` LE count, then
//!   per object its kind (1 byte) and id (32 bytes). Written atomically (temp + fsync + rename +
//!   directory fsync) after the objects themselves were made durable and published.
//! - `R/state/install.prefix`: the file's first bytes up to the end of its signature
//!   (`header || superblock || signature`), so that a transfer can resume with a stream that
//!   starts in the middle of the file (`--resume-from-offset`). Only a cache: it is verified
//!   again like any update (signature included) and must be the checkpoint's file.
//!
//! Both are untrusted input: bounded when read, and anything malformed is discarded (the
//! install then starts from byte 0).

use std::fs;
use std::io;
use std::path::PathBuf;

use agent_core::install::{Checkpoint, CHECKPOINT_LEN};
use agent_core::object::{ObjectId, ObjectKind};
use agent_core::wire::{HEADER_LEN, MAX_SUPERBLOCK_LEN, SIGNATURE_LEN};

use crate::repo::{io_err, Repo, RepoError};

/// Name of the checkpoint file in `R/state/`.
pub const CHECKPOINT_FILE: &str = "install.checkpoint";
/// Name of the signed-prefix file in `R/state/`.
pub const PREFIX_FILE: &str = "install.prefix";
/// The most objects a checkpoint file may list (4 M objects, 132 MiB: far beyond any update).
const MAX_OBJECTS: usize = 1 << 22;
/// The longest prefix a file can have: header, superblock, algorithm byte, signature.
pub const MAX_PREFIX_LEN: usize = HEADER_LEN + MAX_SUPERBLOCK_LEN + 1 + SIGNATURE_LEN;

/// A checkpoint as kept on disk, with the objects of the completed parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Saved {
    /// The installer's checkpoint.
    pub checkpoint: Checkpoint,
    /// Objects written or reused by the completed parts (to check they are still there).
    pub objects: Vec<(ObjectKind, ObjectId)>,
}

impl Saved {
    /// The file's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(CHECKPOINT_LEN + 4 + self.objects.len() * 33);
        b.extend_from_slice(&self.checkpoint.to_bytes());
        b.extend_from_slice(&(self.objects.len() as u32).to_le_bytes());
        for (k, id) in &self.objects {
            b.push(k.code());
            b.extend_from_slice(&id.0);
        }
        b
    }

    /// Decodes [`Saved::to_bytes`]; `None` when the bytes are not exactly that.
    pub fn from_bytes(b: &[u8]) -> Option<Saved> {
        let checkpoint = Checkpoint::from_bytes(b.get(..CHECKPOINT_LEN)?).ok()?;
        let n = u32::from_le_bytes(b.get(CHECKPOINT_LEN..CHECKPOINT_LEN + 4)?.try_into().ok()?);
        let rest = &b[CHECKPOINT_LEN + 4..];
        let n = usize::try_from(n).ok().filter(|&n| n <= MAX_OBJECTS)?;
        if rest.len() != n.checked_mul(33)? {
            return None;
        }
        let mut objects = Vec::with_capacity(n);
        for rec in rest.chunks_exact(33) {
            let kind = ObjectKind::from_code(rec[0]);
            if matches!(kind, ObjectKind::Unknown(_) | ObjectKind::Commit) {
                return None;
            }
            let mut id = [0u8; 32];
            id.copy_from_slice(&rec[1..]);
            objects.push((kind, ObjectId(id)));
        }
        Some(Saved {
            checkpoint,
            objects,
        })
    }
}

fn state_path(repo: &Repo, name: &str) -> PathBuf {
    repo.path().join("state").join(name)
}

/// Reads at most `max` bytes of `R/state/<name>`; `None` when it does not exist or is longer.
fn read_bounded(repo: &Repo, name: &str, max: usize) -> Result<Option<Vec<u8>>, RepoError> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let p = state_path(repo, name);
    // A planted symlink is not followed.
    let f = match fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(&p)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err("open", &p)(e)),
    };
    let mut b = Vec::new();
    f.take(max as u64 + 1)
        .read_to_end(&mut b)
        .map_err(io_err("read", &p))?;
    Ok((b.len() <= max).then_some(b))
}

/// The saved checkpoint, if there is a well-formed one. A malformed file is removed.
pub fn load(repo: &Repo) -> Result<Option<Saved>, RepoError> {
    let max = CHECKPOINT_LEN + 4 + MAX_OBJECTS * 33;
    let Some(b) = read_bounded(repo, CHECKPOINT_FILE, max)? else {
        return Ok(None);
    };
    match Saved::from_bytes(&b) {
        Some(s) => Ok(Some(s)),
        None => {
            log::warn!("the saved install checkpoint is malformed: it is discarded");
            discard(repo)?;
            Ok(None)
        }
    }
}

/// Records `saved` atomically (temp + fsync + rename + directory fsync).
pub fn save(repo: &Repo, saved: &Saved) -> Result<(), RepoError> {
    let dir = repo.path().join("state");
    crate::fsops::mkdir_all(&dir, 0o755).map_err(io_err("create", &dir))?;
    repo.write_atomic(&state_path(repo, CHECKPOINT_FILE), &saved.to_bytes())
}

/// Records `checkpoint` with the objects of the completed parts: those listed by the
/// checkpoint already in `R/state/` when `earlier` (this install's previous checkpoint, or the
/// one it resumed from), then `objects` (those completed since). Only the objects since the
/// last checkpoint stay in memory during an install; the earlier ones are copied from the file
/// as they are. Written atomically like [`save`]. Fails when `earlier` and that file is gone or
/// malformed: a checkpoint that forgot objects would let a resumed install skip parts whose
/// objects are no longer there.
pub fn save_more<'a>(
    repo: &Repo,
    checkpoint: &Checkpoint,
    earlier: bool,
    objects: impl IntoIterator<Item = &'a (ObjectKind, ObjectId)>,
) -> Result<(), RepoError> {
    let head = CHECKPOINT_LEN + 4;
    let old = if earlier {
        let max = head + MAX_OBJECTS * 33;
        read_bounded(repo, CHECKPOINT_FILE, max)?
            .filter(|b| Saved::from_bytes(b).is_some())
            .ok_or(RepoError::Sequence(
                "the install's previous checkpoint is gone or malformed",
            ))?
    } else {
        Vec::new()
    };
    let old_records = old.get(head..).unwrap_or(&[]);
    let mut b = Vec::with_capacity(head + old_records.len());
    b.extend_from_slice(&checkpoint.to_bytes());
    b.extend_from_slice(&[0; 4]);
    b.extend_from_slice(old_records);
    drop(old);
    for (k, id) in objects {
        b.push(k.code());
        b.extend_from_slice(&id.0);
    }
    let count = (b.len() - head) / 33;
    if count > MAX_OBJECTS {
        return Err(RepoError::Sequence("a checkpoint lists too many objects"));
    }
    b[CHECKPOINT_LEN..head].copy_from_slice(&(count as u32).to_le_bytes());
    let dir = repo.path().join("state");
    crate::fsops::mkdir_all(&dir, 0o755).map_err(io_err("create", &dir))?;
    repo.write_atomic(&state_path(repo, CHECKPOINT_FILE), &b)
}

/// Records the file's signed prefix (`header || superblock || signature`).
pub fn save_prefix(repo: &Repo, prefix: &[u8]) -> Result<(), RepoError> {
    let dir = repo.path().join("state");
    crate::fsops::mkdir_all(&dir, 0o755).map_err(io_err("create", &dir))?;
    repo.write_atomic(&state_path(repo, PREFIX_FILE), prefix)
}

/// The saved prefix, if any (at most [`MAX_PREFIX_LEN`] bytes).
pub fn load_prefix(repo: &Repo) -> Result<Option<Vec<u8>>, RepoError> {
    read_bounded(repo, PREFIX_FILE, MAX_PREFIX_LEN)
}

/// Removes the checkpoint and the prefix; true if there was anything to remove.
pub fn discard(repo: &Repo) -> Result<bool, RepoError> {
    let mut any = false;
    for name in [CHECKPOINT_FILE, PREFIX_FILE] {
        let p = state_path(repo, name);
        any |= crate::fsops::remove_file_if_exists(&p).map_err(io_err("remove", &p))?;
    }
    if any {
        crate::repo::sync_dir(&repo.path().join("state"))?;
    }
    Ok(any)
}

/// Whether every object of `saved` is in the repository (a file object's `.filemeta` side
/// file, when it needs one, is published before the object).
pub fn objects_present(repo: &Repo, saved: &Saved) -> Result<bool, RepoError> {
    for (kind, id) in &saved.objects {
        if !repo.has_object(*kind, id)? {
            return Ok(false);
        }
    }
    Ok(true)
}

#[cfg(test)]
mod test {
    use super::*;

    fn saved() -> Saved {
        Saved {
            checkpoint: Checkpoint {
                file: [1; 32],
                target: ObjectId([2; 32]),
                offset: 1234,
                parts: 3,
                objects: 2,
            },
            objects: vec![
                (ObjectKind::File, ObjectId([3; 32])),
                (ObjectKind::DirTree, ObjectId([4; 32])),
            ],
        }
    }

    #[test]
    fn round_trip_and_malformed_files_are_refused() {
        let s = saved();
        let b = s.to_bytes();
        assert_eq!(b.len(), 96 + 4 + 66);
        assert_eq!(Saved::from_bytes(&b), Some(s));
        for len in 0..b.len() {
            assert_eq!(Saved::from_bytes(&b[..len]), None, "cut to {len}");
        }
        let mut long = b.clone();
        long.push(0);
        assert_eq!(Saved::from_bytes(&long), None);
        let mut bad_kind = b.clone();
        bad_kind[100] = 4;
        assert_eq!(Saved::from_bytes(&bad_kind), None);
        let mut bad_crc = b;
        bad_crc[20] ^= 1;
        assert_eq!(Saved::from_bytes(&bad_crc), None);
    }

    #[test]
    fn save_load_discard_and_a_malformed_file_is_removed() {
        let d = tempfile::tempdir().unwrap();
        let repo = Repo::init(&d.path().join("r")).unwrap();
        assert_eq!(load(&repo).unwrap(), None);
        save(&repo, &saved()).unwrap();
        save_prefix(&repo, b"prefix").unwrap();
        assert_eq!(load(&repo).unwrap(), Some(saved()));
        assert_eq!(load_prefix(&repo).unwrap().as_deref(), Some(&b"prefix"[..]));
        assert!(discard(&repo).unwrap());
        assert!(!discard(&repo).unwrap());
        fs::write(state_path(&repo, CHECKPOINT_FILE), b"garbage").unwrap();
        assert_eq!(load(&repo).unwrap(), None);
        assert!(!state_path(&repo, CHECKPOINT_FILE).exists());
    }
}
