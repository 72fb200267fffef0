//! The boot environment's one reader and writer on Linux: every file or device access to a
//! U-Boot or GRUB environment (the deployment commands, `bootenv show`, the tests' bootloader)
//! goes through here. `bootloader-hooks` holds only the pure parts: the encodings
//! (`uboot_env`, `grub_env`), the variable schemes and the boot decision.
//!
//! **Reads are bounded.** A U-Boot copy is exactly `env-size` bytes at its offset (a regular
//! file too short for it is an error, a device that ends early too); a GRUB block is read up
//! to `env-size` bytes (default 16 KiB; a file or device longer than that, such as
//! `/dev/zero`, is refused). Nothing is allocated beyond the configured size, which
//! `agent.conf` bounds to 16 MiB ([`crate::bootcfg::MAX_ENV_SIZE`]).
//!
//! **Writes** go through [`crate::fsops`] (so the power-loss tests can cut them), one atomic
//! update per change, with this discipline:
//!
//! - redundant U-Boot: the copy that is not current is rewritten in place with the next flag
//!   (`uboot_env::next_copy`) and fsynced; a torn write fails its CRC and the current copy
//!   stays in force;
//! - single U-Boot in a regular file of exactly the env size at offset 0, and GRUB: temp file,
//!   fsync, rename, fsync of the directory; a single U-Boot env anywhere else (a device, an
//!   offset) is rewritten in place and fsynced (not atomic: use the redundant layout where
//!   power can fail);
//! - Mender's GRUB layout (`env` a directory with `mender_grubenv1/2`, see
//!   [`mender_grubenv`]): both env files, each between its lock's `editing=1` and `editing=0`,
//!   2 before 1, as `grub-mender-grubenv-set` does; reads take the file GRUB's script uses;
//! - a fresh redundant environment: the second copy first, the first copy last, each created
//!   as above (temp + rename when it is a whole regular file), so "the first file exists"
//!   means "both do".
//!
//! The per-slot kernel arguments (`ECU_A_ARGS`, `ECU_B_ARGS`) are written in the same atomic
//! update as the boot state.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use bootloader_hooks::grub_env::GrubEnvError;
use bootloader_hooks::scheme::{SchemeBoot, SchemeError};
use bootloader_hooks::uboot_env;
use bootloader_hooks::{Applied, BootState, EnvRead, Flavor, Operation, StateError};

use crate::bootcfg::{BackendKind, BootConfig};

mod mender;
mod read;
mod report;
mod write;

use mender::grub_file;
pub use mender::mender_grubenv;
use read::{blank, is_regular, read_raw, Raw, StoredVars};
pub use report::{report, CopyReport, Report, SlotReport, SlotsReport};
pub use write::{write, write_set};

/// Why a boot environment could not be read, decoded or written.
#[derive(Debug)]
#[non_exhaustive]
pub enum BootEnvError {
    /// Reading or writing a file failed.
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: io::Error,
    },
    /// A file or device is shorter than the environment it should hold.
    Short {
        /// The file.
        path: PathBuf,
        /// Bytes needed from the start of the file.
        needed: u64,
        /// Bytes there are.
        len: u64,
    },
    /// A GRUB environment longer than the configured bound (`env-size`).
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The bound.
        limit: usize,
    },
    /// The U-Boot environment is invalid or the update does not fit.
    Uboot {
        /// The file (the first copy's for a redundant env).
        path: PathBuf,
        /// Why.
        error: uboot_env::EnvError,
    },
    /// The GRUB environment block is invalid or the update does not fit.
    Grub {
        /// The file.
        path: PathBuf,
        /// Why.
        error: GrubEnvError,
    },
    /// The variables do not describe a boot state in the chosen scheme.
    Scheme(SchemeError),
    /// The operation is not possible in this state.
    State(StateError),
}

impl fmt::Display for BootEnvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BootEnvError::Io { path, source } => write!(f, "{}: {source}", path.display()),
            BootEnvError::Short { path, needed, len } => write!(
                f,
                "{}: holds {len} bytes but the environment needs {needed}; check the env size and offset",
                path.display()
            ),
            BootEnvError::TooLarge { path, limit } => write!(
                f,
                "{}: longer than {limit} bytes, the most an environment may have here (env-size); check that it names the environment block",
                path.display()
            ),
            BootEnvError::Uboot { path, error } => write!(f, "{}: {error}", path.display()),
            BootEnvError::Grub { path, error } => write!(f, "{}: {error}", path.display()),
            BootEnvError::Scheme(e) => write!(f, "{e}"),
            BootEnvError::State(e) => write!(f, "{e}"),
        }
    }
}

/// `Display` already includes the underlying error, so `source()` is `None` (no duplicate
/// lines in an error chain).
impl std::error::Error for BootEnvError {}

impl From<SchemeError> for BootEnvError {
    fn from(e: SchemeError) -> Self {
        BootEnvError::Scheme(e)
    }
}

impl From<StateError> for BootEnvError {
    fn from(e: StateError) -> Self {
        BootEnvError::State(e)
    }
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> BootEnvError + '_ {
    move |source| BootEnvError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The variables of an environment, decoded, in stored order, with where they came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Loaded {
    /// `(name, value)`; GRUB values are unescaped.
    pub vars: Vec<(String, String)>,
    /// For a redundant U-Boot env: the current copy (0 or 1) and its flag.
    pub current_copy: Option<(usize, u8)>,
}

impl Loaded {
    /// The value of `key` (the last one when it is set twice, as the bootloaders read it).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.vars
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

impl EnvRead for Loaded {
    fn get_raw(&self, key: &str) -> Option<&[u8]> {
        self.get(key).map(str::as_bytes)
    }
}

/// An environment as read: its variables (raw, as stored) and which copy was current.
#[derive(Debug, Clone)]
pub struct EnvImage {
    /// `(name, value)` as stored (GRUB values keep their escapes).
    pub raw_vars: Vec<(Vec<u8>, Vec<u8>)>,
    /// The same, decoded (GRUB values unescaped), for the schemes.
    pub loaded: Loaded,
    /// GRUB block size.
    pub grub_size: usize,
}

impl EnvImage {
    fn new(cfg: &BootConfig, raw: &Raw, stored: StoredVars) -> EnvImage {
        EnvImage {
            loaded: stored.loaded(flavor(cfg)),
            raw_vars: stored.vars,
            grub_size: match raw {
                Raw::Grub(b) => b.len(),
                _ => 0,
            },
        }
    }

    /// The decoded value of a variable.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.loaded.get(key)
    }
}

/// What the environment holds.
#[derive(Debug, Clone)]
pub enum EnvContent {
    /// The environment's file does not exist, or is blank (erased flash or zeroes), or (a
    /// device) holds no valid copy.
    Missing,
    /// A valid environment without the scheme's variables.
    NoBootState(EnvImage),
    /// A boot state.
    Ready(EnvImage, Box<BootState>),
}

/// The bootloader flavor of the configured backend.
pub fn flavor(cfg: &BootConfig) -> Flavor {
    if cfg.kind == BackendKind::Grub {
        Flavor::Grub
    } else {
        Flavor::UBoot
    }
}

/// Reads the environment named by `cfg`, leniently: a missing file or a blank environment is
/// [`EnvContent::Missing`], a valid one without the scheme's variables
/// [`EnvContent::NoBootState`].
pub fn read(cfg: &BootConfig) -> Result<EnvContent, BootEnvError> {
    let first = &cfg.env.0;
    if !first.exists() || mender_grubenv(cfg).is_some_and(|m| !m[0].0.exists()) {
        return Ok(EnvContent::Missing);
    }
    let raw = read_raw(cfg)?;
    let stored = match (raw.stored_vars(first), &raw) {
        (Ok(s), _) => s,
        // Never written (or not a regular file holding no valid copy): nothing to decode.
        (Err(_), Raw::UbootSingle(b)) if !is_regular(first) || blank(b) => {
            return Ok(EnvContent::Missing)
        }
        (Err(_), Raw::UbootRedundant([a, b])) if !is_regular(first) || (blank(a) && blank(b)) => {
            return Ok(EnvContent::Missing)
        }
        (Err(e), _) => return Err(e),
    };
    let img = EnvImage::new(cfg, &raw, stored);
    match cfg.scheme.decode(flavor(cfg), &img.loaded) {
        Ok(state) => Ok(EnvContent::Ready(img, Box::new(state))),
        Err(SchemeError::NotThisScheme { .. }) => Ok(EnvContent::NoBootState(img)),
        Err(e) => Err(BootEnvError::Scheme(e)),
    }
}

/// Reads the environment strictly, as a bootloader or an integrator's check does: anything
/// but a valid environment holding a boot state is an error saying what is wrong.
pub fn load(cfg: &BootConfig) -> Result<(EnvImage, BootState), BootEnvError> {
    let raw = read_raw(cfg)?;
    let stored = raw.stored_vars(&cfg.env.0)?;
    let img = EnvImage::new(cfg, &raw, stored);
    let state = cfg.scheme.decode(flavor(cfg), &img.loaded)?;
    Ok((img, state))
}

/// What the bootloader does at the next boot of the environment `img`: the scheme's own boot
/// code ([`Scheme::boot`](bootloader_hooks::Scheme::boot)) on its variables, with the variables it stores.
pub fn next_boot(cfg: &BootConfig, img: &EnvImage) -> Result<SchemeBoot, BootEnvError> {
    Ok(cfg.scheme.boot(flavor(cfg), &img.loaded)?)
}

/// Loads the state, applies `op` and, if it changed anything, stores the result. With
/// [`Operation::Boot`] this is what the bootloader does at a boot ([`next_boot`]), its writes
/// stored as it stores them.
pub fn apply(cfg: &BootConfig, op: &Operation) -> Result<Applied, BootEnvError> {
    let (img, mut state) = load(cfg)?;
    if let Operation::Boot = op {
        let b = next_boot(cfg, &img)?;
        if b.decision.changed {
            write_set(cfg, Some(&img), &b.writes, &[])?;
            log::info!("boot state updated by a boot: {:?}", b.decision.kind);
        }
        return Ok(Applied {
            changed: b.decision.changed,
            decision: Some(b.decision),
        });
    }
    let applied = state.apply(op)?;
    if applied.changed {
        write(cfg, Some(&img), &state, &[])?;
        log::info!("boot state updated: {op:?}");
    }
    Ok(applied)
}

#[cfg(test)]
mod test {
    use super::mender::lock_bytes;
    use super::read::read_at;
    use super::*;
    use bootloader_hooks::grub_env;
    use bootloader_hooks::uboot_env::Layout;
    use bootloader_hooks::{DecisionKind, Scheme, VarSet};
    use bootloader_hooks::{Operation, Slot, SlotName};
    use std::fs;

    fn roundtrip(cfg: &BootConfig) {
        assert!(matches!(read(cfg).unwrap(), EnvContent::Missing));
        let st = BootState::initial(Slot::A, SlotName::from_str("c0.0").unwrap());
        write(cfg, None, &st, &[("ECU_A_ARGS", Some("ecu.slot=A x\\y"))]).unwrap();
        let EnvContent::Ready(img, got) = read(cfg).unwrap() else {
            panic!("not ready")
        };
        assert_eq!(*got, st);
        assert_eq!(img.get("ECU_A_ARGS"), Some("ecu.slot=A x\\y"));
        // The strict reader (the bootloader's view) agrees, and a boot's write is read back.
        assert_eq!(load(cfg).unwrap().1, st);
        let mut st2 = st;
        st2.stage(Slot::B, 3, SlotName::from_str("c1.0").unwrap())
            .unwrap();
        write(
            cfg,
            Some(&img),
            &st2,
            &[("ECU_B_ARGS", Some("b")), ("ECU_A_ARGS", None)],
        )
        .unwrap();
        assert_eq!(load(cfg).unwrap().1, st2);
        let _ = apply(cfg, &Operation::Boot).unwrap();
        let EnvContent::Ready(img, got) = read(cfg).unwrap() else {
            panic!("not ready")
        };
        assert_eq!(got.slot(Slot::B).tries_left, 2);
        assert_eq!(img.get("ECU_B_ARGS"), Some("b"));
        assert_eq!(img.get("ECU_A_ARGS"), None);
    }

    #[test]
    fn every_backend_round_trips() {
        for text in [
            "backend = uboot-redundant\n",
            "backend = uboot\n",
            "backend = grub\n",
            "backend = uboot\nscheme = rauc\n",
        ] {
            let d = tempfile::tempdir().unwrap();
            fs::create_dir_all(d.path().join("boot")).unwrap();
            let cfg = BootConfig::parse(d.path(), Path::new("agent.conf"), text).unwrap();
            if cfg.scheme.name() == "rauc" {
                // RAUC cannot express "successful"; just check the write/read cycle.
                let st = BootState::initial(Slot::A, SlotName::from_str("n").unwrap());
                write(&cfg, None, &st, &[]).unwrap();
                assert!(matches!(read(&cfg).unwrap(), EnvContent::Ready(..)));
                continue;
            }
            roundtrip(&cfg);
        }
    }

    #[test]
    fn stored_vars_keep_what_is_stored_and_loaded_decodes_it() {
        // GRUB: the stored value keeps its escape; the loaded one is unescaped.
        let mut block = vec![b'#'; grub_env::DEFAULT_SIZE];
        let vars = [(&b"k"[..], &b"a\\\\b"[..])];
        grub_env::write(&mut block, vars.iter().copied(), &VarSet::new()).unwrap();
        let stored = Raw::Grub(block).stored_vars(Path::new("grubenv")).unwrap();
        assert_eq!(stored.vars, [(b"k".to_vec(), b"a\\\\b".to_vec())]);
        assert_eq!(stored.current_copy, None);
        let loaded = stored.loaded(Flavor::Grub);
        assert_eq!(loaded.vars, [("k".to_string(), "a\\b".to_string())]);
        assert_eq!(loaded.get_raw("k"), Some(&b"a\\b"[..]));
        assert!(matches!(
            Raw::Grub(vec![0; 1024]).stored_vars(Path::new("grubenv")),
            Err(BootEnvError::Grub { .. })
        ));

        // Redundant U-Boot: the copy with the newer flag is current, whichever file it is in.
        let copy = |flag: u8, value: &[u8]| {
            let mut b = vec![0u8; 256];
            let vars = [(&b"v"[..], value)];
            uboot_env::write(
                &mut b,
                Layout::Redundant,
                flag,
                vars.iter().copied(),
                &VarSet::new(),
            )
            .unwrap();
            b
        };
        let raw = Raw::UbootRedundant([copy(1, b"old"), copy(2, b"new")]);
        let stored = raw.stored_vars(Path::new("env")).unwrap();
        assert_eq!(stored.current_copy, Some((1, 2)));
        assert_eq!(stored.vars, [(b"v".to_vec(), b"new".to_vec())]);
        let loaded = stored.loaded(Flavor::UBoot);
        assert_eq!(loaded.vars, [("v".to_string(), "new".to_string())]);
        assert_eq!(loaded.current_copy, Some((1, 2)));
        assert!(matches!(
            Raw::UbootSingle(vec![0xff; 256]).stored_vars(Path::new("env")),
            Err(BootEnvError::Uboot { .. })
        ));
    }

    #[test]
    fn reads_are_bounded_by_the_configured_size() {
        let d = tempfile::tempdir().unwrap();
        // A GRUB environment that never ends.
        let cfg = BootConfig::parse(
            d.path(),
            Path::new("c"),
            "backend = grub\nenv = /dev/zero\n",
        )
        .unwrap();
        let e = read(&cfg).unwrap_err();
        assert!(
            matches!(e, BootEnvError::TooLarge { limit, .. } if limit == cfg.env_size),
            "{e}"
        );
        assert!(e.to_string().contains("longer than 16384 bytes"), "{e}");
        // A U-Boot env in a file shorter than env-size: refused before any allocation.
        let f = d.path().join("empty.env");
        fs::write(&f, b"").unwrap();
        let text = format!(
            "backend = uboot\nenv = {}\nenv-size = 0x1000000\n",
            f.display()
        );
        let cfg = BootConfig::parse(d.path(), Path::new("c"), &text).unwrap();
        let e = read(&cfg).unwrap_err();
        assert!(
            matches!(
                e,
                BootEnvError::Short {
                    needed: 0x1000000,
                    len: 0,
                    ..
                }
            ),
            "{e}"
        );
        // A device that ends before the environment does.
        let e = read_at(Path::new("/dev/null"), 0, 16).unwrap_err();
        assert!(
            matches!(
                e,
                BootEnvError::Short {
                    needed: 16,
                    len: 0,
                    ..
                }
            ),
            "{e}"
        );
        // A device that does not end: exactly env-size bytes are read.
        assert_eq!(read_at(Path::new("/dev/zero"), 7, 100).unwrap().len(), 100);
    }

    #[test]
    fn report_json_is_typed() {
        let mut st = BootState::initial(Slot::A, SlotName::from_str("c0").unwrap());
        st.stage(Slot::B, 3, SlotName::from_str("c1").unwrap())
            .unwrap();
        let r = Report::new(Scheme::Native, Flavor::UBoot, &st, Some((1, 7)));
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["scheme"], "native");
        assert_eq!(v["bootloader"], "uboot");
        assert_eq!(v["next_boot"], "B");
        assert_eq!(v["next_boot_kind"], "trial");
        assert_eq!(v["next_boot_writes"], true);
        assert_eq!(v["slots"]["B"]["tries_left"], 3);
        assert_eq!(v["slots"]["A"]["name"], "c0");
        assert_eq!(v["current_copy"]["index"], 1);
        assert_eq!(v["current_copy"]["flag"], 7);
        // Every kind is its name in JSON, as scripts read it.
        for k in [
            DecisionKind::Confirmed,
            DecisionKind::Trial,
            DecisionKind::LastResort,
            DecisionKind::Refill,
            DecisionKind::Rescue,
            DecisionKind::Rollback,
        ] {
            assert_eq!(serde_json::to_value(k).unwrap(), k.as_str());
        }
        let text = r.to_string();
        assert!(text.contains("current copy: 2 (flag 7)"), "{text}");
        assert!(
            text.contains("next boot: B (trial, one try used)"),
            "{text}"
        );
    }

    /// Mender's GRUB layout: both env files written with the lock protocol, read back by the
    /// real grub-editenv, locks settled and `lock.sha256sum` still valid; a torn write (a lock
    /// left at `editing=1`) reads the file GRUB's `mender_grub.cfg` would use.
    #[test]
    fn mender_grubenv_writes_both_files_and_reads_the_one_grub_uses() {
        let tool = |c: &str| {
            std::env::var_os("PATH")
                .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(c).is_file()))
        };
        if !tool("grub-editenv") || !tool("sha256sum") {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "grub-editenv needed"
            );
            eprintln!("SKIP: grub-editenv not installed");
            return;
        }
        let run = |c: &mut std::process::Command| {
            let o = c.output().unwrap();
            assert!(
                o.status.success(),
                "{c:?}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            String::from_utf8(o.stdout).unwrap()
        };
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("grub-mender-grubenv");
        for n in [1, 2] {
            let sub = dir.join(format!("mender_grubenv{n}"));
            fs::create_dir_all(&sub).unwrap();
            let env = sub.join("env");
            run(std::process::Command::new("grub-editenv")
                .arg(&env)
                .arg("create"));
            run(std::process::Command::new("grub-editenv").arg(&env).args([
                "set",
                "bootcount=0",
                "mender_boot_part=2",
                "upgrade_available=0",
            ]));
            // As grub-mender-grubenv's make-env-and-lock-files makes them.
            fs::write(sub.join("lock"), lock_bytes(None, b'0')).unwrap();
            run(std::process::Command::new("sh")
                .arg("-c")
                .arg("sha256sum lock > lock.sha256sum")
                .current_dir(&sub));
        }
        let text = format!("backend = grub\nscheme = mender\nenv = {}\n", dir.display());
        let cfg = BootConfig::parse(d.path(), Path::new("agent.conf"), &text).unwrap();
        let (img, st) = load(&cfg).unwrap();
        assert!(st.slot(Slot::A).successful);
        let mut st2 = st;
        st2.stage(Slot::B, 1, SlotName::from_str("v1.0").unwrap())
            .unwrap();
        write(&cfg, Some(&img), &st2, &[]).unwrap();
        for n in [1, 2] {
            let sub = dir.join(format!("mender_grubenv{n}"));
            let list = run(std::process::Command::new("grub-editenv")
                .arg(sub.join("env"))
                .arg("list"));
            for kv in ["mender_boot_part=3", "upgrade_available=1", "bootcount=0"] {
                assert!(list.lines().any(|l| l == kv), "env {n}: {list}");
            }
            let lock = run(std::process::Command::new("grub-editenv")
                .arg(sub.join("lock"))
                .arg("list"));
            assert_eq!(lock, "editing=0\n", "lock {n}");
            run(std::process::Command::new("sha256sum")
                .args(["-c", "lock.sha256sum"])
                .current_dir(&sub));
        }
        assert_eq!(load(&cfg).unwrap().1, st2);
        // A write cut after env 2: lock 1 still says editing=1 and env 1 holds the old values.
        let (img2, _) = load(&cfg).unwrap();
        let mut st3 = st2;
        assert!(st3.mark_good(Slot::B));
        let env1 = dir.join("mender_grubenv1/env");
        let old_env1 = fs::read(&env1).unwrap();
        write(&cfg, Some(&img2), &st3, &[]).unwrap();
        fs::write(&env1, &old_env1).unwrap();
        let lock1 = dir.join("mender_grubenv1/lock");
        fs::write(&lock1, lock_bytes(Some(&fs::read(&lock1).unwrap()), b'1')).unwrap();
        assert_eq!(load(&cfg).unwrap().1, st3, "GRUB restores env 1 from env 2");
        // Lock 2 unsettled: env 1 is read (GRUB restores env 2 from it).
        fs::write(&lock1, lock_bytes(Some(&fs::read(&lock1).unwrap()), b'0')).unwrap();
        let lock2 = dir.join("mender_grubenv2/lock");
        fs::write(&lock2, lock_bytes(Some(&fs::read(&lock2).unwrap()), b'1')).unwrap();
        assert_eq!(load(&cfg).unwrap().1, st2);
    }
}
