//! Output (issue 8, case 4): control characters in what an update or a repository holds
//! (version, subject) never reach the terminal as such from `install`, `apply-offline`,
//! `status`, `log`, `refs` or an error message; JSON output stays JSON.

mod deploy_common;

use deploy_common::*;

/// A version that clears the screen, retitles the terminal and forges a line.
const VERSION: &str = "9\x1b[2J\x1b]0;pwned\x07\nState: idle (all good)";
/// A subject that recolours.
const SUBJECT: &str = "\x1b[31mred\u{202e}txt.exe\u{9b}";
/// Ref names are restricted to `[A-Za-z0-9._-/]` by `repo::validate_ref` wherever they come
/// from (a file's ref included), so they need no escape.
const REF: &str = "os/main";

fn assert_clean(what: &str, text: &str) {
    for bad in ['\x1b', '\x07', '\u{9b}', '\u{202e}'] {
        assert!(
            !text.contains(bad),
            "{what}: {bad:?} reached the terminal:\n{text:?}"
        );
    }
}

#[test]
fn update_text_is_escaped_on_the_terminal() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    ok(d, &["init", "--repo", "build"], &[]);
    image(&d.join("tree"), 1);
    ok(
        d,
        &[
            "commit",
            "--repo",
            "build",
            "--branch",
            REF,
            "--tree",
            "tree",
            "--version",
            VERSION,
            "--subject",
            SUBJECT,
        ],
        &[],
    );
    ok(d, &["keygen", "--out", "k"], &[]);
    ok(
        d,
        &[
            "delta",
            "generate",
            "--repo",
            "build",
            "--to",
            REF,
            "--empty",
            "--out",
            "u.update",
            "--sign-key",
            "k",
        ],
        &[],
    );

    let refs = agent_env(d, &["refs", "--repo", "build"], &[]);
    assert!(refs.ok);
    assert_clean("refs", &refs.stdout);
    assert!(refs.stdout.contains("os/main"), "{}", refs.stdout);

    let log = agent_env(d, &["log", "--repo", "build", REF], &[]);
    assert!(log.ok, "{}", log.stderr);
    assert_clean("log", &log.stdout);
    assert!(log
        .stdout
        .contains("Version: 9\\x1b[2J\\x1b]0;pwned\\x07\\nState: idle"));
    assert!(log.stdout.contains("\\x1b[31mred\\u{202e}txt.exe\\x9b"));

    let apply = agent_env(
        d,
        &[
            "apply-offline",
            "--sysroot",
            "plain",
            "--trusted-key",
            "k.pub",
            "u.update",
        ],
        &[],
    );
    assert!(apply.ok, "{}", apply.stderr);
    assert_clean("apply-offline", &(apply.stdout.clone() + &apply.stderr));
    assert!(
        apply.stderr.contains("version 9\\x1b[2J"),
        "{}",
        apply.stderr
    );

    let inst = agent_env(
        d,
        &[
            "install",
            "--sysroot",
            "s",
            "--trusted-key",
            "k.pub",
            "u.update",
        ],
        &[],
    );
    assert!(inst.ok, "{}", inst.stderr);
    assert_clean("install", &(inst.stdout.clone() + &inst.stderr));
    assert!(inst.stdout.contains("(9\\x1b[2J"), "{}", inst.stdout);

    let st = agent_env(
        d,
        &["status", "--sysroot", "s"],
        &[("ECU_AGENT_BOOTED_SLOT", "A")],
    );
    assert!(st.ok, "{}", st.stderr);
    assert_clean("status", &st.stdout);
    assert!(st.stdout.contains("Version: 9\\x1b[2J"), "{}", st.stdout);
    // A forged line stays on its line.
    assert_eq!(
        st.stdout
            .lines()
            .filter(|l| l.starts_with("State:"))
            .count(),
        1,
        "{}",
        st.stdout
    );

    // JSON stays JSON: the exact strings, escaped by JSON.
    let js = agent_env(
        d,
        &["status", "--sysroot", "s", "--json"],
        &[("ECU_AGENT_BOOTED_SLOT", "A")],
    );
    assert!(js.ok);
    assert!(!js.stdout.contains('\x1b'));
    let v: serde_json::Value = serde_json::from_str(&js.stdout).unwrap();
    assert_eq!(v["deployments"][0]["version"], VERSION);
    assert_eq!(v["deployments"][0]["subject"], SUBJECT);
    assert_eq!(v["deployments"][0]["ref"], REF);

    // Error messages too.
    let e = fails(
        d,
        &["deploy", "--sysroot", "s", "\x1b[2Jnope"],
        &[("ECU_AGENT_BOOTED_SLOT", "A")],
    );
    assert_clean("an error", &e);
    assert!(e.contains("\\x1b[2Jnope"), "{e}");
}
