//! A blank U-Boot environment provisioned by the agent from the board's default environment,
//! booted in real U-Boot (Debian u-boot-qemu 2023.01, qemu-system-arm -machine virt, the
//! environment in the second pflash bank where this U-Boot loads it):
//!
//! 1. the board's default environment is what U-Boot itself prints (`printenv` at its prompt,
//!    running on its built-in default because the flash is erased);
//! 2. `ecu-agent install` provisions the erased flash with `env-default` naming that text;
//! 3. U-Boot loads the written environment (no "bad CRC, using default environment"), still
//!    has its `bootcmd` (it autoboots: "Hit any key to stop autoboot") and our variables.
//!
//! And the failure the agent refuses by default: the same flash provisioned with only the
//! agent's variables (`env-default = none`) leaves U-Boot without `bootcmd`, at its prompt.

mod deploy_common;

use deploy_common::*;

use std::fs;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use test_support::tool::{have, have_file};

const UBOOT: &str = "/usr/lib/u-boot/qemu_arm/u-boot.bin";
/// This U-Boot's CONFIG_ENV_SIZE (its environment at offset 0 of pflash bank 1).
const ENV_SIZE: usize = 0x40000;
const S: &str = "sysroot";

fn tools(test: &str) -> bool {
    let mut all = true;
    for t in ["qemu-system-arm", "fw_printenv"] {
        all &= have(t, test);
    }
    all && have_file(UBOOT, test)
}

/// Boots U-Boot with `flash` as its environment bank, answers its console: a key at the
/// autoboot countdown, then `command` at the prompt, then `poweroff`. Returns the console
/// output (carriage returns removed).
fn uboot(flash: &Path, command: &str) -> String {
    let mut child = Command::new("qemu-system-arm")
        .args(["-machine", "virt", "-cpu", "cortex-a15", "-m", "256M"])
        .args(["-nographic", "-no-reboot", "-nic", "none", "-bios", UBOOT])
        .arg("-drive")
        .arg(format!(
            "if=pflash,format=raw,index=1,file={}",
            flash.display()
        ))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("qemu-system-arm");
    let out = Arc::new(Mutex::new(Vec::new()));
    let mut stdout = child.stdout.take().unwrap();
    let sink = out.clone();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    });
    let mut stdin = child.stdin.take().unwrap();
    let text = || String::from_utf8_lossy(&out.lock().unwrap()).replace('\r', "");
    let deadline = Instant::now() + Duration::from_secs(90);
    let wait = |what: &str, from: usize| -> usize {
        loop {
            let t = text();
            if let Some(p) = t[from.min(t.len())..].find(what) {
                return from + p + what.len();
            }
            assert!(
                Instant::now() < deadline,
                "U-Boot never printed {what:?}:\n{t}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    // Stop the autoboot when there is one (there is iff bootcmd is set), to reach the prompt
    // without running the board's boot.
    let at = loop {
        let t = text();
        if let Some(p) = t.find("Hit any key to stop autoboot") {
            let _ = stdin.write_all(b" ");
            break p;
        }
        if let Some(p) = t.find("=> ") {
            break p;
        }
        assert!(Instant::now() < deadline, "no prompt:\n{t}");
        std::thread::sleep(Duration::from_millis(20));
    };
    let prompt = wait("=> ", at);
    stdin.write_all(format!("{command}\n").as_bytes()).unwrap();
    let done = wait("=> ", prompt);
    stdin.write_all(b"poweroff\n").unwrap();
    let _ = wait("poweroff", done);
    let end = Instant::now() + Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    drop(stdin);
    let _ = reader.join();
    text()
}

/// The lines U-Boot printed for `printenv` (after the command, before its size trailer).
fn printed_env(log: &str) -> Vec<String> {
    let start = log.find("printenv\n").expect("printenv echoed") + "printenv\n".len();
    log[start..]
        .lines()
        .take_while(|l| !l.starts_with("Environment size:"))
        .filter(|l| l.contains('='))
        .map(str::to_string)
        .collect()
}

fn erased_flash(p: &Path) {
    fs::write(p, vec![0xffu8; 64 << 20]).unwrap();
}

#[test]
fn provisioned_from_the_board_default_uboot_keeps_its_bootcmd() {
    if !tools("provisioned_from_the_board_default_uboot_keeps_its_bootcmd") {
        return;
    }
    let lab = Lab::new(&["9"]);
    let d = lab.path();
    let flash = d.join("flash1.img");

    // 1. The board's default environment, as U-Boot prints it on an erased flash.
    erased_flash(&flash);
    let log = uboot(&flash, "printenv");
    assert!(
        log.contains("using default environment"),
        "U-Boot did not start from its default environment:\n{log}"
    );
    let board = printed_env(&log);
    let bootcmd = board
        .iter()
        .find_map(|l| l.strip_prefix("bootcmd="))
        .unwrap_or_else(|| panic!("no bootcmd in the default environment:\n{log}"))
        .to_string();
    assert!(board.len() > 10, "{board:?}");
    fs::write(d.join("board.env"), board.join("\n") + "\n").unwrap();

    for (default, keeps) in [("board.env", true), ("none", false)] {
        // 2. The agent provisions the erased flash.
        erased_flash(&flash);
        let root = d.join(format!("{S}-{default}"));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(&root).unwrap();
        let env_default = if default == "none" {
            "none".to_string()
        } else {
            d.join(default).display().to_string()
        };
        fs::write(
            root.join("agent.conf"),
            format!(
                "backend = uboot\nenv = {}\nenv-size = {ENV_SIZE:#x}\nenv-default = {env_default}\n",
                flash.display()
            ),
        )
        .unwrap();
        let sysroot = root.file_name().unwrap().to_str().unwrap();
        lab.trust(sysroot);
        ok(
            d,
            &["install", "--sysroot", sysroot, &lab.update(None, "9")],
            &[],
        );
        let name = format!("{}.0", lab.commit("9"));

        // 3. U-Boot loads what was written and still has (or, without the board's
        //    variables, has lost) its bootcmd.
        let log = uboot(&flash, "printenv bootcmd ECU_A_NAME");
        assert!(
            !log.contains("bad CRC"),
            "{default}: U-Boot did not take the written environment:\n{log}"
        );
        assert!(
            log.contains(&format!("ECU_A_NAME={name}")),
            "{default}:\n{log}"
        );
        if keeps {
            assert!(
                log.contains("Hit any key to stop autoboot"),
                "no autoboot:\n{log}"
            );
            assert!(log.contains(&format!("bootcmd={bootcmd}")), "{log}");
        } else {
            assert!(!log.contains("Hit any key to stop autoboot"), "{log}");
            assert!(log.contains("\"bootcmd\" not defined"), "{log}");
        }
    }
}
