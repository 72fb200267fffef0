//! Shared by the flash store tests: commit trees, the store calls an install makes, the boot
//! record in flash (through `bootloader-hooks`), and the device-side update procedure.
#![allow(dead_code)]

use agent_core::object::{self, ObjectId, ObjectKind};
use agent_core::store::flash::model::NorModel;
use agent_core::store::flash::{FlashLayout, FlashSlot, FlashStore, FlashStoreError};
use agent_core::store::Store;
use agent_core::write::UpdateWriter;
use agent_core::{InstallError, Installer, Policy};
use bootloader_hooks::nor_record::{RecordStore, StoreError};
use bootloader_hooks::{BootState, DecisionKind, Slot, SlotName};
use embedded_storage::nor_flash::NorFlash;
use test_support::rng::XorShift64;
use test_support::tree::{patch_from_one, write_ops, write_ops_grouped, CommitInfo};

/// Write granularity of the test device (STM32L4-like: double word).
pub const W: usize = 8;
/// Erase granularity of the test device (2 KiB pages).
pub const E: usize = 2048;
/// Each slot.
pub const SLOT: u32 = 192 * 1024;
/// Boot record copies at 0 and E, slots after them.
pub const LAYOUT: FlashLayout = FlashLayout {
    slots: [2 * E as u32, 2 * E as u32 + SLOT],
    slot_size: SLOT,
};
/// Device size.
pub const DEVICE: usize = 2 * E + 2 * SLOT as usize;

pub type Nor<'m> = NorModel<'m, W, E>;

/// The tree the tests build commits of, and the operations of an update.
pub use test_support::tree::{dir, Node, Op};

/// Deterministic pseudo-random bytes (xorshift), compressible only a little.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = XorShift64::new(seed);
    (0..len)
        .map(|i| {
            let x = rng.next_u64();
            // Some text-like runs so deflate has something to do.
            if i % 64 < 24 {
                b'a' + (i % 26) as u8
            } else {
                x as u8
            }
        })
        .collect()
}

/// A commit ([`test_support::tree::Built`]: its id, objects and root) and its `firmware.bin`.
pub struct Built {
    built: test_support::tree::Built,
    /// Content of `firmware.bin`.
    pub image: Vec<u8>,
}

impl std::ops::Deref for Built {
    type Target = test_support::tree::Built;
    fn deref(&self) -> &Self::Target {
        &self.built
    }
}

pub fn build(tree: &Node, parent: Option<ObjectId>, version: &str) -> Built {
    build_sv(tree, parent, version, 0)
}

/// [`build`] with a commit at security version `security_version`.
pub fn build_sv(
    tree: &Node,
    parent: Option<ObjectId>,
    version: &str,
    security_version: u64,
) -> Built {
    let Node::Dir(root) = tree else {
        panic!("root must be a directory")
    };
    let info = CommitInfo::new(parent, 1_700_000_000, version).security_version(security_version);
    let image = match &root["firmware.bin"] {
        Node::File(c) => c.clone(),
        _ => panic!("firmware.bin must be a file"),
    };
    Built {
        built: test_support::tree::build(root, &info),
        image,
    }
}

/// The ops of an update to `to`, from scratch (`from` = None) or as a delta that reuses every
/// maximal subtree or file `from` already has. Bottom-up, commit last.
pub fn ops(to: &Built, from: Option<&Built>) -> Vec<Op> {
    to.ops(from.map(|f| &f.built))
}

/// Makes the store calls of an install, writing objects in `chunk`-byte pieces.
pub fn apply<S: Store>(
    s: &mut S,
    from: Option<ObjectId>,
    to: ObjectId,
    ops: &[Op],
    chunk: usize,
) -> Result<(), S::Error> {
    if let Some(f) = from {
        assert!(
            s.has_commit(&f)?,
            "the delta's source is not in the active slot"
        );
    }
    for op in ops {
        match op {
            Op::Write(kind, id, bytes) => {
                s.begin_object(*kind, id, bytes.len() as u64)?;
                for c in bytes.chunks(chunk) {
                    s.write_object(c)?;
                }
                s.finish_object()?;
            }
            Op::Reuse(kind, id) => {
                assert!(s.reuse_object(*kind, id)?, "reuse of {kind} {id} failed")
            }
        }
    }
    s.commit("ecu/test/main", &to)
}

pub fn slot_of(s: Slot) -> FlashSlot {
    match s {
        Slot::A => FlashSlot::A,
        Slot::B => FlashSlot::B,
    }
}

pub fn name(id: &ObjectId) -> SlotName {
    SlotName::from_str(id.to_hex().as_str()).unwrap()
}

/// The boot record's two copies, at sectors 0 and 1 of the device, through bootloader-hooks'
/// `NorFlash` record store.
fn records<F: NorFlash>(f: &mut F) -> RecordStore<&mut F> {
    RecordStore::new(f, 0, E as u32).expect("sectors 0 and 1 hold the boot record")
}

/// The current boot state.
pub fn read_record<F: NorFlash>(f: &mut F) -> Result<BootState, String> {
    records(f).read().map_err(|e| format!("{e:?}"))
}

/// Writes `state` to the copy that is not current: erase its sector, program the record.
pub fn write_record<F: NorFlash>(f: &mut F, state: &BootState) -> Result<(), StoreError> {
    records(f).write(state).map(|_| ())
}

/// One boot (`RecordStore::boot`): the decision over the record (written back when it
/// changed); returns the slot booted and the decision kind.
pub fn boot<F: NorFlash>(f: &mut F) -> Result<(Slot, DecisionKind, BootState), String> {
    let d = records(f).boot().map_err(|e| format!("{e:?}"))?;
    Ok((d.slot, d.kind, d.state))
}

/// What an update delivers to the store: the store calls themselves (what an installer makes),
/// or an `.update` file fed through the real installer.
#[derive(Clone, Copy, Debug)]
pub enum Payload<'a> {
    Ops(&'a [Op]),
    File(&'a [u8]),
}

/// The test signing key (ed25519 seed).
pub const SEED: [u8; 32] = [0x5e; 32];

/// The public key of [`SEED`].
pub fn public_key() -> [u8; 32] {
    ed25519_dalek::SigningKey::from_bytes(&SEED)
        .verifying_key()
        .to_bytes()
}

/// A signed `.update` file to `to`: from scratch, or a delta from `from`, in parts of about
/// 8 KiB so that files have several. A delta patches each new file from the source's image
/// when the patch pays (the firmware image's always does), and reuses the root's unchanged
/// entries by one reuse-entries record. Deflate with a 32 KiB window, as an MCU's agent (built without xz;
/// the C API's tests share these files) installs it.
pub fn update_file(to: &Built, from: Option<&Built>) -> Vec<u8> {
    update_file_with(to, from, true)
}

/// [`update_file`], a delta reusing each object by its own Reuse record unless `grouped`.
pub fn update_file_with(to: &Built, from: Option<&Built>, grouped: bool) -> Vec<u8> {
    let mut w = UpdateWriter::new(
        "ecu/test/main",
        from.map(|f| f.commit),
        to.commit,
        1_700_000_000,
        "test",
        "test",
    )
    .part_size(8 * 1024)
    .codec(agent_core::wire::Codec::Deflate)
    .max_dictionary(32 * 1024);
    // A delta patches the new image from the old one (the source's `firmware.bin`, read from
    // the active slot), when that pays.
    let source = from.map(|f| object::file_object(0o644, 0, 0, &f.image));
    let patch = |id: &ObjectId, b: &[u8]| source.as_deref().and_then(|s| patch_from_one(s)(id, b));
    match from {
        // The root's unchanged entries by one reuse-entries record over the active slot's
        // root (format version 5), read from the active slot as a patch's source is.
        Some(f) if grouped => {
            let source = f.object(ObjectKind::DirTree, &f.root.0);
            let grouped = (source, to.root.0);
            write_ops_grouped(
                &mut w,
                &ops(to, from),
                grouped,
                &mut |_| {},
                &patch,
                usize::MAX,
            )
            .unwrap();
        }
        _ => write_ops(&mut w, &ops(to, from), &patch, usize::MAX).unwrap(),
    }
    let mut out = Vec::new();
    w.finish(Some(&SEED), &mut out).unwrap();
    out
}

/// Feeds `file` to a real installer in `chunk`-byte pieces.
pub fn install_file<S: Store>(
    s: &mut S,
    file: &[u8],
    chunk: usize,
) -> Result<ObjectId, InstallError<S::Error>> {
    install_above(s, file, chunk, 0).map(|(c, _)| c)
}

/// [`install_file`] refusing anything below the anti-rollback `floor`; returns the commit and
/// its security version.
pub fn install_above<S: Store>(
    s: &mut S,
    file: &[u8],
    chunk: usize,
    floor: u64,
) -> Result<(ObjectId, u64), InstallError<S::Error>> {
    let keys = [public_key()];
    let mut win = window();
    let mut inst = Box::new(Installer::new(
        Policy::require(&keys).with_floor(floor),
        &mut win,
    ));
    let i = agent_core::io::install_chunks(&mut inst, s, file, &[chunk])?;
    Ok((i.commit, i.security_version))
}

#[derive(Debug)]
pub enum StepError {
    Install(InstallError<FlashStoreError<agent_core::store::flash::model::NorModelError>>),
    Store(FlashStoreError<agent_core::store::flash::model::NorModelError>),
    Flash(StoreError),
    Boot(String),
}

/// The device side of one update, from power-on: boot, retire the inactive slot in the boot
/// state, install (refusing anything below the record's floor), stage (with the update's
/// security version; 0 for `Payload::Ops`), reboot, mark good (raising the floor). Returns the slot booted after it and the flash
/// operation index at which the boot record switch starts (its erase; its write is the next).
pub fn update(
    f: &mut Nor<'_>,
    from: Option<ObjectId>,
    to: ObjectId,
    payload: Payload<'_>,
    chunk: usize,
) -> Result<(Slot, u32), StepError> {
    let (booted, _, mut st) = boot(f).map_err(StepError::Boot)?;
    let target = booted.other();
    // Nothing may name the slot about to be erased as bootable (`BootState::retire`, as the
    // firmware and the C API do it).
    if st
        .retire(target)
        .map_err(|e| StepError::Boot(e.to_string()))?
    {
        write_record(f, &st).map_err(StepError::Flash)?;
    }
    let mut store = FlashStore::new(&mut *f, LAYOUT, slot_of(booted)).map_err(StepError::Store)?;
    let sv = match payload {
        Payload::Ops(ops) => {
            apply(&mut store, from, to, ops, chunk).map_err(StepError::Store)?;
            0
        }
        Payload::File(file) => {
            let (got, sv) =
                install_above(&mut store, file, chunk, st.floor).map_err(StepError::Install)?;
            assert_eq!(got, to);
            sv
        }
    };
    let staged = store.staged().expect("staged after commit");
    assert_eq!(staged.commit, to);
    st.stage_versioned(target, 3, name(&to), sv).unwrap();
    let switch = f.stats().ops;
    write_record(f, &st).map_err(StepError::Flash)?;
    // Reboot into the new slot, check it, mark it good.
    let (now, kind, mut st) = boot(f).map_err(StepError::Boot)?;
    assert_eq!((now, kind), (target, DecisionKind::Trial));
    let mut store = FlashStore::new(&mut *f, LAYOUT, slot_of(now)).map_err(StepError::Store)?;
    let info = store
        .verify_slot(slot_of(now))
        .map_err(StepError::Store)?
        .expect("valid slot");
    assert_eq!(info.commit, to);
    if st.mark_good(now) {
        write_record(f, &st).map_err(StepError::Flash)?;
    }
    Ok((now, switch))
}

/// The image in `slot`, read back through the store.
pub fn image_in(f: &mut Nor<'_>, slot: FlashSlot) -> Vec<u8> {
    let mut store = FlashStore::new(&mut *f, LAYOUT, slot).unwrap();
    let info = store.slot_info(slot).unwrap().expect("valid slot");
    let mut out = vec![0u8; info.image_len as usize];
    assert_eq!(store.read_image(slot, 0, &mut out).unwrap(), out.len());
    out
}

/// The anti-rollback floor of a [`provisioned`] device (non-zero, so that every flash test
/// runs with a floor in place).
pub const FACTORY_FLOOR: u64 = 1;

/// A blank device with `v0` installed in slot A and the boot record saying A is good, at
/// floor [`FACTORY_FLOOR`].
pub fn provisioned(mem: &mut [u8], v0: &Built) {
    let mut f = Nor::new(mem);
    f.erase_all();
    // Factory: install v0 into A with B as the (empty) active slot, then point the record at A.
    let mut store = FlashStore::new(&mut f, LAYOUT, FlashSlot::B).unwrap();
    apply(&mut store, None, v0.commit, &ops(v0, None), 4096).unwrap();
    let mut st = BootState::initial(Slot::A, name(&v0.commit));
    st.floor = FACTORY_FLOOR;
    st.slot_mut(Slot::A).security_version = v0.security_version;
    write_record(&mut f, &st).unwrap();
}

/// The three commits the tests use: v0 (factory, security version 1), v1 (unrelated, from
/// scratch, security version 3), v2 (a delta from v1 sharing most objects, security version 4).
pub fn commits() -> (Built, Built, Built) {
    let v0 = build_sv(
        &dir(vec![("firmware.bin", Node::File(noise(0, 20_000)))]),
        None,
        "0",
        1,
    );
    let t1 = dir(vec![
        ("firmware.bin", Node::File(noise(1, 48 * 1024 + 5))),
        (
            "config",
            dir(vec![
                ("app.cfg", Node::File(b"speed=3\n".to_vec())),
                ("cal.bin", Node::File(noise(2, 3000))),
            ]),
        ),
        (
            "lib",
            dir(vec![
                ("a.so", Node::File(noise(3, 5000))),
                (
                    "deep",
                    dir(vec![(
                        "x",
                        dir(vec![("y", dir(vec![("z.txt", Node::File(b"z".to_vec()))]))]),
                    )]),
                ),
                ("same.txt", Node::File(b"app.cfg twin".to_vec())),
            ]),
        ),
    ]);
    let v1 = build_sv(&t1, None, "1", 3);
    let mut t2 = t1.clone();
    if let Node::Dir(root) = &mut t2 {
        let mut fw = noise(1, 48 * 1024 + 5);
        fw[100..200].copy_from_slice(&[0x55; 100]);
        fw.extend_from_slice(b"v2 tail");
        root.insert("firmware.bin".into(), Node::File(fw));
        if let Some(Node::Dir(lib)) = root.get_mut("lib") {
            lib.insert("b.so".into(), Node::File(noise(4, 700)));
        }
    }
    let v2 = build_sv(&t2, Some(v1.commit), "2", 4);
    (v0, v1, v2)
}

/// A window to lend the installer: 32 KiB for deflate and the header, 8 MiB of LZMA2
/// dictionary (what `ecu-agent apply` lends; untouched pages cost nothing).
pub fn window() -> Vec<u8> {
    vec![0u8; agent_core::install::INFLATE_WINDOW + (8 << 20)]
}
