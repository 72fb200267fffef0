//! What the commands that change the boot state report: [`StageReport`] (`install`,
//! `deploy`), [`BootReport`] (`mark-good`, `rollback`, `simulate-boot`) and [`RepairReport`]
//! (`repair-env`), serialized as they are for `--json`.

use bootloader_hooks::DecisionKind;

use super::{env, BootedSource};
use crate::apply::Applied;
use crate::checkout;

/// What `install` or `deploy` did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StageReport {
    /// What was applied (`install` only).
    pub applied: Option<Applied>,
    /// The commit staged.
    pub commit: String,
    /// Its version.
    pub version: String,
    /// The deployment directory's name.
    pub deployment: String,
    /// The slot it is in.
    pub slot: String,
    /// `provisioned` (first deployment, booted), `staged` (next boot tries it) or
    /// `unchanged` (it was already the next boot).
    pub action: String,
    /// Tries it got.
    pub tries: u8,
    /// The deployment it replaced.
    pub replaced: Option<String>,
    /// When this install adopted the bootloader's environment: the booted slot, where the
    /// running system was recorded as `adopted-system`.
    pub adopted: Option<String>,
    /// Files, symlinks and directories checked out.
    pub checkout: Option<checkout::CheckoutStats>,
    /// Whether the checkout hard-linked (else it copied).
    pub hardlinked: bool,
}

/// What `mark-good`, `rollback` and `simulate-boot` did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BootReport {
    /// The slot concerned (booted for mark-good, next boot for rollback and simulate-boot;
    /// `rescue` when simulate-boot boots RAUC's GRUB rescue entry).
    pub slot: String,
    /// The deployment in it.
    pub deployment: String,
    /// Whether the environment was written.
    pub changed: bool,
    /// For `simulate-boot`: why that slot; `confirmed`, `trial`, `last-resort`, `rollback`,
    /// `refill` or `rescue` in JSON (`DecisionKind::as_str`).
    pub kind: Option<DecisionKind>,
    /// Tries the slot has left afterwards.
    pub tries_left: u8,
    /// For `simulate-boot`: whether the booted deployment matches its commit.
    pub verified: Option<bool>,
    /// For `mark-good`: the anti-rollback floor before and after (raised to the security
    /// version of the deployment marked good, never lowered).
    pub security_floor: Option<(u64, u64)>,
}

/// What `repair-env` found and wrote.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RepairReport {
    /// `repaired`, `would-repair` (`--dry-run`) or `unchanged` (the environment already agrees
    /// with what runs).
    pub action: String,
    /// Why the environment needed rebuilding (`lost`, `no-boot-state`, `invalid`,
    /// `disagrees`), or `ok`.
    pub found: String,
    /// The booted slot.
    pub booted_slot: String,
    /// Where the booted slot was learnt.
    pub booted_source: BootedSource,
    /// The booted deployment.
    pub booted: String,
    /// How the booted deployment was identified: `kernel command line`, `only deployment on
    /// disk`, or `environment` (unchanged).
    pub booted_from: String,
    /// The other deployment on disk (recorded in the other slot as given up), if any.
    pub fallback: Option<String>,
    /// The boot state written (or that would be).
    pub state: env::Report,
}
