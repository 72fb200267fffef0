//! The seed corpus in `fuzz/corpus/<target>/`: built here, written with
//! `WRITE_CORPUS=1 cargo test --manifest-path fuzz/Cargo.toml`, and otherwise checked: every
//! committed seed is what this code builds, passes its target's check and reaches what it is
//! meant to reach (a valid install, a decoded env, a state).

use std::path::PathBuf;

use arbitrary::{Arbitrary, Unstructured};
use bootloader_hooks::flash_record::{self, RECORD_LEN};
use bootloader_hooks::uboot_env::{self, Layout};
use bootloader_hooks::vars::{Empty, VarSet};
use bootloader_hooks::{grub_env, BootState, Flavor, RaucConfig, Scheme, Slot, SlotName};

use crate::bootstate::Step;

fn state() -> BootState {
    let mut s = BootState::initial(Slot::A, SlotName::from_str("rel-1.0").unwrap());
    s.stage(Slot::B, 3, SlotName::from_str("rel-1.1").unwrap())
        .unwrap();
    s
}

fn uboot(
    layout: Layout,
    size: usize,
    flag: u8,
    vars: &[(&[u8], &[u8])],
    set: &VarSet<'_>,
) -> Vec<u8> {
    let mut out = vec![0u8; size];
    uboot_env::write(&mut out, layout, flag, vars.iter().copied(), set).unwrap();
    out
}

fn encoded(scheme: Scheme, flavor: Flavor, st: &BootState) -> VarSet<'static> {
    let mut set = VarSet::new();
    scheme.encode(flavor, st, &Empty, &mut set).unwrap();
    set
}

fn with_mode(mode: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![mode];
    v.extend_from_slice(body);
    v
}

fn seeds() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let mut out = Vec::new();
    // installer_bytes: unsigned and signed small files, several chunkings.
    let (one, _) = crate::sample_update(false, 300, 1 << 20);
    let (parts, _) = crate::sample_update(false, 300, 64);
    let (signed, _) = crate::sample_update(true, 2000, 512);
    let mut p = crate::chunk_prefix(&[1]);
    p.extend_from_slice(&one);
    out.push(("installer_bytes", "unsigned-1byte", p));
    let mut p = crate::chunk_prefix(&[7, 512, 3]);
    p.extend_from_slice(&parts);
    out.push(("installer_bytes", "unsigned-parts-7-512-3", p));
    let mut p = crate::chunk_prefix(&[4096]);
    p.extend_from_slice(&signed);
    out.push(("installer_bytes", "signed-4096", p));
    // Format version 1, a security version, and each policy refusal (`policy_for` bits).
    let (v1, _) = crate::sample_update_with(true, 300, 256, 0, 1);
    let (sv3, _) = crate::sample_update_with(true, 300, 256, 3, 2);
    let mut p = crate::chunk_prefix(&[64]);
    p.extend_from_slice(&v1);
    out.push(("installer_bytes", "v1-signed-64", p));
    let mut p = crate::chunk_prefix_policy(&[13, 200], 4);
    p.extend_from_slice(&sv3);
    out.push(("installer_bytes", "sv3-signed-floor", p));
    // Format version 3 with deflate parts (the others of version 3 are xz).
    let (deflated, _) = crate::sample_update_codec(
        false,
        2000,
        512,
        0,
        agent_core::wire::PATCH_FORMAT_VERSION,
        Some(agent_core::wire::Codec::Deflate),
    );
    let mut p = crate::chunk_prefix(&[7, 300]);
    p.extend_from_slice(&deflated);
    out.push(("installer_bytes", "deflate-v3-7-300", p));
    // Format version 4: a gzip file in a redeflate record.
    let (gz, _) = crate::sample_gzip_update(false);
    let mut p = crate::chunk_prefix(&[3, 100]);
    p.extend_from_slice(&gz);
    out.push(("installer_bytes", "redeflate-v4-3-100", p));
    for (name, bits, file) in [
        ("refused-revoked", 1, &signed),
        ("refused-ref", 2, &one),
        ("refused-floor", 4, &one),
        ("refused-unsigned", 8, &one),
        ("refused-no-keys", 16, &signed),
    ] {
        let mut p = crate::chunk_prefix_policy(&[512], bits);
        p.extend_from_slice(file);
        out.push(("installer_bytes", name, p));
    }

    // A delta with a patch record, from the sample the store starts with.
    let (delta, _) = crate::sample_delta(false);
    let mut p = crate::chunk_prefix(&[5, 129]);
    p.extend_from_slice(&delta);
    out.push(("installer_bytes", "patch-delta-5-129", p));

    // installer_mutated (arbitrary-encoded MutatedInput: base, chunk, mutations).
    out.push(("installer_mutated", "unchanged-base0", vec![0, 0xFF, 0xFF]));
    out.push(("installer_mutated", "unchanged-base1-chunk7", vec![1, 7, 0]));
    out.push((
        "installer_mutated",
        "xor-base2",
        vec![2, 0, 2, 1, 0, 0, 0, 0, 40, 0, 0, 0, 1],
    ));
    out.push(("installer_mutated", "unchanged-base3-v1", vec![3, 64, 0]));
    out.push(("installer_mutated", "unchanged-base4-sv3", vec![4, 13, 0]));
    out.push((
        "installer_mutated",
        "unchanged-base7-redeflate",
        vec![7, 100, 0],
    ));
    out.push((
        "installer_mutated",
        "xor-base7-redeflate",
        vec![7, 0, 2, 1, 0, 0, 0, 0, 40, 0, 0, 0, 1],
    ));
    out.push((
        "installer_mutated",
        "unchanged-base6-deflate",
        vec![6, 64, 0],
    ));
    out.push((
        "installer_mutated",
        "xor-base1-xz",
        vec![1, 0, 2, 1, 0, 0, 0, 0, 40, 0, 0, 0, 1],
    ));
    out.push((
        "installer_mutated",
        "xor-base4-sv3",
        vec![4, 0, 2, 1, 0, 0, 0, 0, 40, 0, 0, 0, 1],
    ));
    out.push(("installer_mutated", "unchanged-base5-patch", vec![5, 7, 0]));
    out.push((
        "installer_mutated",
        "xor-base5-patch",
        vec![5, 0, 2, 1, 0, 0, 0, 0, 0xf0, 0, 0, 0, 1],
    ));

    // bootenv_parse: mode byte 0 (CRCs as written), then the body.
    let st = state();
    let native_u = encoded(Scheme::Native, Flavor::UBoot, &st);
    let bootcmd: &[(&[u8], &[u8])] = &[(b"bootcmd", b"run ecu_boot"), (b"bootdelay", b"0")];
    out.push((
        "bootenv_parse",
        "uboot-native-single",
        with_mode(0, &uboot(Layout::Single, 512, 0, bootcmd, &native_u)),
    ));
    let mut pair = uboot(Layout::Redundant, 256, 4, bootcmd, &native_u);
    pair.extend(uboot(
        Layout::Redundant,
        256,
        5,
        bootcmd,
        &encoded(Scheme::Native, Flavor::UBoot, &st.decide().state),
    ));
    out.push((
        "bootenv_parse",
        "uboot-native-redundant",
        with_mode(0, &pair),
    ));
    let rauc = encoded(Scheme::Rauc(RaucConfig::default()), Flavor::UBoot, &st);
    out.push((
        "bootenv_parse",
        "uboot-rauc-single",
        with_mode(0, &uboot(Layout::Single, 256, 0, &[], &rauc)),
    ));
    let mender: &[(&[u8], &[u8])] = &[
        (b"mender_boot_part", b"3"),
        (b"mender_boot_part_hex", b"3"),
        (b"upgrade_available", b"1"),
        (b"bootcount", b"1"),
        (b"bootlimit", b"3"),
    ];
    out.push((
        "bootenv_parse",
        "uboot-mender-single",
        with_mode(0, &uboot(Layout::Single, 256, 0, mender, &VarSet::new())),
    ));
    let mut g = vec![0u8; grub_env::DEFAULT_SIZE];
    grub_env::write(
        &mut g,
        grub_env::no_vars(),
        &encoded(Scheme::Native, Flavor::Grub, &st),
    )
    .unwrap();
    out.push(("bootenv_parse", "grub-native", with_mode(0, &g)));
    let mut g = vec![0u8; grub_env::DEFAULT_SIZE];
    let rauc_g = encoded(Scheme::Rauc(RaucConfig::default()), Flavor::Grub, &st);
    grub_env::write(
        &mut g,
        [(&b"saved_entry"[..], &b"a\\\\b"[..])].into_iter(),
        &rauc_g,
    )
    .unwrap();
    out.push(("bootenv_parse", "grub-rauc", with_mode(0, &g)));
    // Found by the fuzzer: a list running to the last byte without the closing NUL (mode bit 0
    // fixes the CRC); it decodes, and re-encoding needs one byte more than the copy.
    out.push((
        "bootenv_parse",
        "uboot-unterminated",
        vec![
            0x9b, 0x00, 0x0a, 0x42, 0x5f, 0x54, 0x52, 0x59, 0x3d, 0x30, 0x0a, 0x45, 0x43, 0x55,
            0x5f, 0x41, 0x5f, 0x4e, 0x41, 0x4d, 0x45, 0x3d, 0x72, 0x65, 0x6c, 0x2d, 0x31, 0x2e,
            0x30, 0x0a, 0x45, 0x43, 0x55, 0x5f, 0x42, 0x5f, 0x4e, 0x41, 0x4d, 0x47, 0x3a, 0x20,
            0x00,
        ],
    ));
    // Found by the fuzzer: RAUC GRUB `ORDER=" "` (no slot) does not round-trip (docs/FUZZ.md).
    out.push((
        "bootenv_parse",
        "grub-rauc-order-space",
        vec![
            0x00, 0x23, 0x20, 0x47, 0x52, 0x55, 0x42, 0x20, 0x45, 0x6e, 0x76, 0x69, 0x72, 0x6f,
            0x6e, 0x6d, 0x65, 0x6e, 0x74, 0x20, 0x42, 0x6c, 0x6f, 0x63, 0x6b, 0x0a, 0x23, 0x20,
            0x57, 0x41, 0x52, 0x4e, 0x49, 0x4e, 0x47, 0x3a, 0x20, 0x44, 0x6f, 0x5c, 0x62, 0x0a,
            0x4f, 0x52, 0x44, 0x45, 0x52, 0x3d, 0x20, 0x0a, 0xe1, 0x42, 0x5f, 0x41, 0x4f, 0x4b,
            0x3d, 0x30, 0x0a, 0x41, 0x5f, 0x54, 0x52, 0x59, 0x3d, 0x30, 0x0a, 0x42, 0x5f, 0x4f,
            0x4b, 0x3d, 0x31, 0x0a, 0x42, 0x5f, 0x54, 0x41, 0x4d, 0x45, 0x3d, 0x72, 0x65, 0x6c,
            0x2d, 0x3a, 0x2e, 0x31, 0x59, 0x59, 0x59, 0x59, 0x59, 0x59, 0x59, 0x59, 0x59, 0x59,
            0x59, 0x59, 0x59, 0x59, 0x59, 0x59, 0x59, 0x59, 0x0a, 0x45, 0x43, 0x55, 0x5f, 0x52,
            0x45, 0x30, 0x3d, 0x31, 0x0a, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xb8, 0x23,
            0x23, 0x23, 0x23, 0x23, 0x23, 0x23, 0x23, 0x23, 0x23, 0x23, 0x23, 0x23, 0x23, 0x23,
            0x23, 0x23, 0x23, 0x23, 0x23, 0x23, 0x26, 0x23, 0x23, 0x23, 0x23, 0x23, 0x23, 0x23,
            0x23, 0x23, 0x23, 0x23, 0x09, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x23, 0x23,
            0x23, 0x23, 0x23, 0x23, 0x23, 0x23, 0x23, 0x23, 0x23, 0x23, 0x23, 0x23, 0x23, 0x23,
            0x23, 0x00, 0x23, 0x20, 0x23, 0x23,
        ],
    ));
    let mut rec = vec![0xFFu8; 2 * RECORD_LEN];
    let mut vst = st;
    vst.floor = 4;
    vst.slots[1].security_version = 5;
    flash_record::emit(&vst, &mut rec[..RECORD_LEN]);
    let mut next = vst.decide().state;
    next.revision += 1;
    flash_record::emit(&next, &mut rec[RECORD_LEN..]);
    out.push(("bootenv_parse", "flash-record-pair", with_mode(0, &rec)));
    // a version-1 record (no floor) in copy 0: mode bit 0 fixes its CRC at offset 276
    let mut v1 = vec![0xFFu8; RECORD_LEN];
    flash_record::emit(&st, &mut v1);
    v1[4..6].copy_from_slice(&flash_record::VERSION_1.to_le_bytes());
    v1[6..8].copy_from_slice(&(flash_record::V1_RECORD_LEN as u16).to_le_bytes());
    v1[flash_record::V1_RECORD_LEN..].fill(0xFF);
    out.push(("bootenv_parse", "flash-record-v1", with_mode(1, &v1)));

    // bootstate_ops: arbitrary-encoded step lists.
    // Each step: 1 (another element), the op's variant as a LE u32 (top byte 0x00 stage,
    // 0x40 mark-good, 0x80 rollback, 0xC0 boot), its fields, then the tear (0 = none, or
    // 1, after: u16 LE, erased: bool).
    let stage_b = |tries: u8, name: u8| [1, 0, 0, 0, 0x00, 1, tries, name];
    let boot = [1u8, 0, 0, 0, 0xC0];
    let mut v = Vec::new();
    v.extend(stage_b(3, 5));
    v.push(0);
    v.extend(boot);
    v.push(0);
    v.extend(boot);
    v.push(0);
    v.extend([1, 0, 0, 0, 0x40, 1, 0]);
    out.push(("bootstate_ops", "stage-boot-good", v));
    let mut v = Vec::new();
    v.extend(stage_b(3, 9));
    v.extend([1, 0x20, 0, 1]);
    v.extend(stage_b(2, 4));
    v.push(0);
    v.extend(boot);
    v.extend([1, 0x00, 0x01, 0]);
    v.extend([1, 0, 0, 0, 0x80, 1, 0]);
    v.extend(boot);
    v.push(0);
    out.push(("bootstate_ops", "torn", v));
    out.push((
        "bootstate_ops",
        "mixed",
        (0u8..=255).map(|i| i.wrapping_mul(37) | 1).collect(),
    ));

    // env_load: backend, scheme, env-size, two offsets, flags, then the file(s).
    let env_input = |backend: u8, scheme: u8, size: u32, flags: u8, body: &[u8]| {
        let mut v = vec![backend, scheme];
        v.extend_from_slice(&size.to_le_bytes());
        v.extend_from_slice(&[0; 8]);
        v.push(flags);
        v.extend_from_slice(body);
        v
    };
    let mut pair = uboot(Layout::Redundant, 1024, 4, bootcmd, &native_u);
    pair.extend(uboot(Layout::Redundant, 1024, 5, bootcmd, &native_u));
    out.push((
        "env_load",
        "uboot-redundant-native",
        env_input(1, 0, 1024, 0, &pair),
    ));
    out.push((
        "env_load",
        "uboot-single-rauc",
        env_input(0, 1, 256, 1, &uboot(Layout::Single, 256, 0, &[], &rauc)),
    ));
    let mut g = vec![0u8; grub_env::DEFAULT_SIZE];
    grub_env::write(
        &mut g,
        grub_env::no_vars(),
        &encoded(Scheme::Native, Flavor::Grub, &st),
    )
    .unwrap();
    out.push(("env_load", "grub-native", env_input(2, 0, 0x4000, 1, &g)));
    out.push(("env_load", "dev-zero", env_input(1, 0, 0x100000, 3, &[])));
    out.push((
        "env_load",
        "grub-dev-zero",
        env_input(2, 0, 0x1000000, 3, &[]),
    ));
    out.push((
        "env_load",
        "size-refused",
        env_input(0, 0, u32::MAX, 1, &[0; 64]),
    ));

    // sysroot_ops: arbitrary-encoded command lists (crate::sysroot::encode).
    use crate::sysroot::{encode, Op};
    out.push((
        "sysroot_ops",
        "install-boot-good",
        encode(&[
            Op::Install(0),
            Op::Install(2),
            Op::SimulateBoot,
            Op::MarkGood,
            Op::Install(3),
            Op::SimulateBoot,
            Op::Cleanup,
        ]),
    ));
    out.push((
        "sysroot_ops",
        "trial-fails-rollback",
        encode(&[
            Op::Install(1),
            Op::Install(3),
            Op::SimulateBoot,
            Op::SimulateBoot,
            Op::SimulateBoot,
            Op::SimulateBoot,
            Op::Rollback,
            Op::Deploy,
            Op::Cleanup,
            Op::SimulateBoot,
        ]),
    ));

    // index_parse: mode (bit 0: unsigned allowed), then an index.
    use agent_linux::index::{emit, sample_index};
    let idx = sample_index();
    out.push((
        "index_parse",
        "signed",
        with_mode(0, &emit(&idx, Some(&crate::SEED))),
    ));
    out.push((
        "index_parse",
        "unsigned-allowed",
        with_mode(1, &emit(&idx, None)),
    ));
    out.push((
        "index_parse",
        "unsigned-refused",
        with_mode(0, &emit(&idx, None)),
    ));
    out
}

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("corpus")
}

#[test]
fn corpus() {
    let write = std::env::var_os("WRITE_CORPUS").is_some();
    for (target, name, bytes) in seeds() {
        assert!(
            bytes.len() < 64 * 1024,
            "{target}/{name} is {} bytes",
            bytes.len()
        );
        let path = dir().join(target).join(name);
        if write {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &bytes).unwrap();
        } else {
            let on_disk = std::fs::read(&path)
                .unwrap_or_else(|e| panic!("{}: {e} (WRITE_CORPUS=1 makes it)", path.display()));
            assert_eq!(
                on_disk,
                bytes,
                "{} is stale (WRITE_CORPUS=1 rewrites it)",
                path.display()
            );
        }
        match target {
            "installer_bytes" => {
                let r = crate::check_installer_bytes(&bytes).expect("the prefix is complete");
                use agent_core::install::InstallError as E;
                match name {
                    "refused-revoked" => assert!(matches!(r, Err(E::RevokedKey { .. })), "{r:?}"),
                    "refused-ref" => assert!(matches!(r, Err(E::RefNotFollowed { .. })), "{r:?}"),
                    "refused-floor" => assert!(
                        matches!(
                            r,
                            Err(E::BelowFloor {
                                security_version: 0,
                                floor: 2
                            })
                        ),
                        "{r:?}"
                    ),
                    "refused-unsigned" => assert!(matches!(r, Err(E::Unsigned)), "{r:?}"),
                    "refused-no-keys" => assert!(matches!(r, Err(E::NoTrustedKeys)), "{r:?}"),
                    _ => {
                        let i = r.unwrap_or_else(|e| panic!("{name}: {e}"));
                        let sv = if name.starts_with("sv3") { 3 } else { 0 };
                        assert_eq!(i.security_version, sv, "{name}");
                    }
                }
            }
            "installer_mutated" => {
                let input =
                    crate::MutatedInput::arbitrary_take_rest(Unstructured::new(&bytes)).unwrap();
                let changed = crate::run_mutated(&input);
                assert_eq!(changed, name.starts_with("xor"), "{name}: {input:?}");
            }
            "bootenv_parse" => {
                let a = crate::bootenv::check(&bytes);
                let reached = if name == "uboot-unterminated" {
                    a.uboot_single
                } else if name.starts_with("uboot") && name.ends_with("redundant") {
                    a.uboot_redundant
                } else if name.starts_with("uboot") {
                    a.uboot_single && a.state
                } else if name.starts_with("grub") {
                    a.grub && a.state
                } else {
                    a.flash
                };
                assert!(reached, "{name}: {a:?}");
            }
            "bootstate_ops" => {
                let steps = Vec::<Step>::arbitrary_take_rest(Unstructured::new(&bytes)).unwrap();
                assert!(!steps.is_empty(), "{name}");
                let (written, torn) = crate::bootstate::run(&steps);
                assert!(written + torn > 1, "{name} writes nothing: {steps:?}");
            }
            "env_load" => {
                use crate::envload::Loaded;
                let want = match name {
                    "dev-zero" => Loaded::Missing,
                    "grub-dev-zero" => Loaded::Failed,
                    "size-refused" => Loaded::ConfigRefused,
                    _ => Loaded::RoundTripped,
                };
                assert_eq!(crate::envload::check(&bytes), want, "{name}");
            }
            "sysroot_ops" => {
                let ops = Vec::<crate::sysroot::Op>::arbitrary_take_rest(Unstructured::new(&bytes))
                    .unwrap();
                assert_eq!(crate::sysroot::encode(&ops), bytes, "{name}: {ops:?}");
                let r = crate::sysroot::run(&ops);
                assert!(r.trial_boots > 0 && r.ok >= 5, "{name}: {r:?}");
            }
            "index_parse" => {
                use crate::index::Parsed;
                let want = match name {
                    "unsigned-refused" => Parsed::Refused,
                    _ => Parsed::Accepted(2),
                };
                assert_eq!(crate::index::check(&bytes), want, "{name}");
            }
            _ => unreachable!(),
        }
    }
}
