//! `ecu-agent upgrade`: the update that fits, from a published folder (a path or a URL).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use agent_linux::deploy::Deployer;
use agent_linux::upgrade::{self, Action, Fetcher, Plan, Source};
use anyhow::Context;

use super::deploy::{print_staged, SysrootOpts};
use agent_linux::deploy::StageReport;
use agent_linux::progress::Phase;

use super::output::{self, human_bytes};
use super::{esc, warn_unsigned, ProgressArgs, TrustArgs};

/// Exit code of `upgrade --check` when there is nothing to take (as `rpm-ostree upgrade
/// --check`).
pub const EXIT_NO_UPDATE: u8 = 77;

/// `upgrade --check` found nothing to take: exits with [`EXIT_NO_UPDATE`] (what it found is
/// printed already).
#[derive(Debug)]
pub struct NoUpdate;

impl std::fmt::Display for NoUpdate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("no update to take")
    }
}

impl std::error::Error for NoUpdate {}

/// Arguments of `ecu-agent upgrade`.
#[derive(Debug, clap::Args)]
pub struct UpgradeArgs {
    #[command(flatten)]
    s: SysrootOpts,
    #[command(flatten)]
    trust: TrustArgs,
    #[command(flatten)]
    progress: ProgressArgs,
    /// The published folder: a directory, or an http:// or https:// URL of the same files
    /// served statically (any web server, CDN or object store; HTTPS is checked against the
    /// Mozilla root certificates). Its `updates.index` is read first.
    #[arg(long, value_name = "DIR|URL")]
    from: String,
    /// Only say what would be taken (ref, booted commit, target, delta or from-scratch, file,
    /// size); download and change nothing. Exits with 77 when there is nothing to take.
    #[arg(long)]
    check: bool,
    /// The ref to take (default: the booted deployment's ref, else the one ref of the index
    /// that agent.conf follows, else the index's only ref).
    #[arg(long = "ref", value_name = "REF")]
    ref_name: Option<String>,
    /// Boots the new deployment gets to be marked good (default: agent.conf's `tries`, 3).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(1..=9))]
    tries: Option<u8>,
    /// How many times a failed transfer (connection cut, timeout, server error 5xx) is tried
    /// again, each time from the last verified part (a Range request over HTTP).
    #[arg(long, value_name = "N", default_value_t = 5)]
    retries: u32,
    /// Check HTTPS servers against the certificate authority in this PEM file (a fleet's own
    /// CA) instead of the Mozilla root certificates; repeat for several.
    #[arg(long = "ca-cert", value_name = "PEM")]
    ca_certs: Vec<std::path::PathBuf>,
    /// Seconds to wait for a connection, an answer, and each read of the body (a slow server
    /// is fine as long as bytes keep coming).
    #[arg(long, value_name = "SECONDS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
    timeout: u64,
}

fn plan_text(p: &Plan) -> String {
    let mut t = String::new();
    t.push_str(&format!(
        "index:    serial {}, {} ({} files)\n",
        p.index.serial,
        match &p.index.signature.key {
            Some(k) => format!("signed by {k}"),
            None => "UNSIGNED (accepted because of --allow-unsigned)".into(),
        },
        p.index.entries
    ));
    t.push_str(&format!("ref:      {}\n", esc(&p.ref_name)));
    t.push_str(&format!(
        "booted:   {}\n",
        p.booted.as_deref().unwrap_or("(none)")
    ));
    t.push_str(&format!(
        "target:   {} (version {}, security version {})\n",
        p.to,
        esc(&p.version),
        p.security_version
    ));
    match (&p.file, p.kind, &p.location) {
        (Some(f), Some(kind), Some(loc)) => t.push_str(&format!(
            "take:     {kind} {} ({}, {} bytes)\n",
            esc(loc),
            human_bytes(f.size),
            f.size
        )),
        _ if p.action == Action::Staged => {
            t.push_str("take:     nothing: the target is already staged for the next boot\n")
        }
        _ => t.push_str("take:     nothing: already up to date\n"),
    }
    t
}

pub fn upgrade(a: UpgradeArgs) -> anyhow::Result<()> {
    let source = Source::parse(&a.from)?;
    let mut opts = a.trust.install_options()?;
    opts.rebase = None;
    let options = a.s.options(a.tries);
    let d = if a.check {
        Deployer::open(&a.s.sysroot, &options)?
    } else {
        Deployer::open_or_create(&a.s.sysroot, &options)?
    };
    let timeout = Duration::from_secs(a.timeout);
    let fetcher = if a.ca_certs.is_empty() {
        Fetcher::new(source.clone(), timeout)
    } else {
        let pem = a
            .ca_certs
            .iter()
            .map(|p| {
                std::fs::read(p)
                    .map(|b| (p.clone(), b))
                    .with_context(|| format!("cannot read --ca-cert {}", p.display()))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Fetcher::with_roots(source.clone(), timeout, &pem)?
    };
    let bytes = fetcher.index_bytes()?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (plan, _) = upgrade::plan(&d, &bytes, &source, &opts, a.ref_name.as_deref(), now)
        .with_context(|| format!("cannot upgrade from {}", a.from))?;
    if a.check {
        if a.s.json {
            output::json(&plan)?;
        } else {
            output::out(&plan_text(&plan))?;
        }
        return match plan.action {
            Action::Install => Ok(()),
            Action::UpToDate | Action::Staged => Err(NoUpdate.into()),
        };
    }
    // A newer index is remembered even when nothing is installed: an older one is refused
    // from now on.
    upgrade::record_serial(&a.s.sysroot, plan.index.serial)?;
    let Some(entry) = plan.file.clone() else {
        if a.s.json {
            return output::json(&serde_json::json!({"plan": plan}));
        }
        return Ok(output::out(&plan_text(&plan))?);
    };
    if !a.s.json {
        eprint!("{}", plan_text(&plan));
    }
    let location = plan.location.clone().unwrap_or_default();
    let mut rep = a
        .progress
        .reporter("upgrade", std::path::Path::new(&location));
    rep.set_total(entry.size);
    let res = upgrade::install(&d, &fetcher, &entry, &opts, a.retries, &mut |p| {
        rep.install(p);
        if p.done {
            // Then the commit is recorded, checked out and staged.
            rep.set_phase(Phase::Deploying);
        }
    })
    .with_context(|| format!("cannot upgrade from {}", esc(&a.from)));
    let commit =
        |r: &(StageReport, upgrade::Transfer)| r.0.applied.as_ref().map(|ap| ap.commit.clone());
    let (report, transfer) = rep.end(res, commit)?;
    if let Some(applied) = &report.applied {
        warn_unsigned(applied);
    }
    if a.s.json {
        return output::json(&serde_json::json!({
            "plan": plan,
            "transfer": transfer,
            "staged": report,
        }));
    }
    if !transfer.resumed_at.is_empty() {
        eprintln!(
            "the transfer was resumed {} times (at bytes {:?}); {} received in all",
            transfer.resumed_at.len(),
            transfer.resumed_at,
            human_bytes(transfer.received)
        );
    }
    print_staged(&report, false)
}
