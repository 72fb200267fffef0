//! The A/B part of `cargo xtask demo`: the rpm-ostree primer's life cycle on a sysroot, offline,
//! with `simulate-boot` as the bootloader: install next to the booted system, status, reboot,
//! mark-good; then an update that never reports success and is rolled back; then cleanup.

use std::path::Path;

use anyhow::{ensure, Result};

/// Runs the story. `ok` runs `ecu-agent ARGS` (printing it and its output) and fails when it
/// fails; `fails` expects a refusal and returns the output. `ids` are the demo's commits 1.0,
/// 1.1, 1.2 on `ecu/armv7/main`; `updates/` holds the files `demo::story` generated
/// (`v1.0-full.update`, `v1.1-full.update`, and the deltas to 1.2).
pub fn story(
    ok: &dyn Fn(&[&str]) -> Result<String>,
    fails: &dyn Fn(&[&str]) -> Result<String>,
    tmp: &Path,
    ids: &[String],
) -> Result<()> {
    ensure!(ids.len() >= 3, "the A/B demo needs the three commits");
    let delta = |from: &str, to: &str| format!("updates/ecu-armv7-main-{from}-{to}.update");
    let d_12 = delta(&ids[1], &ids[2]);
    let d_02 = delta(&ids[0], &ids[2]);
    for f in [&d_12, &d_02] {
        ensure!(tmp.join(f).is_file(), "the A/B demo needs {f}");
    }
    let key = "release.key.pub";

    println!(
        "\n## A/B deployments: an ECU running 1.1 installs 1.2 next to it (the primer's story)"
    );
    let s = "ecu4";
    let out = ok(&[
        "install",
        "--sysroot",
        s,
        "--trusted-key",
        key,
        "updates/v1.1-full.update",
    ])?;
    ensure!(
        out.contains("provisioned"),
        "the first install did not provision"
    );
    ok(&["status", "--sysroot", s])?;
    let out = ok(&["install", "--sysroot", s, "--trusted-key", key, &d_12])?;
    ensure!(out.contains("staged"), "the delta was not staged");
    let out = ok(&["status", "--sysroot", s])?;
    ensure!(
        out.contains("● A"),
        "status does not show ● on the booted 1.1"
    );
    println!("# The environment the bootloader reads (fw_printenv works with this config):");
    ok(&["status", "--sysroot", s, "--show-env-config"])?;
    println!("# Reboot: the bootloader's decision takes the staged slot on trial.");
    let out = ok(&["simulate-boot", "--sysroot", s])?;
    ensure!(
        out.contains("slot B") && out.contains("trial"),
        "the reboot did not try B"
    );
    let out = ok(&["status", "--sysroot", s])?;
    ensure!(
        out.contains("● B"),
        "status does not show ● on 1.2 after the reboot"
    );
    println!("# While 1.2 is on trial, replacing 1.1 (the only good fallback) is refused:");
    fails(&[
        "install",
        "--sysroot",
        s,
        "--trusted-key",
        key,
        "updates/v1.0-full.update",
    ])?;
    ok(&["mark-good", "--sysroot", s])?;
    let out = ok(&["status", "--sysroot", s, "--json"])?;
    ensure!(
        out.contains("\"booted_good\": true"),
        "mark-good did not stick"
    );
    let out = ok(&["simulate-boot", "--sysroot", s])?;
    ensure!(
        out.contains("confirmed"),
        "a good slot should boot without counting"
    );
    println!("# 1.2 is confirmed: its security version is the floor. Replaying the signed 1.1 file is refused:");
    let err = fails(&[
        "install",
        "--sysroot",
        s,
        "--trusted-key",
        key,
        "updates/v1.1-full.update",
    ])?;
    ensure!(
        err.contains("security version 1 is below this device's floor 2"),
        "the replay was not refused by the floor"
    );

    println!("\n## Keys on the device: S/agent.conf trusts the release key; no flag needed, nothing unsigned");
    let s6 = "ecu6";
    std::fs::create_dir_all(tmp.join(s6))?;
    std::fs::write(
        tmp.join(s6).join("agent.conf"),
        "trusted-key = ../release.key.pub\n",
    )?;
    println!("# {s6}/agent.conf: trusted-key = ../release.key.pub");
    let err = fails(&["install", "--sysroot", s6, "updates/v1.0-unsigned.update"])?;
    ensure!(
        err.contains("not signed"),
        "an unsigned file was not refused"
    );
    ok(&["install", "--sysroot", s6, "updates/v1.0-full.update"])?;
    let out = ok(&["status", "--sysroot", s6])?;
    ensure!(
        out.contains("Follows: ecu/armv7/main"),
        "status does not show the ref followed"
    );

    println!("\n## An update that never reports success: tries used up, automatic rollback");
    let s = "ecu5";
    ok(&[
        "install",
        "--sysroot",
        s,
        "--trusted-key",
        key,
        "updates/v1.0-full.update",
    ])?;
    ok(&[
        "install",
        "--sysroot",
        s,
        "--trusted-key",
        key,
        "--tries",
        "2",
        &d_02,
    ])?;
    for _ in 0..2 {
        let out = ok(&["simulate-boot", "--sysroot", s])?;
        ensure!(out.contains("trial"), "expected a trial boot of 1.2");
    }
    println!("# 1.2 never ran `mark-good`; the next boot falls back to 1.0:");
    let out = ok(&["simulate-boot", "--sysroot", s])?;
    ensure!(
        out.contains("slot A") && out.contains("confirmed"),
        "no fallback to A"
    );
    let out = ok(&["status", "--sysroot", s])?;
    ensure!(
        out.contains("rolled back"),
        "status does not say it rolled back"
    );
    println!(
        "# Installing again replaces the failed deployment; cleanup frees what nothing needs:"
    );
    ok(&[
        "install",
        "--sysroot",
        s,
        "--trusted-key",
        key,
        "updates/v1.1-full.update",
    ])?;
    let out = ok(&["cleanup", "--sysroot", s])?;
    ensure!(out.contains("freed"), "cleanup did not report");
    ok(&["verify", "--sysroot", s])?;
    Ok(())
}
