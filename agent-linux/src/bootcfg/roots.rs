//! Which slot a root device is: the slots' root devices (`root=` on the kernel command
//! line), as `slot-a-root`/`slot-b-root` configure them or, with the Mender scheme, as
//! Mender's defaults give them.

use bootloader_hooks::Scheme;

use super::{BootConfig, MENDER_STORAGE_BASE};

/// Where the slots' root devices come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RootSource {
    /// `slot-a-root` / `slot-b-root` in `agent.conf`.
    Configured,
    /// Mender's defaults (`/dev/mmcblk0p` and `mender-part-a` / `mender-part-b`, as
    /// meta-mender's `MENDER_ROOTFS_PART_A`/`_B` default to).
    MenderDefault,
}

/// The root devices of the two slots, as `root=` on the kernel command line names them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootDevices {
    /// Slot A's and slot B's.
    pub devices: [String; 2],
    /// Where they come from.
    pub source: RootSource,
}

impl RootDevices {
    /// The slot whose root device `root` (the value of `root=`) is: equal strings, with the
    /// `PARTUUID=` value compared without regard to case (the kernel reads it so).
    pub fn slot_of(&self, root: &str) -> Option<bootloader_hooks::Slot> {
        bootloader_hooks::Slot::ALL
            .into_iter()
            .find(|s| same_root(&self.devices[s.index()], root))
    }

    /// `slot-a-root=... slot-b-root=...` (or Mender's defaults), for messages.
    pub fn describe(&self) -> String {
        let [a, b] = &self.devices;
        match self.source {
            RootSource::Configured => format!("agent.conf: slot-a-root = {a}, slot-b-root = {b}"),
            RootSource::MenderDefault => format!(
                "Mender's defaults, as agent.conf sets no slot-a-root/slot-b-root: A = {a}, B = {b}"
            ),
        }
    }
}

fn same_root(configured: &str, root: &str) -> bool {
    match (
        configured.strip_prefix("PARTUUID="),
        root.strip_prefix("PARTUUID="),
    ) {
        (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
        _ => configured == root,
    }
}

/// Checks a `slot-a-root`/`slot-b-root` value: a device path or a `PARTUUID=`, `PARTLABEL=`,
/// `UUID=` or `LABEL=` form, without spaces.
pub(super) fn check_root(v: &str) -> Result<(), String> {
    let forms = ["/dev/", "PARTUUID=", "PARTLABEL=", "UUID=", "LABEL="];
    let body = forms.iter().find_map(|f| v.strip_prefix(f));
    match body {
        Some(b) if !b.is_empty() && !v.chars().any(|c| c.is_whitespace() || c.is_control()) => {
            Ok(())
        }
        _ => Err(format!(
            "a root device is written as the kernel's root= names it (/dev/mmcblk0p2, PARTUUID=..., PARTLABEL=...), found {v:?}"
        )),
    }
}

impl BootConfig {
    /// The root devices that tell which slot runs (`root=` on the kernel command line):
    /// `slot-a-root`/`slot-b-root`, else with the Mender scheme Mender's defaults
    /// (`/dev/mmcblk0p<mender-part-a>`, `/dev/mmcblk0p<mender-part-b>`), else `None`.
    pub fn root_devices(&self) -> Option<RootDevices> {
        if let Some(d) = &self.slot_roots {
            return Some(RootDevices {
                devices: d.clone(),
                source: RootSource::Configured,
            });
        }
        match self.scheme {
            Scheme::Mender(m) => Some(RootDevices {
                devices: [
                    format!("{MENDER_STORAGE_BASE}{}", m.part_a),
                    format!("{MENDER_STORAGE_BASE}{}", m.part_b),
                ],
                source: RootSource::MenderDefault,
            }),
            _ => None,
        }
    }
}
