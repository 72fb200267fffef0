//! What `ecu-agent bootenv show` prints: the decoded boot state of an environment and the
//! decision its next boot takes ([`Report`], a table or JSON).

use std::fmt;

use bootloader_hooks::{BootState, Decision, DecisionKind, Flavor, Scheme, Slot};

use super::{flavor, load, next_boot, BootEnvError};
use crate::bootcfg::BootConfig;

/// One slot in a [`Report`].
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct SlotReport {
    /// Boot priority.
    pub priority: u8,
    /// Boots left on trial.
    pub tries_left: u8,
    /// Marked good.
    pub successful: bool,
    /// The deployment or commit it holds (empty: none).
    pub name: String,
}

/// Both slots of a [`Report`].
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct SlotsReport {
    /// Slot A.
    #[serde(rename = "A")]
    pub a: SlotReport,
    /// Slot B.
    #[serde(rename = "B")]
    pub b: SlotReport,
}

/// The current copy of a redundant U-Boot environment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct CopyReport {
    /// 0 or 1.
    pub index: usize,
    /// Its flag.
    pub flag: u8,
}

/// The decoded state of an environment and the decision the next boot takes: what
/// `ecu-agent bootenv show` prints (as a table, or this structure as JSON).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Report {
    /// `native`, `rauc` or `mender`.
    pub scheme: &'static str,
    /// `uboot` or `grub`.
    pub bootloader: &'static str,
    /// Boot-state revision.
    pub revision: u32,
    /// The slot the next boot takes (`A` or `B`).
    pub next_boot: Slot,
    /// Why: `confirmed`, `trial`, `last-resort`, `rollback`, `refill` or `rescue` in JSON
    /// ([`DecisionKind::as_str`]).
    pub next_boot_kind: DecisionKind,
    /// Whether the next boot writes the environment (uses a try, or rolls back).
    pub next_boot_writes: bool,
    /// Both slots.
    pub slots: SlotsReport,
    /// For a redundant U-Boot env: the current copy and its flag.
    pub current_copy: Option<CopyReport>,
}

impl Report {
    /// The report of `state`, decoded with `scheme` from a `flavor` environment.
    pub fn new(
        scheme: Scheme,
        flavor: Flavor,
        state: &BootState,
        current_copy: Option<(usize, u8)>,
    ) -> Report {
        Report::with_decision(scheme, flavor, state, &state.decide(), current_copy)
    }

    /// The report of `state` with `d` as the next boot (the scheme's own boot code,
    /// [`next_boot`]).
    pub fn with_decision(
        scheme: Scheme,
        flavor: Flavor,
        state: &BootState,
        d: &Decision,
        current_copy: Option<(usize, u8)>,
    ) -> Report {
        let slot = |s: Slot| {
            let st = state.slot(s);
            SlotReport {
                priority: st.priority,
                tries_left: st.tries_left,
                successful: st.successful,
                name: st.name.as_str().to_string(),
            }
        };
        Report {
            scheme: scheme.name(),
            bootloader: flavor.as_str(),
            revision: state.revision,
            next_boot: d.slot,
            next_boot_kind: d.kind,
            next_boot_writes: d.changed,
            slots: SlotsReport {
                a: slot(Slot::A),
                b: slot(Slot::B),
            },
            current_copy: current_copy.map(|(index, flag)| CopyReport { index, flag }),
        }
    }
}

/// Reads the environment strictly and reports its state and the next boot's decision.
pub fn report(cfg: &BootConfig) -> Result<Report, BootEnvError> {
    let (img, state) = load(cfg)?;
    let next = next_boot(cfg, &img)?;
    Ok(Report::with_decision(
        cfg.scheme,
        flavor(cfg),
        &state,
        &next.decision,
        img.loaded.current_copy,
    ))
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "scheme: {}  revision: {}", self.scheme, self.revision)?;
        if let Some(c) = self.current_copy {
            writeln!(f, "current copy: {} (flag {})", c.index + 1, c.flag)?;
        }
        writeln!(f, "slot  priority  tries_left  successful  name")?;
        for (s, st) in [(Slot::A, &self.slots.a), (Slot::B, &self.slots.b)] {
            writeln!(
                f,
                "{:<5} {:<9} {:<11} {:<11} {}",
                s.as_str(),
                st.priority,
                st.tries_left,
                if st.successful { "yes" } else { "no" },
                if st.name.is_empty() { "-" } else { &st.name }
            )?;
        }
        write!(
            f,
            "next boot: {} ({}{})",
            self.next_boot,
            self.next_boot_kind.as_str(),
            if self.next_boot_writes && self.next_boot_kind == DecisionKind::Trial {
                ", one try used"
            } else if self.next_boot_writes {
                ", the bootloader writes the environment"
            } else {
                ", nothing written"
            }
        )
    }
}
