//! `ecu-agent health-check`: greenboot's required/wanted checks of the booted deployment,
//! then mark-good, or rollback and exit [`EXIT_REBOOT_NEEDED`].

use std::path::PathBuf;

use anyhow::Context;

use super::deploy::SysrootOpts;
use super::esc;
use super::output;

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
    let (slot, deployment) = (booted.slot, booted.name.clone());
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
        slot,
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
