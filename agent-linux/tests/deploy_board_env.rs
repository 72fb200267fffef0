//! A blank U-Boot environment outside the sysroot (erased flash, a missing `uboot.env` on the
//! boot partition) is never written with only the agent's variables: U-Boot would prefer it to
//! its built-in default and stop at its prompt without `bootcmd`. The agent starts from the
//! board's default environment (`env-default` in agent.conf: `fw_printenv` text or an
//! environment image) or refuses, saying how to provide it. Checked with the real
//! `mkenvimage` and `fw_printenv`.

mod deploy_common;

use deploy_common::*;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use bootloader_hooks::Slot;

const S: &str = "sysroot";

fn tools(test: &str) -> bool {
    ["mkenvimage", "fw_printenv"].iter().all(|t| {
        Command::new(t).arg("-h").output().is_ok()
            || test_support::tool::skip(test, &format!("{t} is not installed"))
    })
}

fn run(c: &mut Command) -> String {
    let o = c.output().unwrap_or_else(|e| panic!("{c:?}: {e}"));
    assert!(
        o.status.success(),
        "{c:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A board's default environment as U-Boot's source gives it (text for mkenvimage).
const BOARD_SRC: &str = "\
# the board's default environment
arch=arm
baudrate=115200
board=qemu-arm
boot_targets=virtio0 dhcp
bootcmd=run distro_bootcmd
bootdelay=2
distro_bootcmd=for target in ${boot_targets}; do run bootcmd_${target}; done
fdt_addr=0x40000000
kernel_addr_r=0x40400000
mender_boot_part=2
scriptaddr=0x40000000
";

struct Board {
    dir: PathBuf,
    /// The environment files (erased flash, outside the sysroot).
    flash: [PathBuf; 2],
    fw_config: PathBuf,
}

impl Board {
    fn new(d: &Path) -> Board {
        let dir = d.join("board");
        fs::create_dir_all(&dir).unwrap();
        let flash = [dir.join("env0.img"), dir.join("env1.img")];
        for f in &flash {
            fs::write(f, vec![0xffu8; 0x4000]).unwrap();
        }
        let fw_config = dir.join("fw_env.config");
        fs::write(
            &fw_config,
            format!(
                "{} 0x0 0x4000\n{} 0x0 0x4000\n",
                flash[0].display(),
                flash[1].display()
            ),
        )
        .unwrap();
        // The board's default environment as an image (mkenvimage) and as fw_printenv prints
        // it from that image.
        fs::write(dir.join("src.txt"), BOARD_SRC).unwrap();
        run(Command::new("mkenvimage")
            .args(["-s", "0x4000", "-o"])
            .arg(dir.join("board.bin"))
            .arg(dir.join("src.txt")));
        let cfg1 = dir.join("fw_board.config");
        fs::write(
            &cfg1,
            format!("{} 0x0 0x4000\n", dir.join("board.bin").display()),
        )
        .unwrap();
        let printed = run(Command::new("fw_printenv").arg("-c").arg(&cfg1));
        assert!(printed.contains("bootcmd=run distro_bootcmd"), "{printed}");
        fs::write(dir.join("board.txt"), printed).unwrap();
        Board {
            dir,
            flash,
            fw_config,
        }
    }

    fn conf(&self, extra: &str) -> String {
        format!(
            "backend = uboot-redundant\nenv = {}\nenv-redundant = {}\nenv-size = 0x4000\n{extra}",
            self.flash[0].display(),
            self.flash[1].display()
        )
    }

    fn printenv(&self) -> String {
        run(Command::new("fw_printenv").arg("-c").arg(&self.fw_config))
    }

    fn bytes(&self) -> Vec<Vec<u8>> {
        self.flash.iter().map(|f| fs::read(f).unwrap()).collect()
    }
}

fn sysroot(lab: &Lab, conf: &str) {
    configured_sysroot(lab, S, conf);
}

#[test]
fn blank_flash_refused_without_the_board_defaults() {
    if !tools("blank_flash_refused_without_the_board_defaults") {
        return;
    }
    let lab = Lab::new(&["9"]);
    let d = lab.path();
    let board = Board::new(d);
    sysroot(&lab, &board.conf(""));
    let erased = board.bytes();
    let e = fails(d, &["install", "--sysroot", S, &lab.update(None, "9")], &[]);
    assert!(e.contains("env0.img is blank"), "{e}");
    assert!(e.contains("no bootcmd"), "{e}");
    assert!(e.contains("`env-default = FILE`"), "{e}");
    assert!(e.contains("fw_printenv"), "{e}");
    assert!(e.contains("make u-boot-initial-env"), "{e}");
    assert!(e.contains("nothing was written"), "{e}");
    assert_eq!(board.bytes(), erased, "the environment was written");
    let deployed: Vec<_> = fs::read_dir(d.join(S).join("deploy"))
        .map(|r| r.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(deployed.is_empty(), "{deployed:?}");
    // `env-default = none` says U-Boot keeps the board's variables elsewhere.
    sysroot(&lab, &board.conf("env-default = none\n"));
    ok(d, &["install", "--sysroot", S, &lab.update(None, "9")], &[]);
    let env = board.printenv();
    assert!(!env.contains("bootcmd="), "{env}");
    assert!(env.contains("ECU_A_NAME="), "{env}");
}

#[test]
fn blank_flash_starts_from_the_board_defaults_text_or_image() {
    if !tools("blank_flash_starts_from_the_board_defaults_text_or_image") {
        return;
    }
    for default in ["board.txt", "board.bin"] {
        let lab = Lab::new(&["9", "9.1"]);
        let d = lab.path();
        let board = Board::new(d);
        let path = board.dir.join(default);
        sysroot(
            &lab,
            &board.conf(&format!("env-default = {}\n", path.display())),
        );
        ok(d, &["install", "--sysroot", S, &lab.update(None, "9")], &[]);
        let env = board.printenv();
        // Every variable of the board, and ours.
        for line in BOARD_SRC.lines().filter(|l| !l.starts_with('#')) {
            assert!(
                env.lines().any(|l| l == line),
                "{default}: {line} missing:\n{env}"
            );
        }
        let name = format!("{}.0", lab.commit("9"));
        assert!(env.contains(&format!("ECU_A_NAME={name}")), "{env}");
        assert!(env.contains("ECU_A_OK=1"), "{env}");
        // The next writes keep them.
        ok(
            d,
            &["install", "--sysroot", S, &lab.update(Some("9"), "9.1")],
            &booted(Slot::A),
        );
        let env = board.printenv();
        assert!(env.contains("bootcmd=run distro_bootcmd"), "{env}");
        assert!(env.contains("ECU_B_TRIES=3"), "{env}");

        // A lost environment rebuilt by repair-env starts from the board defaults too.
        for f in &board.flash {
            fs::write(f, vec![0xffu8; 0x4000]).unwrap();
        }
        let cl = d.join("cmdline");
        fs::write(&cl, format!("ecu.slot=A ecu.deployment={name}\n")).unwrap();
        ok(
            d,
            &["repair-env", "--sysroot", S],
            &[("ECU_AGENT_CMDLINE", cl.to_str().unwrap())],
        );
        let env = board.printenv();
        assert!(env.contains("bootcmd=run distro_bootcmd"), "{env}");
        assert!(env.contains(&format!("ECU_A_NAME={name}")), "{env}");
    }
}

#[test]
fn a_bad_board_default_is_named() {
    if !tools("a_bad_board_default_is_named") {
        return;
    }
    let lab = Lab::new(&["9"]);
    let d = lab.path();
    let board = Board::new(d);
    let bad = board.dir.join("garbage.env");
    fs::write(&bad, "bootcmd=boot\nEnvironment size: 2397/262140 bytes\n").unwrap();
    sysroot(
        &lab,
        &board.conf(&format!("env-default = {}\n", bad.display())),
    );
    let erased = board.bytes();
    let e = fails(d, &["install", "--sysroot", S, &lab.update(None, "9")], &[]);
    assert!(e.contains("garbage.env"), "{e}");
    assert!(e.contains("line 2 is not `name=value`"), "{e}");
    assert_eq!(board.bytes(), erased);
}
