//! A/B deployment commands: install, deploy, status, mark-good, rollback, cleanup,
//! simulate-boot, verify. A thin layer over `agent_linux::deploy`.

use std::path::PathBuf;

use agent_linux::deploy::{
    self, Deployer, Options, RepairAction, StageAction, StageReport, Status,
};
use anyhow::{bail, Context};
use bootloader_hooks::{DecisionKind, Slot};

use super::output::{self, format_utc, human_bytes};
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
    fn open(&self, tries: Option<u8>) -> anyhow::Result<Deployer> {
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

/// Arguments of `ecu-agent status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    s: SysrootOpts,
    /// Print a `fw_env.config` for `fw_printenv -c` / `fw_setenv -c` (U-Boot backends) and
    /// nothing else.
    #[arg(long)]
    show_env_config: bool,
}

/// Arguments of `ecu-agent mark-good`, `rollback`, `cleanup`, `simulate-boot`.
#[derive(Debug, clap::Args)]
pub struct PlainArgs {
    #[command(flatten)]
    s: SysrootOpts,
}

/// Arguments of `ecu-agent health-check`.
#[derive(Debug, clap::Args)]
pub struct HealthCheckArgs {
    #[command(flatten)]
    s: SysrootOpts,
    /// The checks' directory instead of agent.conf's `health-dir` (default
    /// S/etc/ecu-agent/health.d): its `required.d` and `wanted.d` hold executables, run in
    /// name order.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Seconds each check may run before it is killed (with its process group) and counts
    /// as failed, instead of agent.conf's `health-timeout` (default 300).
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..=86_400))]
    timeout: Option<u64>,
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
            r.adopted.as_deref().unwrap_or("?"),
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

fn status_json(st: &Status) -> anyhow::Result<serde_json::Value> {
    let mut v = serde_json::to_value(st)?;
    if let Some(list) = v.get_mut("deployments").and_then(|d| d.as_array_mut()) {
        for d in list {
            let ts = d.get("timestamp").and_then(|t| t.as_u64()).unwrap_or(0);
            d["date"] = serde_json::Value::String(format_utc(ts));
        }
    }
    Ok(v)
}

/// The text `status` prints.
pub fn status_text(st: &Status) -> String {
    let mut s = format!("State: {} ({})\n", st.state, esc(&st.message));
    if st.deployments.is_empty() {
        s.push_str("Deployments: none\n");
    } else {
        s.push_str("Deployments:\n");
    }
    for d in &st.deployments {
        if d.commit.is_empty() {
            // The system the bootloader ran before the agent adopted its environment.
            s.push_str(&format!(
                "{} {}: {} ({})\n",
                if d.booted { "●" } else { " " },
                d.slot,
                d.name,
                esc(&d.subject)
            ));
        } else {
            s.push_str(&format!(
                "{} {}: {}\n",
                if d.booted { "●" } else { " " },
                d.slot,
                esc(d.ref_name.as_deref().unwrap_or("(no ref)"))
            ));
            s.push_str(&format!(
                "       Version: {} ({})\n",
                if d.version.is_empty() {
                    "-".into()
                } else {
                    esc(&d.version)
                },
                format_utc(d.timestamp)
            ));
            s.push_str(&format!("        Commit: {}\n", d.commit));
            s.push_str(&format!("      Security: version {}\n", d.security_version));
        }
        let mut what = vec![d.role.to_string()];
        if d.good {
            what.push("good".into());
        } else {
            what.push("not marked good".into());
        }
        if d.next_boot {
            what.push("next boot".into());
        }
        if d.tries_left > 0 {
            what.push(format!("{} tries left", d.tries_left));
        }
        if !d.present {
            what.push("DIRECTORY MISSING".into());
        }
        s.push_str(&format!("        Status: {}\n", what.join(", ")));
    }
    s.push_str(&format!(
        "Follows: {}; security floor {}\n",
        if st.refs_followed.is_empty() {
            "any ref (none recorded)".to_string()
        } else {
            st.refs_followed
                .iter()
                .map(|r| esc(r).into_owned())
                .collect::<Vec<_>>()
                .join(", ")
        },
        st.security_floor
    ));
    s.push_str(&format!(
        "Boot: slot {} booted{}, next boot {}{}; {} env ({}) rev {}\n",
        st.booted_slot.as_deref().unwrap_or("?"),
        match st.booted_good {
            Some(true) => " (good)",
            Some(false) => " (not marked good)",
            None => "",
        },
        st.next_boot.as_deref().unwrap_or("-"),
        st.next_boot_kind
            .map(|k| format!(" ({})", k.as_str()))
            .unwrap_or_default(),
        st.env.backend.name(),
        st.env.scheme.name(),
        st.env
            .revision
            .map(|r| r.to_string())
            .unwrap_or_else(|| "-".into())
    ));
    s
}

pub fn status(a: StatusArgs) -> anyhow::Result<()> {
    let d = a.s.open(None)?;
    if a.show_env_config {
        match d.config().fw_env_config() {
            Some(c) => return Ok(output::out(&c)?),
            None => bail!(
                "the environment is a GRUB block; read it with `grub-editenv {} list`",
                d.config().env.0.display()
            ),
        }
    }
    let st = d.status()?;
    let health = agent_linux::health::read_record(d.sysroot().path())?;
    if a.s.json {
        let mut v = status_json(&st)?;
        v["health"] = serde_json::to_value(&health)?;
        return output::json(&v);
    }
    let mut text = status_text(&st);
    if let Some(h) = health {
        text.push_str(&format!(
            "Health: {:?} at {} (slot {}, {} checks, {} failed)\n",
            h.verdict,
            format_utc(h.time),
            h.slot,
            h.checks.len(),
            h.checks.iter().filter(|c| !c.passed()).count()
        ));
    }
    Ok(output::out(&text)?)
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

/// Exit code of `health-check` when a required check failed and the other deployment was
/// made the default: reboot to run it.
pub const EXIT_REBOOT_NEEDED: u8 = 3;

/// `health-check` rolled back: the caller should reboot (exit code [`EXIT_REBOOT_NEEDED`]).
#[derive(Debug)]
pub struct RebootNeeded(pub String);

impl std::fmt::Display for RebootNeeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RebootNeeded {}

pub fn health_check(a: HealthCheckArgs) -> anyhow::Result<()> {
    use agent_linux::health::{self, HealthRecord, Verdict};
    let d = a.s.open(None)?;
    let st = d.status()?;
    let booted = st.deployments.iter().find(|x| x.booted).with_context(|| {
        "cannot run the health checks: no deployment is booted (see `ecu-agent status`)"
    })?;
    let (slot, deployment) = (booted.slot.to_string(), booted.name.clone());
    let dir = a
        .dir
        .clone()
        .unwrap_or_else(|| d.config().health_dir.clone());
    let timeout = a.timeout.unwrap_or(d.config().health_timeout);
    let checks = health::run_checks(&dir, std::time::Duration::from_secs(timeout))
        .with_context(|| format!("cannot list the health checks in {}", dir.display()))?;
    let failed_required: Vec<&str> = checks
        .iter()
        .filter(|c| c.required && !c.passed())
        .map(|c| c.name.as_str())
        .collect();
    let mut record = HealthRecord {
        time: health::now(),
        slot: slot.clone(),
        deployment: deployment.clone(),
        verdict: Verdict::Good,
        reboot_needed: false,
        error: None,
        checks: checks.clone(),
    };
    for c in checks.iter().filter(|c| !c.required && !c.passed()) {
        eprintln!(
            "warning: wanted health check {} {:?} (exit code {:?}); the deployment is kept",
            esc(&c.name),
            c.result,
            c.exit_code
        );
    }
    let result = if failed_required.is_empty() {
        d.mark_good().context("cannot mark good")
    } else {
        record.verdict = Verdict::RolledBack;
        record.reboot_needed = true;
        d.rollback().context("cannot roll back")
    };
    if let Err(e) = &result {
        record.verdict = Verdict::Failed;
        record.reboot_needed = false;
        record.error = Some(format!("{e:#}"));
    }
    health::write_record(d.sysroot().path(), &record).with_context(|| {
        format!(
            "cannot record the health check in {}",
            d.sysroot().path().join(health::RECORD_FILE).display()
        )
    })?;
    let report = result?;
    if a.s.json {
        output::json(&record)?;
    } else {
        let mut t = String::new();
        for c in &checks {
            t.push_str(&format!(
                "{} {} {:?} in {} ms\n",
                if c.required { "required" } else { "wanted  " },
                esc(&c.name),
                c.result,
                c.duration_ms
            ));
        }
        t.push_str(&match record.verdict {
            Verdict::Good => format!("slot {slot} ({deployment}) is healthy: marked good\n"),
            _ => format!(
                "required health checks failed ({}): the next boot takes slot {} ({}); reboot now\n",
                esc(&failed_required.join(", ")),
                report.slot,
                report.deployment
            ),
        });
        output::out(&t)?;
    }
    if record.verdict == Verdict::RolledBack {
        return Err(RebootNeeded(format!(
            "slot {slot} ({deployment}) failed its required health checks ({}); rolled back to slot {} ({}): reboot to run it",
            failed_required.join(", "),
            report.slot,
            report.deployment
        ))
        .into());
    }
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
            if r.booted_slot == "A" { "B" } else { "A" }
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
