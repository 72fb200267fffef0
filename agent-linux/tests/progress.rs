//! Progress of the commands that feed an update file: JSON lines with `--json-progress`, a bar
//! on a terminal (through a real pty: util-linux `script`), and nothing on a pipe.

use std::fs;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;
use sha2::{Digest, Sha256};

mod build_common;
use build_common::{built_update, on_terminal, p, trusted, EXE};

/// Runs `ecu-agent args`, with `stdin` written to it in 256 KiB chunks 20 ms apart (a slow
/// transport) when given.
fn run(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(EXE)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run ecu-agent");
    if let Some(data) = stdin {
        let mut w = child.stdin.take().unwrap();
        for c in data.chunks(256 * 1024) {
            if w.write_all(c).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    child.wait_with_output().unwrap()
}

/// Bytes nothing compresses (SHA-256 in counter mode).
fn noise(n: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(n + 32);
    let mut i = 0u64;
    while v.len() < n {
        v.extend_from_slice(&Sha256::digest(i.to_le_bytes()));
        i += 1;
    }
    v.truncate(n);
    v
}

/// A signed from-scratch update of a tree holding 4 MiB of noise and a few small files, and
/// the public key that verifies it.
struct Fixture {
    _t: tempfile::TempDir,
    dir: PathBuf,
    update: PathBuf,
    public: PathBuf,
}

fn fixture() -> Fixture {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().to_path_buf();
    let (src, key) = (dir.join("src"), dir.join("key"));
    fs::create_dir_all(src.join("usr/lib")).unwrap();
    fs::write(src.join("usr/lib/big"), noise(4 << 20)).unwrap();
    for i in 0..20 {
        fs::write(src.join(format!("f{i}")), format!("file {i}\n")).unwrap();
    }
    let update = built_update(&dir, &src, Some(&key), &["--codec", "deflate"]);
    Fixture {
        public: key.with_extension("pub"),
        _t: t,
        dir,
        update,
    }
}

/// The JSON lines of stderr, each checked to be one object with an `event`; the other lines
/// (for people) must not start with `{`.
fn events(stderr: &[u8]) -> Vec<Value> {
    let text = String::from_utf8(stderr.to_vec()).unwrap();
    text.lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}"));
            assert!(v["event"].is_string(), "{l}");
            v
        })
        .collect()
}

/// `start` first, `done` last, `progress` between with bytes that never decrease and end at
/// the file's size; returns the progress events.
fn check_success(ev: &[Value], command: &str, file: &str, size: u64) -> Vec<Value> {
    assert_eq!(ev[0]["event"], "start", "{ev:?}");
    assert_eq!(ev[0]["command"], command);
    assert_eq!(ev[0]["file"], file);
    let last = ev.last().unwrap();
    assert_eq!(last["event"], "done", "{ev:?}");
    assert_eq!(last["bytes"], size, "{last}");
    assert_eq!(last["total"], size, "{last}");
    let progress: Vec<Value> = ev[1..ev.len() - 1].to_vec();
    assert!(progress.iter().all(|e| e["event"] == "progress"), "{ev:?}");
    let bytes: Vec<u64> = progress
        .iter()
        .map(|e| e["bytes"].as_u64().unwrap())
        .collect();
    assert!(bytes.windows(2).all(|w| w[0] <= w[1]), "{bytes:?}");
    assert_eq!(bytes.last().copied(), Some(size), "{bytes:?}");
    for e in &progress {
        for k in [
            "phase",
            "total",
            "parts_done",
            "parts_total",
            "objects_done",
            "objects_total",
            "elapsed_ms",
        ] {
            assert!(e.get(k).is_some(), "{k} missing: {e}");
        }
    }
    progress
}

#[test]
fn json_progress_of_apply_offline_and_install() {
    let f = fixture();
    let size = fs::metadata(&f.update).unwrap().len();

    let o = run(
        &trusted(
            "apply-offline",
            &f.dir.join("s1"),
            p(&f.public),
            &["--json-progress", p(&f.update)],
        ),
        None,
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let ev = events(&o.stderr);
    let progress = check_success(&ev, "apply-offline", p(&f.update), size);
    let done = ev.last().unwrap();
    let commit = String::from_utf8(o.stdout).unwrap();
    assert_eq!(done["commit"], commit.trim(), "stdout keeps the result");
    let last = progress.last().unwrap();
    assert_eq!(last["parts_done"], last["parts_total"]);
    assert_eq!(last["objects_done"], last["objects_total"]);
    assert_eq!(last["phase"], "committing");

    // From standard input, arriving slowly: the total is unknown until the superblock is
    // verified, and there are several progress lines, at most ten a second.
    let data = fs::read(&f.update).unwrap();
    let o = run(
        &trusted(
            "install",
            &f.dir.join("s2"),
            p(&f.public),
            &["--json-progress", "-"],
        ),
        Some(&data),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let ev = events(&o.stderr);
    let progress = check_success(&ev, "install", "-", size);
    assert!(progress.len() >= 3, "{progress:?}");
    assert_eq!(progress.last().unwrap()["phase"], "deploying");
    let phases: Vec<&str> = progress
        .iter()
        .map(|e| e["phase"].as_str().unwrap())
        .collect();
    assert!(phases.contains(&"installing"), "{phases:?}");
    // Within a phase, lines are at least 100 ms apart, but for the last one (the final state,
    // shown at the end).
    for (i, w) in progress.windows(2).enumerate() {
        let gap = w[1]["elapsed_ms"].as_u64().unwrap() - w[0]["elapsed_ms"].as_u64().unwrap();
        if w[0]["phase"] == w[1]["phase"] && i + 2 < progress.len() {
            assert!(gap >= 99, "{gap} ms between {} and {}", w[0], w[1]);
        }
    }

    // delta show reads the file through too.
    let o = run(&["delta", "show", "--json-progress", p(&f.update)], None);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let ev = events(&o.stderr);
    let progress = check_success(&ev, "delta show", p(&f.update), size);
    assert!(progress.iter().all(|e| e["phase"] == "verifying"));
    assert_eq!(ev.last().unwrap()["commit"], Value::Null);
}

#[test]
fn json_progress_of_a_damaged_file_ends_with_an_error() {
    let f = fixture();
    let mut data = fs::read(&f.update).unwrap();
    let mid = data.len() / 2;
    data[mid] ^= 0x55;
    let bad = f.dir.join("bad.update");
    fs::write(&bad, &data).unwrap();
    for cmd in ["apply-offline", "install"] {
        let o = run(
            &trusted(
                cmd,
                &f.dir.join(cmd),
                p(&f.public),
                &["--json-progress", p(&bad)],
            ),
            None,
        );
        assert!(!o.status.success(), "{cmd} accepted a damaged file");
        assert!(o.stdout.is_empty());
        let ev = events(&o.stderr);
        assert_eq!(ev[0]["event"], "start");
        let last = ev.last().unwrap();
        assert_eq!(last["event"], "error", "{ev:?}");
        assert!(ev.iter().all(|e| e["event"] != "done"), "{ev:?}");
        let msg = last["message"].as_str().unwrap();
        assert!(msg.contains("bad.update"), "{msg}");
        assert!(last["bytes"].as_u64().unwrap() <= data.len() as u64);
        assert_eq!(last["phase"], "installing", "{last}");
        // And for people, the error as usual.
        let text = String::from_utf8_lossy(&o.stderr);
        assert!(text.lines().any(|l| l.starts_with("error: ")), "{text}");
    }
    // Failing before the file is read: still one error line.
    let o = run(
        &trusted(
            "apply-offline",
            &f.dir.join("s3"),
            p(&f.public),
            &["--json-progress", p(&f.dir.join("missing.update"))],
        ),
        None,
    );
    assert!(!o.status.success());
    let ev = events(&o.stderr);
    assert_eq!(ev.len(), 2, "{ev:?}");
    assert_eq!(ev[1]["event"], "error");
    assert!(ev[1]["message"].as_str().unwrap().contains("cannot open"));
}

#[test]
fn nothing_extra_when_stderr_is_not_a_terminal() {
    let f = fixture();
    let o = run(
        &trusted(
            "apply-offline",
            &f.dir.join("s1"),
            p(&f.public),
            &[p(&f.update)],
        ),
        None,
    );
    assert!(o.status.success());
    let commit = String::from_utf8(o.stdout).unwrap();
    assert_eq!(
        String::from_utf8(o.stderr).unwrap(),
        format!("installed {} on main\n", commit.trim())
    );
    let data = fs::read(&f.update).unwrap();
    let o = run(
        &trusted("install", &f.dir.join("s2"), p(&f.public), &["-"]),
        Some(&data),
    );
    assert!(o.status.success());
    assert_eq!(String::from_utf8(o.stderr).unwrap(), "");
    let o = run(&["delta", "show", p(&f.update)], None);
    assert!(o.status.success());
    assert_eq!(String::from_utf8(o.stderr).unwrap(), "");
}

#[test]
fn a_bar_on_a_terminal() {
    let f = fixture();
    let size = fs::metadata(&f.update).unwrap().len();
    let Some(shown) = on_terminal(
        "progress bar on a terminal",
        &trusted("install", &f.dir.join("s1"), p(&f.public), &[p(&f.update)]),
    ) else {
        return;
    };
    // The phase, a bar, the bytes of the total (4 MiB and a little), the rate, the time left.
    assert!(shown.contains("installing: ["), "{shown:?}");
    assert!(shown.contains("/4.00 MiB ("), "{shown:?} ({size} bytes)");
    assert!(
        shown.contains("/s, ") && shown.contains(" left)"),
        "{shown:?}"
    );
    // Cleared at the end, before the result.
    let end = shown.rfind("\r\x1b[2K").expect("the bar is cleared");
    assert!(
        shown[end..].contains("staged") || shown[end..].contains("provisioned"),
        "{shown:?}"
    );
    assert!(!shown.contains("{\"event\""), "{shown:?}");

    // --json-progress on a terminal: the lines, no bar.
    let shown = on_terminal(
        "progress bar on a terminal",
        &trusted(
            "apply-offline",
            &f.dir.join("s2"),
            p(&f.public),
            &["--json-progress", p(&f.update)],
        ),
    )
    .unwrap();
    assert!(shown.contains("{\"event\":\"done\""), "{shown:?}");
    assert!(!shown.contains("installing: ["), "{shown:?}");
}
