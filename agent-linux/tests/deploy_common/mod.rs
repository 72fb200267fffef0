//! Helpers for the deployment tests: the real `ecu-agent` binary, small image trees, update
//! files, and the bootloader (the boot decision of `bootloader-hooks` on the real
//! environment files named by the sysroot's configuration).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use agent_linux::bootcfg::BootConfig;
use bootloader_hooks::{DecisionKind, Operation, Slot};

/// The `ecu-agent` binary built for these tests.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_ecu-agent"))
}

/// `commit --repo build --branch os/main --tree <tree> --version <version> --subject
/// <subject>`: a commit to the lab's build repository (run in the lab directory).
pub fn lab_commit<'a>(tree: &'a str, version: &'a str, subject: &'a str) -> Vec<&'a str> {
    vec![
        "commit",
        "--repo",
        "build",
        "--branch",
        "os/main",
        "--tree",
        tree,
        "--version",
        version,
        "--subject",
        subject,
    ]
}

/// The lab's signing key (in the lab directory; `lab.key.pub` beside it).
pub const LAB_KEY: &str = "lab.key";

/// A scratch directory with a build repository and update files.
pub struct Lab {
    /// Keeps the directory alive.
    pub dir: tempfile::TempDir,
    /// The commits made, in order, with their versions.
    pub commits: Vec<(String, String)>,
}

/// Output of a run: success, stdout, stderr.
pub struct Run {
    /// Exit status was 0.
    pub ok: bool,
    /// The process was killed by a signal (SIGABRT at a fault point).
    pub killed: bool,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

fn run_of(o: Output) -> Run {
    use std::os::unix::process::ExitStatusExt;
    Run {
        ok: o.status.success(),
        killed: o.status.signal().is_some(),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

/// Runs `ecu-agent args` in `cwd` with extra environment variables; the booted slot comes
/// only from what the test says (never from this machine's /proc/cmdline).
pub fn agent_env(cwd: &Path, args: &[&str], envs: &[(&str, &str)]) -> Run {
    let mut c = Command::new(bin());
    c.args(args)
        .current_dir(cwd)
        .env("ECU_AGENT_CMDLINE", "/dev/null")
        .env_remove("ECU_AGENT_BOOTED_SLOT")
        .env_remove("ECU_AGENT_FAULT_AT");
    for (k, v) in envs {
        c.env(k, v);
    }
    run_of(c.output().expect("running ecu-agent"))
}

/// Runs `ecu-agent args` and requires success.
pub fn ok(cwd: &Path, args: &[&str], envs: &[(&str, &str)]) -> String {
    let r = agent_env(cwd, args, envs);
    assert!(
        r.ok,
        "ecu-agent {} failed:\n{}{}",
        args.join(" "),
        r.stdout,
        r.stderr
    );
    r.stdout
}

/// Runs `ecu-agent args` and requires failure; returns stderr.
pub fn fails(cwd: &Path, args: &[&str], envs: &[(&str, &str)]) -> String {
    let r = agent_env(cwd, args, envs);
    assert!(
        !r.ok && !r.killed,
        "ecu-agent {} should have been refused:\n{}{}",
        args.join(" "),
        r.stdout,
        r.stderr
    );
    r.stderr
}

fn write(p: &Path, content: &[u8], mode: u32) {
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, content).unwrap();
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
}

/// A small image tree for version `v` (`n` selects contents: every version changes the
/// program and adds a file; a config file, a symlink and an empty directory stay).
pub fn image(root: &Path, n: usize) {
    write(
        &root.join("usr/bin/ecu-main"),
        format!("#!/bin/sh\necho version {n}\n")
            .repeat(20)
            .as_bytes(),
        0o755,
    );
    write(&root.join("etc/ecu.conf"), b"bitrate=500000\n", 0o644);
    write(&root.join("etc/secret"), b"s3cr3t\n", 0o600);
    symlink("ecu-main", root.join("usr/bin/ecu")).unwrap();
    fs::create_dir_all(root.join("var/log")).unwrap();
    // A library whose name carries the version and whose code changes a little with it: a
    // delta carries it as a patch of the previous version's (a renamed sibling).
    let mut lib: Vec<u8> = (0..6000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    lib[3000..3000 + n.min(64)].fill(0x90);
    write(&root.join(format!("usr/lib/libecu.so.{n}")), &lib, 0o644);
    for i in 0..n {
        write(
            &root.join(format!("usr/lib/plugin{i}.so")),
            format!("plugin {i} of {n}\n").repeat(50).as_bytes(),
            0o644,
        );
    }
}

impl Lab {
    /// Commits images for `versions` on ref `os/main` in a build repository.
    pub fn new(versions: &[&str]) -> Lab {
        Lab::new_in(versions, None)
    }

    /// The same in a directory under `base` (e.g. a tmpfs).
    pub fn new_in(versions: &[&str], base: Option<&Path>) -> Lab {
        let with: Vec<(&str, u64)> = versions.iter().map(|v| (*v, 0)).collect();
        Lab::with_security_versions(&with, base)
    }

    /// Like [`Lab::new_in`], each version committed at the security version given beside it
    /// (`ecu-agent commit --security-version`; 0: the parent's).
    pub fn with_security_versions(versions: &[(&str, u64)], base: Option<&Path>) -> Lab {
        let dir = match base {
            Some(b) => tempfile::tempdir_in(b).unwrap(),
            None => tempfile::tempdir().unwrap(),
        };
        let d = dir.path();
        ok(d, &["init", "--repo", "build"], &[]);
        // Every update of the lab is signed: devices require signatures.
        ok(d, &["keygen", "--out", LAB_KEY], &[]);
        let mut commits = Vec::new();
        for (i, (v, sv)) in versions.iter().enumerate() {
            let tree = d.join(format!("tree-{v}"));
            image(&tree, i + 1);
            let subject = format!("image {v}");
            let sv = sv.to_string();
            let mut args = lab_commit(tree.to_str().unwrap(), v, &subject);
            if sv != "0" {
                args.extend(["--security-version", sv.as_str()]);
            }
            let out = ok(d, &args, &[]);
            let id = out
                .split_whitespace()
                .find(|w| w.len() == 64)
                .expect("commit id")
                .to_string();
            commits.push((id, v.to_string()));
        }
        Lab { dir, commits }
    }

    /// [`Lab::new`] whose sysroot `sysroot` trusts the lab's key ([`Lab::trust`]).
    pub fn trusted_by(versions: &[&str], sysroot: &str) -> Lab {
        let lab = Lab::new(versions);
        lab.trust(sysroot);
        lab
    }

    /// The lab directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The lab key's public half in hex.
    pub fn key_hex(&self) -> String {
        fs::read_to_string(self.path().join(format!("{LAB_KEY}.pub")))
            .unwrap()
            .trim()
            .to_string()
    }

    /// Makes the sysroot `sysroot` (relative to the lab) trust the lab's key: a `trusted-key`
    /// line appended to its agent.conf (when missing, created with the defaults written out,
    /// as provisioning writes them).
    pub fn trust(&self, sysroot: &str) {
        let root = self.path().join(sysroot);
        let p = root.join("agent.conf");
        fs::create_dir_all(&root).unwrap();
        let mut text =
            fs::read_to_string(&p).unwrap_or_else(|_| BootConfig::defaults(&root).to_text(&root));
        text.push_str(&format!("trusted-key = {}\n", self.key_hex()));
        fs::write(&p, text).unwrap();
    }

    /// The commit of version `v`.
    pub fn commit(&self, v: &str) -> &str {
        &self
            .commits
            .iter()
            .find(|(_, x)| x == v)
            .expect("version")
            .0
    }

    /// The source tree of version `v`.
    pub fn tree(&self, v: &str) -> PathBuf {
        self.path().join(format!("tree-{v}"))
    }

    /// Writes a from-scratch update of `v` (or a delta from `from`), returns its path.
    pub fn update(&self, from: Option<&str>, v: &str) -> String {
        let name = match from {
            Some(f) => format!("{f}-{v}.update"),
            None => format!("{v}.update"),
        };
        self.generate(from, v, "os/main", &name, true);
        self.path().join(name).to_string_lossy().into_owned()
    }

    /// Writes the file `name` (in the lab directory): version `v` for the ref `ref_name`, from
    /// scratch or a delta from `from`, signed by the lab key when `signed`.
    pub fn generate(&self, from: Option<&str>, v: &str, ref_name: &str, name: &str, signed: bool) {
        let mut args = vec![
            "delta",
            "generate",
            "--repo",
            "build",
            "--to",
            self.commit(v),
            "--ref",
            ref_name,
            "--out",
            name,
        ];
        match from {
            Some(f) => args.extend(["--from", self.commit(f)]),
            None => args.push("--empty"),
        }
        if signed {
            args.extend(["--sign-key", LAB_KEY]);
        }
        ok(self.path(), &args, &[]);
    }
}

/// One boot by the bootloader: the decision of `bootloader-hooks` on the sysroot's real
/// environment (read and written through `agent_linux::deploy::env`, the configuration from
/// `S/agent.conf`), try counting stored. Returns the slot booted and why.
pub fn boot(sysroot: &Path) -> (Slot, DecisionKind) {
    let cfg = BootConfig::load(sysroot).unwrap();
    let applied = agent_linux::deploy::env::apply(&cfg, &Operation::Boot).unwrap();
    let d = applied.decision.expect("a boot decides");
    (d.slot, d.kind)
}

/// `status --json` of the sysroot as the given booted slot sees it.
pub fn status(cwd: &Path, sysroot: &str, booted: Slot) -> serde_json::Value {
    let out = ok(
        cwd,
        &["status", "--sysroot", sysroot, "--json"],
        &[("ECU_AGENT_BOOTED_SLOT", booted.as_str())],
    );
    serde_json::from_str(&out).unwrap()
}

/// Snapshot of a tree: path → (type, mode, content or link target).
pub fn snapshot(root: &Path) -> BTreeMap<PathBuf, (char, u32, Vec<u8>)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let md = fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().to_path_buf();
            let mode = md.mode() & 0o7777;
            if md.file_type().is_symlink() {
                out.insert(
                    rel,
                    (
                        'l',
                        0,
                        fs::read_link(&p)
                            .unwrap()
                            .into_os_string()
                            .into_encoded_bytes(),
                    ),
                );
            } else if md.is_dir() {
                out.insert(rel, ('d', mode, Vec::new()));
                stack.push(p);
            } else {
                out.insert(rel, ('f', mode, fs::read(&p).unwrap()));
            }
        }
    }
    out
}

/// The deployment directory of the slot `slot` in a status.
pub fn deployment_of(st: &serde_json::Value, slot: &str) -> serde_json::Value {
    st["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["slot"] == slot)
        .cloned()
        .unwrap_or(serde_json::Value::Null)
}

/// `ECU_AGENT_BOOTED_SLOT` set to `s`.
pub fn booted(s: Slot) -> [(&'static str, &'static str); 1] {
    [("ECU_AGENT_BOOTED_SLOT", s.as_str())]
}

/// Makes the sysroot `d/sysroot` hold 9 (slot A, the fallback, good) and 9.1 (slot B, booted,
/// good) of `lab` (whose versions start with 9, 9.1). The sysroot must trust the lab's key.
pub fn two_good(lab: &Lab, d: &Path) {
    let s = "sysroot";
    ok(d, &["install", "--sysroot", s, &lab.update(None, "9")], &[]);
    ok(
        d,
        &["install", "--sysroot", s, &lab.update(Some("9"), "9.1")],
        &booted(Slot::A),
    );
    assert_eq!(boot(&d.join(s)).0, Slot::B);
    ok(d, &["mark-good", "--sysroot", s], &booted(Slot::B));
}

/// Zeroes both copies of the default (redundant U-Boot) environment of the sysroot `root`.
pub fn blank_env(root: &Path) {
    for f in ["boot/uboot.env", "boot/uboot-redund.env"] {
        let p = root.join(f);
        let len = fs::metadata(&p).unwrap().len() as usize;
        fs::write(&p, vec![0u8; len]).unwrap();
    }
}

/// Board variables a bootloader's default environment holds (`bootloader_wrote_env`).
pub const BOARD_VARS: &[(&str, &str)] = &[
    ("bootdelay", "0"),
    ("bootcmd", "run distro_bootcmd"),
    ("fdtfile", "board.dtb"),
];

/// Writes the sysroot's default environment (redundant U-Boot, 16 KiB copies) as a RAUC or
/// Mender bootloader leaves it at its first boot: copy 1 with [`BOARD_VARS`] and `vars`,
/// copy 2 erased.
pub fn bootloader_wrote_env(root: &Path, vars: &[(&str, &str)]) {
    use bootloader_hooks::uboot_env::{self, Layout};
    fs::create_dir_all(root.join("boot")).unwrap();
    let all: Vec<(&[u8], &[u8])> = BOARD_VARS
        .iter()
        .chain(vars)
        .map(|(k, v)| (k.as_bytes(), v.as_bytes()))
        .collect();
    let mut c1 = vec![0u8; 0x4000];
    uboot_env::write(
        &mut c1,
        Layout::Redundant,
        1,
        all.iter().copied(),
        &bootloader_hooks::VarSet::new(),
    )
    .unwrap();
    fs::write(root.join("boot/uboot.env"), c1).unwrap();
    fs::write(root.join("boot/uboot-redund.env"), vec![0xffu8; 0x4000]).unwrap();
}

/// The sysroot `s` of the lab (created) with `conf` as its agent.conf, trusting the lab's
/// key; returns its path.
pub fn configured_sysroot(lab: &Lab, s: &str, conf: &str) -> PathBuf {
    let root = lab.path().join(s);
    fs::create_dir_all(&root).unwrap();
    fs::write(root.join("agent.conf"), conf).unwrap();
    lab.trust(s);
    root
}

/// Writes `root/boot/grubenv` as `grub-editenv` (and RAUC's grub.conf) leaves it: the
/// default-size block, `#`-padded, holding `vars`. Returns the block.
pub fn grub_env_file(root: &Path, vars: &[(&[u8], &[u8])]) -> Vec<u8> {
    use bootloader_hooks::grub_env;
    let mut block = vec![b'#'; grub_env::DEFAULT_SIZE];
    grub_env::write(
        &mut block,
        vars.iter().copied(),
        &bootloader_hooks::VarSet::new(),
    )
    .unwrap();
    fs::create_dir_all(root.join("boot")).unwrap();
    fs::write(root.join("boot/grubenv"), &block).unwrap();
    block
}

/// The variable `key` of the sysroot's boot environment (with or without a boot state);
/// `None` when it is unset or the environment is missing.
pub fn env_var(root: &Path, key: &str) -> Option<String> {
    use agent_linux::deploy::{env, EnvContent};
    let cfg = BootConfig::load(root).unwrap();
    match env::read(&cfg).unwrap() {
        EnvContent::Ready(img, _) | EnvContent::NoBootState(img) => img.get(key).map(String::from),
        EnvContent::Missing => None,
    }
}

/// The bytes of both copies of the sysroot's default (redundant U-Boot) environment.
pub fn uboot_env_files(root: &Path) -> Vec<Vec<u8>> {
    ["boot/uboot.env", "boot/uboot-redund.env"]
        .iter()
        .map(|f| fs::read(root.join(f)).unwrap())
        .collect()
}

/// Writes `text` as a kernel command line file in `d` (named after the text); returns its
/// path, for `ECU_AGENT_CMDLINE`.
pub fn cmdline_file(d: &Path, text: &str) -> String {
    let name: String = text
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let p = d.join(format!("cmdline-{name}"));
    fs::write(&p, format!("{text}\n")).unwrap();
    p.to_string_lossy().into_owned()
}

/// Runs `ecu-agent upgrade --sysroot <s> args` in `d` with `slot` booted; returns the exit
/// code (-1 when killed), stdout and stderr.
pub fn upgrade_in(d: &Path, s: &str, args: &[&str], slot: Slot) -> (i32, String, String) {
    let o = Command::new(bin())
        .args(["upgrade", "--sysroot", s])
        .args(args)
        .current_dir(d)
        .env("ECU_AGENT_CMDLINE", "/dev/null")
        .env("ECU_AGENT_BOOTED_SLOT", slot.as_str())
        .output()
        .unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// `s` parsed as JSON (a panic naming the text when it is not).
pub fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("{e}: {s}"))
}

/// Whether the repository of the sysroot `root` holds the commit `id` (hex).
pub fn sysroot_has_commit(root: &Path, id: &str) -> bool {
    use agent_core::object::{ObjectId, ObjectKind};
    let repo = agent_linux::Repo::open(&root.join("repo")).unwrap();
    repo.has_object(ObjectKind::Commit, &ObjectId::from_hex(id).unwrap())
        .unwrap()
}

/// What [`tree_listing`] does with an entry.
pub enum Listed {
    /// Listed with its contents (a directory also walked).
    Yes,
    /// Left out (a directory not walked).
    No,
    /// A directory walked but not listed itself.
    OnlyWhatIsIn,
}

/// The entries under `root` (sorted by name, depth first) that `which(relative path, is a
/// directory)` lists, each with its contents: a directory as `rel/` with none, a symlink as
/// its target, a file as its bytes.
pub fn tree_listing(root: &Path, which: &dyn Fn(&str, bool) -> Listed) -> Vec<(String, Vec<u8>)> {
    fn walk(
        base: &Path,
        dir: &Path,
        which: &dyn Fn(&str, bool) -> Listed,
        out: &mut Vec<(String, Vec<u8>)>,
    ) {
        let mut entries: Vec<_> = fs::read_dir(dir).unwrap().flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let p = e.path();
            let rel = p.strip_prefix(base).unwrap().to_string_lossy().into_owned();
            let t = e.file_type().unwrap();
            match which(&rel, t.is_dir()) {
                Listed::No => {}
                Listed::OnlyWhatIsIn => walk(base, &p, which, out),
                Listed::Yes if t.is_dir() => {
                    out.push((format!("{rel}/"), Vec::new()));
                    walk(base, &p, which, out);
                }
                Listed::Yes if t.is_symlink() => {
                    let target = fs::read_link(&p).unwrap();
                    out.push((rel, target.into_os_string().into_encoded_bytes()));
                }
                Listed::Yes => out.push((rel, fs::read(&p).unwrap())),
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, which, &mut out);
    out
}

/// The sysroot `s` of the lab configured for RAUC's GRUB scheme, its grubenv as RAUC's
/// grub.conf and `rauc status mark-good` leave it (A booted and confirmed: `ORDER=A B`, both
/// slots OK, no try) with `extra` variables after those. Returns the sysroot and the block.
pub fn rauc_grub_sysroot(lab: &Lab, s: &str, extra: &[(&[u8], &[u8])]) -> (PathBuf, Vec<u8>) {
    let root = configured_sysroot(lab, s, "backend = grub\nscheme = rauc\n");
    let a_good: &[(&[u8], &[u8])] = &[
        (b"ORDER", b"A B"),
        (b"A_OK", b"1"),
        (b"A_TRY", b"0"),
        (b"B_OK", b"1"),
        (b"B_TRY", b"0"),
    ];
    let block = grub_env_file(&root, &[a_good, extra].concat());
    (root, block)
}
