//! The `ecu-agent` binary as a user types it.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use agent_core::wire::Codec;
use agent_linux::fsmeta::{read_xattrs, XattrPolicy};
use test_support::wire::superblock;

mod build_common;
use build_common::{
    built_update, commit, generate, ok, on_terminal, p, run, trusted, unsigned, EXE,
};

fn fails(args: &[&str]) -> String {
    let o = run(args);
    assert!(
        !o.status.success(),
        "ecu-agent {args:?} succeeded: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    let err = String::from_utf8(o.stderr).unwrap();
    // --allow-unsigned says what it does before anything else.
    let msg = match args.contains(&"--allow-unsigned") {
        true => err
            .strip_prefix("WARNING: --allow-unsigned: ")
            .and_then(|r| r.split_once('\n'))
            .map(|(_, rest)| rest)
            .unwrap_or_else(|| panic!("no --allow-unsigned warning first: {err}")),
        false => &err,
    };
    assert!(msg.starts_with("error: "), "{err}");
    err
}

fn write_tree(root: &Path, version: u32) {
    fs::create_dir_all(root.join("usr/bin")).unwrap();
    fs::create_dir_all(root.join("var/empty")).unwrap();
    fs::write(root.join("usr/bin/tool"), b"#!/bin/sh\necho hi\n").unwrap();
    fs::set_permissions(root.join("usr/bin/tool"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(root.join("version"), format!("{version}\n")).unwrap();
    fs::write(root.join("empty"), b"").unwrap();
    let _ = fs::remove_file(root.join("link"));
    std::os::unix::fs::symlink(format!("usr/bin/v{version}"), root.join("link")).unwrap();
    let deep = root.join("a/b/c/d/e/f/g/h");
    fs::create_dir_all(&deep).unwrap();
    fs::write(deep.join("leaf"), b"deep").unwrap();
    rustix::fs::lsetxattr(
        root.join("version"),
        "user.v",
        version.to_string().as_bytes(),
        rustix::fs::XattrFlags::empty(),
    )
    .expect("the test directory must support user.* xattrs");
}

fn same_tree(a: &Path, b: &Path) {
    let o = Command::new("diff")
        .args(["-r", "--no-dereference", p(a), p(b)])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    for rel in [
        "usr/bin/tool",
        "version",
        "empty",
        "var/empty",
        "a/b/c/d/e/f/g/h/leaf",
    ] {
        let (ma, mb) = (
            fs::symlink_metadata(a.join(rel)).unwrap(),
            fs::symlink_metadata(b.join(rel)).unwrap(),
        );
        assert_eq!(ma.permissions().mode(), mb.permissions().mode(), "{rel}");
        assert_eq!(
            read_xattrs(&a.join(rel), XattrPolicy::User).unwrap(),
            read_xattrs(&b.join(rel), XattrPolicy::User).unwrap()
        );
    }
    assert_eq!(
        fs::read_link(a.join("link")).unwrap(),
        fs::read_link(b.join("link")).unwrap()
    );
}

#[test]
fn help_of_every_command_explains_its_options() {
    let cases: &[(&[&str], &[&str])] = &[
        (
            &[],
            &[
                "init",
                "commit",
                "refs",
                "log",
                "keygen",
                "delta",
                "generate-deltas",
                "apply-offline",
                "checkout",
                "bootenv",
            ],
        ),
        (&["init"], &["--repo"]),
        (
            &["commit"],
            &[
                "--repo",
                "--branch",
                "--tree",
                "--version",
                "--subject",
                "--body",
                "--timestamp",
                "--security-version",
                "anti-rollback",
                "--sign-key",
                "--json",
            ],
        ),
        (&["refs"], &["--repo", "--json"]),
        (&["log"], &["--repo", "REF", "--json"]),
        (&["keygen"], &["--out", "0600"]),
        (&["fsck"], &["--repo", "REF", "--history", "--json"]),
        (&["delta"], &["generate", "show"]),
        (
            &["delta", "show"],
            &[
                "FILE",
                "standard input",
                "--sysroot",
                "--trusted-key",
                "--json",
                "--json-progress",
            ],
        ),
        (
            &["delta", "generate"],
            &[
                "--repo",
                "--from",
                "--empty",
                "--to",
                "--out",
                "--sign-key",
                "--json",
            ],
        ),
        (
            &["generate-deltas"],
            &[
                "--repo",
                "--out",
                "--depth",
                "--sign-key",
                "--json",
                "<ref with / as ->-<to>.update",
            ],
        ),
        (
            &["apply-offline"],
            &[
                "--sysroot",
                "--trusted-key",
                "--allow-unsigned",
                "FILE",
                "standard input",
                "--json",
                "--json-progress",
            ],
        ),
        (
            &["install"],
            &[
                "--sysroot",
                "--trusted-key",
                "--allow-unsigned",
                "--rebase",
                "--tries",
                "--json",
                "--json-progress",
            ],
        ),
        (&["checkout"], &["--sysroot", "COMMIT", "DIR", "--hardlink"]),
        (&["bootenv"], &["show"]),
        (
            &["health-check"],
            &[
                "--sysroot",
                "--dir",
                "--timeout",
                "required.d",
                "wanted.d",
                "code 3",
                "--json",
            ],
        ),
        (
            &["repair-env"],
            &["--sysroot", "--dry-run", "--json", "--booted-slot"],
        ),
    ];
    for (sub, words) in cases {
        let mut args: Vec<&str> = sub.to_vec();
        args.push("--help");
        let out = ok(&args);
        for w in *words {
            assert!(
                out.contains(w),
                "`ecu-agent {}` does not mention {w}:\n{out}",
                args.join(" ")
            );
        }
    }
    assert!(!run(&["no-such-command"]).status.success());
    assert!(
        !run(&["commit"]).status.success(),
        "missing required options must fail"
    );
}

#[test]
fn build_generate_apply_checkout() {
    let t = tempfile::tempdir().unwrap();
    let (repo, src, key) = (
        t.path().join("repo"),
        t.path().join("src"),
        t.path().join("key"),
    );
    ok(&["init", "--repo", p(&repo)]);
    let public = ok(&["keygen", "--out", p(&key)]);
    assert_eq!(
        fs::read_to_string(key.with_extension("pub")).unwrap(),
        public
    );
    assert_eq!(
        fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(fails(&["keygen", "--out", p(&key)]).contains("exists already"));

    // Five commits on one ref, one on another.
    let mut ids = Vec::new();
    for v in 1..=5u32 {
        write_tree(&src, v);
        let ts = (1_700_000_000 + v).to_string();
        let (version, subject) = (v.to_string(), format!("release {v}"));
        let id = ok(&commit(
            &repo,
            "ecu/armv7/main",
            &src,
            &[
                "--version",
                &version,
                "--subject",
                &subject,
                "--timestamp",
                &ts,
                "--sign-key",
                p(&key),
            ],
        ));
        ids.push(id.trim().to_string());
    }
    let other = ok(&commit(&repo, "ecu/other", &src, &["--json"]));
    let other: serde_json::Value = serde_json::from_str(&other).unwrap();
    assert_eq!(other["ref"], "ecu/other");
    assert_eq!(other["parent"], serde_json::Value::Null);
    let other_id = other["commit"].as_str().unwrap().to_string();

    let refs = ok(&["refs", "--repo", p(&repo)]);
    assert_eq!(
        refs,
        format!("ecu/armv7/main {}\necu/other {other_id}\n", ids[4])
    );
    let refs: serde_json::Value =
        serde_json::from_str(&ok(&["refs", "--repo", p(&repo), "--json"])).unwrap();
    assert_eq!(refs[0]["commit"], ids[4].as_str());

    // log: unbroken history, newest first, like `ostree log`.
    let log = ok(&["log", "--repo", p(&repo), "ecu/armv7/main"]);
    for (i, id) in ids.iter().rev().enumerate() {
        assert!(log.contains(&format!("commit {id}\n")), "{log}");
        if i < 4 {
            assert!(
                log.contains(&format!("commit {id}\nParent:  {}\n", ids[3 - i])),
                "{log}"
            );
        }
    }
    assert!(
        log.contains("ContentChecksum:  ")
            && log.contains("Date:  2023-11-14 22:13:25 +0000")
            && log.contains("Version: 5")
    );
    assert!(
        log.contains("    release 5\n") && log.contains("Signed-by: ed25519 "),
        "{log}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&ok(&["log", "--repo", p(&repo), &ids[4][..10], "--json"])).unwrap();
    let arr = json.as_array().unwrap();
    assert_eq!(arr.len(), 5);
    for w in arr.windows(2) {
        assert_eq!(w[0]["parent"], w[1]["commit"]);
    }
    assert_eq!(arr[4]["parent"], serde_json::Value::Null);
    assert!(fails(&["log", "--repo", p(&repo), "nope"]).contains("neither a ref nor a commit"));

    // generate-deltas: names and count.
    let out = t.path().join("out");
    let deltas = |depth: &str, extra: &[&str]| {
        let args = [
            "generate-deltas",
            "--repo",
            p(&repo),
            "--out",
            p(&out),
            "--depth",
            depth,
        ];
        ok(&[&args[..], extra].concat())
    };
    let listing = deltas("3", &["--sign-key", p(&key)]);
    let mut expected = vec![format!("ecu-armv7-main-{}.update", ids[4])];
    for from in &ids[1..4] {
        expected.push(format!("ecu-armv7-main-{from}-{}.update", ids[4]));
    }
    expected.push(format!("ecu-other-{other_id}.update"));
    // And the folder's signed index (docs/PUBLISH.md).
    expected.push("updates.index".to_string());
    expected.sort();
    let mut names: Vec<String> = fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, expected);
    assert_eq!(listing.lines().count(), 5, "{listing}");
    for line in listing.lines() {
        let (path, size) = line.rsplit_once(' ').unwrap();
        assert_eq!(
            fs::metadata(path).unwrap().len(),
            size.parse::<u64>().unwrap()
        );
    }
    let json: serde_json::Value = serde_json::from_str(&deltas("1", &["--json"])).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 3);

    // One delta by hand, with a short id and a ref name.
    let delta = t.path().join("d.update");
    ok(&generate(
        &repo,
        Some(&ids[3][..12]),
        "ecu/armv7/main",
        &delta,
        &["--sign-key", p(&key)],
    ));
    let full4 = t.path().join("f4.update");
    ok(&generate(
        &repo,
        None,
        &ids[3],
        &full4,
        &["--sign-key", p(&key)],
    ));
    // Exactly one of --from and --empty.
    assert!(!run(&[
        "delta",
        "generate",
        "--repo",
        p(&repo),
        "--to",
        &ids[3],
        "--out",
        p(&full4)
    ])
    .status
    .success());

    // Device: the delta without its source fails plainly.
    let sys = t.path().join("sys");
    let pubkey = format!("{}.pub", p(&key));
    let err = fails(&trusted("apply-offline", &sys, &pubkey, &[p(&delta)]));
    assert!(
        err.contains(&format!(
            "commit {}, the source of this delta, is not in the store",
            ids[3]
        )),
        "{err}"
    );

    // Full file of version 4, then the delta from standard input.
    let got = ok(&trusted("apply-offline", &sys, &pubkey, &[p(&full4)]));
    assert_eq!(got.trim(), ids[3]);
    let mut child = Command::new(EXE)
        .args(trusted("apply-offline", &sys, &pubkey, &["--json", "-"]))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&fs::read(&delta).unwrap())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let applied: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(applied["commit"], ids[4].as_str());
    assert_eq!(applied["from"], ids[3].as_str());
    assert_eq!(applied["ref"], "ecu/armv7/main");
    assert_eq!(applied["verified"], true);
    assert!(
        String::from_utf8_lossy(&o.stderr).is_empty(),
        "quiet when stderr is not a terminal"
    );

    // The device holds versions 4 and 5 only: its log says where its history stops.
    let dev_log = ok(&["log", "--repo", p(&sys.join("repo")), "ecu/armv7/main"]);
    assert_eq!(dev_log.matches("\ncommit ").count() + 1, 2, "{dev_log}");
    assert!(
        dev_log.contains(&format!(
            "History beyond this commit not fetched ({} is not in the repository)",
            ids[2]
        )),
        "{dev_log}"
    );
    let fsck: serde_json::Value = serde_json::from_str(&ok(&[
        "fsck",
        "--repo",
        p(&sys.join("repo")),
        "--history",
        "--json",
    ]))
    .unwrap();
    assert_eq!(fsck.as_array().unwrap().len(), 2, "{fsck}");
    ok(&["fsck", "--repo", p(&repo), "--history"]);
    let co = t.path().join("co");
    ok(&["checkout", "--sysroot", p(&sys), "ecu/armv7/main", p(&co)]);
    same_tree(&src, &co);
    let err = fails(&["checkout", "--sysroot", p(&sys), "ecu/armv7/main", p(&co)]);
    assert!(err.contains("not empty"), "{err}");
    let co2 = t.path().join("co2");
    ok(&[
        "checkout",
        "--sysroot",
        p(&sys),
        &ids[4][..8],
        p(&co2),
        "--hardlink",
    ]);
    same_tree(&src, &co2);

    // Unsigned files: refused with trusted keys, refused without any key (saying how to
    // configure keys), accepted only with --allow-unsigned, loudly.
    let unsigned = t.path().join("u.update");
    ok(&generate(&repo, None, "ecu/other", &unsigned, &[]));
    let err = fails(&trusted("apply-offline", &sys, &pubkey, &[p(&unsigned)]));
    assert!(err.contains("not signed"), "{err}");
    assert!(!ok(&["refs", "--repo", p(&sys.join("repo"))]).contains("ecu/other"));
    let err = fails(&["apply-offline", "--sysroot", p(&sys), p(&unsigned)]);
    assert!(
        err.contains("no trusted key")
            && err.contains("trusted-key =")
            && err.contains("agent.conf")
            && err.contains("--trusted-key")
            && err.contains("--allow-unsigned"),
        "{err}"
    );
    assert!(!ok(&["refs", "--repo", p(&sys.join("repo"))]).contains("ecu/other"));
    let o = run(&[
        "apply-offline",
        "--sysroot",
        p(&sys),
        "--allow-unsigned",
        "--json",
        p(&unsigned),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("WARNING: --allow-unsigned") && stderr.contains("NOT SIGNED"),
        "{stderr}"
    );
    let applied: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(applied["allow_unsigned"], true);
    assert_eq!(applied["signed"], false);
    assert_eq!(applied["verified"], false);
    assert!(
        ok(&["refs", "--repo", p(&sys.join("repo"))]).contains(&format!("ecu/other {other_id}"))
    );

    // A wrong key.
    let other_key = t.path().join("other");
    ok(&["keygen", "--out", p(&other_key)]);
    let (sys2, other_pub) = (t.path().join("sys2"), format!("{}.pub", p(&other_key)));
    let err = fails(&trusted("apply-offline", &sys2, &other_pub, &[p(&full4)]));
    assert!(err.contains("signature does not verify"), "{err}");
}

/// Whether every part of the update file `file` is coded with one of `codecs`.
fn coded_with(file: &[u8], codecs: [Codec; 2]) -> bool {
    superblock(file)
        .parts
        .iter()
        .all(|p| codecs.contains(&p.codec))
}

/// `commit --security-version`: kept along the ref, never lowered, shown by `log` and `refs`,
/// and carried into the update's signed superblock.
#[test]
fn commit_security_version() {
    let t = tempfile::tempdir().unwrap();
    let repo = t.path().join("repo");
    let tree = t.path().join("tree");
    ok(&["init", "--repo", p(&repo)]);
    let commit = |version: u32, sv: Option<&str>| {
        write_tree(&tree, version);
        let mut args = commit(&repo, "ecu/main", &tree, &["--json"]);
        if let Some(sv) = sv {
            args.extend(["--security-version", sv]);
        }
        run(&args)
    };
    let json = |o: Output| -> serde_json::Value {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice(&o.stdout).unwrap()
    };
    // No parent, no flag: 0. Then 3; then the parent's (3) by default.
    assert_eq!(json(commit(1, None))["security_version"], 0);
    assert_eq!(json(commit(2, Some("3")))["security_version"], 3);
    let c3 = json(commit(3, None));
    assert_eq!(c3["security_version"], 3);
    // Lower than the parent's: refused, naming both numbers, the ref not moved.
    let o = commit(4, Some("2"));
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("security version 2 is below 3"), "{err}");
    let refs: serde_json::Value =
        serde_json::from_str(&ok(&["refs", "--repo", p(&repo), "--json"])).unwrap();
    assert_eq!(refs[0]["commit"], c3["commit"]);
    assert_eq!(refs[0]["security_version"], 3);
    let log: serde_json::Value =
        serde_json::from_str(&ok(&["log", "--repo", p(&repo), "ecu/main", "--json"])).unwrap();
    let svs: Vec<u64> = log
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["security_version"].as_u64().unwrap())
        .collect();
    assert_eq!(svs, [3, 3, 0]);
    assert!(ok(&["log", "--repo", p(&repo), "ecu/main"]).contains("Security-Version: 3\n"));
    // The same value again is fine; the update carries it in its superblock (format 3).
    assert_eq!(json(commit(5, Some("3")))["security_version"], 3);
    let update = t.path().join("u.update");
    ok(&generate(&repo, None, "ecu/main", &update, &[]));
    let bytes = fs::read(&update).unwrap();
    let h = agent_core::wire::Header::new_checked(&bytes[..]).unwrap();
    assert_eq!(h.version(), 3);
    let sb = superblock(&bytes);
    assert_eq!(sb.security_version, 3);
    // xz by default; `--codec deflate --max-dictionary 8192` for an MCU that lends 8 KiB.
    assert!(coded_with(&bytes, [Codec::Xz, Codec::Stored]));
    let small = t.path().join("small.update");
    let gen = |extra: &[&str]| run(&generate(&repo, None, "ecu/main", &small, extra));
    let o = gen(&["--codec", "deflate", "--max-dictionary", "8192"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let bytes = fs::read(&small).unwrap();
    let sb = superblock(&bytes);
    assert_eq!(sb.dictionary, 8192);
    assert!(coded_with(&bytes, [Codec::Deflate, Codec::Stored]));
    let o = gen(&["--max-dictionary", "4000"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("--max-dictionary 4000") && err.contains("4096"),
        "{err}"
    );
    // Not a number: clap refuses it.
    let o = commit(6, Some("-1"));
    assert!(!o.status.success());
}

#[test]
fn clear_errors() {
    let t = tempfile::tempdir().unwrap();
    let repo = t.path().join("repo");
    assert!(fails(&["refs", "--repo", p(&repo)]).contains("not an ecu-agent repository"));
    ok(&["init", "--repo", p(&repo)]);
    let src = t.path().join("src");
    fs::create_dir_all(&src).unwrap();
    assert!(fails(&commit(&repo, "../evil", &src, &[])).contains("ref name"));
    assert!(fails(&commit(&repo, "main", &t.path().join("missing"), &[])).contains("missing"));
    let fifo = src.join("fifo");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let err = fails(&commit(&repo, "main", &src, &[]));
    assert!(err.contains("FIFO"), "{err}");
    assert!(ok(&["refs", "--repo", p(&repo)]).is_empty());
    let junk = t.path().join("junk.update");
    fs::write(&junk, b"definitely not an update").unwrap();
    let err = fails(&unsigned("apply-offline", &t.path().join("sys"), &junk));
    assert!(err.contains("junk.update"), "{err}");
    assert!(fails(&unsigned(
        "apply-offline",
        &t.path().join("sys"),
        &t.path().join("nope")
    ))
    .contains("cannot open"));
}

#[test]
fn apply_offline_and_install_say_a_failure_alike() {
    let t = tempfile::tempdir().unwrap();
    let (src, key) = (t.path().join("src"), t.path().join("key"));
    write_tree(&src, 1);
    let update = built_update(
        t.path(),
        &src,
        Some(&key),
        &["--codec", "deflate", "--compression", "0"],
    );
    let good = fs::read(&update).unwrap();
    let other = t.path().join("other");
    ok(&["keygen", "--out", p(&other)]);
    let mut damaged = good.clone();
    let mid = damaged.len() / 2;
    damaged[mid] ^= 1;
    let cases: [(&str, Vec<u8>, &Path); 3] = [
        ("damaged", damaged, &key),
        ("truncated", good[..good.len() - 10].to_vec(), &key),
        ("untrusted", good, &other),
    ];
    for (name, bytes, signer) in cases {
        let file = t.path().join(format!("{name}.update"));
        fs::write(&file, bytes).unwrap();
        let public = signer.with_extension("pub");
        let said: Vec<String> = ["apply-offline", "install"]
            .iter()
            .map(|cmd| {
                let sys = t.path().join(format!("{name}-{cmd}"));
                fails(&trusted(cmd, &sys, p(&public), &[p(&file)]))
            })
            .collect();
        assert_eq!(said[0], said[1], "{name}");
        assert!(
            said[0].starts_with(&format!(
                "error: cannot install {}\n  caused by: ",
                p(&file)
            )),
            "{}",
            said[0]
        );
    }
}

#[test]
fn an_empty_sysroot_needs_an_install_not_init() {
    let t = tempfile::tempdir().unwrap();
    let empty = t.path().join("empty");
    fs::create_dir_all(&empty).unwrap();
    for sys in [&empty, &t.path().join("new")] {
        for cmd in ["status", "mark-good", "rollback", "cleanup"] {
            let err = fails(&[cmd, "--sysroot", p(sys)]);
            assert!(!err.contains("ecu-agent init"), "{err}");
            assert!(
                err.contains(&format!(
                    "install a from-scratch update first (`ecu-agent install --sysroot {} FILE`)",
                    p(sys)
                )),
                "{err}"
            );
        }
    }
}

/// The messages of the error `ecu-agent` printed: the `error: ` line and each `caused by: `.
fn error_chain(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter_map(|l| {
            l.strip_prefix("error: ")
                .or_else(|| l.strip_prefix("  caused by: "))
        })
        .collect()
}

/// Asserts that no message of the chain repeats one of the others (a wrapper error both
/// showing its inner error and returning it as its source would).
fn each_message_once(stderr: &str, os_errors: usize) {
    let chain = error_chain(stderr);
    assert!(!chain.is_empty(), "{stderr}");
    for (i, a) in chain.iter().enumerate() {
        for (j, b) in chain.iter().enumerate() {
            assert!(i == j || !a.contains(b), "{b:?} is said twice:\n{stderr}");
        }
    }
    assert_eq!(stderr.matches("(os error ").count(), os_errors, "{stderr}");
}

#[test]
fn error_chains_say_each_message_once() {
    let t = tempfile::tempdir().unwrap();
    let (repo, src) = (t.path().join("repo"), t.path().join("src"));
    write_tree(&src, 1);
    ok(&["init", "--repo", p(&repo)]);
    let missing = t.path().join("missing");
    // A tree that is not there (the repository's BuildError over an io::Error).
    let err = fails(&commit(&repo, "main", &missing, &[]));
    each_message_once(&err, 1);
    let id = ok(&commit(&repo, "main", &src, &[]));
    // An output directory that is not there (GenerateError over an io::Error).
    let err = fails(&generate(
        &repo,
        None,
        "main",
        &missing.join("u.update"),
        &[],
    ));
    each_message_once(&err, 1);
    let update = t.path().join("u.update");
    ok(&generate(&repo, None, "main", &update, &[]));
    // A sysroot that is a file (agent.conf's ConfigError over an io::Error).
    let file = t.path().join("file");
    fs::write(&file, b"").unwrap();
    let err = fails(&unsigned("apply-offline", &file, &update));
    each_message_once(&err, 1);
    // A checkout below a file (CheckoutError over an io::Error).
    let sys = t.path().join("sys");
    ok(&unsigned("apply-offline", &sys, &update));
    let err = fails(&[
        "checkout",
        "--sysroot",
        p(&sys),
        id.trim(),
        p(&file.join("out")),
    ]);
    each_message_once(&err, 1);
    // A boot environment that is a directory (DeployError over the environment's error).
    let sys = t.path().join("sys2");
    fs::create_dir_all(sys.join("env-a")).unwrap();
    fs::create_dir_all(sys.join("env-b")).unwrap();
    fs::write(
        sys.join("agent.conf"),
        "env = env-a\nenv-redundant = env-b\n",
    )
    .unwrap();
    let err = fails(&unsigned("install", &sys, &update));
    assert!(err.contains("Is a directory"), "{err}");
    each_message_once(&err, 1);
}

#[test]
fn progress_on_a_terminal_only() {
    let t = tempfile::tempdir().unwrap();
    let (repo, src) = (t.path().join("repo"), t.path().join("src"));
    write_tree(&src, 1);
    ok(&["init", "--repo", p(&repo)]);
    let Some(shown) = on_terminal("progress_on_a_terminal", &commit(&repo, "main", &src, &[]))
    else {
        return;
    };
    assert!(shown.contains("reading tree: "), "{shown:?}");
    let update = t.path().join("u.update");
    let shown = on_terminal(
        "progress_on_a_terminal",
        &generate(&repo, None, "main", &update, &[]),
    )
    .unwrap();
    assert!(shown.contains("generating: "), "{shown:?}");
    let shown = on_terminal(
        "progress_on_a_terminal",
        &unsigned("apply-offline", &t.path().join("sys"), &update),
    )
    .unwrap();
    assert!(shown.contains("installing: "), "{shown:?}");
    // The line is cleared afterwards, and nothing of it goes to a pipe.
    assert!(shown.contains("\r\x1b[2K"), "{shown:?}");
    let o = run(&unsigned("apply-offline", &t.path().join("sys2"), &update));
    assert!(!String::from_utf8_lossy(&o.stderr).contains("installing"));
}
