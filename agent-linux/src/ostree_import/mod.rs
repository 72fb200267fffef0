//! Importing the commits of an OSTree repository (`ecu-agent import-ostree`), so that the
//! `.update` files are generated from what an OSTree release pipeline already builds.
//!
//! The OSTree repository is read natively ([`source`]: archive, bare-user and bare modes),
//! every object verified against its checksum before anything from it is used. Each OSTree
//! commit becomes a normal commit of ours ([`crate::repo`]): its tree converted object by
//! object (names, modes with setuid/setgid/sticky bits, owners, xattrs, symlink targets,
//! contents), its version (`version` metadata key), subject, body and timestamp kept. The
//! history of a ref is imported oldest first, as far back as its parents are present in the
//! OSTree repository; each OSTree ref becomes our branch of the same name.
//!
//! Our commit ids differ from OSTree's (our objects are encoded differently), so a
//! re-import recognizes what it imported before by content: the head of our branch is
//! matched with the OSTree commit of the same timestamp, version, subject, body and tree,
//! and only the commits after it are added. Re-importing an unchanged repository writes
//! nothing; a branch whose head is none of the OSTree ref's commits is refused, never
//! rewritten.
//!
//! All of it is one transaction: the objects of every ref are staged and published
//! together, then the commits are written, then the refs move. An error (a corrupted object,
//! a tree our format cannot hold) leaves every branch where it was. `docs/OSTREE-IMPORT.md`
//! lists what is mapped and what is not.

pub mod source;

mod convert;
mod error;

use std::collections::HashMap;

use agent_core::object::{ObjectId, ObjectKind};

use crate::repo::{Repo, Transaction};
use crate::tree::BuildStats;

use convert::Converter;
pub use error::ImportError;
pub use source::{Mode, OstreeCommit, OstreeKind, OstreeRepo};

/// What to import.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// OSTree refs (names under `refs/heads`); every ref when empty.
    pub refs: Vec<String>,
}

/// How far back an imported history goes. In JSON: `{"end": "root"}` or
/// `{"end": "missing_parent", "commit": "<hex>"}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistoryEnd {
    /// The oldest commit has no parent.
    Root,
    /// The oldest commit's parent is not in the OSTree repository (pruned or never pulled).
    MissingParent(ObjectId),
}

impl serde::Serialize for HistoryEnd {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(None)?;
        match self {
            HistoryEnd::Root => m.serialize_entry("end", "root")?,
            HistoryEnd::MissingParent(id) => {
                m.serialize_entry("end", "missing_parent")?;
                m.serialize_entry("commit", &id.to_string())?;
            }
        }
        m.end()
    }
}

/// One OSTree commit and ours.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ImportedCommit {
    /// The OSTree commit.
    pub ostree: String,
    /// Our commit.
    pub commit: String,
    /// Its version.
    pub version: String,
    /// Its subject.
    pub subject: String,
    /// Its timestamp.
    pub timestamp: u64,
    /// Whether this import added it (false: imported before).
    pub new: bool,
}

/// What happened to one ref.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RefImport {
    /// The OSTree ref, and our branch of the same name.
    #[serde(rename = "ref")]
    pub name: String,
    /// The history, oldest first.
    pub commits: Vec<ImportedCommit>,
    /// Where the history stops.
    pub history: HistoryEnd,
    /// Our branch's head after the import.
    pub head: String,
}

/// What an import did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ImportReport {
    /// The OSTree repository's mode.
    pub mode: Mode,
    /// Per ref.
    pub refs: Vec<RefImport>,
    /// Files, directories and bytes converted, new objects written.
    pub stats: BuildStats,
}

/// Imports `opts.refs` (or every ref) of `src` into `ours`. `progress` is called after every
/// file converted. The caller holds `ours`' lock.
pub fn import(
    src: &OstreeRepo,
    ours: &Repo,
    opts: &ImportOptions,
    progress: &mut dyn FnMut(&BuildStats),
) -> Result<ImportReport, ImportError> {
    let refs: Vec<(String, ObjectId)> = if opts.refs.is_empty() {
        let all = src.list_refs()?;
        if all.is_empty() {
            return Err(ImportError::NoRefs(src.path().to_path_buf()));
        }
        all
    } else {
        opts.refs
            .iter()
            .map(|r| Ok((r.clone(), src.read_ref(r)?)))
            .collect::<Result<_, ImportError>>()?
    };
    for (name, _) in &refs {
        crate::repo::validate_ref(name).map_err(|error| ImportError::BadBranch {
            name: name.clone(),
            error,
        })?;
    }
    let mut conv = Converter {
        src,
        txn: Transaction::new(ours),
        stats: BuildStats::default(),
        files: HashMap::new(),
        dirs: HashMap::new(),
        progress,
    };
    let mut plans = Vec::new();
    for (name, head) in &refs {
        plans.push(conv.plan(ours, name, head)?);
    }
    conv.txn.commit()?;
    let stats = conv.stats;
    let mut out = Vec::new();
    for p in plans {
        for bytes in &p.new_commits {
            ours.write_metadata_object(ObjectKind::Commit, bytes)?;
        }
        if p.moved {
            ours.write_ref(&p.report.name, &p.head)?;
        }
        out.push(p.report);
    }
    Ok(ImportReport {
        mode: src.mode(),
        refs: out,
        stats,
    })
}

#[cfg(test)]
mod test {
    use super::source::fixture as fx;
    use super::*;
    use crate::repo::MAX_TREE_DEPTH;

    fn setup() -> (tempfile::TempDir, OstreeRepo, Repo) {
        let d = tempfile::tempdir().unwrap();
        let src = fx::archive_repo(&d.path().join("ostree"));
        let ours = Repo::init(&d.path().join("ours")).unwrap();
        (d, src, ours)
    }

    fn run(src: &OstreeRepo, ours: &Repo) -> Result<ImportReport, ImportError> {
        import(src, ours, &ImportOptions::default(), &mut |_| {})
    }

    /// A history written object by object as OSTree writes it imports with its versions,
    /// subjects, timestamps and parents.
    #[test]
    fn synthetic_history_imports() {
        let (_d, src, ours) = setup();
        let f = fx::file(&src, b"hello\n", 0o100755, &[], &[]);
        let meta = fx::dirmeta(&src, 0o755);
        let sub = fx::dirtree(&src, &[("f", f)], &[]);
        let root = fx::dirtree(&src, &[("top", f)], &[("sub", sub, meta)]);
        let c1 = fx::commit(&src, "os/main", None, "1.0", "one", 1000, root, meta);
        let root2 = fx::dirtree(&src, &[], &[("sub", sub, meta)]);
        let c2 = fx::commit(&src, "os/main", Some(c1), "2.0", "two", 2000, root2, meta);
        let r = run(&src, &ours).unwrap();
        assert_eq!(r.refs.len(), 1);
        let commits = &r.refs[0].commits;
        assert_eq!(commits.len(), 2);
        assert_eq!(commits[0].ostree, c1.to_string());
        assert_eq!(commits[1].ostree, c2.to_string());
        let head = ours.read_ref("os/main").unwrap().unwrap();
        let info = ours.read_commit(&head).unwrap();
        assert_eq!(
            (info.version.as_str(), info.subject.as_str(), info.timestamp),
            ("2.0", "two", 2000)
        );
        let parent = ours.read_commit(&info.parent.unwrap()).unwrap();
        assert_eq!(
            (parent.version.as_str(), parent.timestamp, parent.parent),
            ("1.0", 1000, None)
        );
        let names: Vec<Vec<u8>> = ours
            .read_dirtree(&parent.root_tree)
            .unwrap()
            .iter()
            .map(|e| e.name().to_vec())
            .collect();
        assert_eq!(names, vec![b"sub".to_vec(), b"top".to_vec()]);
        assert_eq!(r.stats.files, 1, "one file object, converted once");
    }

    /// A dirtree naming `..`, `.`, `a/b` or an empty name (as a file or as a directory) is
    /// refused, naming the dirtree and the name; nothing moves.
    #[test]
    fn names_that_are_not_one_component_are_refused() {
        for bad in ["..", ".", "a/b", "", "../../etc"] {
            for as_dir in [false, true] {
                let (_d, src, ours) = setup();
                let f = fx::file(&src, b"x", 0o100644, &[], &[]);
                let meta = fx::dirmeta(&src, 0o755);
                let empty = fx::dirtree(&src, &[], &[]);
                let evil = if as_dir {
                    fx::dirtree(&src, &[], &[(bad, empty, meta)])
                } else {
                    fx::dirtree(&src, &[(bad, f)], &[])
                };
                let root = fx::dirtree(&src, &[("ok", f)], &[("d", evil, meta)]);
                fx::commit(&src, "os/main", None, "1", "s", 1, root, meta);
                let e = run(&src, &ours).unwrap_err();
                match &e {
                    ImportError::BadName { dirtree, name, .. } => {
                        assert_eq!(*dirtree, evil);
                        assert_eq!(name.as_slice(), bad.as_bytes());
                    }
                    other => panic!("{bad:?}: {other}"),
                }
                assert!(e.to_string().contains(&evil.to_string()), "{e}");
                assert_eq!(ours.read_ref("os/main").unwrap(), None);
            }
        }
    }

    /// A file and a directory of one name in one dirtree is refused; nothing moves.
    #[test]
    fn duplicate_names_are_refused() {
        let (_d, src, ours) = setup();
        let f = fx::file(&src, b"x", 0o100644, &[], &[]);
        let meta = fx::dirmeta(&src, 0o755);
        let empty = fx::dirtree(&src, &[], &[]);
        let root = fx::dirtree(&src, &[("x", f)], &[("x", empty, meta)]);
        fx::commit(&src, "os/main", None, "1", "s", 1, root, meta);
        let e = run(&src, &ours).unwrap_err();
        assert!(e.to_string().contains("twice"), "{e}");
        assert_eq!(ours.read_ref("os/main").unwrap(), None);
    }

    /// A tree one level deeper than [`MAX_TREE_DEPTH`] is refused (walked with a bounded
    /// explicit stack, never recursion); one at the limit imports.
    #[test]
    fn depth_is_bounded() {
        for (depth, ok) in [(MAX_TREE_DEPTH, true), (MAX_TREE_DEPTH + 1, false)] {
            let (_d, src, ours) = setup();
            let meta = fx::dirmeta(&src, 0o755);
            let mut t = fx::dirtree(&src, &[], &[]);
            for _ in 0..depth {
                t = fx::dirtree(&src, &[], &[("d", t, meta)]);
            }
            fx::commit(&src, "os/main", None, "1", "s", 1, t, meta);
            let r = run(&src, &ours);
            assert_eq!(r.is_ok(), ok, "depth {depth}: {r:?}");
            if !ok {
                assert!(matches!(r, Err(ImportError::TooDeep { .. })), "{r:?}");
                assert_eq!(ours.read_ref("os/main").unwrap(), None);
            }
        }
    }
}
