//! GRUB env block interop with the real `grub-editenv`.

mod common;

use std::path::PathBuf;
use std::process::Command;

use bootloader_hooks::{BootState, Operation, RaucConfig, Scheme, Slot, SlotName};
use common::host::{Backend, BootEnv};
use common::*;

fn editenv(file: &std::path::Path, args: &[&str]) {
    run(Command::new("grub-editenv").arg(file).args(args));
}

/// A grubenv that `grub-editenv create` made, set with `vars`, in a fresh directory (kept
/// while the test runs); none when grub-editenv is missing (the tool rule, named `test`).
fn grubenv_with(test: &str, vars: &[&str]) -> Option<(tempfile::TempDir, PathBuf)> {
    if !have("grub-editenv", test) {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("grubenv");
    editenv(&f, &["create"]);
    editenv(&f, &[&["set"], vars].concat());
    Some((dir, f))
}

#[test]
fn grub_editenv_and_ours_agree() {
    let Some((_dir, f)) = grubenv_with(
        "grub_editenv_and_ours_agree",
        &[
            "saved_entry=linux",
            "ECU_A_PRIO=2",
            "ECU_A_TRIES=0",
            "ECU_A_OK=1",
            "ECU_B_PRIO=0",
            "ECU_B_TRIES=0",
            "ECU_B_OK=0",
            "msg=back\\slash",
            "nl=line1\nline2",
        ],
    ) else {
        return;
    };
    let env = BootEnv::new(Backend::grub(&f), Scheme::Native);
    assert_eq!(
        env.load().unwrap(),
        BootState::initial(Slot::A, SlotName::EMPTY)
    );

    let applied = env
        .apply(&Operation::Stage {
            slot: Slot::B,
            tries: 9,
            name: SlotName::from_str("os/0123abcd.0").unwrap(),
        })
        .unwrap();
    assert!(applied.changed);
    assert_eq!(std::fs::metadata(&f).unwrap().len(), 1024);
    let listed = grub_list(&f);
    let get = |k: &str| {
        listed
            .iter()
            .find(|(kk, _)| kk == k)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(get("ECU_B_TRIES").as_deref(), Some("9"));
    assert_eq!(get("ECU_B_PRIO").as_deref(), Some("2"));
    assert_eq!(get("ECU_A_PRIO").as_deref(), Some("1"));
    assert_eq!(get("ECU_B_NAME").as_deref(), Some("os/0123abcd.0"));
    assert_eq!(get("ECU_REV").as_deref(), Some("1"));
    assert_eq!(get("saved_entry").as_deref(), Some("linux"));
    assert_eq!(get("msg").as_deref(), Some("back\\slash"));
    // the value with a newline survived our rewrite
    assert_eq!(get("nl").as_deref(), Some("line1\nline2"));
    let raw = std::fs::read(&f).unwrap();
    assert!(raw.windows(14).any(|w| w == b"nl=line1\\\nline"));
    // first var order is preserved (saved_entry was first)
    assert_eq!(listed[0].0, "saved_entry");

    // grub-editenv changes a value; we read it
    editenv(&f, &["set", "ECU_B_TRIES=8"]);
    let st = env.load().unwrap();
    assert_eq!(st.slot(Slot::B).tries_left, 8);
    assert_eq!(st.decide().slot, Slot::B);
    // mark good twice: the second writes nothing
    assert!(
        env.apply(&Operation::MarkGood { slot: Slot::B })
            .unwrap()
            .changed
    );
    let before = std::fs::read(&f).unwrap();
    assert!(
        !env.apply(&Operation::MarkGood { slot: Slot::B })
            .unwrap()
            .changed
    );
    assert_eq!(std::fs::read(&f).unwrap(), before);
    assert!(grub_list(&f).contains(&("ECU_B_OK".into(), "1".into())));
}

#[test]
fn overflow_is_refused_and_file_untouched() {
    if !have("grub-editenv", "grub_overflow") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("grubenv");
    let env = BootEnv::new(Backend::grub(&f), Scheme::Native);
    env.init(&BootState::initial(Slot::A, SlotName::EMPTY))
        .unwrap();
    let big = format!("big={}", "x".repeat(700));
    editenv(&f, &["set", &big]);
    let before = std::fs::read(&f).unwrap();
    let err = env
        .apply(&Operation::Stage {
            slot: Slot::B,
            tries: 3,
            name: SlotName::from_str(&"n".repeat(128)).unwrap(),
        })
        .unwrap_err()
        .to_string();
    assert!(err.contains("block holds 1024"), "{err}");
    assert_eq!(std::fs::read(&f).unwrap(), before);
    // grub-editenv itself still lists it
    assert!(grub_list(&f).iter().any(|(k, _)| k == "big"));
}

#[test]
fn rauc_grub_variables_from_grub_editenv() {
    // what `rauc status mark-active B` leaves: B first, OK, not tried
    let Some((_dir, f)) = grubenv_with(
        "rauc_grub",
        &["ORDER=B A", "A_OK=1", "A_TRY=0", "B_OK=1", "B_TRY=0"],
    ) else {
        return;
    };
    let env = BootEnv::new(Backend::grub(&f), Scheme::Rauc(RaucConfig::default()));
    let st = env.load().unwrap();
    assert_eq!(st.decide().slot, Slot::B);
    // the boot as RAUC's grub.conf does it: B_TRY=1
    assert!(env.apply(&Operation::Boot).unwrap().changed);
    let listed = grub_list(&f);
    assert!(listed.contains(&("B_OK".into(), "1".into())));
    assert!(listed.contains(&("B_TRY".into(), "1".into())));
    let st = env.load().unwrap();
    assert_eq!(st.slot(Slot::B).tries_left, 0);
    assert_eq!(st.decide().slot, Slot::A, "unconfirmed B falls back to A");
}

#[test]
fn bad_header_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("grubenv");
    std::fs::write(&f, b"# not a grub env\n#####").unwrap();
    let env = BootEnv::new(Backend::grub(&f), Scheme::Native);
    let err = env.load().unwrap_err().to_string();
    assert!(err.contains("not a GRUB environment block"), "{err}");
}
