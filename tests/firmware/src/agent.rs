//! The scenarios: a from-scratch install, a delta install, a file with one flipped byte and a
//! replay of an older file below the anti-rollback floor, both refused with the active slot
//! and the boot record untouched. The floor lives in the boot record: installs run with
//! `Policy::with_floor(record floor)`, a slot is staged with its update's security version,
//! and marking it good raises the floor. Each install reads its file in `block`-byte pieces,
//! as a bus would deliver it, through `agent_core::io::install_from_reader`.
use core::mem::MaybeUninit;
use core::ptr::addr_of_mut;

use agent_core::install::{InstallError, Installer, Policy, INFLATE_WINDOW};
use agent_core::io::ReadInstallError;
use agent_core::object::ObjectId;
use agent_core::store::flash::model::NorModel;
use agent_core::store::flash::{FlashLayout, FlashSlot, FlashStore};
use bootloader_hooks::nor_record::RecordStore;
use bootloader_hooks::{BootState, DecisionKind, Slot, SlotName};

use crate::{semi, stack, MAX_BLOCK};

/// Write granularity of the simulated NOR flash (a double word, as STM32L4/G4 internal flash).
const W: usize = 8;
/// Erase sector (4 KiB, as most serial NOR flash).
const E: usize = 4096;
/// Bytes of each slot.
const SLOT: u32 = 256 * 1024;
/// The boot record's two copies are sectors 0 and 1; the slots follow.
const LAYOUT: FlashLayout = FlashLayout {
    slots: [2 * E as u32, 2 * E as u32 + SLOT],
    slot_size: SLOT,
};
const DEVICE: usize = 2 * E + 2 * SLOT as usize;

type Nor = NorModel<'static, W, E>;

/// The ed25519 public key the firmware trusts (the test key of `cargo xtask firmware`).
static KEYS: [[u8; 32]; 1] = [hex32(include_str!("../test-key.pub"))];

/// The simulated NOR flash: its own memory region (NORSIM in memory.x, not loaded), not the
/// agent's RAM. Erased (all 0xFF) at start.
#[link_section = ".norsim"]
static mut NORSIM: [u8; DEVICE] = [0xFF; DEVICE];
/// The installer: about 15 KiB without its window, constructed once (see `run`).
static mut INSTALLER: MaybeUninit<Installer<'static>> = MaybeUninit::uninit();
/// The window lent to the installer: deflate's 32 KiB (the agent's RAM, lent rather than
/// built in; the updates here are written with a 32 KiB dictionary).
static mut WINDOW: [u8; INFLATE_WINDOW] = [0; INFLATE_WINDOW];
/// The flash store: about 1.2 KiB, constructed once.
static mut STORE: MaybeUninit<FlashStore<Nor>> = MaybeUninit::uninit();
/// The transport's receive buffer (firmware's, not the agent's).
static mut BLOCK: [u8; MAX_BLOCK] = [0; MAX_BLOCK];
/// Two buffers to compare images.
static mut CMP: [[u8; 512]; 2] = [[0; 512]; 2];

const fn hex32(s: &str) -> [u8; 32] {
    let b = s.as_bytes();
    let mut out = [0u8; 32];
    let mut i = 0;
    while i < 32 {
        out[i] = (nib(b[2 * i]) << 4) | nib(b[2 * i + 1]);
        i += 1;
    }
    out
}

const fn nib(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        _ => panic!("test-key.pub must be 64 lowercase hex digits"),
    }
}

struct Ctx {
    inst: &'static mut Installer<'static>,
    store: &'static mut FlashStore<Nor>,
    block: &'static mut [u8],
    cmp: &'static mut [[u8; 512]; 2],
    /// Deepest stack of an install (feed + finish) so far, below the caller's frame.
    install_stack: usize,
    /// The same from the top of RAM (the whole firmware's stack at that point).
    total_stack: usize,
}

type Res<T = ()> = Result<T, ()>;

fn fail(what: &str, e: &dyn core::fmt::Display) {
    #[cfg(feature = "quiet")]
    {
        let _ = e;
        say!("FAIL {}", what);
    }
    #[cfg(all(feature = "defmt", not(feature = "quiet")))]
    defmt::println!("FAIL {}: {}", what, defmt::Display2Format(e));
    #[cfg(not(any(feature = "defmt", feature = "quiet")))]
    cortex_m_semihosting::hprintln!("FAIL {}: {}", what, e);
}

fn check(ok: bool, what: &str) -> Res {
    if ok {
        Ok(())
    } else {
        say!("FAIL {}", what);
        Err(())
    }
}

fn flash_slot(s: Slot) -> FlashSlot {
    match s {
        Slot::A => FlashSlot::A,
        Slot::B => FlashSlot::B,
    }
}

/// The boot record's two copies (sectors 0 and 1), through bootloader-hooks' `NorFlash`
/// record store.
fn records(f: &mut Nor) -> Res<RecordStore<&mut Nor>> {
    RecordStore::new(f, 0, E as u32).map_err(|e| fail("boot record layout", &e))
}

/// The boot state from the record's two copies.
fn read_record(f: &mut Nor) -> Res<BootState> {
    records(f)?.read().map_err(|e| fail("boot record", &e))
}

/// Writes `state` to the copy that is not current (erase its sector, then program it), so a
/// power cut leaves the current copy valid.
fn write_record(f: &mut Nor, state: &BootState) -> Res {
    records(f)?
        .write(state)
        .map(|_| ())
        .map_err(|e| fail("boot record write", &e))
}

/// One boot as the bootloader runs it: decide, store the decision's state if it changed.
fn boot(f: &mut Nor) -> Res<(Slot, DecisionKind, BootState)> {
    let st = read_record(f)?;
    let d = st.decide();
    if d.changed {
        write_record(f, &d.state)?;
    }
    Ok((d.slot, d.kind, d.state))
}

/// Takes `target` out of the boot order before its slot is erased (`BootState::retire`:
/// refused when the booted slot could not boot again, on its last trial, never marked good,
/// since erasing `target` would then leave nothing bootable).
fn retire(f: &mut Nor, st: &mut BootState, target: Slot) -> Res {
    if st
        .retire(target)
        .map_err(|e| fail("retire the slot to erase", &e))?
    {
        write_record(f, st)?;
    }
    Ok(())
}

fn name(id: &ObjectId) -> SlotName {
    // 64 hex digits always fit a slot name.
    SlotName::from_str(id.to_hex().as_str()).unwrap_or_default()
}

/// Feeds `file` to the installer in `block`-byte pieces, refusing anything below `floor`.
/// Returns the installer's verdict: the commit and its security version, or whether the
/// refusal was the floor's.
fn install(c: &mut Ctx, file: &str, floor: u64) -> Res<Result<(ObjectId, u64), bool>> {
    let Some(mut f) = semi::File::open(file) else {
        say!("FAIL cannot open {}", file);
        return Err(());
    };
    c.inst.set_policy(Policy::require(&KEYS).with_floor(floor));
    let base = stack::paint();
    let verdict = agent_core::io::install_from_reader(c.inst, c.store, &mut f, c.block)
        .map(|i| (i.commit, i.security_version));
    let peak = stack::peak(base);
    c.install_stack = c.install_stack.max(peak);
    c.total_stack = c.total_stack.max(stack::peak_total());
    say!(
        "{}: {} blocks fed, install stack {} bytes",
        file,
        f.reads,
        peak as u32
    );
    Ok(verdict.map_err(|e| {
        let below = matches!(
            e,
            ReadInstallError::Install(InstallError::BelowFloor { .. })
        );
        #[cfg(feature = "quiet")]
        {
            let _ = e;
            say!("install refused");
        }
        #[cfg(all(feature = "defmt", not(feature = "quiet")))]
        defmt::println!("install refused: {}", defmt::Display2Format(&e));
        #[cfg(not(any(feature = "defmt", feature = "quiet")))]
        cortex_m_semihosting::hprintln!("install refused: {}", e);
        below
    }))
}

/// Compares `slot`'s image with the host file `expect`, byte for byte.
fn same_image(c: &mut Ctx, slot: FlashSlot, expect: &str) -> Res {
    let Some(mut f) = semi::File::open(expect) else {
        say!("FAIL cannot open {}", expect);
        return Err(());
    };
    let mut at = 0u32;
    loop {
        let [want, have] = &mut *c.cmp;
        let n = f.read_full(want);
        let m = c
            .store
            .read_image(slot, at, have)
            .map_err(|e| fail("image read", &e))?;
        if n != m || want[..n] != have[..n] {
            say!(
                "FAIL image in slot differs from {} near byte {}",
                expect,
                at
            );
            return Err(());
        }
        if n == 0 {
            break;
        }
        at += n as u32;
    }
    say!("slot image equals {} ({} bytes)", expect, at);
    Ok(())
}

/// A whole update on the device: boot, install into the inactive slot, stage it, reboot
/// through the decision, verify, mark good, compare the image.
fn update(c: &mut Ctx, file: &str, expect: &str) -> Res {
    let (booted, _, mut st) = boot(c.store.flash())?;
    let target = booted.other();
    retire(c.store.flash(), &mut st, target)?;
    c.store.set_active(flash_slot(booted));
    let floor = st.floor;
    let (commit, sv) = install(c, file, floor)?.map_err(|_| ())?;
    let staged = c.store.staged();
    check(
        staged.is_some_and(|s| s.commit == commit),
        "slot staged with the commit",
    )?;
    st.stage_versioned(target, 3, name(&commit), sv)
        .map_err(|e| fail("stage", &e))?;
    write_record(c.store.flash(), &st)?;
    // Reboot.
    let (now, kind, mut st) = boot(c.store.flash())?;
    check(
        now == target && kind == DecisionKind::Trial,
        "the decision tries the new slot",
    )?;
    c.store.set_active(flash_slot(now));
    let info = c
        .store
        .verify_slot(flash_slot(now))
        .map_err(|e| fail("verify slot", &e))?;
    check(
        info.is_some_and(|i| i.commit == commit),
        "the new slot verifies",
    )?;
    check(st.floor == floor, "staging and trying keep the floor")?;
    if st.mark_good(now) {
        write_record(c.store.flash(), &st)?;
    }
    let (again, kind, st) = boot(c.store.flash())?;
    check(
        again == now && kind == DecisionKind::Confirmed,
        "marked good",
    )?;
    check(st.floor == floor.max(sv), "mark-good raises the floor")?;
    say!("floor {} -> {}", floor as u32, st.floor as u32);
    same_image(c, flash_slot(now), expect)
}

/// CRC-32 of a slot's whole region.
fn slot_crc(c: &mut Ctx, s: FlashSlot) -> u32 {
    let start = LAYOUT.start(s) as usize;
    bootloader_hooks::crc32(&c.store.flash().bytes()[start..start + SLOT as usize])
}

/// An install that must be refused (by the floor when `below_floor`), leaving the booted slot
/// and the boot state as they were.
fn refuse(c: &mut Ctx, file: &str, expect: &str, below_floor: bool) -> Res {
    let (booted, _, mut st) = boot(c.store.flash())?;
    retire(c.store.flash(), &mut st, booted.other())?;
    c.store.set_active(flash_slot(booted));
    let active = flash_slot(booted);
    let before = slot_crc(c, active);
    let record_before = read_record(c.store.flash())?;
    let verdict = install(c, file, record_before.floor)?;
    check(
        verdict == Err(below_floor),
        "refused, for the expected reason",
    )?;
    check(c.store.staged().is_none(), "nothing staged")?;
    check(
        slot_crc(c, active) == before,
        "the active slot is untouched",
    )?;
    check(
        read_record(c.store.flash())? == record_before,
        "the boot state is untouched",
    )?;
    let (now, kind, _) = boot(c.store.flash())?;
    check(
        now == booted && kind == DecisionKind::Confirmed,
        "the old slot still boots",
    )?;
    same_image(c, active, expect)
}

/// Puts the installer and the store in their statics, once. `Installer::new` builds the whole
/// installer (with its 10.5 KB decompressor) by value on the stack before it is moved: this
/// frame is measured apart from the installs, and popped before they run.
#[inline(never)]
fn construct(
    nor: Nor,
) -> Option<(
    &'static mut Installer<'static>,
    &'static mut FlashStore<Nor>,
)> {
    let window: &'static mut [u8] = unsafe { &mut *addr_of_mut!(WINDOW) };
    let inst =
        unsafe { (*addr_of_mut!(INSTALLER)).write(Installer::new(Policy::require(&KEYS), window)) };
    match FlashStore::new(nor, LAYOUT, FlashSlot::A) {
        Ok(s) => Some((inst, unsafe { (*addr_of_mut!(STORE)).write(s) })),
        Err(e) => {
            fail("flash layout", &e);
            None
        }
    }
}

/// Runs every scenario; true when all passed.
pub fn run(block: usize) -> bool {
    let nor_mem: &'static mut [u8; DEVICE] = unsafe { &mut *addr_of_mut!(NORSIM) };
    let mut nor = Nor::new(nor_mem);
    nor.erase_all();
    // Factory state: slot A named "factory" and good, but empty; the first update goes to B.
    let factory = BootState::initial(Slot::A, SlotName::from_str("factory").unwrap_or_default());
    if write_record(&mut nor, &factory).is_err() {
        return false;
    }
    let base = stack::paint();
    let Some((inst, store)) = construct(nor) else {
        return false;
    };
    let init_stack = stack::peak(base);
    let mut c = Ctx {
        inst,
        store,
        block: unsafe { &mut (&mut *addr_of_mut!(BLOCK))[..block] },
        cmp: unsafe { &mut *addr_of_mut!(CMP) },
        install_stack: 0,
        total_stack: 0,
    };
    say!(
        "installer-ram: Installer {} + window {} + FlashStore {} bytes",
        core::mem::size_of::<Installer>() as u32,
        INFLATE_WINDOW as u32,
        core::mem::size_of::<FlashStore<Nor>>() as u32
    );
    // (label, file, image expected in the booted slot, installs, refused by the floor)
    let scenarios: [(&str, &str, &str, bool, bool); 4] = [
        ("from scratch", "v1.update", "v1.bin", true, false),
        ("delta", "v1-v2.update", "v2.bin", true, false),
        (
            "one flipped byte",
            "v2-flipped.update",
            "v2.bin",
            false,
            false,
        ),
        ("below the floor", "v1.update", "v2.bin", false, true),
    ];
    let mut ok = true;
    for (label, file, expect, good, floor) in scenarios {
        let r = if good {
            update(&mut c, file, expect)
        } else {
            refuse(&mut c, file, expect, floor)
        };
        say!(
            "scenario {}: {}",
            label,
            if r.is_ok() { "PASS" } else { "FAIL" }
        );
        ok &= r.is_ok();
    }
    say!("init-stack-bytes: {}", init_stack as u32);
    say!("install-stack-bytes: {}", c.install_stack as u32);
    say!("firmware-stack-bytes: {}", c.total_stack as u32);
    say!("stack-available-bytes: {}", stack::available() as u32);
    ok
}
