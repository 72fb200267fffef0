//! Which slot runs: what the caller says, else the kernel command line (`ecu.slot=`,
//! `rauc.slot=`, or `root=` mapped to a slot through `slot-a-root`/`slot-b-root`, Mender's
//! defaults with the Mender scheme), else `S/run/booted`, which is read only when the kernel
//! command line names neither a slot nor a root device: a run file is left from an earlier
//! (simulated) boot and never outvotes the running kernel. When the command line names a root
//! device that is no slot's, or its sources disagree, nothing says which slot runs: the
//! commands that need it refuse rather than guess.

use std::fmt;
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use bootloader_hooks::Slot;

use super::{io_err, DeployError, BOOTED_SLOT_VAR, CMDLINE_VAR};
use crate::bootcfg::{BootConfig, RootDevices, RootSource};
use crate::sysroot::Sysroot;

/// Where the booted slot was learnt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BootedSource {
    /// `--booted-slot`.
    Flag,
    /// [`BOOTED_SLOT_VAR`].
    EnvVar,
    /// `ecu.slot=` or `rauc.slot=` on the kernel command line.
    Cmdline,
    /// `root=` on the kernel command line, one slot's root device (`slot-a-root`,
    /// `slot-b-root`, or Mender's defaults).
    RootDevice,
    /// `S/run/booted`, written by `simulate-boot` and by provisioning.
    RunFile,
}

impl BootedSource {
    /// Where the booted slot was learnt, for messages.
    pub fn describe(self) -> &'static str {
        match self {
            BootedSource::Flag => "--booted-slot",
            BootedSource::EnvVar => BOOTED_SLOT_VAR,
            BootedSource::Cmdline => "kernel command line",
            BootedSource::RootDevice => "root device on the kernel command line",
            BootedSource::RunFile => "S/run/booted",
        }
    }
}

/// Parses `A`/`B` (any case) and RAUC's `rootfs.0`/`rootfs.1`.
pub fn parse_slot(s: &str) -> Option<Slot> {
    match s.trim() {
        "rootfs.0" | "system0" => Some(Slot::A),
        "rootfs.1" | "system1" => Some(Slot::B),
        other => Slot::parse(other),
    }
}

/// The slot named on a kernel command line by `ecu.slot=` (or else `rauc.slot=`).
pub fn slot_from_cmdline(cmdline: &str) -> Option<Slot> {
    let find = |key: &str| {
        cmdline
            .split_whitespace()
            .filter_map(|w| w.strip_prefix(key))
            .next_back()
            .and_then(parse_slot)
    };
    find("ecu.slot=").or_else(|| find("rauc.slot="))
}

/// The deployment named on a kernel command line by `ecu.deployment=` (the default `kargs`
/// template writes it), as given (validate it with [`is_deployment_name`](super::is_deployment_name)).
pub fn deployment_from_cmdline(cmdline: &str) -> Option<&str> {
    cmdline
        .split_whitespace()
        .filter_map(|w| w.strip_prefix("ecu.deployment="))
        .next_back()
}

/// The kernel command line: the file [`CMDLINE_VAR`] names, else `/proc/cmdline` (`None`
/// when it cannot be read).
pub fn read_cmdline() -> Option<String> {
    let path = std::env::var_os(CMDLINE_VAR)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/proc/cmdline"));
    let f = fs::File::open(path).ok()?;
    // A command line is at most a few KiB (COMMAND_LINE_SIZE); never read more.
    let mut text = String::new();
    f.take(64 * 1024).read_to_string(&mut text).ok()?;
    Some(text)
}

/// Why the kernel command line does not tell which slot runs although it says something about
/// it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BootedDoubt {
    /// `root=` names a device that is neither slot's root device.
    RootUnknown {
        /// The value of `root=`.
        root: String,
        /// The slots' root devices and where they come from.
        devices: String,
    },
    /// `ecu.slot=`/`rauc.slot=` name one slot, `root=` the other's root device.
    Disagree {
        /// The slot `ecu.slot=`/`rauc.slot=` names.
        named: Slot,
        /// The value of `root=`.
        root: String,
        /// The slot whose root device that is.
        by_root: Slot,
        /// The slots' root devices and where they come from.
        devices: String,
    },
}

impl fmt::Display for BootedDoubt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BootedDoubt::RootUnknown { root, devices } => write!(
                f,
                "cannot tell which slot is booted: the kernel command line has root={root}, which is neither slot's root device ({devices}); nothing was written: set slot-a-root and slot-b-root in agent.conf to the root= each slot boots with (/dev/mmcblk0p2, PARTUUID=..., PARTLABEL=...) or pass --booted-slot A|B (S/run/booted is not used: it may be left from an earlier boot)"
            ),
            BootedDoubt::Disagree {
                named,
                root,
                by_root,
                devices,
            } => write!(
                f,
                "cannot tell which slot is booted: the kernel command line says slot {named} (ecu.slot=/rauc.slot=) but its root={root} is slot {by_root}'s root device ({devices}); nothing was written: correct slot-a-root/slot-b-root in agent.conf or the bootloader's kernel arguments so that both name the slot that runs"
            ),
        }
    }
}

/// The value of the last `root=` on a kernel command line.
pub fn root_from_cmdline(cmdline: &str) -> Option<&str> {
    cmdline
        .split_whitespace()
        .filter_map(|w| w.strip_prefix("root="))
        .next_back()
}

/// What the kernel command line says about the booted slot, given the slots' root devices:
/// `Ok(None)` when it names neither a slot nor (with root devices known) a root device.
pub fn slot_from_kernel(
    cmdline: &str,
    roots: Option<&RootDevices>,
) -> Result<Option<(Slot, BootedSource)>, BootedDoubt> {
    let named = slot_from_cmdline(cmdline);
    let (Some(root), Some(map)) = (root_from_cmdline(cmdline), roots) else {
        return Ok(named.map(|s| (s, BootedSource::Cmdline)));
    };
    match (map.slot_of(root), named) {
        (Some(by_root), Some(named)) if by_root != named => Err(BootedDoubt::Disagree {
            named,
            root: root.to_string(),
            by_root,
            devices: map.describe(),
        }),
        (Some(s), Some(_)) => Ok(Some((s, BootedSource::Cmdline))),
        (Some(s), None) => Ok(Some((s, BootedSource::RootDevice))),
        // Mender's defaults are a guess about the board: a slot the command line names wins.
        (None, Some(named)) if map.source == RootSource::MenderDefault => {
            Ok(Some((named, BootedSource::Cmdline)))
        }
        (None, _) => Err(BootedDoubt::RootUnknown {
            root: root.to_string(),
            devices: map.describe(),
        }),
    }
}

/// The booted slot as learnt, or why it could not be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Booted {
    /// The slot and where it was learnt; `None` when nothing says.
    pub slot: Option<(Slot, BootedSource)>,
    /// Why the kernel command line does not tell although it says something (then `slot`
    /// is `None`: the run file is not consulted).
    pub doubt: Option<BootedDoubt>,
}

/// Learns the booted slot: `flag`, else [`BOOTED_SLOT_VAR`], else the kernel command line
/// ([`slot_from_kernel`]; [`super::CMDLINE_VAR`] names another file than `/proc/cmdline`),
/// else `S/run/booted` (only when the command line names no slot and no root device).
pub fn detect_booted(
    root: &Path,
    cfg: &BootConfig,
    flag: Option<Slot>,
) -> Result<Booted, DeployError> {
    let known = |s| {
        Ok(Booted {
            slot: Some(s),
            doubt: None,
        })
    };
    if let Some(s) = flag {
        return known((s, BootedSource::Flag));
    }
    if let Ok(v) = std::env::var(BOOTED_SLOT_VAR) {
        if !v.is_empty() {
            return match parse_slot(&v) {
                Some(s) => known((s, BootedSource::EnvVar)),
                None => Err(DeployError::Io {
                    what: "use",
                    path: PathBuf::from(format!("{BOOTED_SLOT_VAR}={v}")),
                    source: io::Error::new(io::ErrorKind::InvalidInput, "not A or B"),
                }),
            };
        }
    }
    if let Some(text) = read_cmdline() {
        let roots = cfg.root_devices();
        match slot_from_kernel(&text, roots.as_ref()) {
            Ok(Some(s)) => return known(s),
            Ok(None) => {}
            Err(doubt) => {
                return Ok(Booted {
                    slot: None,
                    doubt: Some(doubt),
                })
            }
        }
    }
    let run = root.join(Sysroot::RUN_DIR).join(Sysroot::BOOTED_FILE);
    let slot = match fs::read_to_string(&run) {
        Ok(t) => parse_slot(&t).map(|s| (s, BootedSource::RunFile)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(io_err("read", &run)(e)),
    };
    Ok(Booted { slot, doubt: None })
}

#[cfg(test)]
mod test {
    use super::*;

    fn cfg(text: &str) -> BootConfig {
        BootConfig::parse(Path::new("/s"), Path::new("c"), text).unwrap()
    }

    #[test]
    fn the_root_device_names_the_slot() {
        let mender = cfg("scheme = mender\n");
        let m = mender.root_devices();
        let m = m.as_ref();
        let k = |c: &str| slot_from_kernel(c, m);
        assert_eq!(
            k("console=ttyS0 root=/dev/mmcblk0p3 rootwait"),
            Ok(Some((Slot::B, BootedSource::RootDevice)))
        );
        assert_eq!(
            k("root=/dev/mmcblk0p2"),
            Ok(Some((Slot::A, BootedSource::RootDevice)))
        );
        // The last root= counts, as for the kernel.
        assert_eq!(
            k("root=/dev/mmcblk0p2 root=/dev/mmcblk0p3"),
            Ok(Some((Slot::B, BootedSource::RootDevice)))
        );
        // Agreeing with ecu.slot=: fine; disagreeing: a doubt naming both.
        assert_eq!(
            k("root=/dev/mmcblk0p3 ecu.slot=B"),
            Ok(Some((Slot::B, BootedSource::Cmdline)))
        );
        let e = k("root=/dev/mmcblk0p3 rauc.slot=A").unwrap_err();
        assert!(matches!(
            e,
            BootedDoubt::Disagree {
                named: Slot::A,
                by_root: Slot::B,
                ..
            }
        ));
        assert!(
            e.to_string().contains("root=/dev/mmcblk0p3 is slot B's"),
            "{e}"
        );
        // A root device that is neither slot's: nobody can tell.
        let e = k("root=/dev/sda1").unwrap_err();
        assert!(
            e.to_string().contains("root=/dev/sda1, which is neither"),
            "{e}"
        );
        assert!(e.to_string().contains("slot-a-root"), "{e}");
        // ... unless a slot is named and the root devices are only Mender's defaults.
        assert_eq!(
            k("root=/dev/sda1 ecu.slot=A"),
            Ok(Some((Slot::A, BootedSource::Cmdline)))
        );
        // Nothing said: None (the caller may read the run file).
        assert_eq!(k("console=ttyS0"), Ok(None));

        // Configured devices are strict: an unknown root= is a doubt even with ecu.slot=.
        let c = cfg("slot-a-root = PARTLABEL=rootA\nslot-b-root = PARTLABEL=rootB\n");
        let r = c.root_devices();
        assert_eq!(
            slot_from_kernel("root=PARTLABEL=rootB", r.as_ref()),
            Ok(Some((Slot::B, BootedSource::RootDevice)))
        );
        assert!(slot_from_kernel("root=/dev/sda1 ecu.slot=A", r.as_ref()).is_err());
        // Without root devices root= says nothing (native, RAUC: rauc.slot= does).
        let n = cfg("scheme = rauc\n");
        assert_eq!(
            slot_from_kernel("root=/dev/sda1 rauc.slot=B", n.root_devices().as_ref()),
            Ok(Some((Slot::B, BootedSource::Cmdline)))
        );
        assert_eq!(slot_from_kernel("root=/dev/sda1", None), Ok(None));
    }
}
