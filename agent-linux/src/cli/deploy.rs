//! A/B deployment commands: install, deploy, mark-good, rollback, cleanup, simulate-boot,
//! verify, repair-env (`status` and `health-check` have their own modules). A thin layer
//! over `agent_linux::deploy`.

use std::path::PathBuf;

use agent_linux::deploy::{self, Deployer, Options, RepairAction, StageAction, StageReport};
use anyhow::{bail, Context};
use bootloader_hooks::{DecisionKind, Slot};

use super::output::{self, human_bytes};
use super::{esc, open_source, warn_unsigned, ProgressArgs, TrustArgs};
use agent_linux::progress::Phase;

fn parse_slot(s: &str) -> Result<Slot, String> {
    deploy::parse_slot(s).ok_or_else(|| format!("{s:?} is not a slot; give A or B"))
}

/// Options every deployment command takes.
#[derive(Debug, clap::Args)]
pub struct SysrootOpts {
    /// The sysroot (holds `repo/`, `deploy/`, `boot/`, `agent.conf`; see docs/SYSROOT.md).
    #[arg(long, value_name = "S")]
    pub(super) sysroot: PathBuf,
    /// The booted slot, instead of `ECU_AGENT_BOOTED_SLOT`, the kernel command line
    /// (`ecu.slot=`, `rauc.slot=`, or `root=` mapped to a slot by agent.conf's
    /// `slot-a-root`/`slot-b-root`, Mender's /dev/mmcblk0p2 and p3 by default with scheme
    /// mender) or `S/run/booted` (read only when the command line names no slot and no root
    /// device). A root= that is neither slot's is refused, never guessed.
    #[arg(long, value_name = "A|B", value_parser = parse_slot)]
    booted_slot: Option<Slot>,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    pub(super) json: bool,
}

impl SysrootOpts {
    pub(super) fn options(&self, tries: Option<u8>) -> Options {
        Options {
            booted: self.booted_slot,
            tries,
        }
    }
    pub(super) fn open(&self, tries: Option<u8>) -> anyhow::Result<Deployer> {
        Ok(Deployer::open(&self.sysroot, &self.options(tries))?)
    }
}

/// Arguments of `ecu-agent install`.
#[derive(Debug, clap::Args)]
pub struct InstallArgs {
    #[command(flatten)]
    s: SysrootOpts,
    #[command(flatten)]
    trust: TrustArgs,
    /// Install an update for REF although the device follows another ref (agent.conf's
    /// `ref` lines, or the ref it was provisioned with), and follow REF from now on, as
    /// `rpm-ostree rebase` does. Without it, an update for a ref the device does not follow
    /// is refused.
    #[arg(long, value_name = "REF")]
    rebase: Option<String>,
    /// Boots the new deployment gets to be marked good (default: agent.conf's `tries`, 3).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(1..=9))]
    tries: Option<u8>,
    /// The `.update` file, or `-` for standard input. An install interrupted earlier resumes
    /// after its last verified part (`applied.resumed_from` in `--json`).
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// Standard input holds the update from this byte on (the rest of an interrupted
    /// transfer): the install resumes from its checkpoint, which must be at or after this
    /// byte (an interrupted install prints where).
    #[arg(long, value_name = "BYTE")]
    resume_from_offset: Option<u64>,
    #[command(flatten)]
    progress: ProgressArgs,
}

/// Arguments of `ecu-agent deploy`.
#[derive(Debug, clap::Args)]
pub struct DeployArgs {
    #[command(flatten)]
    s: SysrootOpts,
    /// Boots the new deployment gets to be marked good (default: agent.conf's `tries`, 3).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(1..=9))]
    tries: Option<u8>,
    /// The commit: a ref, a full id or a unique prefix (at least 4 hex characters).
    #[arg(value_name = "COMMIT")]
    commit: String,
}

/// Arguments of `ecu-agent mark-good`, `rollback`, `cleanup`, `simulate-boot`.
#[derive(Debug, clap::Args)]
pub struct PlainArgs {
    #[command(flatten)]
    s: SysrootOpts,
}

/// Arguments of `ecu-agent repair-env`.
#[derive(Debug, clap::Args)]
pub struct RepairArgs {
    #[command(flatten)]
    s: SysrootOpts,
    /// Say what would be written, write nothing.
    #[arg(long)]
    dry_run: bool,
}

/// Arguments of `ecu-agent verify`.
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    s: SysrootOpts,
    /// The slot whose deployment to check (default: the booted one).
    #[arg(long, value_name = "A|B", value_parser = parse_slot)]
    slot: Option<Slot>,
}

pub fn install(a: InstallArgs) -> anyhow::Result<()> {
    let mut opts = a.trust.install_options()?;
    opts.rebase = a.rebase.clone();
    let cfg = agent_linux::bootcfg::BootConfig::load(&a.s.sysroot)?;
    let trust = deploy::trust_for(&a.s.sysroot, &cfg, &opts)?;
    if trust.trusted_keys.is_empty() && !trust.allow_unsigned {
        // Before the sysroot is created or anything read.
        return Err(agent_linux::apply::ApplyError::NoTrustedKeys)
            .with_context(|| format!("cannot install {}", a.file.display()));
    }
    let mut rep = a.progress.reporter("install", &a.file);
    let res = (|| {
        let d = Deployer::open_or_create(&a.s.sysroot, &a.s.options(a.tries))?;
        let mut source = open_source(&a.file)?;
        if let Some(n) = source.len() {
            rep.set_total(n);
        }
        let input = source.input(a.resume_from_offset)?;
        d.install_from(input, &opts, &mut |p| {
            rep.install(p);
            if p.done {
                // Then the commit is recorded, checked out and staged.
                rep.set_phase(Phase::Deploying);
            }
        })
        .with_context(|| format!("cannot install {}", a.file.display()))
    })();
    let commit = |r: &StageReport| r.applied.as_ref().map(|ap| ap.commit.clone());
    let r = rep.end(res, commit)?;
    if let Some(applied) = &r.applied {
        warn_unsigned(applied);
    }
    if let Some(to) = &a.rebase {
        eprintln!("the device now follows {}", esc(to));
    }
    print_staged(&r, a.s.json)
}

pub fn deploy(a: DeployArgs) -> anyhow::Result<()> {
    let d = a.s.open(a.tries)?;
    let r = d
        .deploy(&a.commit)
        .with_context(|| format!("cannot deploy {}", a.commit))?;
    print_staged(&r, a.s.json)
}

/// What `install` and `deploy` print: the report as JSON, or one line saying what the next
/// boot will do.
pub(super) fn print_staged(r: &StageReport, json: bool) -> anyhow::Result<()> {
    if json {
        return output::json(r);
    }
    let version = esc(&r.version);
    let what = match r.action {
        _ if r.adopted.is_some() => format!(
            "adopted the bootloader's environment (the running system in slot {} is recorded as {}); staged {} ({version}) in slot {}: the next boot tries it ({} tries)",
            r.adopted.map_or("?", Slot::as_str),
            deploy::ADOPTED_NAME,
            r.deployment,
            r.slot,
            r.tries
        ),
        StageAction::Provisioned => format!(
            "provisioned {} ({version}) as the booted deployment in slot {}",
            r.deployment, r.slot
        ),
        StageAction::Unchanged => format!(
            "{} ({version}) is already what slot {} boots next; nothing changed",
            r.commit, r.slot
        ),
        _ => format!(
            "staged {} ({version}) in slot {}: the next boot tries it ({} tries){}",
            r.deployment,
            r.slot,
            r.tries,
            r.replaced
                .as_ref()
                .map(|o| format!(", replacing {o}"))
                .unwrap_or_default()
        ),
    };
    output::out(&format!("{what}\n"))?;
    Ok(())
}

pub fn mark_good(a: PlainArgs) -> anyhow::Result<()> {
    let r = a.s.open(None)?.mark_good().context("cannot mark good")?;
    if a.s.json {
        return output::json(&r);
    }
    let mut text = if r.changed {
        format!(
            "slot {} ({}) marked good; its try counter is cleared\n",
            r.slot, r.deployment
        )
    } else {
        format!(
            "slot {} ({}) was already good; nothing written\n",
            r.slot, r.deployment
        )
    };
    if let Some((old, new)) = r.security_floor {
        if new > old {
            text.push_str(&format!(
                "anti-rollback floor raised from {old} to {new}: updates below security version {new} are refused from now on\n"
            ));
        }
    }
    output::out(&text)?;
    Ok(())
}

pub fn rollback(a: PlainArgs) -> anyhow::Result<()> {
    let r = a.s.open(None)?.rollback().context("cannot roll back")?;
    if a.s.json {
        return output::json(&r);
    }
    output::out(&if r.changed {
        format!("the next boot takes slot {} ({})\n", r.slot, r.deployment)
    } else {
        format!(
            "already rolled back: the next boot takes slot {} ({}); the other slot was given up\n",
            r.slot, r.deployment
        )
    })?;
    Ok(())
}

pub fn cleanup(a: PlainArgs) -> anyhow::Result<()> {
    let r = a.s.open(None)?.cleanup().context("cannot clean up")?;
    if a.s.json {
        return output::json(&r);
    }
    output::out(&format!(
        "freed {}: {} deployments, {} commits, {} dirtrees, {} dirmetas, {} files, {} staging leftovers removed; kept {} commits\n",
        human_bytes(r.bytes_freed),
        r.deployments.len(),
        r.commits,
        r.dirtrees,
        r.dirmetas,
        r.files,
        r.tmp_files,
        r.kept_commits.len()
    ))?;
    Ok(())
}

pub fn simulate_boot(a: PlainArgs) -> anyhow::Result<()> {
    let r =
        a.s.open(None)?
            .simulate_boot()
            .context("cannot simulate a boot")?;
    if a.s.json {
        return output::json(&r);
    }
    let kind = r.kind.map_or("", DecisionKind::as_str);
    output::out(&format!(
        "booted slot {} ({}): {}{}{}\n",
        r.slot,
        r.deployment,
        kind,
        if r.kind == Some(DecisionKind::Trial) {
            let tries = if r.tries_left == 1 { "try" } else { "tries" };
            format!(", {} {tries} left after this one", r.tries_left)
        } else {
            String::new()
        },
        match r.verified {
            Some(true) => "; its files match its commit",
            Some(false) => "; ITS FILES DO NOT MATCH ITS COMMIT",
            None => "",
        }
    ))?;
    if r.verified == Some(false) {
        bail!("the booted deployment {} is damaged", r.deployment);
    }
    Ok(())
}

pub fn verify(a: VerifyArgs) -> anyhow::Result<()> {
    let (name, r) = a.s.open(None)?.verify_slot(a.slot)?;
    if a.s.json {
        output::json(&serde_json::json!({"deployment": name, "ok": r.ok(), "report": r}))?;
    } else {
        let mut s = format!(
            "{name}: {} files, {} symlinks, {} directories checked\n",
            r.files, r.symlinks, r.dirs
        );
        for p in &r.problems {
            s.push_str(&format!("  {}\n", esc(p)));
        }
        output::out(&s)?;
    }
    if !r.ok() {
        bail!("deployment {name} does not match its commit");
    }
    Ok(())
}

pub fn repair_env(a: RepairArgs) -> anyhow::Result<()> {
    let r =
        a.s.open(None)?
            .repair_env(a.dry_run)
            .context("cannot repair the boot environment")?;
    if a.s.json {
        return output::json(&r);
    }
    let fallback = match &r.fallback {
        Some(f) => format!(
            "; slot {} holds {f}, given up (nothing says it ever booted well; the next install replaces it)",
            r.booted_slot.other()
        ),
        None => "; the other slot is empty".into(),
    };
    output::out(&match r.action {
        RepairAction::Unchanged => format!(
            "the boot environment agrees with what runs (slot {} boots {}); nothing written\n",
            r.booted_slot, r.booted
        ),
        RepairAction::WouldRepair => format!(
            "would rebuild the boot environment ({}): slot {} boots {} (booted, identified by the {}; marked good){fallback}\n",
            r.found, r.booted_slot, r.booted, r.booted_from
        ),
        _ => format!(
            "rebuilt the boot environment ({}): slot {} boots {} (booted, identified by the {}; marked good){fallback}\n",
            r.found, r.booted_slot, r.booted, r.booted_from
        ),
    })?;
    Ok(())
}
