//! Tests that need a real tool (QEMU, fw_printenv, grub-editenv, nginx, a C compiler, root):
//! one rule, written once. Under CI (`CI=true`, as `cargo xtask test` runs in CI) a missing
//! tool fails the test, so that CI never passes by skipping; elsewhere the test prints a
//! visible `SKIP` line and returns early.
//!
//! ```
//! fn my_test() {
//!     if !test_support::tool::have("fw_printenv", "my_test") {
//!         return;
//!     }
//!     // ... run fw_printenv ...
//! }
//! ```

use std::path::Path;

/// Whether the tests run under CI: `CI` set to anything but empty, `0` or `false` (the rule
/// `cargo xtask test` applies too).
pub fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// Whether an executable named `tool` is on `PATH`.
pub fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
}

/// Gives up on `test` because `what` is missing: returns false after printing
/// `SKIP <test>: <what>`.
///
/// # Panics
/// Under CI ([`ci`]): there a missing tool is a failure, never a skip.
pub fn skip(test: &str, what: &str) -> bool {
    skip_as(ci(), test, what)
}

/// [`skip`] with CI given.
fn skip_as(ci: bool, test: &str, what: &str) -> bool {
    assert!(
        !ci,
        "{test}: {what} (required under CI=true; `cargo xtask test` installs the tools)"
    );
    eprintln!("SKIP {test}: {what}");
    false
}

/// Whether `tool` is on `PATH`; when not, [`skip`]s `test` (a failure under CI).
pub fn have(tool: &str, test: &str) -> bool {
    on_path(tool) || skip(test, &format!("{tool} is not installed"))
}

/// Whether the file `path` exists (a regular file); when not, [`skip`]s `test` (a failure under CI).
pub fn have_file(path: impl AsRef<Path>, test: &str) -> bool {
    let path = path.as_ref();
    path.is_file() || skip(test, &format!("{} is missing", path.display()))
}

/// Whether the tests run as root; when not, [`skip`]s `test` (a failure under CI, which runs
/// the suite as root).
pub fn have_root(test: &str) -> bool {
    // The effective uid, from /proc (no libc dependency for one number).
    let root = std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find(|l| l.starts_with("Uid:"))
            .and_then(|l| l.split_whitespace().nth(2))
            == Some("0")
    });
    root || skip(test, "needs root")
}

#[cfg(test)]
mod test {
    use super::*;

    /// A missing tool fails under CI and skips elsewhere.
    #[test]
    fn a_missing_tool_fails_under_ci_and_skips_elsewhere() {
        assert!(on_path("sh"));
        assert!(!on_path("no-such-tool-ecu-agent-test"));
        assert!(!skip_as(false, "t", "no-such-tool is not installed"));
        let under_ci = std::panic::catch_unwind(|| skip_as(true, "t", "no-such-tool"));
        assert!(
            under_ci.is_err(),
            "under CI a missing tool must fail the test"
        );
    }
}
