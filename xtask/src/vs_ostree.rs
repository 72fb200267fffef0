//! `cargo xtask bench --vs-ostree [--trees V1 V2 V3] [--runs N] [--keep]`: the same three
//! trees committed into `ecu-agent` and into OSTree, and side by side, with ratios: the size of
//! the from-scratch file of V3 and of the deltas V2→V3 and V1→V3, the time and peak RSS of
//! generating each, the time and peak RSS of applying each (median of `--runs`, ours and
//! OSTree's runs interleaved), and whether a checkout of what was applied equals the source
//! tree.
//!
//! OSTree's side is what its documentation offers for offline updates: a `bare` repository
//! (as root, like our sysroot: files with their owners and modes, hard-linkable), `ostree
//! static-delta generate --inline --min-fallback-size=0` (every object in the file, as ours),
//! `ostree static-delta apply-offline` into a fresh `bare` repository (a delta's source commit
//! pulled there first with `pull-local`, untimed), `ostree checkout` to compare. Ours: `delta
//! generate` with the CLI's defaults (so a new codec or patch records are measured as soon as
//! they are the default), signed; `apply-offline` into a fresh sysroot (a delta's source
//! installed first from its own from-scratch file, untimed); `checkout` to compare.
//!
//! With `--fresh-fs`, every apply (ours and OSTree's, a delta's untimed source install with
//! it) goes into a freshly made ext4 with a journal, loop-mounted, as a device's slot is:
//! the machine's own filesystem may lack a journal, and without one ext4 will not reuse an
//! inode freed in the last minute, so that the files of the run before make every create
//! scan past them (docs/PERFORMANCE.md, "Apply from scratch on a filesystem with a journal").
//!
//! Runs as root (OSTree's `bare` mode and the corpus need it); installs the Debian package
//! `ostree` when missing. Without `--trees`, the default corpus ([`crate::corpus`]).

use std::fs;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};

use crate::demo::{build_agent, commit_id};
use crate::tools;

/// One measured run of a program.
struct Run {
    time: Duration,
    /// Peak resident set, KiB.
    rss: u64,
    stdout: String,
}

/// Runs `prog args` in `dir` after a `sync` (so that it pays only for its own writes) and
/// measures its wall time and peak RSS (wait4's rusage).
fn measure(prog: &Path, dir: &Path, args: &[&str]) -> Result<Run> {
    let _ = Command::new("sync").status();
    let out_path = dir.join("child.stdout");
    let err_path = dir.join("child.stderr");
    let t = Instant::now();
    let child = Command::new(prog)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(fs::File::create(&out_path)?)
        .stderr(fs::File::create(&err_path)?)
        .spawn()
        .with_context(|| format!("cannot start {}", prog.display()))?;
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: plain FFI calls with valid pointers to locals; the child is ours and not yet
    // reaped (it is forgotten below, so that its handle does not wait for it again).
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let time = t.elapsed();
    std::mem::forget(child);
    ensure!(r == pid, "wait4 failed for {}", prog.display());
    let stdout = fs::read_to_string(&out_path).unwrap_or_default();
    if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
        bail!(
            "{} {} failed: {}{}",
            prog.display(),
            args.join(" "),
            stdout,
            fs::read_to_string(&err_path).unwrap_or_default()
        );
    }
    Ok(Run {
        time,
        rss: usage.ru_maxrss as u64,
        stdout,
    })
}

/// Medians and peaks of several runs.
#[derive(Default, Clone)]
struct Stat {
    times: Vec<Duration>,
    rss: u64,
}

impl Stat {
    fn add(&mut self, r: &Run) {
        self.times.push(r.time);
        self.rss = self.rss.max(r.rss);
    }
    fn median(&self) -> f64 {
        let mut v = self.times.clone();
        v.sort();
        v.get(v.len() / 2).map_or(f64::NAN, Duration::as_secs_f64)
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// The three cases every table row is about.
const CASES: [(&str, &str); 3] = [
    ("full", "from scratch (V3)"),
    ("d23", "delta V2->V3"),
    ("d13", "delta V1->V3"),
];

struct Opts {
    trees: Option<[PathBuf; 3]>,
    runs: usize,
    keep: bool,
    fresh_fs: bool,
}

fn parse(args: &[String]) -> Result<Opts> {
    let mut o = Opts {
        trees: None,
        runs: 3,
        keep: false,
        fresh_fs: false,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--vs-ostree" => {}
            "--keep" => o.keep = true,
            "--fresh-fs" => o.fresh_fs = true,
            "--runs" => {
                o.runs = it
                    .next()
                    .context("--runs takes a number")?
                    .parse()
                    .context("--runs takes a number")?;
                ensure!(o.runs >= 1, "--runs must be at least 1");
            }
            "--trees" => {
                let mut t = Vec::new();
                for _ in 0..3 {
                    let p = PathBuf::from(it.next().context("--trees takes three directories")?);
                    ensure!(p.is_dir(), "--trees: {} is not a directory", p.display());
                    t.push(fs::canonicalize(&p)?);
                }
                o.trees = Some([t[0].clone(), t[1].clone(), t[2].clone()]);
            }
            other => bail!("bench --vs-ostree: unknown option {other}"),
        }
    }
    Ok(o)
}

/// `cargo xtask bench --vs-ostree ...`.
pub fn run(args: &[String]) -> Result<()> {
    let opts = parse(args)?;
    if !tools::is_root() {
        bail!("bench --vs-ostree runs as root: OSTree's bare repositories and our sysroot apply owners, as on a device");
    }
    tools::ensure_package("ostree", "ostree")?;
    if opts.fresh_fs {
        tools::ensure_package("e2fsprogs", "mkfs.ext4")?;
    }
    let trees = match &opts.trees {
        Some(t) => t.clone(),
        None => crate::corpus::trees()?,
    };
    println!("building ecu-agent (release) ...");
    let bin = build_agent(true)?;
    let work = std::env::temp_dir().join(format!("ecu-agent-vs-ostree-{}", std::process::id()));
    fs::create_dir_all(&work)?;
    let r = bench(&bin, &work, &trees, opts.runs, opts.fresh_fs);
    if opts.keep {
        println!("kept {}", work.display());
    } else {
        let _ = fs::remove_dir_all(&work);
    }
    r
}

/// A freshly made ext4 with a journal, loop-mounted at `WORK/fresh` for each apply
/// (`--fresh-fs`); unmounted when dropped.
struct FreshFs {
    image: PathBuf,
    mount: PathBuf,
    /// Bytes of the image.
    size: u64,
    mounted: bool,
}

impl FreshFs {
    /// A filesystem for trees of at most `largest` bytes of files: a sparse image of 2 GiB,
    /// or four times that when larger (a delta's source and target, and ext4's own).
    fn new(work: &Path, largest: u64) -> FreshFs {
        FreshFs {
            image: work.join("fresh.img"),
            mount: work.join("fresh"),
            size: (4 * largest).max(2 << 30),
            mounted: false,
        }
    }

    /// Unmounts the last one and mounts a new, empty one.
    fn remake(&mut self) -> Result<()> {
        self.unmount()?;
        let img = fs::File::create(&self.image)?;
        img.set_len(self.size)?;
        drop(img);
        fs::create_dir_all(&self.mount)?;
        let run = |c: &mut Command| -> Result<()> {
            let out = c.output().with_context(|| format!("cannot run {c:?}"))?;
            ensure!(
                out.status.success(),
                "{c:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            Ok(())
        };
        run(Command::new("mkfs.ext4")
            .args(["-q", "-F"])
            .arg(&self.image))?;
        run(Command::new("mount")
            .args(["-o", "loop"])
            .arg(&self.image)
            .arg(&self.mount))?;
        self.mounted = true;
        // Every run starts from the same state: nothing of the image's making left to write.
        let _ = Command::new("sync").status();
        Ok(())
    }

    fn unmount(&mut self) -> Result<()> {
        if self.mounted {
            let out = Command::new("umount").arg(&self.mount).output()?;
            ensure!(
                out.status.success(),
                "umount {} failed: {}",
                self.mount.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            self.mounted = false;
        }
        Ok(())
    }
}

impl Drop for FreshFs {
    fn drop(&mut self) {
        if let Err(e) = self.unmount() {
            eprintln!("{e:#}");
        }
    }
}

fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn tree_stats(root: &Path) -> Result<(u64, u64)> {
    let (mut files, mut bytes) = (0, 0);
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d)? {
            let e = e?;
            let t = e.file_type()?;
            if t.is_dir() {
                stack.push(e.path());
            } else {
                files += 1;
                if t.is_file() {
                    bytes += e.metadata()?.len();
                }
            }
        }
    }
    Ok((files, bytes))
}

fn bench(bin: &Path, work: &Path, trees: &[PathBuf; 3], runs: usize, fresh_fs: bool) -> Result<()> {
    let ostree = PathBuf::from("ostree");
    let ostree_version = Command::new("ostree")
        .arg("--version")
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .find_map(|l| l.trim().strip_prefix("Version: ").map(str::to_string))
                .unwrap_or_default()
        })
        .unwrap_or_default();
    let mut largest = 0;
    for (i, t) in trees.iter().enumerate() {
        let (files, bytes) = tree_stats(t)?;
        largest = largest.max(bytes);
        println!(
            "V{}: {} ({files} entries, {:.1} MiB)",
            i + 1,
            t.display(),
            mib(bytes)
        );
    }
    let w = |p: &str| work.join(p).to_string_lossy().into_owned();
    let tree = |i: usize| trees[i].to_string_lossy().into_owned();

    // Commit the three trees into both tools.
    println!("committing V1, V2, V3 into both tools ...");
    measure(bin, work, &["keygen", "--out", "bench.key"])?;
    measure(bin, work, &["init", "--repo", "repo"])?;
    measure(&ostree, work, &["init", "--repo=orepo", "--mode=bare"])?;
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for i in 0..3 {
        let v = format!("{}", i + 1);
        let r = measure(
            bin,
            work,
            &[
                "commit",
                "--repo",
                "repo",
                "--branch",
                "bench",
                "--tree",
                &tree(i),
                "--version",
                &v,
            ],
        )?;
        ours.push(commit_id(&r.stdout)?);
        let r = measure(
            &ostree,
            work,
            &[
                "commit",
                "--repo=orepo",
                "--branch=bench",
                &format!("--tree=dir={}", tree(i)),
                &format!("--subject=V{v}"),
            ],
        )?;
        theirs.push(r.stdout.trim().to_string());
    }

    // Generate: the measured files, then (untimed) from-scratch files of V1 and V2 for our
    // delta applies' starting points.
    let mut gen_ours: Vec<Stat> = vec![Stat::default(); 3];
    let mut gen_theirs: Vec<Stat> = vec![Stat::default(); 3];
    let ours_gen = |case: &str, from: Option<&str>, to: &str| -> Vec<String> {
        let mut a = vec![
            "delta".to_string(),
            "generate".into(),
            "--repo".into(),
            "repo".into(),
        ];
        match from {
            Some(f) => a.extend(["--from".to_string(), f.to_string()]),
            None => a.push("--empty".into()),
        }
        a.extend(
            [
                "--to",
                to,
                "--out",
                &format!("{case}.update"),
                "--sign-key",
                "bench.key",
            ]
            .map(str::to_string),
        );
        a
    };
    let theirs_gen = |case: &str, from: Option<&str>, to: &str| -> Vec<String> {
        let mut a = vec![
            "static-delta".to_string(),
            "generate".into(),
            "--repo=orepo".into(),
        ];
        match from {
            Some(f) => a.push(format!("--from={f}")),
            None => a.push("--empty".into()),
        }
        a.extend([
            format!("--to={to}"),
            "--inline".into(),
            "--min-fallback-size=0".into(),
            format!("--filename={case}.ostree"),
        ]);
        a
    };
    let sources = [None, Some(1usize), Some(0usize)];
    for run in 0..runs {
        for (k, (case, what)) in CASES.iter().enumerate() {
            println!("generate {what}: run {}/{runs}, ours ...", run + 1);
            let a = ours_gen(case, sources[k].map(|s| ours[s].as_str()), &ours[2]);
            gen_ours[k].add(&measure(
                bin,
                work,
                &a.iter().map(String::as_str).collect::<Vec<_>>(),
            )?);
            println!("generate {what}: run {}/{runs}, OSTree ...", run + 1);
            let a = theirs_gen(case, sources[k].map(|s| theirs[s].as_str()), &theirs[2]);
            gen_theirs[k].add(&measure(
                &ostree,
                work,
                &a.iter().map(String::as_str).collect::<Vec<_>>(),
            )?);
        }
    }
    for (i, name) in [(0, "v1"), (1, "v2")] {
        let a = ours_gen(name, None, &ours[i]);
        measure(bin, work, &a.iter().map(String::as_str).collect::<Vec<_>>())?;
    }
    let size = |p: String| fs::metadata(&p).map(|m| m.len()).with_context(|| p.clone());
    let mut sizes = Vec::new();
    for (case, _) in CASES {
        sizes.push((
            size(w(&format!("{case}.update")))?,
            size(w(&format!("{case}.ostree")))?,
        ));
    }

    // Apply, interleaved; the last run's results are checked out and compared with V3. With
    // `--fresh-fs`, each apply into a filesystem made for it.
    let mut fresh = fresh_fs.then(|| FreshFs::new(work, largest));
    let place = if fresh_fs { "fresh/" } else { "" };
    let (dev, odev) = (format!("{place}dev"), format!("{place}odev"));
    let remove = |dir: &str| -> Result<()> {
        let p = work.join(dir);
        if p.exists() {
            fs::remove_dir_all(&p)?;
        }
        Ok(())
    };
    // `dir` (in WORK), empty: a fresh filesystem there, or the last run's tree removed.
    let mut empty = |dir: &str| -> Result<()> {
        match &mut fresh {
            Some(f) => f.remake(),
            None => remove(dir),
        }
    };
    // Checks out with `prog args d` and compares `WORK/d` with V3.
    let checkout = |what: &str, prog: &Path, args: &[&str], d: &str| -> Result<bool> {
        println!("checking out {what} ({d}) and comparing it with V3 ...");
        remove(d)?;
        let mut a = args.to_vec();
        a.push(d);
        measure(prog, work, &a)?;
        let diffs = compare_trees(&trees[2], &work.join(d))?;
        for line in diffs.iter().take(5) {
            println!("  {d}: {line}");
        }
        Ok(diffs.is_empty())
    };
    let mut app_ours: Vec<Stat> = vec![Stat::default(); 3];
    let mut app_theirs: Vec<Stat> = vec![Stat::default(); 3];
    let mut same = [[false; 2]; 3];
    for run in 0..runs {
        let last = run + 1 == runs;
        for (k, (case, what)) in CASES.iter().enumerate() {
            println!("apply {what}: run {}/{runs}, ours ...", run + 1);
            empty(&dev)?;
            let apply = |file: &str| -> Result<Run> {
                measure(
                    bin,
                    work,
                    &[
                        "apply-offline",
                        "--sysroot",
                        &dev,
                        "--trusted-key",
                        "bench.key.pub",
                        file,
                    ],
                )
            };
            if let Some(s) = sources[k] {
                apply(&format!("v{}.update", s + 1))?;
            }
            app_ours[k].add(&apply(&format!("{case}.update"))?);
            if last {
                same[k][0] = checkout(
                    what,
                    bin,
                    &["checkout", "--sysroot", &dev, &ours[2]],
                    "co-ours",
                )?;
            }
            println!("apply {what}: run {}/{runs}, OSTree ...", run + 1);
            empty(&odev)?;
            let repo = format!("--repo={odev}");
            measure(&ostree, work, &["init", &repo, "--mode=bare"])?;
            if let Some(s) = sources[k] {
                measure(
                    &ostree,
                    work,
                    &["pull-local", &repo, &w("orepo"), &theirs[s]],
                )?;
            }
            app_theirs[k].add(&measure(
                &ostree,
                work,
                &[
                    "static-delta",
                    "apply-offline",
                    &repo,
                    &format!("{case}.ostree"),
                ],
            )?);
            if last {
                same[k][1] =
                    checkout(what, &ostree, &["checkout", &repo, &theirs[2]], "co-ostree")?;
            }
        }
    }
    // The last filesystem made is unmounted here (and on an error, when `fresh` drops).
    drop(fresh);

    println!();
    println!(
        "ecu-agent vs OSTree {ostree_version}: {} cores, load average {} at the end; medians of {runs} runs; applies into {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        loadavg(),
        if fresh_fs {
            "a fresh journaled ext4 each (--fresh-fs)"
        } else {
            "the work directory's filesystem"
        }
    );
    println!(
        "| {:<28} | {:>12} | {:>12} | {:>11} |",
        "", "ours", "OSTree", "ours/OSTree"
    );
    println!("| {:-<28} | {:->12} | {:->12} | {:->11} |", "", "", "", "");
    let row = |name: String, a: String, b: String, ratio: f64| {
        println!("| {name:<28} | {a:>12} | {b:>12} | {ratio:>10.2}x |");
    };
    for (k, (_, what)) in CASES.iter().enumerate() {
        let (a, b) = sizes[k];
        row(
            format!("size, {what}"),
            format!("{a}"),
            format!("{b}"),
            a as f64 / b as f64,
        );
    }
    for (k, (_, what)) in CASES.iter().enumerate() {
        let (a, b) = (&gen_ours[k], &gen_theirs[k]);
        row(
            format!("generate {what}"),
            format!("{:.2} s", a.median()),
            format!("{:.2} s", b.median()),
            a.median() / b.median(),
        );
        row(
            "  peak RSS".to_string(),
            format!("{} KiB", a.rss),
            format!("{} KiB", b.rss),
            a.rss as f64 / b.rss as f64,
        );
    }
    for (k, (_, what)) in CASES.iter().enumerate() {
        let (a, b) = (&app_ours[k], &app_theirs[k]);
        row(
            format!("apply {what}"),
            format!("{:.2} s", a.median()),
            format!("{:.2} s", b.median()),
            a.median() / b.median(),
        );
        row(
            "  peak RSS".to_string(),
            format!("{} KiB", a.rss),
            format!("{} KiB", b.rss),
            a.rss as f64 / b.rss as f64,
        );
        let yes = |b: bool| if b { "equal" } else { "DIFFERS" }.to_string();
        println!(
            "| {:<28} | {:>12} | {:>12} | {:>11} |",
            "  checkout = V3",
            yes(same[k][0]),
            yes(same[k][1]),
            ""
        );
    }
    let full = (&app_ours[0], &app_theirs[0]);
    println!(
        "apply throughput from scratch: ours {:.2}x OSTree's",
        full.1.median() / full.0.median()
    );
    ensure!(
        same.iter().flatten().all(|s| *s),
        "a checkout differs from its source tree (see above)"
    );
    Ok(())
}

/// Differences between two trees: entries, types, permission bits, owners, sizes, contents and
/// symlink targets (empty when they are equal). File times are not compared.
fn compare_trees(a: &Path, b: &Path) -> Result<Vec<String>> {
    let mut diffs = Vec::new();
    let mut stack = vec![PathBuf::new()];
    let (mut ba, mut bb) = (vec![0u8; 1 << 16], vec![0u8; 1 << 16]);
    while let Some(rel) = stack.pop() {
        let (pa, pb) = (a.join(&rel), b.join(&rel));
        let (ma, mb) = (fs::symlink_metadata(&pa)?, fs::symlink_metadata(&pb));
        let Ok(mb) = mb else {
            diffs.push(format!("{}: missing", rel.display()));
            continue;
        };
        let (ta, tb) = (ma.file_type(), mb.file_type());
        if (ta.is_dir(), ta.is_file(), ta.is_symlink())
            != (tb.is_dir(), tb.is_file(), tb.is_symlink())
        {
            diffs.push(format!("{}: of another type", rel.display()));
            continue;
        }
        if !ta.is_symlink() && ma.mode() & 0o7777 != mb.mode() & 0o7777 {
            diffs.push(format!(
                "{}: mode {:o}, not {:o}",
                rel.display(),
                mb.mode() & 0o7777,
                ma.mode() & 0o7777
            ));
        }
        if (ma.uid(), ma.gid()) != (mb.uid(), mb.gid()) {
            diffs.push(format!(
                "{}: owner {}:{}, not {}:{}",
                rel.display(),
                mb.uid(),
                mb.gid(),
                ma.uid(),
                ma.gid()
            ));
        }
        if ta.is_symlink() {
            if fs::read_link(&pa)? != fs::read_link(&pb)? {
                diffs.push(format!("{}: another symlink target", rel.display()));
            }
        } else if ta.is_file() {
            if ma.len() != mb.len() {
                diffs.push(format!(
                    "{}: {} bytes, not {}",
                    rel.display(),
                    mb.len(),
                    ma.len()
                ));
                continue;
            }
            let (mut fa, mut fb) = (fs::File::open(&pa)?, fs::File::open(&pb)?);
            loop {
                let n = fa.read(&mut ba)?;
                if n == 0 {
                    break;
                }
                fb.read_exact(&mut bb[..n])?;
                if ba[..n] != bb[..n] {
                    diffs.push(format!("{}: other contents", rel.display()));
                    break;
                }
            }
        } else if ta.is_dir() {
            let names = |p: &Path| -> Result<Vec<std::ffi::OsString>> {
                let mut v: Vec<_> = fs::read_dir(p)?
                    .map(|e| e.map(|e| e.file_name()))
                    .collect::<Result<_, _>>()?;
                v.sort();
                Ok(v)
            };
            let (na, nb) = (names(&pa)?, names(&pb)?);
            for n in &nb {
                if na.binary_search(n).is_err() {
                    diffs.push(format!("{}: extra", rel.join(n).display()));
                }
            }
            for n in na {
                stack.push(rel.join(n));
            }
        }
    }
    Ok(diffs)
}
