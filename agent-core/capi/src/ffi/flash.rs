//! The flash A/B store over a C flash driver: choosing it, the booted slot, slot headers,
//! images and the saved resume checkpoint.

use super::*;

fn flash_slot(n: u8) -> Option<FlashSlot> {
    match n {
        ECU_UPDATE_SLOT_A => Some(FlashSlot::A),
        ECU_UPDATE_SLOT_B => Some(FlashSlot::B),
        _ => None,
    }
}

/// Makes the installer write to agent-core's flash A/B store (docs/FLASH.md) over a C flash
/// driver: installs go to the slot that is not `active` (the booted one, read only). `driver`
/// and `layout` are copied; the driver's `ctx` and callbacks must stay valid while the handle
/// uses them. An install in progress is abandoned and the installer reset.
///
/// Returns `ECU_UPDATE_E_CALLBACK` (a driver callback is NULL), `ECU_UPDATE_E_ARGUMENT`
/// (a geometry the store cannot use, `active` not 0 or 1) or `ECU_UPDATE_E_LAYOUT` (slots
/// not sector-aligned, overlapping, past the device, smaller than two sectors).
///
/// # Safety
/// `u` is a handle; `driver` and `layout` are NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn ecu_update_use_flash(
    u: *mut EcuUpdate,
    driver: *const EcuFlashDriver,
    layout: *const EcuFlashLayout,
    active: u8,
) -> i32 {
    // SAFETY: the caller's contract.
    let (driver, layout) = unsafe { (driver.as_ref().copied(), layout.as_ref().copied()) };
    unsafe {
        with(u, |s| {
            let (Some(driver), Some(layout)) = (driver, layout) else {
                return s.fail(Last::Argument("driver or layout is NULL"));
            };
            let Some(active) = flash_slot(active) else {
                return s.fail(Last::Argument("the active slot is 0 (A) or 1 (B)"));
            };
            let flash = match CFlash::new(driver) {
                Ok(f) => f,
                Err(e) => return s.fail(e),
            };
            s.abort();
            s.installer.reset();
            s.store = Backend::None;
            let layout = FlashLayout {
                slots: [layout.slot_a, layout.slot_b],
                slot_size: layout.slot_size,
            };
            match FlashStore::new(flash, layout, active) {
                Ok(f) => {
                    s.store = Backend::Flash(f);
                    s.ok()
                }
                Err(e) => s.fail(Last::Store(StoreFail::Flash(e))),
            }
        })
    }
}

/// After a reboot: takes `active` as the booted slot of the flash store (installs go to the
/// other one), forgets any install state and resets the installer.
///
/// # Safety
/// `u` is a handle.
#[no_mangle]
pub unsafe extern "C" fn ecu_update_flash_set_active(u: *mut EcuUpdate, active: u8) -> i32 {
    unsafe {
        with(u, |s| {
            let Some(active) = flash_slot(active) else {
                return s.fail(Last::Argument("the active slot is 0 (A) or 1 (B)"));
            };
            s.abort();
            s.installer.reset();
            match s.flash() {
                Ok(f) => f.set_active(active),
                Err(code) => return code,
            }
            s.ok()
        })
    }
}

fn slot_info(i: &agent_core::store::flash::SlotInfo) -> EcuFlashSlotInfo {
    EcuFlashSlotInfo {
        commit: i.commit.0,
        image_sha256: i.image_sha256,
        image_offset: i.image_offset,
        image_len: i.image_len,
        objects: i.objects,
    }
}

/// Reads flash slot `slot`'s header into `*out` and sets `*valid` (false: no valid commit
/// there, `*out` zeroed). With `verify`, every object and the image are hashed again (a
/// mismatch is `ECU_UPDATE_E_CORRUPT`).
///
/// # Safety
/// `u` is a handle; `out` and `valid` are NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn ecu_update_flash_slot_info(
    u: *mut EcuUpdate,
    slot: u8,
    verify: bool,
    out: *mut EcuFlashSlotInfo,
    valid: *mut bool,
) -> i32 {
    unsafe {
        with(u, |s| {
            let Some(slot) = flash_slot(slot) else {
                return s.fail(Last::Argument("a slot is 0 (A) or 1 (B)"));
            };
            let f = match s.flash() {
                Ok(f) => f,
                Err(code) => return code,
            };
            let r = if verify {
                f.verify_slot(slot)
            } else {
                f.slot_info(slot)
            };
            match r {
                Ok(info) => {
                    put(out, info.as_ref().map(slot_info).unwrap_or_default());
                    put(valid, info.is_some());
                    s.ok()
                }
                Err(e) => s.fail(Last::Store(StoreFail::Flash(e))),
            }
        })
    }
}

/// After a successful `ecu_update_finish` on the flash store: the slot just staged (`*staged`
/// false when nothing is).
///
/// # Safety
/// `u` is a handle; `out` and `staged` are NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn ecu_update_flash_staged(
    u: *mut EcuUpdate,
    out: *mut EcuFlashSlotInfo,
    staged: *mut bool,
) -> i32 {
    unsafe {
        with(u, |s| {
            let info = match s.flash() {
                Ok(f) => f.staged(),
                Err(code) => return code,
            };
            put(out, info.as_ref().map(slot_info).unwrap_or_default());
            put(staged, info.is_some());
            s.ok()
        })
    }
}

/// Reads up to `len` bytes of `slot`'s image from byte `offset` of the image into `buf`;
/// `*read` gets how many (fewer at its end, 0 when the slot is not valid).
///
/// # Safety
/// `u` is a handle; `buf` is valid for `len` bytes of writes; `read` NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn ecu_update_flash_read_image(
    u: *mut EcuUpdate,
    slot: u8,
    offset: u32,
    buf: *mut u8,
    len: usize,
    read: *mut usize,
) -> i32 {
    unsafe {
        with(u, |s| {
            let Some(slot) = flash_slot(slot) else {
                return s.fail(Last::Argument("a slot is 0 (A) or 1 (B)"));
            };
            if buf.is_null() && len > 0 {
                return s.fail(Last::Argument("buf is NULL"));
            }
            let out: &mut [u8] = if len == 0 {
                &mut []
            } else {
                // SAFETY: the caller's contract.
                core::slice::from_raw_parts_mut(buf, len)
            };
            let r = match s.flash() {
                Ok(f) => f.read_image(slot, offset, out),
                Err(code) => return code,
            };
            match r {
                Ok(n) => {
                    put(read, n);
                    s.ok()
                }
                Err(e) => s.fail(Last::Store(StoreFail::Flash(e))),
            }
        })
    }
}

/// After a power cut or a transport failure: the checkpoint the flash store saved in the
/// inactive slot (`ECU_UPDATE_CHECKPOINT_LEN` bytes into `out`, `*found` true), to hand to
/// `ecu_update_resume` before feeding the same file again.
///
/// # Safety
/// `u` is a handle; `out` is valid for `ECU_UPDATE_CHECKPOINT_LEN` bytes of writes; `found`
/// NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn ecu_update_flash_saved_checkpoint(
    u: *mut EcuUpdate,
    out: *mut u8,
    found: *mut bool,
) -> i32 {
    unsafe {
        with(u, |s| {
            if out.is_null() {
                return s.fail(Last::Argument("out is NULL"));
            }
            let r = match s.flash() {
                Ok(f) => f.saved_checkpoint(),
                Err(code) => return code,
            };
            match r {
                Ok(cp) => {
                    if let Some(cp) = cp {
                        // SAFETY: the caller's contract.
                        core::slice::from_raw_parts_mut(out, ECU_UPDATE_CHECKPOINT_LEN)
                            .copy_from_slice(&cp.to_bytes());
                    }
                    put(found, cp.is_some());
                    s.ok()
                }
                Err(e) => s.fail(Last::Store(StoreFail::Flash(e))),
            }
        })
    }
}
