//! The command line: clap definitions (raw arguments), validated into the library's types
//! before anything is done. Errors get their context here and only here.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use agent_linux::text::escape as esc;
use anyhow::Context;
use clap::{Parser, Subcommand};

mod bootenv;
mod build;
mod deploy;
mod device;
mod health_check;
mod ostree;
mod output;
mod status;
mod update;
mod upgrade;

/// Offline OTA updates for ECUs: build commits from directory trees, generate `.update` files
/// (from scratch or deltas) and install them on a device.
///
/// Build side: `init`, `commit`, `import-ostree`, `refs`, `log`, `fsck`, `keygen`, `delta generate`,
/// `generate-deltas`.
/// Device side: `delta show`, `apply-offline`, `checkout`, `bootenv`.
/// A/B deployments: `install`, `upgrade`, `deploy`, `status`, `mark-good`, `health-check`, `rollback`, `cleanup`,
/// `simulate-boot`, `verify`, `repair-env`.
#[derive(Debug, Parser)]
#[command(name = "ecu-agent", version, max_term_width = 100)]
pub struct Cli {
    /// More log output on stderr (-v: warnings and info, -vv: debug, -vvv: trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create an empty repository.
    Init(build::InitArgs),
    /// Record a directory tree as a new commit on a ref (its parent is the ref's head).
    Commit(build::CommitArgs),
    /// Import the commits of an OSTree repository (archive, bare-user or bare mode) with
    /// their history, versions, subjects, bodies and timestamps, each ref as our branch of
    /// the same name, so that `.update` files are generated from what an OSTree pipeline
    /// builds. Run it again to add the ref's new commits.
    ImportOstree(ostree::ImportOstreeArgs),
    /// List the refs of a repository and the commit each points to.
    Refs(build::RefsArgs),
    /// Show the history of a ref or commit, newest first.
    Log(build::LogArgs),
    /// Check commits completely: every object present, well-formed and matching its hash.
    Fsck(build::FsckArgs),
    /// Generate an ed25519 key pair for signing updates.
    Keygen(build::KeygenArgs),
    /// Write update files (`delta generate`) and describe them (`delta show`).
    Delta {
        #[command(subcommand)]
        cmd: update::DeltaCommand,
    },
    /// For the newest commit of every ref, write a from-scratch update and deltas from the
    /// previous commits, and print each file with its size; then the folder's signed index
    /// (`updates.index`: ref, from, to, version, security version, size and SHA-256 of each
    /// file) that `upgrade --from` reads. Serve the folder as static files from anywhere.
    GenerateDeltas(update::GenerateDeltasArgs),
    /// Install an `.update` file (or standard input) into a sysroot's repository.
    ApplyOffline(update::ApplyArgs),
    /// Materialize a commit of a sysroot's repository in a directory.
    Checkout(device::CheckoutArgs),
    /// Inspect a bootloader environment (U-Boot or GRUB) and the boot state it holds.
    Bootenv {
        #[command(subcommand)]
        cmd: bootenv::BootenvCommand,
    },
    /// Install an update and stage its commit for the next boot (an empty sysroot gets it as
    /// its first, booted deployment). An environment that a RAUC or Mender bootloader already
    /// wrote is adopted: the booted slot, learnt from the kernel command line (or
    /// --booted-slot) and checked against the bootloader's variables, keeps the running system
    /// (recorded as `adopted-system`) and the update goes into the other slot. A blank U-Boot
    /// environment outside the sysroot is written from the board's default environment
    /// (agent.conf `env-default = FILE`, e.g. `fw_printenv` output of a booted board), or
    /// refused without one.
    Install(deploy::InstallArgs),
    /// Take the update that fits from a published folder (written by `generate-deltas`) on a
    /// path or an http(s):// URL: the index is verified (signature under the device's keys,
    /// serial, expiry), the delta from the booted commit is taken when the index has one,
    /// else the from-scratch file, and it is installed and staged as `install` does. The
    /// file streams into the installer (no temporary copy); its size and SHA-256 must be the
    /// index's; an interrupted download resumes with a Range request from the last verified
    /// part. `--check` only says what would be taken.
    Upgrade(upgrade::UpgradeArgs),
    /// Stage a commit that is already in the sysroot's repository for the next boot.
    Deploy(deploy::DeployArgs),
    /// Show the deployments, which one is booted (●), which one the next boot takes, tries
    /// left and whether the booted one is confirmed good.
    Status(status::StatusArgs),
    /// The booted deployment reports a successful boot: its try counter is cleared (on an
    /// environment a RAUC or Mender bootloader already wrote, the running system is adopted
    /// first, as by `install`).
    MarkGood(deploy::PlainArgs),
    /// Make the other deployment the default for the next boot.
    Rollback(deploy::PlainArgs),
    /// Run the boot health checks (greenboot's model) and judge the booted deployment: the
    /// executables in `required.d` and `wanted.d` of agent.conf's `health-dir` (default
    /// S/etc/ecu-agent/health.d) run in name order, each killed at its timeout. All required
    /// ones pass: the deployment is marked good (as `mark-good`); a wanted one failing only
    /// warns. A required one fails or times out: the other deployment is made the default
    /// (as `rollback`) and the command exits with code 3: reboot. Every outcome is recorded
    /// in S/health.json and shown by `status` (`health` in --json). Shipped as the systemd
    /// unit ecu-agent-health-check.service.
    HealthCheck(health_check::HealthCheckArgs),
    /// Remove deployments and objects that no slot or ref needs, and report what was freed.
    Cleanup(deploy::PlainArgs),
    /// Do what the bootloader does at the next boot (decision, try counting) and make the
    /// chosen deployment the booted one (written to S/run/booted).
    SimulateBoot(deploy::PlainArgs),
    /// Check a deployment's files against its commit (contents, modes, symlinks).
    Verify(deploy::VerifyArgs),
    /// Rebuild a lost or invalid boot environment from the deployments on disk and what the
    /// running system says (kernel command line `ecu.slot=`/`ecu.deployment=`, S/run/booted);
    /// refuses when it cannot tell which deployment runs.
    RepairEnv(deploy::RepairArgs),
}

/// Runs the command line and maps the outcome to an exit code: 0 on success (and when
/// stdout is a closed pipe), 1 on failure with the error and its causes on stderr, 2 for
/// usage errors (by clap), 3 when `health-check` rolled back and a reboot is needed, 77 when
/// `upgrade --check` finds nothing to take.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    output::init_logger(cli.verbose);
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            if is_broken_pipe(&err) {
                return ExitCode::SUCCESS;
            }
            if err.downcast_ref::<upgrade::NoUpdate>().is_some() {
                return ExitCode::from(upgrade::EXIT_NO_UPDATE);
            }
            if let Some(r) = err.downcast_ref::<health_check::RebootNeeded>() {
                let _ = writeln!(io::stderr(), "reboot needed: {}", esc(&r.0));
                return ExitCode::from(health_check::EXIT_REBOOT_NEEDED);
            }
            // Messages may quote what an update or a repository holds: escaped, so that
            // nothing in them reaches the terminal as a control sequence or a forged line.
            let mut msg = format!("error: {}", esc(&err.to_string()));
            for cause in err.chain().skip(1) {
                msg.push_str(&format!("\n  caused by: {}", esc(&cause.to_string())));
            }
            let _ = writeln!(io::stderr(), "{msg}");
            ExitCode::FAILURE
        }
    }
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|c| {
        c.downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
    })
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Init(a) => build::init(a),
        Command::Commit(a) => build::commit(a),
        Command::ImportOstree(a) => ostree::import_ostree(a),
        Command::Refs(a) => build::refs(a),
        Command::Log(a) => build::log(a),
        Command::Keygen(a) => build::keygen(a),
        Command::Fsck(a) => build::fsck(a),
        Command::Delta { cmd } => update::delta(cmd),
        Command::GenerateDeltas(a) => update::generate_deltas(a),
        Command::ApplyOffline(a) => update::apply_offline(a),
        Command::Checkout(a) => device::checkout(a),
        Command::Bootenv { cmd } => bootenv::run(cmd),
        Command::Install(a) => deploy::install(a),
        Command::Upgrade(a) => upgrade::upgrade(a),
        Command::Deploy(a) => deploy::deploy(a),
        Command::Status(a) => status::status(a),
        Command::MarkGood(a) => deploy::mark_good(a),
        Command::Rollback(a) => deploy::rollback(a),
        Command::HealthCheck(a) => health_check::health_check(a),
        Command::Cleanup(a) => deploy::cleanup(a),
        Command::SimulateBoot(a) => deploy::simulate_boot(a),
        Command::Verify(a) => deploy::verify(a),
        Command::RepairEnv(a) => deploy::repair_env(a),
    }
}

/// What every command that installs an update takes about trust (`install`,
/// `apply-offline`).
#[derive(Debug, clap::Args)]
struct TrustArgs {
    /// Also trust this ed25519 public key file (`K.pub` from `ecu-agent keygen`) for this
    /// install, besides the sysroot's `trusted-key` lines in agent.conf; repeat for several.
    /// A signature by one trusted (and not revoked) key is required unless --allow-unsigned.
    #[arg(long = "trusted-key", value_name = "K.pub")]
    trusted_keys: Vec<PathBuf>,
    /// Accept an update that carries no signature at all: nothing then proves who made it
    /// (its hashes only prove it arrived whole). Said loudly on stderr and recorded as
    /// `allow_unsigned` in the JSON output. A signed update is still verified against the
    /// trusted keys (and refused when there are none).
    #[arg(long)]
    allow_unsigned: bool,
}

impl TrustArgs {
    /// The keys of the `--trusted-key` files, and the loud warning of `--allow-unsigned`.
    fn install_options(&self) -> anyhow::Result<agent_linux::deploy::InstallOptions> {
        let extra_keys = self
            .trusted_keys
            .iter()
            .map(|k| agent_linux::keys::read_key(k))
            .collect::<Result<Vec<_>, _>>()?;
        if self.allow_unsigned {
            eprintln!(
                "WARNING: --allow-unsigned: an update that carries no signature will be installed; nothing proves who made it, only that it arrived whole"
            );
        }
        Ok(agent_linux::deploy::InstallOptions {
            extra_keys,
            allow_unsigned: self.allow_unsigned,
            rebase: None,
        })
    }
}

/// After an install: says loudly when what was installed was not signed.
fn warn_unsigned(applied: &agent_linux::apply::Applied) {
    if !applied.signed {
        eprintln!(
            "WARNING: the update installed ({}) was NOT SIGNED; it was accepted because of --allow-unsigned",
            applied.commit
        );
    }
}

/// `--json-progress`, taken by every command that feeds an update file (`install`,
/// `apply-offline`, `delta show`, `upgrade`).
#[derive(Debug, clap::Args)]
pub struct ProgressArgs {
    /// Report progress for programs: one JSON object per line on stderr (stdout keeps the
    /// result), `{"event":"start",...}` first, then `{"event":"progress","phase":...,"bytes":N,
    /// "total":N,"parts_done":N,...}` at most ten a second, and last `{"event":"done",...}` or
    /// `{"event":"error","message":...}` (schema in the README). Without it, a progress bar is
    /// shown when stderr is a terminal, and nothing otherwise.
    #[arg(long)]
    json_progress: bool,
}

impl ProgressArgs {
    /// The progress of `command` feeding `file`.
    pub fn reporter(&self, command: &str, file: &Path) -> agent_linux::progress::Reporter {
        let mode = agent_linux::progress::Mode::detect(self.json_progress);
        agent_linux::progress::Reporter::new(mode, command, &file.to_string_lossy())
    }
}

/// An update to install: a file (seekable: a resumed install seeks over the verified parts)
/// or standard input.
enum UpdateSource {
    File(File),
    Stdin(io::StdinLock<'static>),
}

impl UpdateSource {
    /// The file's length (not known for standard input).
    fn len(&self) -> Option<u64> {
        match self {
            UpdateSource::File(f) => f.metadata().ok().filter(|m| m.is_file()).map(|m| m.len()),
            UpdateSource::Stdin(_) => None,
        }
    }

    /// The installer's input; `resume_from` is where standard input starts in the file.
    fn input(&mut self, resume_from: Option<u64>) -> anyhow::Result<agent_linux::apply::Input<'_>> {
        Ok(match self {
            UpdateSource::File(f) => {
                if resume_from.is_some() {
                    anyhow::bail!("--resume-from-offset is for standard input (`-`); a file resumes by itself");
                }
                agent_linux::apply::Input::Seekable(f)
            }
            UpdateSource::Stdin(s) => agent_linux::apply::Input::Stream {
                read: s,
                offset: resume_from.unwrap_or(0),
            },
        })
    }
}

fn open_source(file: &Path) -> anyhow::Result<UpdateSource> {
    Ok(if file.as_os_str() == "-" {
        UpdateSource::Stdin(io::stdin().lock())
    } else {
        UpdateSource::File(
            File::open(file).with_context(|| format!("cannot open {}", file.display()))?,
        )
    })
}

/// `--repo R`, shared by the build-side commands.
#[derive(Debug, clap::Args)]
struct RepoArg {
    /// The repository directory (made by `ecu-agent init`).
    #[arg(long, value_name = "DIR")]
    repo: PathBuf,
}
