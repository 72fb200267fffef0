//! C and C++ programs in tests: compiled with every warning an error under AddressSanitizer
//! and UndefinedBehaviorSanitizer, linked against a library cargo built beside the test, run,
//! and their output read; the examples of docs/C-API.md. The C tests of ecu-update-capi and
//! ecu-agent-capi.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Compiles and links `out` with `compiler` (`gcc`, `g++`) in `std_flag` (`-std=c11`, ...)
/// with `-Wall -Wextra -Werror -O1 -g`, AddressSanitizer and UndefinedBehaviorSanitizer
/// (no recovery), the arguments `args` adds (defines, include paths, sources, libraries),
/// then `-lpthread -ldl -lm`; asserts that it succeeds, showing the compiler's errors.
pub fn compile_sanitized(
    compiler: &str,
    std_flag: &str,
    out: &Path,
    args: impl FnOnce(&mut Command),
) {
    let mut cmd = Command::new(compiler);
    cmd.args([std_flag, "-Wall", "-Wextra", "-Werror", "-O1", "-g"])
        .args(["-fsanitize=address,undefined", "-fno-sanitize-recover=all"]);
    args(&mut cmd);
    let res = cmd
        .args(["-lpthread", "-ldl", "-lm", "-o"])
        .arg(out)
        .output()
        .unwrap();
    assert!(
        res.status.success(),
        "{compiler} failed:\n{}",
        String::from_utf8_lossy(&res.stderr)
    );
}

/// What a program printed: its standard output, then its standard error.
pub fn output_text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// The comma-separated C initialiser of `bytes`: `0x01,0xab,...`.
pub fn c_bytes(bytes: &[u8]) -> String {
    let hex: Vec<String> = bytes.iter().map(|b| format!("0x{b:02x}")).collect();
    hex.join(",")
}

/// The newest file named `prefix*suffix` that cargo built beside the running test binary
/// (a crate's `staticlib` or `cdylib`, e.g. `libecu_update` and `.a`).
pub fn built_beside_test(prefix: &str, suffix: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let deps = exe.parent().unwrap();
    let mut found: Vec<PathBuf> = std::fs::read_dir(deps)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(prefix) && n.ends_with(suffix))
        })
        .collect();
    found.sort_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
    found.pop().unwrap_or_else(|| {
        panic!("{prefix}*{suffix} was not built beside the test (is it a crate-type of the crate?)")
    })
}

/// The fenced code block after `<!-- example: NAME -->` in the Markdown file `doc`.
pub fn doc_example(doc: &Path, name: &str) -> String {
    let doc = std::fs::read_to_string(doc).unwrap();
    let marker = format!("<!-- example: {name} -->");
    let rest = &doc[doc.find(&marker).expect("example marker in the doc")..];
    let start = rest.find("```").unwrap();
    let body = &rest[start..];
    let body = &body[body.find('\n').unwrap() + 1..];
    body[..body.find("\n```").unwrap()].to_string()
}
