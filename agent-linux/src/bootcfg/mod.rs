//! The sysroot's boot configuration, `S/agent.conf`: which bootloader environment holds the
//! boot state, with which variables, how many tries a new deployment gets and the kernel
//! arguments each slot boots with.
//!
//! ```text
//! # ecu-agent sysroot configuration
//! backend = uboot-redundant          # uboot | uboot-redundant | grub
//! env = boot/uboot.env               # relative to the sysroot, or absolute (/dev/mtd1); for
//!                                    # grub, a directory holding Mender's mender_grubenv1/2
//!                                    # (docs/BOOTSTATE.md §6)
//! env-redundant = boot/uboot-redund.env
//! env-offset = 0
//! env-redundant-offset = 0
//! env-size = 0x4000                  # CONFIG_ENV_SIZE (U-Boot); GRUB: the largest block read
//! scheme = native                    # native | rauc | mender
//! tries = 3                          # boots a new deployment gets to be marked good
//! kargs = ecu.slot=${slot} ecu.deployment=${name}
//! slot-a-root = /dev/mmcblk0p2       # the kernel's root= when slot A runs (or PARTUUID=, PARTLABEL=)
//! slot-b-root = /dev/mmcblk0p3       # the same for slot B (default with scheme mender: Mender's)
//! env-default = board-env.txt        # the board's default U-Boot env (`fw_printenv` text or an
//!                                    # env image), the base of an environment written from blank
//! trusted-key = 5f3a…(64 hex)        # repeatable: keys whose signatures install
//! trusted-key = keys/release-2027.pub  # or a key file (relative to the sysroot, or absolute)
//! revoked-key = 9c1e…(64 hex)        # repeatable: refused even when also trusted
//! ref = cs9/x86_64/qemu-minimal      # repeatable: the refs the device follows
//! ```
//!
//! Without the file the defaults above apply (a redundant U-Boot environment in two 16 KiB
//! files under `S/boot/`, no key, no ref), so a sysroot works with no setup; `install` writes
//! the file when it provisions a sysroot, with the ref it installed, so the choice stays fixed
//! afterwards. `docs/SYSROOT.md` explains the choice of default.

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use bootloader_hooks::Scheme;

mod parse;
mod roots;
mod write;

pub use roots::{RootDevices, RootSource};
pub use write::write_refs;

/// The configuration file's name in the sysroot.
pub const CONFIG_FILE: &str = "agent.conf";
/// Default size of one U-Boot environment copy (`CONFIG_ENV_SIZE`).
pub const DEFAULT_ENV_SIZE: usize = 0x4000;
/// Largest `env-size` accepted (16 MiB): every read of an environment is bounded by it.
pub const MAX_ENV_SIZE: usize = 16 * 1024 * 1024;
/// Default directory of the health checks (`health-dir`), relative to the sysroot: its
/// `required.d` and `wanted.d` hold the executables `ecu-agent health-check` runs.
pub const DEFAULT_HEALTH_DIR: &str = "etc/ecu-agent/health.d";
/// Default seconds one health check may run before it is killed (`health-timeout`).
pub const DEFAULT_HEALTH_TIMEOUT: u64 = 300;
/// Longest `health-timeout` accepted, in seconds (one day).
pub const MAX_HEALTH_TIMEOUT: u64 = 86_400;
/// Default tries for a staged deployment.
pub const DEFAULT_TRIES: u8 = 3;
/// Default kernel-argument template.
pub const DEFAULT_KARGS: &str = "ecu.slot=${slot} ecu.deployment=${name}";
/// Mender's default partition base (meta-mender's `MENDER_STORAGE_DEVICE_BASE`, from
/// `MENDER_STORAGE_DEVICE` `/dev/mmcblk0`): the root device of a slot is this and its
/// partition number (`mender-part-a`, `mender-part-b`).
pub const MENDER_STORAGE_BASE: &str = "/dev/mmcblk0p";
/// Longest kernel-argument line written for a slot.
pub const MAX_KARGS_LEN: usize = 1024;

/// Most `trusted-key` (and, separately, `revoked-key`) lines accepted.
pub const MAX_KEYS: usize = 64;
/// Most `ref` lines accepted.
pub const MAX_REFS: usize = 16;

/// The environment variable holding slot A's and slot B's kernel arguments.
pub const KARGS_VARS: [&str; 2] = ["ECU_A_ARGS", "ECU_B_ARGS"];

/// Which kind of environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    /// One U-Boot environment copy.
    Uboot,
    /// Two U-Boot environment copies with a flag (what power loss needs).
    UbootRedundant,
    /// A GRUB environment block.
    Grub,
}

impl BackendKind {
    /// The name in `agent.conf`.
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Uboot => "uboot",
            BackendKind::UbootRedundant => "uboot-redundant",
            BackendKind::Grub => "grub",
        }
    }
}

impl serde::Serialize for BackendKind {
    /// As its name in `agent.conf`.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// Why `agent.conf` was not accepted.
#[derive(Debug)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The file could not be written.
    Write {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// A line is not understood.
    Line {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Io { path, source } => {
                write!(f, "cannot read {}: {source}", path.display())
            }
            ConfigError::Write { path, source } => {
                write!(f, "cannot write {}: {source}", path.display())
            }
            ConfigError::Line { path, line, reason } => {
                write!(
                    f,
                    "{}:{line}: {reason}; fix or delete the line",
                    path.display()
                )
            }
        }
    }
}

/// Transparent to the OS error its messages include.
impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConfigError::Io { source, .. } | ConfigError::Write { source, .. } => source.source(),
            ConfigError::Line { .. } => None,
        }
    }
}

/// The parsed `agent.conf`, paths resolved against the sysroot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootConfig {
    /// The environment's kind.
    pub kind: BackendKind,
    /// First (or only) copy: path and offset.
    pub env: (PathBuf, u64),
    /// Second copy of a redundant U-Boot environment.
    pub env_redundant: (PathBuf, u64),
    /// Size of one U-Boot copy; for GRUB, the largest block read (every read of an
    /// environment is bounded by it).
    pub env_size: usize,
    /// The variable scheme.
    pub scheme: Scheme,
    /// Tries a staged deployment gets.
    pub tries: u8,
    /// Kernel-argument template (`${slot}`, `${name}`, `${sysroot}` are replaced).
    pub kargs: String,
    /// The root device (`root=` on the kernel command line) of slot A and of slot B, as
    /// `slot-a-root` / `slot-b-root` give them; `None`: not configured (with the Mender
    /// scheme, [`BootConfig::root_devices`] then gives Mender's defaults).
    pub slot_roots: Option<[String; 2]>,
    /// The board's default U-Boot environment (`env-default`): the base of an environment
    /// written where there was none.
    pub env_default: EnvDefault,
    /// Public keys whose signatures install (`trusted-key`), in file order.
    pub trusted_keys: Vec<[u8; 32]>,
    /// Public keys whose signatures are refused even when trusted (`revoked-key`).
    pub revoked_keys: Vec<[u8; 32]>,
    /// The refs the device follows (`ref`); empty: not set (any ref, until provisioning
    /// records one).
    pub refs: Vec<String>,
    /// The `trusted-key` and `revoked-key` values as written (hex or a path), for
    /// [`BootConfig::to_text`].
    pub key_lines: Vec<(&'static str, String)>,
    /// The health checks' directory (`health-dir`; default [`DEFAULT_HEALTH_DIR`] in the
    /// sysroot), with `required.d` and `wanted.d`.
    pub health_dir: PathBuf,
    /// Seconds each health check may run before it is killed (`health-timeout`).
    pub health_timeout: u64,
    /// Whether the values came from a file (false: all defaults).
    pub from_file: bool,
}

/// What a U-Boot environment written from blank starts from (`env-default`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum EnvDefault {
    /// Not configured: required for an environment outside the sysroot, none for the
    /// sysroot's own files (`S/boot/...`), which no board reads unless pointed at them.
    #[default]
    Unset,
    /// `env-default = none`: the environment holds only the agent's variables (U-Boot keeps
    /// the board's variables elsewhere, e.g. a state-only environment loaded by a script).
    None,
    /// `env-default = FILE`: the board's default environment, as `fw_printenv` prints it
    /// (`name=value` lines) or as an environment image (`mkenvimage`, a dump of the board's
    /// environment).
    File(PathBuf),
}

fn default_paths(kind: BackendKind) -> (&'static str, &'static str) {
    match kind {
        BackendKind::Grub => ("boot/grubenv", ""),
        BackendKind::Uboot => ("boot/uboot.env", ""),
        BackendKind::UbootRedundant => ("boot/uboot.env", "boot/uboot-redund.env"),
    }
}

impl BootConfig {
    /// The defaults, for a sysroot at `root`.
    pub fn defaults(root: &Path) -> BootConfig {
        let kind = BackendKind::UbootRedundant;
        let (a, b) = default_paths(kind);
        BootConfig {
            kind,
            env: (root.join(a), 0),
            env_redundant: (root.join(b), 0),
            env_size: DEFAULT_ENV_SIZE,
            scheme: Scheme::Native,
            tries: DEFAULT_TRIES,
            kargs: DEFAULT_KARGS.to_string(),
            slot_roots: None,
            env_default: EnvDefault::Unset,
            trusted_keys: Vec::new(),
            revoked_keys: Vec::new(),
            refs: Vec::new(),
            key_lines: Vec::new(),
            health_dir: root.join(DEFAULT_HEALTH_DIR),
            health_timeout: DEFAULT_HEALTH_TIMEOUT,
            from_file: false,
        }
    }

    /// An environment named by its files rather than by a sysroot's `agent.conf`, as
    /// `ecu-agent bootenv show` and the real-bootloader tests name one: `kind`, its first (or
    /// only) copy at `env` (path, offset), a redundant env's second copy at `env_redundant`,
    /// `env_size` bytes a copy (GRUB: the largest block read) and the variables of `scheme`;
    /// everything else as [`BootConfig::defaults`] for a sysroot at `/`.
    pub fn for_env(
        kind: BackendKind,
        env: (PathBuf, u64),
        env_redundant: Option<(PathBuf, u64)>,
        env_size: usize,
        scheme: Scheme,
    ) -> BootConfig {
        let mut cfg = BootConfig::defaults(Path::new("/"));
        cfg.kind = kind;
        cfg.env = env;
        if let Some(second) = env_redundant {
            cfg.env_redundant = second;
        }
        cfg.env_size = env_size;
        cfg.scheme = scheme;
        cfg
    }

    /// Reads `root/agent.conf`, or returns the defaults when there is none.
    pub fn load(root: &Path) -> Result<BootConfig, ConfigError> {
        let path = root.join(CONFIG_FILE);
        match fs::read_to_string(&path) {
            Ok(text) => BootConfig::parse(root, &path, &text),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(BootConfig::defaults(root)),
            Err(source) => Err(ConfigError::Io { path, source }),
        }
    }

    /// Whether every file of the environment is inside the sysroot `root` (the agent's own
    /// environment, which no board reads unless pointed at it).
    pub fn env_inside(&self, root: &Path) -> bool {
        self.env_paths().iter().all(|(p, _)| p.starts_with(root))
    }

    /// The files or devices of the environment, first copy first.
    pub fn env_paths(&self) -> Vec<(PathBuf, u64)> {
        match self.kind {
            BackendKind::UbootRedundant => vec![self.env.clone(), self.env_redundant.clone()],
            _ => vec![self.env.clone()],
        }
    }

    /// A `fw_env.config` for `fw_printenv -c` / `fw_setenv -c` (U-Boot backends), or `None`
    /// for GRUB (use `grub-editenv FILE list`).
    pub fn fw_env_config(&self) -> Option<String> {
        if self.kind == BackendKind::Grub {
            return None;
        }
        let mut s = String::from("# device offset envsize (fw_printenv -c THIS_FILE)\n");
        for (p, off) in self.env_paths() {
            let abs = if p.is_absolute() {
                p
            } else {
                std::env::current_dir().unwrap_or_default().join(p)
            };
            s.push_str(&format!(
                "{} {:#x} {:#x}\n",
                abs.display(),
                off,
                self.env_size
            ));
        }
        Some(s)
    }

    /// The kernel arguments for `slot` booting deployment `name`.
    pub fn kargs_for(&self, root: &Path, slot: bootloader_hooks::Slot, name: &str) -> String {
        self.kargs
            .replace("${slot}", slot.as_str())
            .replace("${name}", name)
            .replace("${sysroot}", &root.to_string_lossy())
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn health_keys() {
        let root = Path::new("/s");
        let path = Path::new("/s/agent.conf");
        let d = BootConfig::defaults(root);
        assert_eq!(d.health_dir, Path::new("/s/etc/ecu-agent/health.d"));
        assert_eq!(d.health_timeout, DEFAULT_HEALTH_TIMEOUT);
        let c = BootConfig::parse(root, path, "health-dir = checks\nhealth-timeout = 7\n").unwrap();
        assert_eq!(c.health_dir, Path::new("/s/checks"));
        assert_eq!(c.health_timeout, 7);
        let again = BootConfig::parse(root, path, &c.to_text(root)).unwrap();
        assert_eq!((again.health_dir, again.health_timeout), (c.health_dir, 7));
        for (text, want) in [
            ("health-timeout = 0", "health-timeout must be 1 to 86400"),
            (
                "health-timeout = 86401",
                "health-timeout must be a number up to 86400",
            ),
            ("health-dir =", "health-dir must name a directory"),
        ] {
            let e = BootConfig::parse(root, path, text).unwrap_err().to_string();
            assert!(e.contains(want), "{text}: {e}");
        }
    }

    #[test]
    fn defaults_round_trip_and_errors() {
        let root = Path::new("/s");
        let d = BootConfig::defaults(root);
        assert_eq!(d.kind, BackendKind::UbootRedundant);
        assert_eq!(d.env.0, Path::new("/s/boot/uboot.env"));
        let text = d.to_text(root);
        let p = BootConfig::parse(root, Path::new("/s/agent.conf"), &text).unwrap();
        assert_eq!(
            BootConfig {
                from_file: false,
                ..p
            },
            d
        );

        let g = BootConfig::parse(
            root,
            Path::new("x"),
            "backend = grub # comment\n# all comment\nscheme=rauc\ntries = 5\nkargs = root=/dev/x ${slot}\n",
        )
        .unwrap();
        assert_eq!(g.kind, BackendKind::Grub);
        assert_eq!(g.env.0, Path::new("/s/boot/grubenv"));
        assert_eq!(g.tries, 5);
        assert_eq!(
            g.kargs_for(root, bootloader_hooks::Slot::B, "n"),
            "root=/dev/x B"
        );
        assert!(g.fw_env_config().is_none());
        assert!(d
            .fw_env_config()
            .unwrap()
            .contains("/s/boot/uboot-redund.env 0x0 0x4000"));

        for bad in [
            "backend = lilo",
            "tries = 0",
            "tries = 10",
            "nonsense",
            "color = blue",
            "backend = uboot-redundant\nenv = /dev/mtd1",
            "env-size = 0",
            "backend = uboot\nenv-size = 5",
            "env-size = 0x1000001",
            "slot-a-root = /dev/mmcblk0p2",
            "slot-a-root = /dev/x\nslot-b-root = /dev/x",
            "slot-a-root = mmcblk0p2\nslot-b-root = /dev/mmcblk0p3",
            "slot-a-root = PARTUUID=\nslot-b-root = /dev/mmcblk0p3",
            "env-default =",
        ] {
            let e = BootConfig::parse(root, Path::new("c"), bad).unwrap_err();
            assert!(e.to_string().contains("fix or delete"), "{e}");
        }
    }

    #[test]
    fn root_devices_and_env_default() {
        use bootloader_hooks::Slot;
        let root = Path::new("/s");
        let parse = |t: &str| BootConfig::parse(root, Path::new("c"), t).unwrap();
        // Native and RAUC: no root devices unless configured.
        assert_eq!(parse("").root_devices(), None);
        assert_eq!(parse("scheme = rauc\n").root_devices(), None);
        // Mender: its defaults, from the partition numbers.
        let m = parse("scheme = mender\nmender-part-a = 5\nmender-part-b = 6\n");
        let r = m.root_devices().unwrap();
        assert_eq!(r.devices, ["/dev/mmcblk0p5", "/dev/mmcblk0p6"]);
        assert_eq!(r.source, RootSource::MenderDefault);
        assert_eq!(r.slot_of("/dev/mmcblk0p6"), Some(Slot::B));
        assert_eq!(r.slot_of("/dev/mmcblk0p2"), None);
        // Configured: any scheme; PARTUUID compared without case; round trip through the text.
        let c = parse(
            "scheme = mender\nslot-a-root = PARTUUID=0a1b-02\nslot-b-root = PARTLABEL=rootB\nenv-default = board.env\n",
        );
        let r = c.root_devices().unwrap();
        assert_eq!(r.source, RootSource::Configured);
        assert_eq!(r.slot_of("PARTUUID=0A1B-02"), Some(Slot::A));
        assert_eq!(r.slot_of("PARTLABEL=rootB"), Some(Slot::B));
        assert_eq!(r.slot_of("PARTLABEL=rootb"), None);
        assert_eq!(r.slot_of("/dev/mmcblk0p2"), None);
        assert_eq!(c.env_default, EnvDefault::File(root.join("board.env")));
        assert_eq!(parse(&c.to_text(root)), c);
        assert_eq!(parse("env-default = none\n").env_default, EnvDefault::None);
        // The environment's place: the defaults are inside the sysroot, a device is not.
        assert!(parse("").env_inside(root));
        assert!(!parse("backend = uboot\nenv = /dev/mtd1\n").env_inside(root));
    }
}
