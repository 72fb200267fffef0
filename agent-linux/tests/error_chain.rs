//! Every error type wrapping another says each message once along its `source()` chain: a
//! wrapper that shows its inner error is transparent to it (its source is the inner error's
//! source), so `caused by:` never repeats a message.

use std::error::Error;
use std::io;
use std::path::PathBuf;

use agent_core::install::InstallError;
use agent_core::write::WriteError;
use agent_linux::apply::ApplyError;
use agent_linux::bootcfg::ConfigError;
use agent_linux::checkout::CheckoutError;
use agent_linux::deploy::DeployError;
use agent_linux::floor::FloorError;
use agent_linux::generate::GenerateError;
use agent_linux::inspect::InspectError;
use agent_linux::ostree_import::ImportError;
use agent_linux::tree::BuildError;
use agent_linux::RepoError;

/// An OS error with a cause of its own (a custom io::Error), so that a transparent wrapper
/// still has a chain to pass on.
#[derive(Debug)]
struct Root;
impl std::fmt::Display for Root {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the root cause")
    }
}
impl Error for Root {}

#[derive(Debug)]
struct Middle(Root);
impl std::fmt::Display for Middle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the device went away")
    }
}
impl Error for Middle {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&self.0)
    }
}

fn os() -> io::Error {
    io::Error::other(Middle(Root))
}

fn repo_io() -> RepoError {
    RepoError::Io {
        what: "read",
        path: PathBuf::from("R/objects/x"),
        source: os(),
    }
}

/// The chain's messages, each checked to appear once, and the root cause reached.
fn check(e: &(dyn Error + 'static)) {
    let all = once(e);
    for m in ["the device went away", "the root cause"] {
        assert_eq!(all.matches(m).count(), 1, "{m:?} in {all:?}");
    }
}

/// The chain's messages (joined by newlines), each checked to appear once.
fn once(e: &(dyn Error + 'static)) -> String {
    let mut msgs = Vec::new();
    let mut cur = Some(e);
    while let Some(c) = cur {
        msgs.push(c.to_string());
        cur = c.source();
    }
    for (i, a) in msgs.iter().enumerate() {
        for (j, b) in msgs.iter().enumerate() {
            assert!(i == j || !a.contains(b.as_str()), "{b:?} twice in {msgs:?}");
        }
    }
    msgs.join("\n")
}

#[test]
fn every_wrapper_is_transparent() {
    check(&repo_io());
    once(&RepoError::CorruptObject {
        kind: agent_core::ObjectKind::File,
        id: agent_core::ObjectId::of(b"x"),
        error: agent_core::object::ObjectError::Truncated { needed: 4, have: 2 },
    });
    check(&CheckoutError::Repo(repo_io()));
    check(&CheckoutError::Io {
        what: "create",
        path: PathBuf::from("d"),
        source: os(),
    });
    check(&GenerateError::Repo(repo_io()));
    check(&GenerateError::Write(WriteError::Io(os())));
    check(&GenerateError::Io {
        what: "create",
        path: PathBuf::from("u.update"),
        source: os(),
    });
    check(&BuildError::Repo(repo_io()));
    check(&BuildError::Io {
        what: "stat",
        path: PathBuf::from("t"),
        source: os(),
    });
    check(&ConfigError::Io {
        path: PathBuf::from("S/agent.conf"),
        source: os(),
    });
    check(&FloorError::Io {
        what: "read",
        path: PathBuf::from("S/security-floor"),
        source: os(),
    });
    check(&InspectError::Io(os()));
    check(&ApplyError::Read(os()));
    check(&ApplyError::Interrupted {
        error: os(),
        resume_at: 7,
    });
    check(&ApplyError::Install(InstallError::Store(repo_io())));
    check(&DeployError::Repo(repo_io()));
    check(&DeployError::Apply(ApplyError::Install(
        InstallError::Store(repo_io()),
    )));
    check(&ImportError::Repo(repo_io()));
    check(&ImportError::Io {
        what: "read",
        path: PathBuf::from("ostree/config"),
        source: os(),
    });
    check(&DeployError::Io {
        what: "write",
        path: PathBuf::from("S/deploy"),
        source: os(),
    });
}
