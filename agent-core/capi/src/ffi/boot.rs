//! The boot-record steps (`ecu_update_boot_*`): no handle, pure functions of the two copies.

use super::*;

/// Runs a boot-record step on the two copies and writes its result to `out`.
unsafe fn boot_step(
    copy0: *const u8,
    copy1: *const u8,
    len: usize,
    out: *mut EcuBootWrite,
    step: impl FnOnce(&[u8], &[u8]) -> Result<EcuBootWrite, Last>,
) -> i32 {
    if out.is_null() || len < ECU_UPDATE_BOOT_RECORD_LEN {
        return ECU_UPDATE_E_ARGUMENT;
    }
    // SAFETY: the caller's contract: `len` readable bytes each.
    let (Some(c0), Some(c1)) = (unsafe { bytes(copy0, len) }, unsafe { bytes(copy1, len) }) else {
        return ECU_UPDATE_E_ARGUMENT;
    };
    guard!(match step(c0, c1) {
        Ok(w) => {
            // SAFETY: checked not NULL; the caller's contract.
            unsafe { out.write(w) };
            ECU_UPDATE_OK
        }
        Err(e) => e.code(),
    })
}

/// The first boot record of a device (factory state): slot `booted` good and first, named
/// `name` (`name_len` bytes of `[A-Za-z0-9._-]`, at most 128). Write `out->record` to copy 0
/// and erase copy 1.
///
/// # Safety
/// `name` valid for `name_len` bytes (NULL when 0); `out` valid for a write.
#[no_mangle]
pub unsafe extern "C" fn ecu_update_boot_initial(
    booted: u8,
    name: *const c_char,
    name_len: usize,
    out: *mut EcuBootWrite,
) -> i32 {
    // SAFETY: the caller's contract.
    let Some(name) = (unsafe { bytes(name.cast(), name_len) }) else {
        return ECU_UPDATE_E_ARGUMENT;
    };
    if out.is_null() {
        return ECU_UPDATE_E_ARGUMENT;
    }
    guard!(match crate::boot::initial(booted, name) {
        Ok(w) => {
            // SAFETY: checked not NULL; the caller's contract.
            unsafe { out.write(w) };
            ECU_UPDATE_OK
        }
        Err(e) => e.code(),
    })
}

/// Before an install erases slot `target`: takes it out of the boot order (`out->needed`
/// false when it is already out). `ECU_UPDATE_E_BOOT_STATE` when the other slot could not boot
/// (never marked good and out of tries): do not install then.
///
/// # Safety
/// `copy0`, `copy1`: `len` readable bytes each (the two record copies, `len` at least
/// `ECU_UPDATE_BOOT_RECORD_LEN`); `out` valid for a write.
#[no_mangle]
pub unsafe extern "C" fn ecu_update_boot_retire(
    copy0: *const u8,
    copy1: *const u8,
    len: usize,
    target: u8,
    out: *mut EcuBootWrite,
) -> i32 {
    unsafe {
        boot_step(copy0, copy1, len, out, |a, b| {
            crate::boot::retire(a, b, target)
        })
    }
}

/// After `ecu_update_finish`: stages slot `target` for `tries` (1..=3) trial boots, holding
/// `commit` (`ECU_UPDATE_ID_LEN` bytes, the slot's name becomes its hex) at
/// `security_version` (from `struct ecu_update_installed`). Write `out` before rebooting.
///
/// # Safety
/// As `ecu_update_boot_retire`; `commit` valid for `ECU_UPDATE_ID_LEN` bytes.
#[no_mangle]
pub unsafe extern "C" fn ecu_update_boot_stage(
    copy0: *const u8,
    copy1: *const u8,
    len: usize,
    target: u8,
    tries: u8,
    commit: *const u8,
    security_version: u64,
    out: *mut EcuBootWrite,
) -> i32 {
    // SAFETY: the caller's contract.
    let Some(commit) = (unsafe { bytes(commit, ECU_UPDATE_ID_LEN) }) else {
        return ECU_UPDATE_E_ARGUMENT;
    };
    let mut id = [0u8; ECU_UPDATE_ID_LEN];
    id.copy_from_slice(commit);
    unsafe {
        boot_step(copy0, copy1, len, out, |a, b| {
            crate::boot::stage(a, b, target, tries, &id, security_version)
        })
    }
}

/// Once the booted slot `booted` works: marks it good (no more tries counted) and raises the
/// anti-rollback floor to its security version. `out->needed` is false when it already was.
///
/// # Safety
/// As `ecu_update_boot_retire`.
#[no_mangle]
pub unsafe extern "C" fn ecu_update_boot_mark_good(
    copy0: *const u8,
    copy1: *const u8,
    len: usize,
    booted: u8,
    out: *mut EcuBootWrite,
) -> i32 {
    unsafe {
        boot_step(copy0, copy1, len, out, |a, b| {
            crate::boot::mark_good(a, b, booted)
        })
    }
}

/// The anti-rollback floor of the current record copy into `*floor` (for
/// `ecu_update_policy.min_security_version`).
///
/// # Safety
/// `copy0`, `copy1`: `len` readable bytes each; `floor` valid for a write.
#[no_mangle]
pub unsafe extern "C" fn ecu_update_boot_floor(
    copy0: *const u8,
    copy1: *const u8,
    len: usize,
    floor: *mut u64,
) -> i32 {
    if floor.is_null() {
        return ECU_UPDATE_E_ARGUMENT;
    }
    // SAFETY: the caller's contract.
    let (Some(c0), Some(c1)) = (unsafe { bytes(copy0, len) }, unsafe { bytes(copy1, len) }) else {
        return ECU_UPDATE_E_ARGUMENT;
    };
    guard!(match crate::boot::read(c0, c1) {
        Ok(st) => {
            // SAFETY: checked not NULL.
            unsafe { floor.write(st.floor) };
            ECU_UPDATE_OK
        }
        Err(e) => e.code(),
    })
}
