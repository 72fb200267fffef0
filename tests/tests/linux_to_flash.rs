//! Update files generated from a Linux repository install into agent-core's flash A/B store,
//! which copies every reused object from the active slot: the generator's deltas carry a
//! `Reuse` for every unchanged subtree and file the new tree references, so a copying store
//! gets everything it needs.

use agent_core::install::{InstallError, Installer, Policy};
use agent_core::object::ObjectId;
use agent_core::store::flash::model::NorModel;
use agent_core::store::flash::{FlashLayout, FlashSlot, FlashStore, IMAGE_NAME};
use agent_linux::generate::{generate, GenerateOptions};
use agent_linux::repo::{CommitMeta, Repo};
use agent_linux::tree::{build_mem, MemDir, MemNode};
use tests::semi_random_text;

const W: usize = 8;
const E: usize = 2048;
const SLOT: u32 = 256 * 1024;
const LAYOUT: FlashLayout = FlashLayout {
    slots: [0, SLOT],
    slot_size: SLOT,
};
const REF: &str = "mcu/main";

fn file(content: Vec<u8>) -> MemNode {
    MemNode::File {
        mode: 0o644,
        content,
        xattrs: vec![],
    }
}

fn tree(version: u64) -> MemDir {
    let lib = MemDir::new()
        .with(b"a.bin", file(semi_random_text(10, 9000)))
        .with(b"b.bin", file(semi_random_text(11 + version / 3, 7000)))
        .with(
            b"deep",
            MemNode::Dir(MemDir::new().with(b"c.txt", file(b"unchanged\n".to_vec()))),
        );
    MemDir::new()
        .with(IMAGE_NAME, file(semi_random_text(version, 40 * 1024)))
        .with(
            b"config",
            MemNode::Dir(MemDir::new().with(b"can.cfg", file(b"bitrate=500k\n".to_vec()))),
        )
        .with(b"lib", MemNode::Dir(lib))
}

fn install(
    store: &mut FlashStore<&mut NorModel<'_, W, E>>,
    file: &[u8],
    chunk: usize,
) -> Result<ObjectId, String> {
    let mut win = tests::window();
    let mut dict = tests::dictionary();
    let mut xz = Box::new(agent_core::install::XzDecoder::new(&mut dict));
    let mut inst =
        Box::new(Installer::new(Policy::require(&[]).allow_unsigned(), &mut win).with_xz(&mut xz));
    agent_core::io::install_chunks(&mut inst, store, file, &[chunk])
        .map(|i| i.commit)
        .map_err(|e: InstallError<_>| e.to_string())
}

#[test]
fn linux_generated_full_and_delta_install_into_the_flash_ab_store() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = Repo::init(&tmp.path().join("build")).unwrap();
    let meta = |v: u64| CommitMeta {
        version: v.to_string(),
        subject: String::new(),
        body: String::new(),
        timestamp: v,
    };
    let c1 = repo
        .commit(REF, build_mem(&repo, &tree(1)).unwrap().0, &meta(1))
        .unwrap();
    // v4: the image and lib/b.bin change; config/ and lib/deep/ are reused whole.
    let c2 = repo
        .commit(REF, build_mem(&repo, &tree(4)).unwrap().0, &meta(4))
        .unwrap();
    let gen = |from: Option<ObjectId>, to: &ObjectId| {
        let mut out = Vec::new();
        let s = generate(
            &repo,
            REF,
            from,
            to,
            &GenerateOptions::default(),
            &mut out,
            &mut |_, _| {},
        )
        .unwrap();
        (out, s)
    };
    let (full, _) = gen(None, &c1);
    let (delta, ds) = gen(Some(c1), &c2);
    assert!(
        ds.reused >= 3,
        "the delta reuses config/, lib/deep/ and lib/a.bin: {ds:?}"
    );

    for chunk in [7, 512, usize::MAX] {
        let mut mem = vec![0u8; 2 * SLOT as usize];
        let mut nor = NorModel::<W, E>::new(&mut mem);
        nor.erase_all();
        // Slot B "booted" (empty): the full file goes to A.
        {
            let mut store = FlashStore::new(&mut nor, LAYOUT, FlashSlot::B).unwrap();
            // A delta with nothing to copy from is refused plainly.
            let err = install(&mut store, &delta, chunk).unwrap_err();
            assert_eq!(
                err,
                format!("commit {c1}, the source of this delta, is not in the store")
            );
            assert_eq!(install(&mut store, &full, chunk).unwrap(), c1);
        }
        // A booted: the delta goes to B, copying what it reuses from A.
        let mut store = FlashStore::new(&mut nor, LAYOUT, FlashSlot::A).unwrap();
        assert_eq!(store.verify_slot(FlashSlot::A).unwrap().unwrap().commit, c1);
        assert_eq!(install(&mut store, &delta, chunk).unwrap(), c2);
        let info = store
            .verify_slot(FlashSlot::B)
            .unwrap()
            .expect("slot B holds a valid commit");
        assert_eq!(info.commit, c2);
        let mut image = vec![0u8; info.image_len as usize];
        assert_eq!(
            store.read_image(FlashSlot::B, 0, &mut image).unwrap(),
            image.len()
        );
        assert_eq!(image, semi_random_text(4, 40 * 1024));
        // Slot A still holds v1, untouched.
        assert_eq!(store.verify_slot(FlashSlot::A).unwrap().unwrap().commit, c1);
    }
}
