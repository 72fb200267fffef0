//! `ecu-agent bootenv ...`: inspect a bootloader environment the way an integrator checks one.
//! A thin adapter over `agent_linux::deploy::env` (the one reader of environments, bounded by
//! the size given) and the decoding of `bootloader-hooks`, beside the other commands of the
//! CLI.

use std::path::{Path, PathBuf};

use agent_linux::bootcfg::{BackendKind, BootConfig, DEFAULT_ENV_SIZE, MAX_ENV_SIZE};
use agent_linux::deploy::env;
use anyhow::{bail, Context};
use bootloader_hooks::uboot_env::Layout;
use bootloader_hooks::{MenderConfig, RaucConfig, Scheme};

/// Bootloader environment commands.
#[derive(Debug, clap::Subcommand)]
pub enum BootenvCommand {
    /// Decode a U-Boot or GRUB environment: each slot's priority, tries left and success flag,
    /// and which slot the next boot takes.
    Show(ShowArgs),
}

/// Which variables hold the boot state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SchemeArg {
    /// Our ECU_* variables (read by the shipped boot.scr / grub.cfg).
    Native,
    /// RAUC: BOOT_ORDER, BOOT_x_LEFT (U-Boot) or ORDER, x_OK, x_TRY (GRUB).
    Rauc,
    /// Mender: mender_boot_part, upgrade_available, bootcount, bootlimit.
    Mender,
}

impl From<SchemeArg> for Scheme {
    fn from(s: SchemeArg) -> Scheme {
        match s {
            SchemeArg::Native => Scheme::Native,
            SchemeArg::Rauc => Scheme::Rauc(RaucConfig::default()),
            SchemeArg::Mender => Scheme::Mender(MenderConfig::default()),
        }
    }
}

/// Arguments of `bootenv show`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["uboot_env", "grub_env"])))]
pub struct ShowArgs {
    /// U-Boot environment image; give it twice for a redundant environment (one copy per file).
    #[arg(long = "uboot-env", value_name = "FILE", action = clap::ArgAction::Append)]
    pub uboot_env: Vec<PathBuf>,
    /// GRUB environment block (grubenv).
    #[arg(long = "grub-env", value_name = "FILE", conflicts_with = "uboot_env")]
    pub grub_env: Option<PathBuf>,
    /// Size of one U-Boot environment copy (CONFIG_ENV_SIZE), decimal or 0x-hex, at most 16 MiB;
    /// default: the file's size.
    #[arg(long = "env-size", value_name = "N", value_parser = parse_size)]
    pub env_size: Option<usize>,
    /// Which variables hold the boot state.
    #[arg(long, value_enum, default_value = "native")]
    pub scheme: SchemeArg,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

fn parse_size(s: &str) -> Result<usize, String> {
    let r = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => usize::from_str_radix(h, 16),
        None => s.parse(),
    };
    r.map_err(|_| format!("{s:?} is not a size (decimal or 0x-hex)"))
}

fn file_len(p: &Path) -> anyhow::Result<usize> {
    let len = std::fs::metadata(p)
        .with_context(|| format!("cannot read {}", p.display()))?
        .len();
    Ok(usize::try_from(len).unwrap_or(usize::MAX))
}

/// Validates the arguments into the configuration of the environment to read.
pub fn boot_config(args: &ShowArgs) -> anyhow::Result<BootConfig> {
    let scheme = args.scheme.into();
    let check_size = |size: usize, layout: Layout, what: &str| {
        if size > MAX_ENV_SIZE {
            bail!("{what} is {size} bytes, more than the {MAX_ENV_SIZE} an environment may have; give --env-size");
        }
        if size < layout.min_size() {
            bail!(
                "{what} is {size} bytes but a U-Boot environment needs at least {} (its header and an empty list); give --env-size",
                layout.min_size()
            );
        }
        Ok(size)
    };
    let (kind, env, env_redundant, env_size) = match (&args.grub_env, args.uboot_env.as_slice()) {
        (Some(g), []) => {
            if args.env_size.is_some() {
                bail!("--env-size applies to U-Boot environments only");
            }
            // GRUB blocks are 1 KiB; read at most the default U-Boot size.
            (BackendKind::Grub, g, None, DEFAULT_ENV_SIZE)
        }
        (None, [one]) => {
            let size = match args.env_size {
                Some(n) => check_size(n, Layout::Single, "--env-size")?,
                None => check_size(
                    file_len(one)?,
                    Layout::Single,
                    &format!("{}", one.display()),
                )?,
            };
            (BackendKind::Uboot, one, None, size)
        }
        (None, [a, b]) => {
            let size = match args.env_size {
                Some(n) => check_size(n, Layout::Redundant, "--env-size")?,
                None => {
                    let (la, lb) = (file_len(a)?, file_len(b)?);
                    if la != lb {
                        bail!("the two U-Boot env copies are {la} and {lb} bytes; give --env-size");
                    }
                    check_size(la, Layout::Redundant, &format!("{}", a.display()))?
                }
            };
            (BackendKind::UbootRedundant, a, Some((b.clone(), 0)), size)
        }
        (None, []) => bail!("give --uboot-env FILE [--uboot-env FILE2] or --grub-env FILE"),
        (None, _) => bail!("--uboot-env takes at most two files (the two redundant copies)"),
        (Some(_), _) => bail!("give either --uboot-env or --grub-env, not both"),
    };
    Ok(BootConfig::for_env(
        kind,
        (env.clone(), 0),
        env_redundant,
        env_size,
        scheme,
    ))
}

/// The text `bootenv show` prints.
pub fn show_output(args: &ShowArgs) -> anyhow::Result<String> {
    let cfg = boot_config(args)?;
    let report = env::report(&cfg)
        .with_context(|| format!("cannot read the boot state ({} scheme)", cfg.scheme.name()))?;
    if args.json {
        Ok(serde_json::to_string_pretty(&report)?)
    } else {
        Ok(report.to_string())
    }
}

/// Runs a `bootenv` command.
pub fn run(cmd: BootenvCommand) -> anyhow::Result<()> {
    match cmd {
        BootenvCommand::Show(args) => {
            let out = show_output(&args)?;
            println!("{out}");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bootloader_hooks::{BootState, Slot, SlotName};
    use clap::Parser;

    /// Creates the environment `cfg` names, holding only `st`.
    fn init(kind: BackendKind, path: &Path, size: usize, st: &BootState) {
        let cfg = BootConfig::for_env(kind, (path.to_path_buf(), 0), None, size, Scheme::Native);
        env::write(&cfg, None, st, &[]).unwrap();
    }

    #[derive(Debug, Parser)]
    struct T {
        #[command(subcommand)]
        cmd: BootenvCommand,
    }

    fn show(args: &[&str]) -> anyhow::Result<String> {
        let t = T::try_parse_from(std::iter::once("t").chain(args.iter().copied()))?;
        let BootenvCommand::Show(a) = t.cmd;
        show_output(&a)
    }

    #[test]
    fn show_json_for_uboot_and_grub() {
        let dir = tempfile::tempdir().unwrap();
        let u = dir.path().join("u.env");
        let mut st = BootState::initial(Slot::A, SlotName::from_str("c0").unwrap());
        st.stage(Slot::B, 3, SlotName::from_str("c1").unwrap())
            .unwrap();
        init(BackendKind::Uboot, &u, 0x2000, &st);
        let out = show(&["show", "--uboot-env", u.to_str().unwrap(), "--json"]).unwrap();
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["next_boot"], "B");
        assert_eq!(v["slots"]["B"]["tries_left"], 3);
        assert_eq!(v["slots"]["A"]["tries_left"], 0);
        assert_eq!(v["slots"]["A"]["successful"], true);

        let g = dir.path().join("grubenv");
        init(BackendKind::Grub, &g, 0, &st);
        let out = show(&["show", "--grub-env", g.to_str().unwrap()]).unwrap();
        assert!(out.contains("next boot: B"), "{out}");
    }

    #[test]
    fn show_rejects_garbage_and_bad_args() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("junk");
        std::fs::write(&f, vec![0x41u8; 4096]).unwrap();
        let err = show(&["show", "--uboot-env", f.to_str().unwrap()]).unwrap_err();
        assert!(format!("{err:#}").contains("CRC mismatch"), "{err:#}");
        let err = show(&["show", "--grub-env", f.to_str().unwrap()]).unwrap_err();
        assert!(
            format!("{err:#}").contains("not a GRUB environment"),
            "{err:#}"
        );
        assert!(show(&["show"]).is_err());
        assert!(show(&[
            "show",
            "--uboot-env",
            "a",
            "--uboot-env",
            "b",
            "--uboot-env",
            "c"
        ])
        .is_err());
    }

    #[test]
    fn show_reads_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("empty");
        std::fs::write(&f, b"").unwrap();
        let fp = f.to_str().unwrap();
        // A huge --env-size on an empty file: a clear error, no allocation.
        let err = show(&["show", "--uboot-env", fp, "--env-size", "0xffffffffffff"]).unwrap_err();
        assert!(
            format!("{err:#}").contains("more than the 16777216"),
            "{err:#}"
        );
        let err = show(&["show", "--uboot-env", fp, "--env-size", "0x1000000"]).unwrap_err();
        assert!(
            format!("{err:#}").contains("holds 0 bytes but the environment needs 16777216"),
            "{err:#}"
        );
        let err = show(&["show", "--uboot-env", fp, "--uboot-env", fp]).unwrap_err();
        assert!(format!("{err:#}").contains("needs at least 7"), "{err:#}");
        let err = show(&["show", "--uboot-env", fp]).unwrap_err();
        assert!(format!("{err:#}").contains("needs at least 6"), "{err:#}");
        // Devices that never end.
        let err = show(&["show", "--grub-env", "/dev/zero"]).unwrap_err();
        assert!(
            format!("{err:#}").contains("longer than 16384 bytes"),
            "{err:#}"
        );
        let err = show(&["show", "--uboot-env", "/dev/zero", "--env-size", "0x1000"]).unwrap_err();
        assert!(format!("{err:#}").contains("CRC mismatch"), "{err:#}");
        let err = show(&["show", "--uboot-env", "/dev/zero"]).unwrap_err();
        assert!(format!("{err:#}").contains("needs at least"), "{err:#}");
    }
}
