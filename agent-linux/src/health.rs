//! Boot health checks, greenboot's model: the executables in `required.d` and `wanted.d` of
//! the configured directory (agent.conf `health-dir`) run one after the other, in name
//! order, each with a timeout (`health-timeout`) after which it is killed with its process
//! group. A required check that fails or times out means the booted deployment is bad; a
//! wanted one only warns. The outcome is recorded in `S/health.json` ([`HealthRecord`]),
//! which `status --json` shows.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::fsops;

/// The record's file name in the sysroot.
pub const RECORD_FILE: &str = "health.json";

/// How one check ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CheckResult {
    /// Exit status 0.
    Passed,
    /// Another exit status, or killed by a signal.
    Failed,
    /// Still running at the timeout: killed.
    TimedOut,
    /// It could not be started.
    NotRun,
}

/// One check's outcome.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckOutcome {
    /// The executable's file name.
    pub name: String,
    /// Whether it is required (`required.d`) or wanted (`wanted.d`).
    pub required: bool,
    /// How it ended.
    pub result: CheckResult,
    /// Its exit code, when it exited.
    pub exit_code: Option<i32>,
    /// How long it ran, in milliseconds.
    pub duration_ms: u64,
    /// Why it could not be started, for [`CheckResult::NotRun`].
    pub error: Option<String>,
}

impl CheckOutcome {
    /// Whether it passed.
    pub fn passed(&self) -> bool {
        self.result == CheckResult::Passed
    }
}

/// What `health-check` concluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// Every required check passed: the booted deployment was marked good.
    Good,
    /// A required check failed: the other deployment was made the default; reboot.
    RolledBack,
    /// A required check failed but rolling back failed too (see `error`).
    Failed,
}

/// The record of the last health check, `S/health.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HealthRecord {
    /// When it ran, seconds since the epoch (UTC).
    pub time: u64,
    /// The booted slot it judged.
    pub slot: bootloader_hooks::Slot,
    /// The booted deployment it judged.
    pub deployment: String,
    /// What it concluded.
    pub verdict: Verdict,
    /// Whether a reboot is needed (after a rollback).
    pub reboot_needed: bool,
    /// Why marking good or rolling back failed, if it did.
    pub error: Option<String>,
    /// Every check, required ones first, each in name order.
    pub checks: Vec<CheckOutcome>,
}

/// The executables of `dir` in name order (a missing directory has none); entries that are
/// not executable regular files are skipped with a warning.
fn executables(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for e in rd {
        let p = e?.path();
        match fs::metadata(&p) {
            Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => out.push(p),
            _ => log::warn!(
                "health check {} is skipped: not an executable file",
                p.display()
            ),
        }
    }
    out.sort();
    Ok(out)
}

/// Runs one check with `timeout` in a process group of its own; on timeout the whole group
/// is killed (SIGKILL), so that nothing it started outlives it.
fn run_one(path: &Path, required: bool, timeout: Duration) -> CheckOutcome {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let start = Instant::now();
    let mut out = CheckOutcome {
        name,
        required,
        result: CheckResult::NotRun,
        exit_code: None,
        duration_ms: 0,
        error: None,
    };
    // What a check prints goes to stderr (the journal under systemd), so that stdout keeps
    // only the agent's own output (`--json`).
    let child = Command::new(path)
        .stdin(Stdio::null())
        .stdout(Stdio::from(io::stderr()))
        .process_group(0)
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            out.error = Some(format!("cannot start {}: {e}", path.display()));
            return out;
        }
    };
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                out.exit_code = status.code();
                out.result = if status.success() {
                    CheckResult::Passed
                } else {
                    CheckResult::Failed
                };
                break;
            }
            Ok(None) if start.elapsed() >= timeout => {
                if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
                    let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
                }
                let _ = child.kill();
                let _ = child.wait();
                out.result = CheckResult::TimedOut;
                break;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => {
                out.error = Some(format!("cannot wait for {}: {e}", path.display()));
                let _ = child.kill();
                let _ = child.wait();
                out.result = CheckResult::Failed;
                break;
            }
        }
    }
    out.duration_ms = start.elapsed().as_millis() as u64;
    out
}

/// Runs every check of `dir/required.d` then `dir/wanted.d`, each with `timeout`, logging
/// each outcome.
pub fn run_checks(dir: &Path, timeout: Duration) -> io::Result<Vec<CheckOutcome>> {
    let mut all = Vec::new();
    for (sub, required) in [("required.d", true), ("wanted.d", false)] {
        for p in executables(&dir.join(sub))? {
            let o = run_one(&p, required, timeout);
            let what = if required { "required" } else { "wanted" };
            match o.result {
                CheckResult::Passed => {
                    log::info!(
                        "{what} health check {} passed in {} ms",
                        o.name,
                        o.duration_ms
                    )
                }
                r => log::warn!(
                    "{what} health check {} {:?} after {} ms (exit code {:?})",
                    o.name,
                    r,
                    o.duration_ms,
                    o.exit_code
                ),
            }
            all.push(o);
        }
    }
    Ok(all)
}

/// Seconds since the epoch now.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Writes `record` to `root/health.json` (atomically).
pub fn write_record(root: &Path, record: &HealthRecord) -> io::Result<()> {
    let text = serde_json::to_string_pretty(record).map_err(io::Error::other)?;
    fsops::write_atomic(&root.join(RECORD_FILE), text.as_bytes(), 0o644)
}

/// Reads `root/health.json`; `None` when there is none. A file that does not parse is an
/// error naming it.
pub fn read_record(root: &Path) -> io::Result<Option<HealthRecord>> {
    let p = root.join(RECORD_FILE);
    match fs::read(&p) {
        Ok(b) => serde_json::from_slice(&b).map(Some).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} is not a health record: {e}", p.display()),
            )
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}
