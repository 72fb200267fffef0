//! Running a firmware build under QEMU (`mps2-an386`, Cortex-M4, semihosting) and reading
//! what it prints.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, Result};

use super::data_dir;

pub(crate) struct Run {
    pub(crate) ok: bool,
    pub(crate) text: String,
}

/// Runs the firmware under QEMU with the data folder as working directory.
pub(crate) fn run_qemu(elf: &Path, block: usize, defmt: bool) -> Result<Run> {
    let data = data_dir();
    fs::write(data.join("params.txt"), format!("block={block}\n"))?;
    let mut qemu = Command::new("timeout");
    qemu.current_dir(&data)
        .args([
            "120",
            "qemu-system-arm",
            "-cpu",
            "cortex-m4",
            "-machine",
            "mps2-an386",
            "-nographic",
        ])
        .args(["-semihosting-config", "enable=on,target=native", "-kernel"])
        .arg(elf)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = qemu.spawn().context("could not start qemu-system-arm")?;
    let stdout = child.stdout.take().context("qemu stdout")?;
    let text = if defmt {
        let out = Command::new("defmt-print")
            .arg("-e")
            .arg(elf)
            .stdin(stdout)
            .stderr(Stdio::inherit())
            .output()
            .context("could not start defmt-print")?;
        String::from_utf8_lossy(&out.stdout).into_owned()
    } else {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut { stdout }, &mut s)?;
        s
    };
    let out = child.wait_with_output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let ok = out.status.success() && text.lines().any(|l| l.contains("RESULT: PASS"));
    let mut text = text;
    if !stderr.trim().is_empty() {
        text.push_str(&format!("[qemu stderr] {stderr}"));
    }
    if !out.status.success() {
        text.push_str(&format!("[qemu exit status] {}\n", out.status));
    }
    Ok(Run { ok, text })
}

pub(crate) fn report(variant: &str, block: usize, run: &Run, failed: &mut Vec<String>) {
    println!(
        "---- firmware ({variant}), block {block} bytes: {}",
        if run.ok { "PASS" } else { "FAIL" }
    );
    for l in run.text.lines() {
        println!("  {l}");
    }
    if !run.ok {
        failed.push(format!("{variant}/block {block}"));
    }
}

/// The number after `key: ` on a line of `text`.
pub(crate) fn value(text: &str, key: &str) -> Result<u64> {
    let pat = format!("{key}: ");
    text.lines()
        .find_map(|l| {
            l.split_once(&pat)
                .and_then(|(_, v)| v.split_whitespace().next()?.parse().ok())
        })
        .with_context(|| format!("the firmware printed no `{key}` line"))
}
