//! Power loss during `install`, `deploy`, `mark-good`, `rollback` and `cleanup`: the real
//! `ecu-agent` is killed (SIGABRT, nothing flushed) at its 1st, 2nd, ... interruption point
//! (every write, fsync, rename, unlink, mkdir of `agent_linux::fsops`) until a run completes,
//! and the power-loss model (`agent_linux::fsops::powerloss`, docs/POWERLOSS.md) first undoes
//! whatever was not durable: unsynced contents, names whose directory was not fsynced.
//! After each interruption:
//! - the bootloader (the decision of `bootloader-hooks` on the real environment) boots a
//!   deployment that is complete: its files match its commit;
//! - every commit in the store is whole (its tree and every object under it are present);
//! - the command run again (same booted slot) succeeds, and the end state is the intended one.

mod deploy_common;

use deploy_common::*;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use agent_core::object::ObjectKind;
use agent_linux::bootcfg::BootConfig;
use agent_linux::deploy::{self, EnvContent};
use agent_linux::floor;
use agent_linux::repo::Repo;
use bootloader_hooks::Slot;

const S: &str = "sysroot";

fn copy_tree(from: &Path, to: &Path) {
    let _ = fs::remove_dir_all(to);
    let st = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(st.success(), "cp -a {} {}", from.display(), to.display());
}

/// Every complete commit in the store has its whole tree, and every dirtree present has
/// everything under it (the bottom-up invariant a delta's `Reuse` relies on), as the next
/// user of the repository sees it: a dirtree removal cut short leaves its journal
/// (`R/gc-dirtrees`), which taking the repository lock finishes before anything else.
fn check_store(repo: &Repo) {
    if repo.path().join(agent_linux::repo::GC_JOURNAL).exists() {
        drop(repo.lock().unwrap());
        assert!(!repo.path().join(agent_linux::repo::GC_JOURNAL).exists());
    }
    for sub in fs::read_dir(repo.path().join("objects")).unwrap() {
        for e in fs::read_dir(sub.as_ref().unwrap().path()).unwrap() {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            let Some(rest) = name.strip_suffix(".dirtree") else {
                continue;
            };
            let dir = sub
                .as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .into_owned();
            let t = agent_core::object::ObjectId::from_hex(&format!("{dir}{rest}")).unwrap();
            for entry in repo.read_dirtree(&t).unwrap() {
                let (kind, id) = match entry {
                    agent_linux::repo::OwnedEntry::File { id, .. } => (ObjectKind::File, id),
                    agent_linux::repo::OwnedEntry::Dir { tree, meta, .. } => {
                        assert!(
                            repo.has_object(ObjectKind::DirMeta, &meta).unwrap(),
                            "dirtree {t} present but its dirmeta {meta} is not"
                        );
                        (ObjectKind::DirTree, tree)
                    }
                };
                assert!(
                    repo.has_object(kind, &id).unwrap(),
                    "dirtree {t} present but its {kind} {id} is not"
                );
            }
        }
    }
    for c in repo.list_commits().unwrap() {
        // Every object present, well-formed and hashing to its name.
        repo.fsck_commit(&c)
            .unwrap_or_else(|e| panic!("commit {c} fails fsck: {e}"));
        let set = repo
            .reachable(&c)
            .unwrap_or_else(|e| panic!("commit {c} is not whole: {e}"));
        for f in &set.files {
            assert!(
                repo.has_object(ObjectKind::File, f).unwrap(),
                "commit {c}: file object {f} missing"
            );
            repo.open_file_object(f)
                .unwrap_or_else(|e| panic!("commit {c}: file object {f}: {e}"));
        }
        for m in &set.dirmetas {
            repo.read_metadata_object(ObjectKind::DirMeta, m)
                .unwrap_or_else(|e| panic!("commit {c}: dirmeta {m}: {e}"));
        }
    }
}

/// Boots the sysroot as the bootloader would and checks the deployment it boots. Returns the
/// slot, or `None` when the sysroot has no boot state (an interrupted provisioning).
fn boot_and_verify(root: &Path, what: &str) -> Option<Slot> {
    let cfg = BootConfig::load(root).unwrap();
    let st = match agent_linux::deploy::env::read(&cfg).unwrap() {
        EnvContent::Ready(_, st) => *st,
        _ => return None,
    };
    let _ = st;
    let (slot, _) = boot(root);
    let st = match agent_linux::deploy::env::read(&cfg).unwrap() {
        EnvContent::Ready(_, st) => *st,
        _ => panic!("{what}: the boot state vanished"),
    };
    let name = st.slot(slot).name;
    let unowned = Slot::ALL.iter().all(|s| st.slot(*s).name.is_empty());
    if name.as_str() == deploy::ADOPTED_NAME || unowned {
        // The system that ran before the agent adopted (or before it adopts) the bootloader's
        // environment: not the agent's to check.
        return Some(slot);
    }
    let (commit, _) = deploy::parse_deployment_name(name.as_str())
        .unwrap_or_else(|| panic!("{what}: slot {slot} names {name:?}"));
    let repo = Repo::open(&root.join("repo")).unwrap();
    let r = deploy::verify(&repo, &commit, &root.join("deploy").join(name.as_str()))
        .unwrap_or_else(|e| panic!("{what}: booted deployment {name}: {e}"));
    assert!(
        r.ok(),
        "{what}: booted deployment {name} is damaged: {:?}",
        r.problems
    );
    assert!(r.files > 0, "{what}: empty deployment");
    Some(slot)
}

struct Case<'a> {
    name: &'a str,
    /// The sysroot before the command (never modified).
    template: PathBuf,
    args: Vec<String>,
    booted: Option<Slot>,
    /// Checks the end state after a successful run (or rerun).
    check: &'a dyn Fn(&Path),
}

/// Runs the case at every interruption point; returns how many points there were.
fn run_case(lab: &Lab, case: &Case<'_>) -> u64 {
    run_case_with(lab, case, &[])
}

/// [`run_case`] with more variables for the interrupted runs (the fault knobs).
fn run_case_with(lab: &Lab, case: &Case<'_>, fault_env: &[(&str, &str)]) -> u64 {
    let d = lab.path();
    let work = d.join("work");
    fs::create_dir_all(&work).unwrap();
    let booted = case.booted.map(|s| s.as_str()).unwrap_or("");
    let args: Vec<&str> = case.args.iter().map(String::as_str).collect();
    // The anti-rollback floor: never lower than before, at every cut the old value or the one
    // a complete run leaves (known once a run completes).
    let old_floor = floor::read(&case.template).unwrap();
    // Adopting a bootloader's environment: a boot state exists before the repository does.
    let adopting = case.name.contains("adopt");
    assert!(old_floor > 0, "{}: the floor must be in place", case.name);
    let mut floors_seen: Vec<(String, u64)> = Vec::new();
    let mut n = 1u64;
    loop {
        copy_tree(&case.template, &work.join(S));
        let n_s = n.to_string();
        let mut envs = vec![("ECU_AGENT_FAULT_AT", n_s.as_str())];
        envs.extend_from_slice(fault_env);
        if !booted.is_empty() {
            envs.push(("ECU_AGENT_BOOTED_SLOT", booted));
        }
        let r = agent_env(&work, &args, &envs);
        if !r.killed {
            assert!(
                r.ok,
                "{}: run with {n} points allowed failed:\n{}{}",
                case.name, r.stdout, r.stderr
            );
            (case.check)(&work.join(S));
            let end = floor::read(&work.join(S)).unwrap();
            assert!(end >= old_floor, "{}: the floor went down", case.name);
            for (what, f) in &floors_seen {
                assert!(
                    *f == old_floor || *f == end,
                    "{what}: the floor is {f}, neither the old {old_floor} nor the new {end}"
                );
            }
            return n - 1;
        }
        assert!(
            r.stderr.contains("killed at point"),
            "{}: died without reaching a point: {}",
            case.name,
            r.stderr
        );
        let what = format!("{} interrupted at point {n}", case.name);
        // Power comes back: the bootloader boots a complete deployment.
        let crashed = d.join("crashed");
        copy_tree(&work.join(S), &crashed);
        let f = floor::read(&crashed)
            .unwrap_or_else(|e| panic!("{what}: the floor cannot be read: {e}"));
        assert!(f >= old_floor, "{what}: the floor went down to {f}");
        floors_seen.push((what.clone(), f));
        match boot_and_verify(&crashed, &what) {
            Some(_) if !adopting => check_store(&Repo::open(&crashed.join("repo")).unwrap()),
            // Not provisioned (or adopted) yet: the repository may not even be initialised.
            _ => {
                if let Ok(repo) = Repo::open(&crashed.join("repo")) {
                    check_store(&repo);
                }
            }
        }
        // The command run again succeeds and reaches the intended state.
        let mut envs = Vec::new();
        if !booted.is_empty() {
            envs.push(("ECU_AGENT_BOOTED_SLOT", booted));
        }
        let r = agent_env(&work, &args, &envs);
        assert!(r.ok, "{what}: rerun failed:\n{}{}", r.stdout, r.stderr);
        (case.check)(&work.join(S));
        check_store(&Repo::open(&work.join(S).join("repo")).unwrap());
        floors_seen.push((
            format!("{what}, run again"),
            floor::read(&work.join(S)).unwrap(),
        ));
        n += 1;
        assert!(n < 5000, "{}: no end in sight", case.name);
    }
}

fn next_boot_is(root: &Path, version: &str, lab: &Lab) {
    let st = status(root.parent().unwrap(), S, Slot::A);
    let next = st["next_boot"].as_str().unwrap().to_string();
    let dep = deployment_of(&st, &next);
    assert_eq!(dep["commit"], lab.commit(version), "{st}");
    assert_eq!(dep["present"], true, "{st}");
    let repo = Repo::open(&root.join("repo")).unwrap();
    let r = deploy::verify(
        &repo,
        &agent_core::object::ObjectId::from_hex(lab.commit(version)).unwrap(),
        &root.join("deploy").join(dep["name"].as_str().unwrap()),
    )
    .unwrap();
    assert!(r.ok(), "{:?}", r.problems);
    // Nothing but the two live deployments is left in S/deploy.
    let live: Vec<String> = st["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap().to_string())
        .collect();
    for e in fs::read_dir(root.join("deploy")).unwrap() {
        let n = e.unwrap().file_name().to_string_lossy().into_owned();
        let n = n.strip_suffix(".origin").unwrap_or(&n).to_string();
        assert!(
            live.contains(&n),
            "leftover {n} in S/deploy (live: {live:?})"
        );
    }
}

fn sysroot_state(lab: &Lab, conf: &str, name: &str, steps: &dyn Fn(&Path)) -> PathBuf {
    let dir = lab.path().join(format!("tpl-{name}"));
    fs::create_dir_all(dir.join(S)).unwrap();
    if !conf.is_empty() {
        fs::write(dir.join(S).join("agent.conf"), conf).unwrap();
    }
    // Signed updates only, by the lab's key, and a non-zero anti-rollback floor.
    lab.trust(&format!("tpl-{name}/{S}"));
    agent_linux::floor::raise(&dir.join(S), 1).unwrap();
    steps(&dir);
    dir.join(S)
}

#[test]
fn power_loss_at_every_point() {
    power_loss("", None);
}

#[test]
fn power_loss_grub_env() {
    power_loss(
        "backend = grub\n",
        Some(&["install (stage", "mark-good", "rollback (from"]),
    );
}

#[test]
fn power_loss_single_uboot_env() {
    power_loss(
        "backend = uboot\n",
        Some(&["install (stage", "mark-good", "rollback (from"]),
    );
}

/// The model is not vacuous: with the fsyncs of `S/deploy` left out (a test-only knob of
/// `fsops`), a power loss after the boot environment names the new deployment loses the
/// deployment's directory, and the bootloader would boot a deployment that is not there. With
/// the page cache kept (the model off), the same runs pass: only the model sees the loss.
#[test]
fn power_loss_adopting_a_mender_environment() {
    let shm = Path::new("/dev/shm");
    let base = (shm.is_dir() && tempfile::tempdir_in(shm).is_ok()).then_some(shm);
    let lab = Lab::with_security_versions(&[("9", 1)], base);
    let full9 = lab.update(None, "9");
    let owned = sysroot_state(&lab, "scheme = mender\n", "mender", &|t| {
        bootloader_wrote_env(
            &t.join(S),
            &[
                ("mender_boot_part", "2"),
                ("upgrade_available", "0"),
                ("bootcount", "0"),
                ("bootlimit", "1"),
            ],
        );
    });
    let s = |x: &str| x.to_string();
    let lab_ref = &lab;
    let case = Case {
        name: "install (adopt a Mender environment)",
        template: owned,
        args: vec![s("install"), s("--sysroot"), s(S), full9],
        booted: Some(Slot::A),
        check: &|r| {
            next_boot_is(r, "9", lab_ref);
            let st = status(r.parent().unwrap(), S, Slot::A);
            assert_eq!(
                deployment_of(&st, "A")["name"],
                deploy::ADOPTED_NAME,
                "{st}"
            );
            assert!(!r.join("deploy").join(deploy::PROVISIONING_MARKER).exists());
        },
    };
    let points = run_case(&lab, &case);
    assert!(points >= 3, "only {points} interruption points");
    eprintln!("power loss, adopting a Mender environment: {points} interruption points");
}

#[test]
fn power_loss_model_loses_what_a_missing_directory_fsync_leaves() {
    let shm = Path::new("/dev/shm");
    let base = (shm.is_dir() && tempfile::tempdir_in(shm).is_ok()).then_some(shm);
    let lab = Lab::with_security_versions(&[("9", 1), ("9.1", 2)], base);
    let full9 = lab.update(None, "9");
    let delta = lab.update(Some("9"), "9.1");
    let provisioned = sysroot_state(&lab, "", "prov", &|t| {
        ok(t, &["install", "--sysroot", S, &full9], &[]);
    });
    let s = |x: &str| x.to_string();
    let lab_ref = &lab;
    let case = Case {
        name: "install (stage a delta, S/deploy never fsynced)",
        template: provisioned,
        args: vec![s("install"), s("--sysroot"), s(S), delta],
        booted: Some(Slot::A),
        check: &|r| next_boot_is(r, "9.1", lab_ref),
    };
    let skip = ("ECU_AGENT_FAULT_SKIP_FSYNC_DIR", "deploy");
    let points = run_case_with(&lab, &case, &[skip, ("ECU_AGENT_FAULT_KEEP_CACHE", "1")]);
    assert!(points > 10, "{points}");
    eprintln!("expected below: the model's loss caught by the checks (a panic message)");
    let lost = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        run_case_with(&lab, &case, &[skip])
    }))
    .expect_err("the model kept a deployment whose directory was never fsynced");
    let msg = lost.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(
        msg.contains("booted deployment") && msg.contains("No such file"),
        "{msg}"
    );
}

/// Runs the cases whose names start with one of `only` (all without), on sysroots with
/// `agent.conf` = `conf` (the defaults when empty).
fn power_loss(conf: &str, only: Option<&[&str]>) {
    // On a tmpfs when there is one: fsync costs nothing there, and thousands of runs fsync.
    // (What an abort cannot show, losing unsynced data, is argued in agent_linux::fsops.)
    let shm = Path::new("/dev/shm");
    let base = (shm.is_dir() && tempfile::tempdir_in(shm).is_ok()).then_some(shm);
    let lab = Lab::with_security_versions(&[("9", 1), ("9.1", 2), ("9.2", 3)], base);
    let d = lab.path().to_path_buf();
    let full9 = lab.update(None, "9");
    let delta = lab.update(Some("9"), "9.1");
    // The delta carries a patch record (the library renamed with its version is patched from
    // the previous one) and reuse-entries records (format version 5).
    assert_eq!(
        fs::read(&delta).unwrap()[8..10],
        [5, 0],
        "the delta has no reuse-entries record"
    );
    let full92 = lab.update(None, "9.2");
    let a = [("ECU_AGENT_BOOTED_SLOT", "A")];
    let b = [("ECU_AGENT_BOOTED_SLOT", "B")];
    let s = |x: &str| x.to_string();

    let empty = sysroot_state(&lab, conf, "empty", &|_| {});
    let provisioned = sysroot_state(&lab, conf, "prov", &|t| {
        ok(t, &["install", "--sysroot", S, &full9], &[]);
    });
    let trial_b = sysroot_state(&lab, conf, "trial", &|t| {
        ok(t, &["install", "--sysroot", S, &full9], &[]);
        ok(t, &["install", "--sysroot", S, &delta], &a);
        boot(&t.join(S));
    });
    let in_store = sysroot_state(&lab, conf, "store", &|t| {
        ok(t, &["install", "--sysroot", S, &full9], &[]);
        ok(t, &["apply-offline", "--sysroot", S, &delta], &[]);
    });
    let two_good = sysroot_state(&lab, conf, "twogood", &|t| {
        ok(t, &["install", "--sysroot", S, &full9], &[]);
        ok(t, &["install", "--sysroot", S, &delta], &a);
        boot(&t.join(S));
        ok(t, &["mark-good", "--sysroot", S], &b);
    });
    let garbage = sysroot_state(&lab, conf, "garbage", &|t| {
        ok(t, &["install", "--sysroot", S, &full9], &[]);
        ok(t, &["install", "--sysroot", S, &delta], &a);
        boot(&t.join(S));
        ok(t, &["mark-good", "--sysroot", S], &b);
        ok(t, &["install", "--sysroot", S, &full92], &b);
        boot(&t.join(S));
        ok(t, &["mark-good", "--sysroot", S], &a);
        fs::create_dir_all(t.join(S).join("deploy/.tmp-leftover/etc")).unwrap();
        fs::write(t.join(S).join("deploy/.tmp-leftover/etc/x"), b"x").unwrap();
    });

    let lab_ref = &lab;
    let cases = [
        Case {
            name: "install (provision an empty sysroot)",
            template: empty,
            args: vec![s("install"), s("--sysroot"), s(S), full9.clone()],
            booted: None,
            check: &|r| next_boot_is(r, "9", lab_ref),
        },
        Case {
            name: "install (stage a delta next to the booted system)",
            template: provisioned.clone(),
            args: vec![s("install"), s("--sysroot"), s(S), delta.clone()],
            booted: Some(Slot::A),
            check: &|r| next_boot_is(r, "9.1", lab_ref),
        },
        Case {
            name: "install (replace the rollback deployment)",
            template: two_good.clone(),
            args: vec![s("install"), s("--sysroot"), s(S), full92.clone()],
            booted: Some(Slot::B),
            check: &|r| next_boot_is(r, "9.2", lab_ref),
        },
        Case {
            name: "deploy",
            template: in_store,
            args: vec![s("deploy"), s("--sysroot"), s(S), s("os/main")],
            booted: Some(Slot::A),
            check: &|r| next_boot_is(r, "9.1", lab_ref),
        },
        Case {
            name: "mark-good",
            template: trial_b.clone(),
            args: vec![s("mark-good"), s("--sysroot"), s(S)],
            booted: Some(Slot::B),
            check: &|r| {
                let st = status(r.parent().unwrap(), S, Slot::B);
                assert_eq!(st["booted_good"], true, "{st}");
                // Raised to 9.1's security version by the mark-good (or its rerun).
                assert_eq!(st["security_floor"], 2, "{st}");
                next_boot_is(r, "9.1", lab_ref);
            },
        },
        Case {
            name: "rollback (from a trial)",
            template: trial_b,
            args: vec![s("rollback"), s("--sysroot"), s(S)],
            booted: Some(Slot::B),
            check: &|r| next_boot_is(r, "9", lab_ref),
        },
        Case {
            name: "rollback (to the previous good deployment)",
            template: two_good,
            args: vec![s("rollback"), s("--sysroot"), s(S)],
            booted: Some(Slot::B),
            check: &|r| next_boot_is(r, "9", lab_ref),
        },
        Case {
            name: "cleanup",
            template: garbage,
            args: vec![s("cleanup"), s("--sysroot"), s(S)],
            booted: Some(Slot::A),
            check: &|r| {
                next_boot_is(r, "9.2", lab_ref);
                let repo = Repo::open(&r.join("repo")).unwrap();
                assert_eq!(repo.list_commits().unwrap().len(), 2);
            },
        },
    ];
    let mut report = String::new();
    let mut total = 0;
    for case in &cases {
        if only.is_some_and(|o| !o.iter().any(|p| case.name.starts_with(p))) {
            continue;
        }
        let t = std::time::Instant::now();
        let points = run_case(&lab, case);
        assert!(
            points >= 3,
            "{}: only {points} interruption points",
            case.name
        );
        total += points;
        report.push_str(&format!(
            "  {:<52} {points:>4} interruption points ({:.1} s)\n",
            case.name,
            t.elapsed().as_secs_f64()
        ));
    }
    let _ = d;
    let backend = if conf.is_empty() {
        "default (uboot-redundant)"
    } else {
        conf.trim()
    };
    eprintln!("power loss, {backend}: {total} interruption points tried\n{report}");
}
