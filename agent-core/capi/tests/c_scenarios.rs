//! The C firmware's scenarios (`tests/c-firmware/scenario.c`: from scratch, delta, one
//! flipped byte, below the floor) compiled for Linux with gcc (`-Wall -Wextra -Werror`,
//! AddressSanitizer and UndefinedBehaviorSanitizer) against this crate's static library, run
//! with transport blocks of 8, 64 and 4093 bytes. The same C code runs on the Cortex-M4 board
//! under QEMU in `cargo xtask c-firmware`.

#[path = "../../tests/flash_common/mod.rs"]
mod flash_common;

use std::path::{Path, PathBuf};
use std::process::Command;

use flash_common::{build_sv, dir, noise, public_key, update_file, Node};
use test_support::c_program::{
    built_beside_test, c_bytes, compile_sanitized, doc_example as doc_block, output_text,
};

const CRATE: &str = env!("CARGO_MANIFEST_DIR");

/// Whether `tool` is on PATH; missing: a failure under CI, else a skip
/// ([`test_support::tool::have`]).
fn have(tool: &str) -> bool {
    test_support::tool::have(tool, "the C scenarios")
}

/// `libecu_update.a` as cargo built it for this test run (beside the test binary).
fn static_lib() -> PathBuf {
    built_beside_test("libecu_update", ".a")
}

/// The trusted key as the C initialiser `0x.., 0x.., ...`.
fn key_macro(key: &[u8; 32]) -> String {
    format!("-DECU_TEST_KEY={}", c_bytes(key))
}

/// The update files and images of the scenarios, as `cargo xtask firmware` writes them.
fn data(dir_path: &Path) {
    let fw1 = noise(1, 72 * 1024 + 13);
    let mut fw2 = fw1.clone();
    fw2[4096..4196].fill(0x55);
    fw2.extend_from_slice(&noise(9, 1500));
    let tree = |fw: Vec<u8>, extra: bool| {
        let mut lib = vec![
            ("crypto.bin", Node::File(noise(4, 6000))),
            (
                "deep",
                dir(vec![(
                    "a",
                    dir(vec![("c.txt", Node::File(b"c\n".to_vec()))]),
                )]),
            ),
        ];
        if extra {
            lib.push(("uds.bin", Node::File(noise(5, 900))));
        }
        dir(vec![
            (
                "config",
                dir(vec![(
                    "app.cfg",
                    Node::File(b"can.bitrate=500000\n".to_vec()),
                )]),
            ),
            ("firmware.bin", Node::File(fw)),
            ("lib", dir(lib)),
        ])
    };
    let v1 = build_sv(&tree(fw1.clone(), false), None, "1.0.0", 1);
    let v2 = build_sv(&tree(fw2.clone(), true), Some(v1.commit), "1.1.0", 2);
    let mut flipped = update_file(&v2, None);
    let mid = flipped.len() / 2;
    flipped[mid] ^= 1;
    for (name, bytes) in [
        ("v1.update", update_file(&v1, None)),
        ("v1-v2.update", update_file(&v2, Some(&v1))),
        ("v2-flipped.update", flipped),
        ("v1.bin", fw1),
        ("v2.bin", fw2),
    ] {
        std::fs::write(dir_path.join(name), bytes).unwrap();
    }
}

#[test]
fn c_scenarios_under_asan_and_ubsan() {
    if !have("gcc") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    data(tmp.path());
    let fw = Path::new(CRATE).join("../../tests/c-firmware");
    let exe = tmp.path().join("c-scenarios");
    compile_sanitized("gcc", "-std=c11", &exe, |c| {
        c.arg(key_macro(&public_key()))
            .arg("-I")
            .arg(Path::new(CRATE).join("include"))
            .arg("-I")
            .arg(Path::new(CRATE).join("../../bootloader-hooks/include"))
            .args(["scenario.c", "flash.c", "main_host.c"].map(|f| fw.join(f)))
            .arg(static_lib());
    });
    for block in [8, 64, 4093] {
        std::fs::write(tmp.path().join("params.txt"), format!("block={block}\n")).unwrap();
        let run = Command::new(&exe)
            .current_dir(tmp.path())
            .env("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
            .output()
            .unwrap();
        let text = output_text(&run);
        eprintln!("---- block {block}\n{text}");
        assert!(run.status.success(), "block {block}:\n{text}");
        for scenario in [
            "from scratch",
            "delta",
            "one flipped byte",
            "below the floor",
        ] {
            assert!(
                text.contains(&format!("scenario {scenario}: PASS")),
                "block {block}, scenario {scenario}:\n{text}"
            );
        }
        assert!(text.contains("RESULT: PASS"), "block {block}:\n{text}");
        // The refusals say why, with the numbers.
        assert!(
            text.contains(
                "install refused: the update's security version 1 is below this device's floor 2"
            ),
            "{text}"
        );
    }
}

/// Compiles a C program of this crate's tests/c against the header and the static library
/// with warnings as errors, AddressSanitizer and UndefinedBehaviorSanitizer.
fn compile(out: &Path, sources: &[PathBuf]) {
    compile_sanitized("gcc", "-std=c11", out, |c| {
        c.arg(key_macro(&public_key()))
            .arg("-I")
            .arg(Path::new(CRATE).join("include"))
            .args(sources)
            .arg(static_lib());
    });
}

/// tests/c/callback_store.c: a store written in C behind `struct ecu_update_store_ops`
/// installs a signed update fed in 7-byte pieces (progress, part_verified, commit callback,
/// ref), and every refusal comes back with its code and sentence: lent memory too small or
/// misaligned, no store, a NULL callback, no trusted key, a failing callback (its own code),
/// a truncated file, a nested tree without tree_depth, the floor.
#[test]
fn c_callback_store() {
    if !have("gcc") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let flat = dir(vec![
        ("firmware.bin", Node::File(noise(11, 20_000))),
        ("app.cfg", Node::File(b"can.bitrate=500000\n".to_vec())),
    ]);
    let nested = dir(vec![
        ("firmware.bin", Node::File(noise(12, 3000))),
        ("lib", dir(vec![("x.bin", Node::File(noise(13, 100)))])),
    ]);
    let flat = build_sv(&flat, None, "1.0.0", 3);
    let nested = build_sv(&nested, None, "1.0.0", 3);
    std::fs::write(tmp.path().join("flat.update"), update_file(&flat, None)).unwrap();
    std::fs::write(tmp.path().join("flat.commit"), flat.commit.0).unwrap();
    std::fs::write(tmp.path().join("nested.update"), update_file(&nested, None)).unwrap();
    let exe = tmp.path().join("callback-store");
    compile(&exe, &[Path::new(CRATE).join("tests/c/callback_store.c")]);
    let run = Command::new(&exe).current_dir(tmp.path()).output().unwrap();
    let text = output_text(&run);
    eprintln!("{text}");
    assert!(run.status.success(), "{text}");
    assert!(
        text.contains("ALL PASS") && !text.contains("FAIL"),
        "{text}"
    );
}

/// The fenced code block after `<!-- example: NAME -->` in docs/C-API.md.
fn doc_example(name: &str) -> String {
    doc_block(&Path::new(CRATE).join("../../docs/C-API.md"), name)
}

/// docs/C-API.md's minimal C firmware compiles with warnings as errors, links with
/// `libecu_update.a`, installs a signed update (tried, then confirmed in slot B) and refuses
/// a damaged one (slot A still boots).
#[test]
fn doc_firmware_example_installs_and_refuses() {
    if !have("gcc") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    data(tmp.path());
    let src = tmp.path().join("firmware_example.c");
    std::fs::write(&src, doc_example("firmware")).unwrap();
    let exe = tmp.path().join("doc-firmware");
    compile_sanitized("gcc", "-std=c11", &exe, |c| {
        c.arg(format!("-DRELEASE_KEY={}", c_bytes(&public_key())))
            .arg("-I")
            .arg(Path::new(CRATE).join("include"))
            .arg("-I")
            .arg(Path::new(CRATE).join("../../bootloader-hooks/include"))
            .arg(&src)
            .arg(Path::new(CRATE).join("tests/c/doc_firmware_main.c"))
            .arg(static_lib());
    });
    for (mode, file) in [("install", "v1.update"), ("refuse", "v2-flipped.update")] {
        let run = Command::new(&exe)
            .arg(mode)
            .stdin(std::fs::File::open(tmp.path().join(file)).unwrap())
            .output()
            .unwrap();
        let text = output_text(&run);
        assert!(
            run.status.success() && text.contains("DOC FIRMWARE PASS"),
            "{mode} {file}:\n{text}"
        );
    }
}
