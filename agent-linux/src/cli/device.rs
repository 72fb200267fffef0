//! Device-side commands: checkout (apply-offline is in `update`).

use std::path::PathBuf;

use agent_linux::checkout::{self, CheckoutMode};
use agent_linux::sysroot::Sysroot;
use anyhow::Context;

use super::output::{self, human_bytes};

/// Arguments of `ecu-agent checkout`.
#[derive(Debug, clap::Args)]
pub struct CheckoutArgs {
    /// The sysroot whose repository holds the commit (`S/repo`).
    #[arg(long, value_name = "S")]
    sysroot: PathBuf,
    /// The commit: a ref name, a full id or a unique prefix of one (at least 4 hex characters).
    #[arg(value_name = "COMMIT")]
    commit: String,
    /// Where to materialize the tree: a new directory, or an empty one. Nothing is ever
    /// written outside it, and no symlink is followed while writing.
    #[arg(value_name = "DIR")]
    dir: PathBuf,
    /// Hard-link files from the repository instead of copying them (same filesystem only;
    /// the checked-out files must then never be modified in place).
    #[arg(long)]
    hardlink: bool,
    /// Print what was written as JSON on stdout.
    #[arg(long)]
    json: bool,
}

pub fn checkout(a: CheckoutArgs) -> anyhow::Result<()> {
    let sysroot = Sysroot::open(&a.sysroot).with_context(|| {
        format!(
            "{} is not a sysroot yet; install an update into it with `ecu-agent apply-offline`",
            a.sysroot.display()
        )
    })?;
    let id = sysroot.repo().resolve(&a.commit)?;
    let mode = if a.hardlink {
        CheckoutMode::HardLink
    } else {
        CheckoutMode::Copy
    };
    let stats = checkout::checkout(sysroot.repo(), &id, &a.dir, mode)
        .with_context(|| format!("cannot check out {id} into {}", a.dir.display()))?;
    if a.json {
        return output::json(
            &serde_json::json!({"commit": id.to_string(), "dir": a.dir, "stats": stats}),
        );
    }
    eprintln!(
        "checked out {id} into {}: {} files, {} symlinks, {} directories, {}",
        a.dir.display(),
        stats.files,
        stats.symlinks,
        stats.dirs,
        human_bytes(stats.bytes)
    );
    Ok(())
}
