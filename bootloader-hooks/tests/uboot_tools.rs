//! U-Boot env interop with the real tools: mkenvimage, fw_printenv, fw_setenv (libubootenv).

mod common;

use bootloader_hooks::uboot_env::{self, Env, Layout};
use bootloader_hooks::{BootState, Operation, Scheme, Slot, SlotName};
use common::host::{Backend, BootEnv};
use common::*;

const SIZE: usize = 0x4000;

fn native_vars(st: &BootState) -> Vec<(String, String)> {
    let s = |x: u32| format!("{x:x}");
    let mut v = vec![("ECU_REV".to_string(), s(st.revision))];
    for slot in Slot::ALL {
        let p = slot.as_str();
        let ss = st.slot(slot);
        v.push((format!("ECU_{p}_PRIO"), s(ss.priority.into())));
        v.push((format!("ECU_{p}_TRIES"), s(ss.tries_left.into())));
        v.push((format!("ECU_{p}_OK"), s(ss.successful.into())));
        if !ss.name.is_empty() {
            v.push((format!("ECU_{p}_NAME"), ss.name.as_str().to_string()));
        }
    }
    v
}

fn with_extra(mut v: Vec<(String, String)>, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    v.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    v.sort();
    v
}

#[test]
fn single_env_mkenvimage_fw_setenv_and_ours_agree() {
    if !have("mkenvimage", "single_env") || !have("fw_printenv", "single_env") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("env.img");
    // mkenvimage (0xFF padding) with our variables and an unrelated one
    mkenvimage(
        dir.path(),
        &img,
        SIZE,
        false,
        None,
        &[
            ("bootcmd", "run distro_bootcmd"),
            ("ECU_A_PRIO", "2"),
            ("ECU_A_TRIES", "0"),
            ("ECU_A_OK", "1"),
            ("ECU_A_NAME", "c0ffee"),
            ("ECU_B_PRIO", "0"),
            ("ECU_B_TRIES", "0"),
            ("ECU_B_OK", "0"),
        ],
    );
    assert_eq!(std::fs::read(&img).unwrap()[SIZE - 1], 0xFF);
    let env = BootEnv::new(Backend::uboot_single(&img, 0, SIZE), Scheme::Native);
    let st = env.load().unwrap();
    let expected = BootState::initial(Slot::A, SlotName::from_str("c0ffee").unwrap());
    assert_eq!(st, expected);

    // our stage -> fw_printenv sees exactly our variables plus bootcmd
    let cfg = fw_config_single(dir.path(), &img, SIZE);
    let name = SlotName::from_str(&"ab".repeat(32)).unwrap();
    let applied = env
        .apply(&Operation::Stage {
            slot: Slot::B,
            tries: 3,
            name,
        })
        .unwrap();
    assert!(applied.changed);
    let st = env.load().unwrap();
    assert_eq!(
        fw_printenv(&cfg),
        with_extra(native_vars(&st), &[("bootcmd", "run distro_bootcmd")])
    );

    // fw_setenv writes a hex count (as U-Boot's setexpr would) and deletes a variable;
    // the rewrite leaves stale bytes after the terminator
    fw_setenv(&cfg, &[("ECU_B_TRIES", "2"), ("bootcmd", "")]);
    let raw = std::fs::read(&img).unwrap();
    let parsed = Env::parse(&raw, Layout::Single).unwrap();
    assert!(
        raw[4 + parsed.used_len()..].iter().any(|&b| b != 0),
        "fw_setenv left stale bytes after the terminator"
    );
    let st2 = env.load().unwrap();
    assert_eq!(st2.slot(Slot::B).tries_left, 2);
    assert_eq!(st2.slot(Slot::B).name, name);

    // mark good: fw_printenv agrees again; a second mark-good writes nothing
    assert!(
        env.apply(&Operation::MarkGood { slot: Slot::B })
            .unwrap()
            .changed
    );
    let before = std::fs::read(&img).unwrap();
    let again = env.apply(&Operation::MarkGood { slot: Slot::B }).unwrap();
    assert!(!again.changed);
    assert_eq!(std::fs::read(&img).unwrap(), before);
    let st3 = env.load().unwrap();
    assert!(st3.slot(Slot::B).successful);
    assert_eq!(fw_printenv(&cfg), with_extra(native_vars(&st3), &[]));
}

#[test]
fn hex_values_from_setexpr_are_read_as_hex() {
    if !have("fw_setenv", "hex_values") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("env.img");
    let env = BootEnv::new(
        Backend::uboot_single(&img, 0, 0x1000),
        Scheme::Rauc(Default::default()),
    );
    std::fs::write(&img, vec![0u8; 0x1000]).unwrap();
    let cfg = fw_config_single(dir.path(), &img, 0x1000);
    // fw_setenv on a blank image needs defaults; make one with mkenvimage first
    mkenvimage(
        dir.path(),
        &img,
        0x1000,
        false,
        Some(0),
        &[("BOOT_ORDER", "B A")],
    );
    fw_setenv(&cfg, &[("BOOT_A_LEFT", "3"), ("BOOT_B_LEFT", "a")]);
    // RAUC's contrib/uboot.sh tests the counter with `test ${BOOT_B_LEFT} -gt 0`, which reads
    // "a" as 0 (U-Boot 2023.01, base 0): B is skipped (seen in real U-Boot, rauc_uboot.rs)
    let st = env.load().unwrap();
    assert_eq!(st.slot(Slot::B).tries_left, 0);
    assert_eq!(st.slot(Slot::A).tries_left, 3);
    assert_eq!(st.decide().slot, Slot::A);
    // "19" is hex 0x19 for setexpr and 19 for test: ten boots, down to "f"
    fw_setenv(&cfg, &[("BOOT_B_LEFT", "19")]);
    let st = env.load().unwrap();
    assert_eq!(st.slot(Slot::B).tries_left, 10);
    let d = st.decide();
    assert_eq!(d.slot, Slot::B);
    assert_eq!(d.state.slot(Slot::B).tries_left, 9);
    // the crate writes "9" for that state where setexpr leaves "18": both give nine boots
    assert!(
        env.apply(&bootloader_hooks::Operation::Boot)
            .unwrap()
            .changed
    );
    assert!(fw_printenv(&cfg).contains(&("BOOT_B_LEFT".into(), "9".into())));
    fw_setenv(&cfg, &[("BOOT_B_LEFT", "18")]);
    assert_eq!(env.load().unwrap(), d.state);
}

#[test]
fn redundant_env_alternates_with_fw_setenv_and_wraps() {
    if !have("mkenvimage", "redundant_env") || !have("fw_setenv", "redundant_env") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.img");
    let b = dir.path().join("b.img");
    let st0 = BootState::initial(Slot::A, SlotName::from_str("base").unwrap());
    let env = BootEnv::new(Backend::uboot_redundant(&a, 0, &b, 0, SIZE), Scheme::Native);
    // mkenvimage -r for both copies (flag 1 each)
    let vars: Vec<(String, String)> = native_vars(&st0);
    let pairs: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    mkenvimage(dir.path(), &a, SIZE, true, None, &pairs);
    std::fs::copy(&a, &b).unwrap();
    assert_eq!(env.load().unwrap(), st0);
    let cfg = fw_config_redundant(dir.path(), &a, &b, SIZE);
    let flags = || (std::fs::read(&a).unwrap()[4], std::fs::read(&b).unwrap()[4]);

    // ours writes copy 2 with flag 2
    assert!(
        env.apply(&Operation::Stage {
            slot: Slot::B,
            tries: 3,
            name: SlotName::from_str("next").unwrap(),
        })
        .unwrap()
        .changed
    );
    assert_eq!(flags(), (1, 2));
    let st1 = env.load().unwrap();
    assert_eq!(fw_printenv(&cfg), with_extra(native_vars(&st1), &[]));
    // fw_setenv writes copy 1 with flag 3 (a boot used one try)
    fw_setenv(&cfg, &[("ECU_B_TRIES", "2")]);
    assert_eq!(flags(), (3, 2));
    assert_eq!(env.load().unwrap().slot(Slot::B).tries_left, 2);
    // ours writes copy 2 with flag 4
    assert!(
        env.apply(&Operation::MarkGood { slot: Slot::B })
            .unwrap()
            .changed
    );
    assert_eq!(flags(), (3, 4));
    let st2 = env.load().unwrap();
    assert_eq!(fw_printenv(&cfg), with_extra(native_vars(&st2), &[]));

    // wrap: copy 2 at 255, we write copy 1 with flag 0 and fw_printenv takes it (0 beats 255)
    let mut raw_b = std::fs::read(&b).unwrap();
    let env_b = Env::parse(&raw_b, Layout::Redundant).unwrap();
    let mut out = vec![0u8; SIZE];
    uboot_env::write(
        &mut out,
        Layout::Redundant,
        255,
        env_b.vars(),
        &Default::default(),
    )
    .unwrap();
    raw_b.copy_from_slice(&out);
    std::fs::write(&b, &raw_b).unwrap();
    assert!(
        env.apply(&Operation::Stage {
            slot: Slot::A,
            tries: 1,
            name: SlotName::from_str("wrap").unwrap(),
        })
        .unwrap()
        .changed
    );
    assert_eq!(flags(), (0, 255));
    let st3 = env.load().unwrap();
    assert_eq!(st3.slot(Slot::A).name.as_str(), "wrap");
    assert_eq!(fw_printenv(&cfg), with_extra(native_vars(&st3), &[]));
    // and fw_setenv continues from 0 with 1 in copy 2
    fw_setenv(&cfg, &[("ECU_A_TRIES", "0")]);
    assert_eq!(flags(), (0, 1));
    assert_eq!(env.load().unwrap().slot(Slot::A).tries_left, 0);

    // a corrupted copy is survived by both sides
    let mut raw = std::fs::read(&b).unwrap();
    raw[100] ^= 0x55;
    std::fs::write(&b, &raw).unwrap();
    let st4 = env.load().unwrap();
    assert_eq!(st4, st3, "the older intact copy is used");
    assert_eq!(fw_printenv(&cfg), with_extra(native_vars(&st4), &[]));
    // and the next write replaces the corrupted copy
    assert!(
        env.apply(&Operation::MarkGood { slot: Slot::A })
            .unwrap()
            .changed
    );
    assert_eq!(flags(), (0, 1));
    let st5 = env.load().unwrap();
    assert!(st5.slot(Slot::A).successful);
    assert_eq!(fw_printenv(&cfg), with_extra(native_vars(&st5), &[]));
}

#[test]
fn any_env_size_and_overflow_is_refused() {
    if !have("fw_printenv", "env_sizes") {
        return;
    }
    for size in [0x200usize, 0x2000, 0x40000] {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("env.img");
        let env = BootEnv::new(Backend::uboot_single(&img, 0, size), Scheme::Native);
        let st = BootState::initial(Slot::B, SlotName::from_str("x").unwrap());
        env.init(&st).unwrap();
        assert_eq!(std::fs::metadata(&img).unwrap().len() as usize, size);
        let cfg = fw_config_single(dir.path(), &img, size);
        assert_eq!(fw_printenv(&cfg), with_extra(native_vars(&st), &[]));
    }
    // 0x80 bytes cannot hold the native variables with a long name
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("env.img");
    let env = BootEnv::new(Backend::uboot_single(&img, 0, 0x80), Scheme::Native);
    let st = BootState::initial(Slot::A, SlotName::from_str(&"a".repeat(64)).unwrap());
    let err = env.init(&st).unwrap_err().to_string();
    assert!(err.contains("need"), "{err}");
}

#[test]
fn garbage_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("env.img");
    std::fs::write(&img, vec![0x5Au8; 0x1000]).unwrap();
    let env = BootEnv::new(Backend::uboot_single(&img, 0, 0x1000), Scheme::Native);
    let err = env.load().unwrap_err().to_string();
    assert!(err.contains("CRC mismatch"), "{err}");
    // valid env without our variables
    mkenvimage_or_write(&img);
    let err = env.load().unwrap_err().to_string();
    assert!(err.contains("none of the native"), "{err}");
}

fn mkenvimage_or_write(img: &std::path::Path) {
    let mut set = bootloader_hooks::VarSet::new();
    set.set("bootcmd", b"boot").unwrap();
    let mut buf = vec![0u8; 0x1000];
    uboot_env::write(&mut buf, Layout::Single, 0, uboot_env::no_vars(), &set).unwrap();
    std::fs::write(img, buf).unwrap();
}
