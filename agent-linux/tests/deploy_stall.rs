//! Case 7 of "Never lose what runs": a stalled `install -` must not block `mark-good` or
//! `rollback`, and `simulate-boot` on a full disk must not use up a boot try and then fail;
//! and an update the filesystem cannot hold is refused up front, with the numbers.

mod deploy_common;

use deploy_common::*;

use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use agent_linux::bootcfg::BootConfig;
use agent_linux::deploy::{self, EnvContent};
use bootloader_hooks::{BootState, DecisionKind, Slot};

const S: &str = "sysroot";

fn spawn(cwd: &Path, args: &[&str], envs: &[(&str, &str)], stdin: Stdio) -> Child {
    let mut c = Command::new(bin());
    c.args(args)
        .current_dir(cwd)
        .env("ECU_AGENT_CMDLINE", "/dev/null")
        .env_remove("ECU_AGENT_BOOTED_SLOT")
        .env_remove("ECU_AGENT_FAULT_AT")
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in envs {
        c.env(k, v);
    }
    c.spawn().expect("spawning ecu-agent")
}

/// Waits up to `limit` for `child`; `None` (after killing it) when it did not finish.
fn wait_for(mut child: Child, limit: Duration) -> Option<std::process::Output> {
    let t = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return Some(child.wait_with_output().unwrap());
        }
        if t.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn state(root: &Path) -> BootState {
    let cfg = BootConfig::load(root).unwrap();
    match deploy::env::read(&cfg).unwrap() {
        EnvContent::Ready(_, st) => *st,
        _ => panic!("no boot state"),
    }
}

/// `install -` whose input stalls mid-file (a pipe that stays open) holds no lock that
/// `mark-good` or `rollback` need.
#[test]
fn stalled_install_does_not_block_mark_good_or_rollback() {
    let lab = Lab::new(&["9", "9.1", "9.2"]);
    let d = lab.path();
    lab.trust(S);
    two_good(&lab, d);
    let update = fs::read(lab.update(None, "9.2")).unwrap();
    let mut install = spawn(
        d,
        &["install", "--sysroot", S, "-"],
        &booted(Slot::B),
        Stdio::piped(),
    );
    let mut stdin = install.stdin.take().unwrap();
    stdin.write_all(&update[..update.len() / 2]).unwrap();
    stdin.flush().unwrap();
    // Let it read what there is and block on the rest.
    std::thread::sleep(Duration::from_millis(500));
    assert!(install.try_wait().unwrap().is_none(), "install ended early");

    for cmd in ["mark-good", "rollback", "status"] {
        let child = spawn(d, &[cmd, "--sysroot", S], &booted(Slot::B), Stdio::null());
        let out = wait_for(child, Duration::from_secs(20))
            .unwrap_or_else(|| panic!("`{cmd}` waited behind a stalled install"));
        assert!(
            out.status.success(),
            "{cmd}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // The rollback took effect while the install was still reading.
    assert_eq!(state(&d.join(S)).decide().slot, Slot::A);

    // The input is cut: the install fails cleanly and leaves both deployments.
    drop(stdin);
    let out = wait_for(install, Duration::from_secs(20)).expect("install ends");
    assert!(!out.status.success());
    let st = status(d, S, Slot::B);
    assert_eq!(deployment_of(&st, "A")["version"], "9", "{st}");
    assert_eq!(deployment_of(&st, "B")["version"], "9.1", "{st}");
}

/// A small tmpfs mounted for the test (root only); unmounted on drop.
struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !ok {
            test_support::tool::skip("deploy_stall", "cannot mount a tmpfs (not root?)");
            return None;
        }
        Some(Tmpfs(dir))
    }

    fn path(&self) -> &Path {
        self.0.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0.path()).status();
    }
}

/// Fills the filesystem holding `dir` until a write fails with ENOSPC.
fn fill(dir: &Path) {
    let mut f = fs::File::create(dir.join("filler")).unwrap();
    let block = vec![0x55u8; 4096];
    loop {
        match f.write_all(&block) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(28) => break,
            Err(e) => panic!("filling: {e}"),
        }
    }
    let _ = f.sync_all();
    // Small files too: tmpfs may still have a partial page.
    for i in 0.. {
        match fs::write(dir.join(format!("filler{i}")), b"x") {
            Ok(()) => {}
            Err(_) => break,
        }
    }
}

/// `simulate-boot` on a full disk used up a boot try (the environment written in place) and
/// then failed writing `S/run/booted`; now it fails before counting the try.
#[test]
fn simulate_boot_on_a_full_disk_keeps_its_tries() {
    let Some(fs_) = Tmpfs::mount("8m") else {
        return;
    };
    let lab = Lab::new(&["9", "9.1"]);
    let d = fs_.path();
    lab.trust(d.join(S).to_str().unwrap());
    ok(d, &["install", "--sysroot", S, &lab.update(None, "9")], &[]);
    ok(
        d,
        &["install", "--sysroot", S, &lab.update(Some("9"), "9.1")],
        &booted(Slot::A),
    );
    let root = d.join(S);
    let before = state(&root);
    assert_eq!(before.decide().kind, DecisionKind::Trial);
    let tries = before.slot(Slot::B).tries_left;
    fill(d);
    let e = fails(d, &["simulate-boot", "--sysroot", S], &[]);
    assert!(e.contains("No space left on device"), "{e}");
    assert_eq!(
        state(&root),
        before,
        "a failed simulate-boot changed the boot state"
    );
    assert_eq!(state(&root).slot(Slot::B).tries_left, tries);
    assert_eq!(
        fs::read_to_string(root.join("run/booted")).unwrap().trim(),
        "A"
    );
    // With space again, the boot happens and counts its try.
    for e in fs::read_dir(d).unwrap() {
        let p = e.unwrap().path();
        if p.file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("filler")
        {
            fs::remove_file(p).unwrap();
        }
    }
    let out = ok(d, &["simulate-boot", "--sysroot", S], &[]);
    assert!(out.contains("booted slot B"), "{out}");
    assert_eq!(state(&root).slot(Slot::B).tries_left, tries - 1);
}

/// Files under `dir`, recursively.
fn count_files(dir: &Path) -> usize {
    let mut n = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                n += 1;
            }
        }
    }
    n
}

/// An update whose objects (3 MiB, compressing to a few KiB) do not fit the 2 MiB filesystem
/// of the sysroot is refused before any object is written, saying how much it needs and how
/// much there is.
#[test]
fn install_refuses_up_front_when_the_filesystem_cannot_hold_the_update() {
    let Some(fs_) = Tmpfs::mount("2m") else {
        return;
    };
    let mut lab = Lab::new(&["9"]);
    let tree = lab.path().join("tree-big");
    fs::create_dir_all(tree.join("usr/share")).unwrap();
    fs::write(
        tree.join("usr/share/big.dat"),
        "all work and no play\n".repeat(150_000),
    )
    .unwrap();
    let out = ok(
        lab.path(),
        &lab_commit(tree.to_str().unwrap(), "big", "big"),
        &[],
    );
    let id = out.split_whitespace().find(|w| w.len() == 64).unwrap();
    lab.commits.push((id.to_string(), "big".into()));
    let update = lab.update(None, "big");
    assert!(fs::metadata(&update).unwrap().len() < 512 * 1024);

    let d = fs_.path();
    lab.trust(d.join(S).to_str().unwrap());
    for args in [
        vec!["install", "--sysroot", S, &update],
        vec!["apply-offline", "--sysroot", S, &update],
    ] {
        let e = fails(d, &args, &[]);
        assert!(e.contains("refused before writing anything"), "{e}");
        assert!(e.contains("declares 3"), "{e}");
        assert!(e.contains("bytes available"), "{e}");
        assert_eq!(count_files(&d.join(S).join("repo/objects")), 0, "{e}");
        assert!(!d.join(S).join("deploy").join(format!("{id}.0")).exists());
    }
    // What fits still installs.
    ok(d, &["install", "--sysroot", S, &lab.update(None, "9")], &[]);
}
