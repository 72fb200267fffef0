//! `sysroot_ops`: sequences of the sysroot commands (`install`, `deploy`, `mark-good`,
//! `rollback`, `simulate-boot`, `cleanup`) through the library behind the CLI
//! (`agent_linux::deploy::Deployer`, opened afresh for each command as the CLI does) on a real
//! temporary sysroot, checked against a reference model of the two slots, in the style of
//! sequential-storage's `fuzz/fuzz_targets/map.rs`.
//!
//! The model knows, per slot, which version it holds, its priority (0, 1 or 2), whether it is
//! marked good and its tries left, and which slot runs; it follows what each command is
//! documented to do when the agent reports success (and nothing when it refuses). After every
//! command: each slot of the real environment holds the model's version, the next boot the
//! bootloader's decision would take is the model's, and the running deployment is on disk and
//! identical to its commit (never deleted). `simulate-boot` boots the slot the model says.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use agent_core::object::ObjectId;
use agent_linux::deploy::env::{self, EnvContent};
use agent_linux::deploy::{self, Deployer, InstallOptions, Options};
use agent_linux::generate::{generate, GenerateOptions};
use agent_linux::repo::{CommitMeta, Repo};
use agent_linux::tree::{build_mem, MemDir, MemNode};
use bootloader_hooks::{BootState, Slot};

/// The ref the updates move.
pub const REF: &str = "os/main";
/// Tries a staged deployment gets (the default of `agent.conf`).
const TRIES: u8 = 3;

/// One command.
#[derive(arbitrary::Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `install` of update `n % 4`: 0 full v1, 1 full v2, 2 delta v1 to v2, 3 full v3.
    Install(u8),
    /// `deploy os/main`.
    Deploy,
    /// `mark-good`.
    MarkGood,
    /// `rollback`.
    Rollback,
    /// `simulate-boot`.
    SimulateBoot,
    /// `cleanup`.
    Cleanup,
}

struct Fixture {
    _dir: tempfile::TempDir,
    updates: [PathBuf; 4],
    commits: [ObjectId; 3],
    /// The empty kernel command line the agent reads instead of this machine's.
    _cmdline: PathBuf,
}

fn tree(v: usize) -> MemDir {
    let file = |c: &str| MemNode::File {
        mode: 0o644,
        content: c.as_bytes().to_vec(),
        xattrs: vec![],
    };
    MemDir::new()
        .with(b"version", file(&format!("{v}\n")))
        .with(b"common", file("same in every version\n"))
        .with(
            b"etc",
            MemNode::Dir(MemDir::new().with(b"hostname", file(&format!("ecu-{}\n", v % 2)))),
        )
        .with(
            b"link",
            MemNode::Symlink {
                target: b"version".to_vec(),
            },
        )
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = crate::scratch_dir();
        let repo = Repo::init(&dir.path().join("build")).unwrap();
        let commits: Vec<ObjectId> = (1..=3)
            .map(|v| {
                let (root, _) = build_mem(&repo, &tree(v)).unwrap();
                let meta = CommitMeta {
                    version: v.to_string(),
                    subject: String::new(),
                    body: String::new(),
                    timestamp: v as u64,
                };
                repo.commit(REF, root, &meta).unwrap()
            })
            .collect();
        let gen = |from: Option<usize>, to: usize, name: &str| {
            let mut out = Vec::new();
            generate(
                &repo,
                REF,
                from.map(|f| commits[f]),
                &commits[to],
                &GenerateOptions::default(),
                &mut out,
                &mut |_, _| {},
            )
            .unwrap();
            let p = dir.path().join(name);
            fs::write(&p, out).unwrap();
            p
        };
        let updates = [
            gen(None, 0, "v1.update"),
            gen(None, 1, "v2.update"),
            gen(Some(0), 1, "v1-v2.update"),
            gen(None, 2, "v3.update"),
        ];
        // The booted slot comes from S/run/booted only, never from this machine's kernel.
        let cmdline = dir.path().join("cmdline");
        fs::write(&cmdline, "").unwrap();
        std::env::set_var(deploy::CMDLINE_VAR, &cmdline);
        std::env::remove_var(deploy::BOOTED_SLOT_VAR);
        Fixture {
            updates,
            commits: [commits[0], commits[1], commits[2]],
            _cmdline: cmdline,
            _dir: dir,
        }
    })
}

/// The reference model of one slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ModelSlot {
    /// Version held (1, 2, 3), `None` when empty.
    pub version: Option<usize>,
    /// Priority: 0 (disabled), 1, 2.
    pub priority: u8,
    /// Marked good.
    pub good: bool,
    /// Tries left.
    pub tries: u8,
}

/// The reference model: two slots and the running one (`None` before provisioning).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Model {
    /// Slot A, slot B.
    pub slots: [ModelSlot; 2],
    /// The slot running.
    pub booted: Option<Slot>,
}

fn ix(s: Slot) -> usize {
    match s {
        Slot::A => 0,
        _ => 1,
    }
}

impl Model {
    fn slot(&self, s: Slot) -> &ModelSlot {
        &self.slots[ix(s)]
    }

    fn slot_mut(&mut self, s: Slot) -> &mut ModelSlot {
        &mut self.slots[ix(s)]
    }

    /// Higher priority first, A on a tie.
    fn order(&self) -> [Slot; 2] {
        if self.slot(Slot::B).priority > self.slot(Slot::A).priority {
            [Slot::B, Slot::A]
        } else {
            [Slot::A, Slot::B]
        }
    }

    /// `s` first: priority 2, the other 1 (or 0 when it had 0).
    fn make_first(&mut self, s: Slot) {
        self.slot_mut(s).priority = 2;
        let o = self.slot_mut(s.other());
        o.priority = o.priority.min(1);
    }

    /// Which slot the bootloader takes next, and whether it uses a try.
    pub fn next_boot(&self) -> (Slot, bool) {
        for s in self.order() {
            let m = self.slot(s);
            if m.priority > 0 && m.good {
                return (s, false);
            }
            if m.priority > 0 && m.tries > 0 {
                return (s, true);
            }
        }
        (self.order()[1], false)
    }

    fn boot(&mut self) -> Slot {
        let (s, try_used) = self.next_boot();
        if try_used {
            self.slot_mut(s).tries -= 1;
        }
        self.booted = Some(s);
        s
    }

    fn provision(&mut self, v: usize) {
        self.slots = [
            ModelSlot {
                version: Some(v),
                priority: 2,
                good: true,
                tries: 0,
            },
            ModelSlot::default(),
        ];
        self.booted = Some(Slot::A);
    }

    fn stage(&mut self, s: Slot, v: usize) {
        *self.slot_mut(s) = ModelSlot {
            version: Some(v),
            priority: self.slot(s).priority,
            good: false,
            tries: TRIES,
        };
        self.make_first(s);
    }

    fn mark_good(&mut self, s: Slot) {
        let m = self.slot_mut(s);
        m.good = true;
        m.tries = 0;
        self.make_first(s);
    }

    fn rollback(&mut self) {
        let (abandon, _) = self.next_boot();
        let other = abandon.other();
        let o = *self.slot(other);
        if o.priority == 0 && !o.good && o.tries == 0 {
            return;
        }
        *self.slot_mut(abandon) = ModelSlot {
            version: self.slot(abandon).version,
            ..ModelSlot::default()
        };
        let o = self.slot_mut(other);
        o.priority = o.priority.max(1);
    }
}

fn version_of(commits: &[ObjectId; 3], c: &ObjectId) -> usize {
    commits
        .iter()
        .position(|x| x == c)
        .map(|i| i + 1)
        .unwrap_or_else(|| panic!("commit {c} is none of the fixture's"))
}

fn real_state(root: &Path) -> Option<BootState> {
    let cfg = agent_linux::bootcfg::BootConfig::load(root).unwrap();
    match env::read(&cfg).unwrap() {
        EnvContent::Ready(_, st) => Some(*st),
        _ => None,
    }
}

/// Checks the model against the sysroot at `root` (see the module docs).
fn agree(model: &Model, root: &Path, commits: &[ObjectId; 3], what: &str) {
    let Some(st) = real_state(root) else {
        assert_eq!(model.booted, None, "{what}: the boot state is gone");
        return;
    };
    for s in Slot::ALL {
        let name = st.slot(s).name;
        let real = (!name.is_empty()).then(|| {
            let (c, _) = deploy::parse_deployment_name(name.as_str())
                .unwrap_or_else(|| panic!("{what}: slot {s} holds {name:?}"));
            version_of(commits, &c)
        });
        assert_eq!(
            real,
            model.slot(s).version,
            "{what}: slot {s}; model {model:?}, real {st:?}"
        );
    }
    assert_eq!(
        st.decide().slot,
        model.next_boot().0,
        "{what}: next boot; model {model:?}, real {st:?}"
    );
    // What runs is on disk, whole.
    let booted = model.booted.expect("a boot state means a booted slot");
    let name = st.slot(booted).name;
    let (c, _) = deploy::parse_deployment_name(name.as_str()).unwrap();
    let repo = Repo::open(&root.join("repo")).unwrap();
    let r = deploy::verify(&repo, &c, &root.join("deploy").join(name.as_str()))
        .unwrap_or_else(|e| panic!("{what}: the running deployment {name}: {e}"));
    assert!(
        r.ok(),
        "{what}: the running deployment {name}: {:?}",
        r.problems
    );
}

/// What a run reached (for the seed test).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Reached {
    /// Commands that succeeded.
    pub ok: usize,
    /// Commands refused.
    pub refused: usize,
    /// Boots into a staged deployment.
    pub trial_boots: usize,
}

/// Runs `ops` (at most 24) on a fresh sysroot, checking the model after each.
pub fn run(ops: &[Op]) -> Reached {
    let f = fixture();
    let dir = crate::scratch_dir();
    let root = dir.path().join("sysroot");
    let mut model = Model::default();
    let mut reached = Reached::default();
    // The fixture's updates are unsigned: signatures are the installer's concern, fuzzed
    // by installer_mutated; here they would only hide the commands behind a refusal.
    let unsigned = InstallOptions {
        allow_unsigned: true,
        ..InstallOptions::default()
    };
    for (i, op) in ops.iter().take(24).enumerate() {
        let what = format!("step {i} ({op:?})");
        let d = Deployer::open_or_create(&root, &Options::default()).unwrap();
        let ok = match *op {
            Op::Install(n) => {
                let mut input = fs::File::open(&f.updates[n as usize % 4]).unwrap();
                d.install(&mut input, &unsigned, &mut |_| {}).map(Some)
            }
            Op::Deploy => d.deploy(REF).map(Some),
            Op::MarkGood => d.mark_good().map(|r| {
                let b = model.booted.expect("mark-good succeeded unprovisioned");
                assert_eq!(r.slot, b.to_string(), "{what}");
                model.mark_good(b);
                None
            }),
            Op::Rollback => d.rollback().map(|_| {
                model.rollback();
                None
            }),
            Op::SimulateBoot => d.simulate_boot().map(|r| {
                let (s, try_used) = model.next_boot();
                assert_eq!(r.slot, s.to_string(), "{what}: booted; model {model:?}");
                if model.slot(s).version.is_some() {
                    assert_eq!(
                        r.verified,
                        Some(true),
                        "{what}: booted a damaged deployment"
                    );
                }
                reached.trial_boots += usize::from(try_used);
                model.boot();
                None
            }),
            Op::Cleanup => d.cleanup().map(|_| None),
        };
        match ok {
            Ok(Some(report)) => {
                let v = version_of(&f.commits, &ObjectId::from_hex(&report.commit).unwrap());
                match report.action.as_str() {
                    "provisioned" => {
                        assert_eq!(model.booted, None, "{what}: provisioned twice");
                        model.provision(v);
                    }
                    "staged" => {
                        let b = model.booted.expect("staged unprovisioned");
                        assert_eq!(report.slot, b.other(), "{what}");
                        model.stage(b.other(), v);
                    }
                    "unchanged" => {
                        let (s, _) = model.next_boot();
                        assert_eq!(model.slot(s).version, Some(v), "{what}: unchanged");
                    }
                    a => panic!("{what}: action {a}"),
                }
                reached.ok += 1;
            }
            Ok(None) => reached.ok += 1,
            Err(e) => {
                assert!(!e.to_string().is_empty());
                reached.refused += 1;
            }
        }
        agree(&model, &root, &f.commits, &what);
    }
    reached
}

/// The bytes `arbitrary` decodes (as `Vec<Op>`, taking the rest) into `ops`: per op a `1`
/// (another element), the variant as a LE `u32` chosen so that `(x * 6) >> 32` is its
/// index, and `Install`'s byte. For the seeds; the seed test decodes them back.
pub fn encode(ops: &[Op]) -> Vec<u8> {
    let mut out = Vec::new();
    for op in ops {
        let (k, field) = match *op {
            Op::Install(n) => (0u64, Some(n)),
            Op::Deploy => (1, None),
            Op::MarkGood => (2, None),
            Op::Rollback => (3, None),
            Op::SimulateBoot => (4, None),
            Op::Cleanup => (5, None),
        };
        let x = (k << 32).div_ceil(6);
        out.push(1);
        out.extend_from_slice(&(x as u32).to_le_bytes());
        out.extend(field);
    }
    out
}
