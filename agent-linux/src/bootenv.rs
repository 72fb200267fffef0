//! `ecu-agent bootenv ...`: inspect a bootloader environment the way an integrator checks one.
//! A thin adapter over `bootloader_hooks::host`; all decoding lives there.
//!
//! Wire it in with `Bootenv { #[command(subcommand)] cmd: bootenv::BootenvCommand }` and
//! `bootenv::run(cmd)`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use bootloader_hooks::host::{Backend, BootEnv};
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
    /// Size of one U-Boot environment copy (CONFIG_ENV_SIZE), decimal or 0x-hex; default: the
    /// file's size.
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
    Ok(len as usize)
}

/// Validates the arguments into a [`BootEnv`].
pub fn boot_env(args: &ShowArgs) -> anyhow::Result<BootEnv> {
    let backend = match (&args.grub_env, args.uboot_env.as_slice()) {
        (Some(g), []) => {
            if args.env_size.is_some() {
                bail!("--env-size applies to U-Boot environments only");
            }
            Backend::grub(g)
        }
        (None, [one]) => {
            let size = match args.env_size {
                Some(n) => n,
                None => file_len(one)?,
            };
            Backend::uboot_single(one, 0, size)
        }
        (None, [a, b]) => {
            let size = match args.env_size {
                Some(n) => n,
                None => {
                    let (la, lb) = (file_len(a)?, file_len(b)?);
                    if la != lb {
                        bail!("the two U-Boot env copies are {la} and {lb} bytes; give --env-size");
                    }
                    la
                }
            };
            Backend::uboot_redundant(a, 0, b, 0, size)
        }
        (None, []) => bail!("give --uboot-env FILE [--uboot-env FILE2] or --grub-env FILE"),
        (None, _) => bail!("--uboot-env takes at most two files (the two redundant copies)"),
        (Some(_), _) => bail!("give either --uboot-env or --grub-env, not both"),
    };
    Ok(BootEnv::new(backend, args.scheme.into()))
}

/// The text `bootenv show` prints.
pub fn show_output(args: &ShowArgs) -> anyhow::Result<String> {
    let env = boot_env(args)?;
    let report = env
        .report()
        .with_context(|| format!("cannot read the boot state ({} scheme)", env.scheme.name()))?;
    if args.json {
        let v: serde_json::Value = serde_json::from_str(&report.to_json())
            .context("internal error: the report is not valid JSON")?;
        Ok(serde_json::to_string_pretty(&v)?)
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
        BootEnv::new(Backend::uboot_single(&u, 0, 0x2000), Scheme::Native)
            .init(&st)
            .unwrap();
        let out = show(&["show", "--uboot-env", u.to_str().unwrap(), "--json"]).unwrap();
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["next_boot"], "B");
        assert_eq!(v["slots"]["B"]["tries_left"], 3);
        assert_eq!(v["slots"]["A"]["tries_left"], 0);
        assert_eq!(v["slots"]["A"]["successful"], true);

        let g = dir.path().join("grubenv");
        BootEnv::new(Backend::grub(&g), Scheme::Native)
            .init(&st)
            .unwrap();
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
}
