//! `ecu-agent import-ostree`: the commits of an OSTree repository into ours.

use std::path::PathBuf;

use agent_linux::ostree_import::{self, HistoryEnd, ImportOptions, OstreeRepo};
use agent_linux::progress::Reporter;
use agent_linux::repo::Repo;
use anyhow::Context;

use super::esc;
use super::output::{self, human_bytes};

/// Arguments of `ecu-agent import-ostree`.
#[derive(Debug, clap::Args)]
pub struct ImportOstreeArgs {
    /// The OSTree repository to read (its directory, holding `config` and `objects/`), in
    /// mode archive (archive-z2), bare-user or bare. It is only read, never written; every
    /// object is checked against its checksum before it is used.
    #[arg(long, value_name = "DIR")]
    ostree_repo: PathBuf,
    /// An OSTree ref to import (a name under refs/heads, e.g. `exampleos/x86_64/main`); it
    /// becomes our branch of the same name. Repeat for several. Default: every ref under
    /// refs/heads.
    #[arg(long = "ref", value_name = "REF")]
    refs: Vec<String>,
    /// Our repository to import into (made by `ecu-agent init`). Each ref's history is
    /// imported oldest first, as far back as its parents are in the OSTree repository;
    /// commits imported before are recognized and kept, so running the import again after
    /// the pipeline committed adds only the new commits.
    #[arg(long, value_name = "DIR")]
    repo: PathBuf,
    /// Print what was imported as JSON on stdout: the mode, and per ref every commit (OSTree
    /// checksum, our id, version, subject, timestamp, whether it is new), where its history
    /// ends, and our branch's head.
    #[arg(long)]
    json: bool,
}

pub fn import_ostree(a: ImportOstreeArgs) -> anyhow::Result<()> {
    let src = OstreeRepo::open(&a.ostree_repo)?;
    let repo = Repo::open(&a.repo)?;
    let _lock = repo.lock()?;
    let mut progress = Reporter::text();
    let report = ostree_import::import(
        &src,
        &repo,
        &ImportOptions {
            refs: a.refs.clone(),
        },
        &mut |s| {
            progress.message(|| format!("importing: {} files, {}", s.files, human_bytes(s.bytes)))
        },
    )
    .with_context(|| {
        format!(
            "cannot import from {}; nothing was changed in {}",
            a.ostree_repo.display(),
            a.repo.display()
        )
    })?;
    progress.clear();
    if a.json {
        return output::json(&report);
    }
    let mut s = String::new();
    for r in &report.refs {
        let new = r.commits.iter().filter(|c| c.new).count();
        s.push_str(&format!(
            "{}: {} commits ({new} new), head {}\n",
            esc(&r.name),
            r.commits.len(),
            r.head
        ));
        for c in &r.commits {
            s.push_str(&format!(
                "  {} {} <- ostree {}{}{}\n",
                if c.new { "+" } else { "=" },
                c.commit,
                c.ostree,
                if c.version.is_empty() {
                    String::new()
                } else {
                    format!(" version {}", esc(&c.version))
                },
                if c.subject.is_empty() {
                    String::new()
                } else {
                    format!(": {}", esc(&c.subject))
                },
            ));
        }
        if let HistoryEnd::MissingParent(p) = r.history {
            s.push_str(&format!(
                "  history ends: the parent {p} of the oldest commit is not in the OSTree repository\n"
            ));
        }
    }
    eprintln!(
        "imported from {} ({} mode): {} files, {} directories, {}, {} new objects",
        a.ostree_repo.display(),
        report.mode.name(),
        report.stats.files,
        report.stats.dirs,
        human_bytes(report.stats.bytes),
        report.stats.new_objects
    );
    Ok(output::out(&s)?)
}
