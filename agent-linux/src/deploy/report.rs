//! What the commands that change the boot state report: [`StageReport`] (`install`,
//! `deploy`), [`BootReport`] (`mark-good`, `rollback`, `simulate-boot`) and [`RepairReport`]
//! (`repair-env`), serialized as they are for `--json`, and the typed values reports carry
//! ([`StageAction`], [`RepairAction`], [`EnvFound`], [`BootedFrom`], [`Role`],
//! [`SysrootState`]): each one a closed set of names, serialized and displayed as its name.

use std::fmt;

use bootloader_hooks::{DecisionKind, Slot};

use super::{env, BootedSource};
use crate::apply::Applied;
use crate::checkout;

/// A closed set of names a report carries: the enum, its `as_str`, `Display` and
/// `serde::Serialize` (as the name), from one table.
macro_rules! named {
    ($(#[$m:meta])* pub enum $name:ident { $($(#[$vm:meta])* $v:ident => $s:literal,)+ }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vm])* $v,)+
        }

        impl $name {
            /// Its name in reports, text and JSON.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$v => $s,)+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
    };
}

named! {
    /// What `install` or `deploy` did with the commit ([`StageReport::action`]).
    pub enum StageAction {
        /// The first deployment of the sysroot, recorded as booted.
        Provisioned => "provisioned",
        /// Staged in the slot that is not booted: the next boot tries it.
        Staged => "staged",
        /// It was already what the next boot takes; nothing changed.
        Unchanged => "unchanged",
    }
}

named! {
    /// What `repair-env` did ([`RepairReport::action`]).
    pub enum RepairAction {
        /// The environment was rebuilt.
        Repaired => "repaired",
        /// `--dry-run`: it would have been rebuilt.
        WouldRepair => "would-repair",
        /// The environment already agrees with what runs.
        Unchanged => "unchanged",
    }
}

named! {
    /// What `repair-env` found in the environment ([`RepairReport::found`]).
    pub enum EnvFound {
        /// A boot state that agrees with what runs.
        Ok => "ok",
        /// No environment, a blank one, or one that does not decode.
        Lost => "lost",
        /// A valid environment without the scheme's variables.
        NoBootState => "no-boot-state",
        /// A slot names something that is not a deployment.
        Invalid => "invalid",
        /// The boot state disagrees with the running system or with what is on disk.
        Disagrees => "disagrees",
    }
}

named! {
    /// How `repair-env` identified the booted deployment ([`RepairReport::booted_from`]).
    pub enum BootedFrom {
        /// `ecu.deployment=` on the kernel command line.
        KernelCommandLine => "kernel command line",
        /// The only deployment on disk.
        OnlyDeployment => "only deployment on disk",
        /// The environment, which agrees with what runs (nothing rebuilt).
        Environment => "environment",
    }
}

named! {
    /// A deployment's role in `status` ([`super::DeploymentStatus::role`]).
    pub enum Role {
        /// Booted and marked good.
        Booted => "booted",
        /// Booted, not marked good.
        Trial => "trial",
        /// Not booted; the next boot tries it.
        Staged => "staged",
        /// Not booted, marked good: the fallback.
        Rollback => "rollback",
        /// Used its tries without being marked good.
        Failed => "failed",
        /// Given up (priority 0).
        RolledBack => "rolled-back",
    }
}

named! {
    /// The state of the sysroot in `status` ([`super::Status::state`]).
    pub enum SysrootState {
        /// No deployment yet (or the bootloader's own environment, not adopted yet).
        Empty => "empty",
        /// Deployments on disk but no boot state names them.
        EnvLost => "env-lost",
        /// The booted deployment is good and the next boot keeps it.
        Idle => "idle",
        /// A deployment is staged: the next boot tries it.
        Staged => "staged",
        /// The booted deployment is on trial.
        Trial => "trial",
        /// A deployment failed its trial or was given up; the device is back on the other.
        RolledBack => "rolled-back",
        /// The next boot goes to the other slot (a rollback).
        RollbackPending => "rollback-pending",
    }
}

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
    pub slot: Slot,
    /// `provisioned` (first deployment, booted), `staged` (next boot tries it) or
    /// `unchanged` (it was already the next boot).
    pub action: StageAction,
    /// Tries it got.
    pub tries: u8,
    /// The deployment it replaced.
    pub replaced: Option<String>,
    /// When this install adopted the bootloader's environment: the booted slot, where the
    /// running system was recorded as `adopted-system`.
    pub adopted: Option<Slot>,
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
    pub action: RepairAction,
    /// Why the environment needed rebuilding (`lost`, `no-boot-state`, `invalid`,
    /// `disagrees`), or `ok`.
    pub found: EnvFound,
    /// The booted slot.
    pub booted_slot: Slot,
    /// Where the booted slot was learnt.
    pub booted_source: BootedSource,
    /// The booted deployment.
    pub booted: String,
    /// How the booted deployment was identified: `kernel command line`, `only deployment on
    /// disk`, or `environment` (unchanged).
    pub booted_from: BootedFrom,
    /// The other deployment on disk (recorded in the other slot as given up), if any.
    pub fallback: Option<String>,
    /// The boot state written (or that would be).
    pub state: env::Report,
}

#[cfg(test)]
mod test {
    use super::*;

    /// The names are the JSON values `--json` has always carried (docs/SYSROOT.md, the C
    /// API's strings): serialized, displayed and `as_str` alike.
    #[test]
    fn names_are_the_json_values() {
        fn check<T: serde::Serialize + fmt::Display + Copy>(all: &[T], names: &[&str]) {
            let got: Vec<String> = all
                .iter()
                .map(|v| {
                    let json = serde_json::to_value(v).unwrap();
                    assert_eq!(json.as_str(), Some(v.to_string().as_str()));
                    v.to_string()
                })
                .collect();
            assert_eq!(got, names);
        }
        // The slots the reports carry (`slot`, `booted_slot`, `next_boot`, `adopted`), and
        // health.json's, which is read back.
        check(&Slot::ALL, &["A", "B"]);
        assert_eq!(serde_json::from_str::<Slot>(r#""B""#).unwrap(), Slot::B);
        use StageAction as S;
        check(
            &[S::Provisioned, S::Staged, S::Unchanged],
            &["provisioned", "staged", "unchanged"],
        );
        use RepairAction as A;
        check(
            &[A::Repaired, A::WouldRepair, A::Unchanged],
            &["repaired", "would-repair", "unchanged"],
        );
        use EnvFound as F;
        check(
            &[F::Ok, F::Lost, F::NoBootState, F::Invalid, F::Disagrees],
            &["ok", "lost", "no-boot-state", "invalid", "disagrees"],
        );
        use BootedFrom as B;
        check(
            &[B::KernelCommandLine, B::OnlyDeployment, B::Environment],
            &[
                "kernel command line",
                "only deployment on disk",
                "environment",
            ],
        );
        use Role as R;
        check(
            &[
                R::Booted,
                R::Trial,
                R::Staged,
                R::Rollback,
                R::Failed,
                R::RolledBack,
            ],
            &[
                "booted",
                "trial",
                "staged",
                "rollback",
                "failed",
                "rolled-back",
            ],
        );
        use SysrootState as T;
        check(
            &[
                T::Empty,
                T::EnvLost,
                T::Idle,
                T::Staged,
                T::Trial,
                T::RolledBack,
                T::RollbackPending,
            ],
            &[
                "empty",
                "env-lost",
                "idle",
                "staged",
                "trial",
                "rolled-back",
                "rollback-pending",
            ],
        );
    }
}
