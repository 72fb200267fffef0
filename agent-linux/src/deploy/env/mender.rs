//! Mender's GRUB layout (grub-mender-grubenv): two environment files, each with a lock file
//! saying whether it is being edited; which one GRUB reads, and writing both with Mender's
//! protocol.

use std::path::{Path, PathBuf};

use bootloader_hooks::grub_env::{self, GrubEnv};

use super::read::read_bounded;
use super::{io_err, BootEnvError};
use crate::bootcfg::{BackendKind, BootConfig};
use crate::fsops;

/// Mender's GRUB layout (grub-mender-grubenv): when a GRUB `env` names a directory, it holds
/// `mender_grubenv1/{env,lock}` and `mender_grubenv2/{env,lock}`; `None` otherwise.
pub fn mender_grubenv(cfg: &BootConfig) -> Option<[(PathBuf, PathBuf); 2]> {
    if cfg.kind != BackendKind::Grub || !cfg.env.0.is_dir() {
        return None;
    }
    let pair = |n: u8| {
        let d = cfg.env.0.join(format!("mender_grubenv{n}"));
        (d.join("env"), d.join("lock"))
    };
    Some([pair(1), pair(2)])
}

/// The `editing` value of a Mender lock file; `None` when it cannot be read (GRUB's
/// `editing=invalid`).
fn lock_editing(lock: &Path) -> Option<Vec<u8>> {
    let b = read_bounded(lock, grub_env::DEFAULT_SIZE * 16).ok()?;
    let env = GrubEnv::parse(&b).ok()?;
    let v = env.vars().filter(|(k, _)| *k == b"editing").last()?.1;
    Some(v.to_vec())
}

/// The GRUB environment file the bootloader reads: the one file, or under Mender's layout the
/// one `mender_grub.cfg` uses (04_mender_setup_env_functions_grub.cfg, `mender_check_and_
/// restore_env`): env 1, unless lock 2 is settled (`editing=0`) and lock 1 is not, when GRUB
/// first restores env 1 from env 2.
pub(super) fn grub_file(cfg: &BootConfig) -> Result<PathBuf, BootEnvError> {
    let Some([(env1, lock1), (env2, lock2)]) = mender_grubenv(cfg) else {
        return Ok(cfg.env.0.clone());
    };
    let settled = |l: &Path| lock_editing(l).as_deref() == Some(b"0");
    Ok(if settled(&lock2) && !settled(&lock1) {
        env2
    } else {
        env1
    })
}

/// A Mender lock file saying `editing=<value>`: the existing block with the value's byte
/// flipped in place (what `grub-editenv lock set editing=…` does, so `lock.sha256sum`, the
/// hash of the settled lock, keeps matching), or a fresh block as grub-mender-grubenv's
/// `make-env-and-lock-files` makes it.
pub(super) fn lock_bytes(existing: Option<&[u8]>, value: u8) -> Vec<u8> {
    if let Some((b, i)) = existing.and_then(|b| editing_at(b).map(|i| (b, i))) {
        let mut out = b.to_vec();
        out[i] = value;
        return out;
    }
    let mut out = Vec::with_capacity(grub_env::DEFAULT_SIZE);
    out.extend_from_slice(b"# GRUB Environment Block\nediting=");
    out.push(value);
    out.push(b'\n');
    out.resize(grub_env::DEFAULT_SIZE, b'#');
    out
}

/// The offset of the `0`/`1` of an `editing=` line in a valid GRUB block.
fn editing_at(b: &[u8]) -> Option<usize> {
    GrubEnv::parse(b).ok()?;
    let i = b.windows(11).position(|w| {
        w.starts_with(b"\nediting=") && matches!(w[9], b'0' | b'1') && w[10] == b'\n'
    })?;
    Some(i + 9)
}

/// Writes `block` to both Mender environment files with grub-mender-grubenv-set's protocol
/// (`grub-mender-grubenv-print` lines 227-247): lock 2 `editing=1`, env 2, lock 2
/// `editing=0`, then the same for 1; each file replaced atomically. A lock that had to be
/// made afresh gets its `lock.sha256sum` rewritten.
pub(super) fn write_mender_grubenv(
    files: &[(PathBuf, PathBuf); 2],
    block: &[u8],
) -> Result<(), BootEnvError> {
    for (env, lock) in files.iter().rev() {
        let old = read_bounded(lock, grub_env::DEFAULT_SIZE * 16).ok();
        let settled = lock_bytes(old.as_deref(), b'0');
        let fresh = old.as_deref().and_then(editing_at).is_none();
        fsops::write_atomic(lock, &lock_bytes(Some(&settled), b'1'), 0o644)
            .map_err(io_err(lock))?;
        fsops::write_atomic(env, block, 0o644).map_err(io_err(env))?;
        fsops::write_atomic(lock, &settled, 0o644).map_err(io_err(lock))?;
        if fresh {
            use sha2::Digest;
            let sum = sha2::Sha256::digest(&settled);
            let hex: String = sum.iter().map(|b| format!("{b:02x}")).collect();
            let path = lock.with_file_name("lock.sha256sum");
            fsops::write_atomic(&path, format!("{hex}  lock\n").as_bytes(), 0o644)
                .map_err(io_err(&path))?;
        }
    }
    Ok(())
}
