//! `cargo xtask bench`: commit, generate and apply a generated tree of 100+ MiB and print the
//! times, sizes, throughput and the apply process's peak RSS. No thresholds: numbers to read.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use test_support::rng::XorShift64;

use crate::demo::{build_agent, commit_id};

/// A file-size mix like a Linux ECU image: many small config and script files, a body of
/// shared libraries and programs, a few large blobs (firmware, models, a kernel).
const MIX: &[(usize, usize)] = &[
    // (count, size in bytes)
    (2000, 600),
    (600, 8 * 1024),
    (220, 96 * 1024),
    (40, 900 * 1024),
    (4, 8 * 1024 * 1024),
];

/// Content that compresses about as well as real binaries (roughly 2:1 to 3:1).
fn content(rng: &mut XorShift64, len: usize) -> Vec<u8> {
    const WORDS: &[&str] = &[
        "can", "frame", "diag", "session", "ecu", "bus", "timeout", "reset", "0x7e0", "uds",
    ];
    let mut out = Vec::with_capacity(len + 16);
    while out.len() < len {
        let x = rng.next_u64();
        match x % 5 {
            0 | 1 => out.extend_from_slice(&x.to_le_bytes()),
            2 => out.extend_from_slice(&[0u8; 8]),
            _ => {
                out.extend_from_slice(WORDS[(x >> 8) as usize % WORDS.len()].as_bytes());
                out.push(b' ');
            }
        }
    }
    out.truncate(len);
    out
}

fn make_tree(root: &Path, scale: f64, seed: u64) -> Result<u64> {
    let mut rng = XorShift64::from_state(seed | 1);
    let mut total = 0u64;
    for (class, &(count, size)) in MIX.iter().enumerate() {
        let count = ((count as f64) * scale).ceil() as usize;
        for i in 0..count {
            let dir = root.join(format!("usr/share/c{class}/d{}", i % 37));
            fs::create_dir_all(&dir)?;
            let p = dir.join(format!("f{i}.bin"));
            let data = content(&mut rng, size);
            total += data.len() as u64;
            fs::write(&p, data)?;
            fs::set_permissions(
                &p,
                fs::Permissions::from_mode(if i % 5 == 0 { 0o755 } else { 0o644 }),
            )?;
        }
    }
    Ok(total)
}

/// Flushes what earlier steps left dirty, so that a step's fsyncs pay only for its own writes.
fn settle() {
    let _ = Command::new("sync").status();
}

fn timed(bin: &Path, dir: &Path, args: &[&str]) -> Result<(Duration, String)> {
    settle();
    let t = Instant::now();
    let out = Command::new(bin).args(args).current_dir(dir).output()?;
    let took = t.elapsed();
    ensure!(
        out.status.success(),
        "ecu-agent {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((took, String::from_utf8_lossy(&out.stdout).into_owned()))
}

/// Runs `bin args` and returns its wall time and peak RSS in KiB (from wait4's rusage).
fn timed_rss(bin: &Path, dir: &Path, args: &[&str]) -> Result<(Duration, u64)> {
    settle();
    let t = Instant::now();
    let errors = dir.join("child.stderr");
    let child = Command::new(bin)
        .args(args)
        .current_dir(dir)
        .stdout(std::process::Stdio::null())
        .stderr(fs::File::create(&errors)?)
        .spawn()?;
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: plain FFI call with valid pointers to locals; the child is ours and not yet reaped.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let took = t.elapsed();
    ensure!(r == pid, "wait4 failed");
    ensure!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "ecu-agent {} failed: {}",
        args.join(" "),
        fs::read_to_string(&errors).unwrap_or_default()
    );
    std::mem::forget(child);
    Ok((took, usage.ru_maxrss as u64))
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

pub fn run(args: &[String]) -> Result<()> {
    if args.iter().any(|a| a == "--vs-ostree") {
        return crate::vs_ostree::run(args);
    }
    let size_mib: f64 = match args.iter().position(|a| a == "--size-mib") {
        Some(i) => args
            .get(i + 1)
            .context("--size-mib takes a number")?
            .parse()?,
        None => 128.0,
    };
    let bin = build_agent(true)?;
    let tmp = std::env::temp_dir().join(format!("ecu-agent-bench-{}", std::process::id()));
    fs::create_dir_all(&tmp)?;
    let r = bench(&bin, &tmp, size_mib);
    fs::remove_dir_all(&tmp).ok();
    r
}

/// Runs of each measured step; the median is reported.
const RUNS: usize = 3;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn bench(bin: &Path, tmp: &Path, size_mib: f64) -> Result<()> {
    let base: u64 = MIX.iter().map(|&(c, s)| (c * s) as u64).sum();
    let scale = size_mib * 1024.0 * 1024.0 / base as f64;
    let v1 = tmp.join("v1");
    let total = make_tree(&v1, scale, 42)?;
    let files: usize = MIX
        .iter()
        .map(|&(c, _)| ((c as f64) * scale).ceil() as usize)
        .sum();
    // v2: one small config changes and one 96 KiB library is replaced.
    let v2 = tmp.join("v2");
    crate::tools::run(Command::new("cp").arg("-a").arg(&v1).arg(&v2))?;
    fs::write(v2.join("usr/share/c0/d0/f0.bin"), b"changed config\n")?;
    fs::write(
        v2.join("usr/share/c2/d1/f1.bin"),
        content(&mut XorShift64::from_state(7), 96 * 1024),
    )?;

    println!(
        "tree: {files} files, {:.1} MiB; each step run {RUNS} times, medians shown (release build)",
        mib(total)
    );
    // Signed files, verified on apply, as a vehicle would take them.
    timed(bin, tmp, &["keygen", "--out", "bench.key"])?;
    let commit = |repo: &str, tree: &str, version: &str| {
        timed(
            bin,
            tmp,
            &[
                "commit",
                "--repo",
                repo,
                "--branch",
                "bench",
                "--tree",
                tree,
                "--version",
                version,
            ],
        )
    };
    // Commit into fresh repositories; the last one keeps going.
    let mut t_commit = Vec::new();
    let mut c1 = String::new();
    for i in 0..RUNS {
        let repo = format!("repo{i}");
        timed(bin, tmp, &["init", "--repo", &repo])?;
        let (t, out) = commit(&repo, "v1", "1")?;
        t_commit.push(t);
        c1 = commit_id(&out)?;
    }
    let repo = format!("repo{}", RUNS - 1);
    let t_commit = median(t_commit);
    println!(
        "commit:                 {:>8.2} s  ({:.1} MiB/s)",
        t_commit.as_secs_f64(),
        mib(total) / t_commit.as_secs_f64()
    );
    let (_, out) = commit(&repo, "v2", "2")?;
    let c2 = commit_id(&out)?;

    let mut t_gen = Vec::new();
    let mut t_delta = Vec::new();
    for _ in 0..RUNS {
        let (t, _) = timed(
            bin,
            tmp,
            &[
                "delta",
                "generate",
                "--repo",
                &repo,
                "--empty",
                "--to",
                &c1,
                "--out",
                "full.update",
                "--sign-key",
                "bench.key",
            ],
        )?;
        t_gen.push(t);
        let (t, _) = timed(
            bin,
            tmp,
            &[
                "delta",
                "generate",
                "--repo",
                &repo,
                "--from",
                &c1,
                "--to",
                &c2,
                "--out",
                "delta.update",
                "--sign-key",
                "bench.key",
            ],
        )?;
        t_delta.push(t);
    }
    let full = fs::metadata(tmp.join("full.update"))?.len();
    let delta = fs::metadata(tmp.join("delta.update"))?.len();
    let t_gen = median(t_gen);
    println!(
        "from-scratch generate:  {:>8.2} s  ({:.1} MiB/s); size {:.1} MiB = {:.1}% of the tree",
        t_gen.as_secs_f64(),
        mib(total) / t_gen.as_secs_f64(),
        mib(full),
        100.0 * full as f64 / total as f64
    );
    println!(
        "small-change delta:     {:>8.2} s  size {} bytes ({:.4}% of the from-scratch file)",
        median(t_delta).as_secs_f64(),
        delta,
        100.0 * delta as f64 / full as f64
    );

    let mut t_apply = Vec::new();
    let mut t_apply_d = Vec::new();
    let (mut rss, mut rss_d) = (0, 0);
    for i in 0..RUNS {
        let dev = format!("dev{i}");
        let (t, r) = timed_rss(
            bin,
            tmp,
            &[
                "apply-offline",
                "--sysroot",
                &dev,
                "--trusted-key",
                "bench.key.pub",
                "full.update",
            ],
        )?;
        t_apply.push(t);
        rss = rss.max(r);
        let (t, r) = timed_rss(
            bin,
            tmp,
            &[
                "apply-offline",
                "--sysroot",
                &dev,
                "--trusted-key",
                "bench.key.pub",
                "delta.update",
            ],
        )?;
        t_apply_d.push(t);
        rss_d = rss_d.max(r);
    }
    let t_apply = median(t_apply);
    println!(
        "apply from scratch:     {:>8.2} s  {:.1} MiB/s of tree, {:.1} MiB/s of file; peak RSS {} KiB (largest of {RUNS})",
        t_apply.as_secs_f64(),
        mib(total) / t_apply.as_secs_f64(),
        mib(full) / t_apply.as_secs_f64(),
        rss
    );
    println!(
        "apply delta:            {:>8.2} s  peak RSS {} KiB (largest of {RUNS})",
        median(t_apply_d).as_secs_f64(),
        rss_d
    );
    Ok(())
}
