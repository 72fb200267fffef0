//! `ecu-agent health-check`: required and wanted checks judge the booted deployment (marked
//! good, or rolled back with exit code 3), and the shipped systemd units verify.

mod deploy_common;

use deploy_common::*;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use bootloader_hooks::Slot;

const S: &str = "sysroot";

/// A sysroot with 9 in slot A (good) and 9.1 staged in slot B and booted on trial.
fn on_trial() -> Lab {
    let lab = Lab::new(&["9", "9.1"]);
    let d = lab.path();
    lab.trust(S);
    ok(d, &["install", "--sysroot", S, &lab.update(None, "9")], &[]);
    ok(
        d,
        &["install", "--sysroot", S, &lab.update(Some("9"), "9.1")],
        &booted(Slot::A),
    );
    assert_eq!(boot(&d.join(S)).0, Slot::B);
    let st = status(d, S, Slot::B);
    assert_eq!(st["booted_good"], false, "{st}");
    lab
}

/// Writes an executable check `name` in `health.d/<kind>.d` of the sysroot.
fn check(d: &Path, kind: &str, name: &str, script: &str) {
    let dir = d
        .join(S)
        .join("etc/ecu-agent/health.d")
        .join(format!("{kind}.d"));
    fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    fs::write(&p, format!("#!/bin/sh\n{script}\n")).unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
}

fn health_check(d: &Path, extra: &[&str]) -> Run {
    let mut args = vec!["health-check", "--sysroot", S, "--json"];
    args.extend_from_slice(extra);
    agent_env(d, &args, &booted(Slot::B))
}

fn exit_code(d: &Path, extra: &[&str]) -> Option<i32> {
    let mut args = vec!["health-check", "--sysroot", S];
    args.extend_from_slice(extra);
    Command::new(bin())
        .args(&args)
        .current_dir(d)
        .env("ECU_AGENT_CMDLINE", "/dev/null")
        .env("ECU_AGENT_BOOTED_SLOT", "B")
        .status()
        .unwrap()
        .code()
}

#[test]
fn passing_checks_mark_good() {
    let lab = on_trial();
    let d = lab.path();
    // What a check prints goes to stderr (the journal), never into --json.
    check(
        d,
        "required",
        "10-fs",
        "echo checking the filesystem; test -d /",
    );
    check(d, "wanted", "20-net", "exit 0");
    // Not executable: skipped.
    fs::write(
        d.join(S).join("etc/ecu-agent/health.d/required.d/README"),
        "x",
    )
    .unwrap();
    let r = health_check(d, &[]);
    assert!(r.ok, "{}{}", r.stdout, r.stderr);
    let rec: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(rec["verdict"], "good");
    assert_eq!(rec["slot"], "B");
    assert_eq!(rec["reboot_needed"], false);
    let checks = rec["checks"].as_array().unwrap();
    assert_eq!(checks.len(), 2, "{rec}");
    assert_eq!(checks[0]["name"], "10-fs");
    assert_eq!(checks[0]["required"], true);
    assert_eq!(checks[0]["result"], "passed");
    assert_eq!(checks[1]["name"], "20-net");
    assert_eq!(checks[1]["required"], false);
    assert!(checks[0]["duration_ms"].is_u64());
    let st = status(d, S, Slot::B);
    assert_eq!(st["booted_good"], true, "{st}");
    assert_eq!(st["next_boot"], "B", "{st}");
    assert_eq!(st["health"]["verdict"], "good", "{st}");
    assert_eq!(st["health"]["checks"][0]["name"], "10-fs", "{st}");
    let text = ok(d, &["status", "--sysroot", S], &booted(Slot::B));
    assert!(text.contains("Health: Good"), "{text}");
}

#[test]
fn failing_required_check_rolls_back_and_asks_for_a_reboot() {
    let lab = on_trial();
    let d = lab.path();
    check(d, "required", "10-app", "exit 7");
    check(d, "required", "20-ok", "exit 0");
    assert_eq!(exit_code(d, &[]), Some(3));
    let st = status(d, S, Slot::B);
    assert_eq!(st["next_boot"], "A", "{st}");
    assert_eq!(st["booted_good"], false, "{st}");
    let h = &st["health"];
    assert_eq!(h["verdict"], "rolled-back", "{st}");
    assert_eq!(h["reboot_needed"], true);
    assert_eq!(h["checks"][0]["result"], "failed");
    assert_eq!(h["checks"][0]["exit_code"], 7);
    assert_eq!(h["checks"][1]["result"], "passed");
    let r = health_check(d, &[]);
    assert!(!r.ok);
    assert!(r.stderr.contains("reboot needed: slot B"), "{}", r.stderr);
    assert!(r.stderr.contains("10-app"), "{}", r.stderr);
}

#[test]
fn failing_wanted_check_only_warns() {
    let lab = on_trial();
    let d = lab.path();
    check(d, "required", "10-ok", "exit 0");
    check(d, "wanted", "50-extra", "exit 1");
    let r = health_check(d, &[]);
    assert!(r.ok, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("warning: wanted health check 50-extra"),
        "{}",
        r.stderr
    );
    let st = status(d, S, Slot::B);
    assert_eq!(st["booted_good"], true, "{st}");
    assert_eq!(st["health"]["verdict"], "good");
    assert_eq!(st["health"]["checks"][1]["result"], "failed");
}

#[test]
fn hanging_check_is_killed_at_its_timeout() {
    let lab = on_trial();
    let d = lab.path();
    // The timeout from agent.conf; the check's child (sleep) is killed with its group.
    let conf = d.join(S).join("agent.conf");
    let mut text = fs::read_to_string(&conf).unwrap();
    text.push_str("health-timeout = 1\n");
    fs::write(&conf, text).unwrap();
    let marker = d.join("survived");
    // A child in the background would touch the marker after 2 s unless the check's whole
    // process group is killed.
    check(
        d,
        "required",
        "10-hang",
        &format!("(sleep 2; touch {}) &\nsleep 30", marker.display()),
    );
    let start = Instant::now();
    assert_eq!(exit_code(d, &[]), Some(3));
    let took = start.elapsed();
    assert!(
        took.as_secs() < 10,
        "the hanging check was not killed: {took:?}"
    );
    let st = status(d, S, Slot::B);
    assert_eq!(st["health"]["checks"][0]["result"], "timed-out", "{st}");
    let ms = st["health"]["checks"][0]["duration_ms"].as_u64().unwrap();
    assert!((1000..5000).contains(&ms), "{ms}");
    assert_eq!(st["next_boot"], "A", "{st}");
    std::thread::sleep(std::time::Duration::from_millis(2500));
    assert!(!marker.exists(), "a child of the timed-out check survived");
}

/// The shipped units, checked by systemd's own verifier.
#[test]
fn systemd_units_verify() {
    let units = Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd");
    let have = Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !have {
        test_support::tool::skip(
            "systemd_units_verify",
            "systemd-analyze is not installed (Debian package systemd)",
        );
        return;
    }
    // The unit names /usr/bin/ecu-agent; verify it against a root holding the built binary
    // there, so that systemd checks the ExecStart= path it will run.
    let t = tempfile::tempdir().unwrap();
    let unit = fs::read_to_string(units.join("ecu-agent-health-check.service")).unwrap();
    assert!(
        unit.contains("ExecStart=/usr/bin/ecu-agent health-check"),
        "{unit}"
    );
    let exe = t.path().join("ecu-agent");
    fs::copy(bin(), &exe).unwrap();
    let local = t.path().join("ecu-agent-health-check.service");
    fs::write(
        &local,
        unit.replace("/usr/bin/ecu-agent", exe.to_str().unwrap()),
    )
    .unwrap();
    let o = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&local)
        .env("SYSTEMD_LOG_LEVEL", "notice")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "systemd-analyze verify: {err}");
    let ours: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("ecu-agent-health-check"))
        .collect();
    assert!(ours.is_empty(), "systemd-analyze verify warns: {err}");
}

/// A required check fails where there is nothing to roll back to: the command fails (exit 1,
/// not 3: no reboot helps) and the record says why.
#[test]
fn failing_check_without_a_fallback_is_recorded_as_failed() {
    let lab = Lab::new(&["9"]);
    let d = lab.path();
    lab.trust(S);
    ok(d, &["install", "--sysroot", S, &lab.update(None, "9")], &[]);
    let dir = d.join(S).join("etc/ecu-agent/health.d/required.d");
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("10-bad"), "#!/bin/sh\nexit 1\n").unwrap();
    fs::set_permissions(dir.join("10-bad"), fs::Permissions::from_mode(0o755)).unwrap();
    let r = agent_env(d, &["health-check", "--sysroot", S], &booted(Slot::A));
    assert!(!r.ok);
    assert!(
        r.stderr.starts_with("error: cannot roll back"),
        "{}",
        r.stderr
    );
    let code = Command::new(bin())
        .args(["health-check", "--sysroot", S])
        .current_dir(d)
        .env("ECU_AGENT_CMDLINE", "/dev/null")
        .env("ECU_AGENT_BOOTED_SLOT", "A")
        .status()
        .unwrap()
        .code();
    assert_eq!(code, Some(1));
    let st = status(d, S, Slot::A);
    assert_eq!(st["health"]["verdict"], "failed", "{st}");
    assert_eq!(st["health"]["reboot_needed"], false);
    assert!(
        st["health"]["error"]
            .as_str()
            .unwrap()
            .contains("cannot roll back"),
        "{st}"
    );
}
