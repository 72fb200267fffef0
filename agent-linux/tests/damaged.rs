//! A damaged `.update` file is reported as damaged, with the part and its bytes, whatever its
//! damage made the installer trip over first (an object "not in the store", a malformed
//! object, an unknown operation code), from a file and from a stream alike.

use std::fs;
use std::io::Cursor;

use agent_linux::apply::{self, ApplyError, Input, Trust};
use agent_linux::Repo;

mod build_common;
use build_common::built_update;

#[test]
fn a_damaged_file_is_said_damaged_with_where() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    fs::create_dir_all(src.join("a/b")).unwrap();
    for i in 0..30 {
        fs::write(src.join(format!("a/b/f{i}")), format!("file {i}\n")).unwrap();
    }
    // One part, stored as it is: a flipped byte reaches the installer as it is.
    let update = built_update(
        t.path(),
        &src,
        None,
        &["--codec", "deflate", "--compression", "0"],
    );
    let file = fs::read(&update).unwrap();
    let summary = agent_linux::inspect::inspect(&mut &file[..], &[], &[]).unwrap();
    assert_eq!(summary.parts.len(), 1);
    assert_eq!(summary.parts[0].codec, "stored");
    let start = file.len() - summary.parts[0].size as usize;
    let want = format!(
        "the file is damaged: part 0 of 1 (bytes {start} to {}) does not hash to the SHA-256 its superblock gives; get the file again",
        file.len()
    );
    let trust = Trust {
        allow_unsigned: true,
        ..Trust::default()
    };
    let mut not_in_the_store = 0;
    for (i, at) in (start..file.len()).step_by(61).enumerate() {
        let mut bad = file.clone();
        bad[at] ^= 0x01;
        let r = Repo::init(&t.path().join(format!("r{i}"))).unwrap();
        let seekable = apply::apply_from(
            &r,
            Input::Seekable(&mut Cursor::new(&bad)),
            &trust,
            &mut |_| {},
        );
        let stream = apply::apply(&r, &mut &bad[..], &trust, &mut |_| {});
        for res in [seekable, stream] {
            let e = res.expect_err("a damaged file installs nothing");
            assert!(matches!(e, ApplyError::Damaged { .. }), "byte {at}: {e:?}");
            assert_eq!(e.to_string(), want, "byte {at}");
        }
        // What the installer tripped over without the check.
        let keys: [[u8; 32]; 0] = [];
        let mut window = vec![0u8; agent_core::install::INFLATE_WINDOW];
        let policy = agent_core::install::Policy::require(&keys).allow_unsigned();
        let mut inst = agent_core::install::Installer::new(policy, &mut window);
        let mut store = test_support::MemStore::default();
        if let Err(agent_core::install::InstallError::MissingObject { .. }) =
            inst.feed(&mut store, &bad)
        {
            not_in_the_store += 1;
        }
    }
    assert!(
        not_in_the_store > 0,
        "some flips make the installer look for an object the file does not hold"
    );
}
