//! Helpers for the tests that build updates with the `ecu-agent` binary as a user types it
//! (`init`, `keygen`, `commit`, `delta generate`, `apply-offline`): the runner, the argument
//! lists those commands repeat, and the setup several tests share (a repository with one
//! commit of a tree and a from-scratch update of it, signed or not).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The `ecu-agent` binary built for these tests.
pub const EXE: &str = env!("CARGO_BIN_EXE_ecu-agent");

/// `path` as the `&str` an argument list takes.
pub fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Runs `ecu-agent args` (stdin closed).
pub fn run(args: &[&str]) -> Output {
    Command::new(EXE)
        .args(args)
        .output()
        .expect("run ecu-agent")
}

/// Runs `ecu-agent args`, requires success and returns stdout.
pub fn ok(args: &[&str]) -> String {
    let o = run(args);
    assert!(
        o.status.success(),
        "ecu-agent {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&o.stderr),
        String::from_utf8_lossy(&o.stdout)
    );
    String::from_utf8(o.stdout).unwrap()
}

/// `commit --repo <repo> --branch <branch> --tree <tree>`, then `extra`.
pub fn commit<'a>(
    repo: &'a Path,
    branch: &'a str,
    tree: &'a Path,
    extra: &[&'a str],
) -> Vec<&'a str> {
    let args = [
        "commit",
        "--repo",
        p(repo),
        "--branch",
        branch,
        "--tree",
        p(tree),
    ];
    [&args[..], extra].concat()
}

/// `delta generate --repo <repo>` from `from` (`--empty` when `None`) `--to <to> --out <out>`,
/// then `extra`.
pub fn generate<'a>(
    repo: &'a Path,
    from: Option<&'a str>,
    to: &'a str,
    out: &'a Path,
    extra: &[&'a str],
) -> Vec<&'a str> {
    let mut args = vec!["delta", "generate", "--repo", p(repo)];
    match from {
        Some(from) => args.extend(["--from", from]),
        None => args.push("--empty"),
    }
    args.extend(["--to", to, "--out", p(out)]);
    args.extend_from_slice(extra);
    args
}

/// `<cmd> --sysroot <sysroot> --trusted-key <public>`, then `extra` (the file last); `cmd`:
/// `apply-offline` or `install`.
pub fn trusted<'a>(
    cmd: &'a str,
    sysroot: &'a Path,
    public: &'a str,
    extra: &[&'a str],
) -> Vec<&'a str> {
    [
        &[cmd, "--sysroot", p(sysroot), "--trusted-key", public][..],
        extra,
    ]
    .concat()
}

/// A repository `dir/repo` with one commit of `src` on `main` and its from-scratch update
/// `dir/u.update`, generated with `extra` (codec and the like) and, with `key`, signed by a
/// key made at `key` (its public half at `key.pub`). Returns the update's path.
pub fn built_update(dir: &Path, src: &Path, key: Option<&Path>, extra: &[&str]) -> PathBuf {
    let repo = dir.join("repo");
    ok(&["init", "--repo", p(&repo)]);
    let mut sign = Vec::new();
    if let Some(key) = key {
        ok(&["keygen", "--out", p(key)]);
        sign.extend(["--sign-key", p(key)]);
    }
    ok(&commit(&repo, "main", src, &[]));
    let update = dir.join("u.update");
    sign.extend_from_slice(extra);
    ok(&generate(&repo, None, "main", &update, &sign));
    update
}

/// `<cmd> --sysroot <sysroot> --allow-unsigned <file>` (`cmd`: `apply-offline` or `install`).
pub fn unsigned<'a>(cmd: &'a str, sysroot: &'a Path, file: &'a Path) -> Vec<&'a str> {
    vec![cmd, "--sysroot", p(sysroot), "--allow-unsigned", p(file)]
}

/// Runs `ecu-agent args` with a pty as stdin, stdout and stderr (util-linux `script`),
/// returning what the terminal showed; `None` (after a visible SKIP naming `test`) when
/// `script` is missing and CI is not set.
pub fn on_terminal(test: &str, args: &[&str]) -> Option<String> {
    let mut cmd = EXE.to_string();
    for a in args {
        cmd.push_str(&format!(" '{a}'"));
    }
    match Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .stdin(Stdio::null())
        .output()
    {
        Ok(o) => {
            let shown = String::from_utf8_lossy(&o.stdout).into_owned();
            assert!(o.status.success(), "{cmd}: {shown}");
            Some(shown)
        }
        Err(e) => {
            test_support::tool::skip(test, &format!("util-linux `script` not available ({e})"));
            None
        }
    }
}

/// Commits the tree `src` to `ref_name` of `repo` through the library (as `ecu-agent commit`
/// does) as version `v` with timestamp `v`, at `security_version` (the parent's when `None`).
pub fn commit_tree(
    repo: &agent_linux::Repo,
    ref_name: &str,
    src: &Path,
    v: u32,
    security_version: Option<u64>,
) -> agent_core::object::ObjectId {
    use agent_linux::repo::CommitMeta;
    use agent_linux::tree::{build_dir, BuildOptions};
    let (root, _) = build_dir(repo, src, &BuildOptions::default(), &mut |_| {}).unwrap();
    let meta = CommitMeta {
        version: v.to_string(),
        subject: String::new(),
        body: String::new(),
        timestamp: u64::from(v),
    };
    repo.commit_with_security_version(ref_name, root, &meta, security_version)
        .unwrap()
}
