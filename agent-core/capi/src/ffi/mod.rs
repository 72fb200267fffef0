//! The C boundary: every `extern "C"` function of `ecu_update.h`, and the only unsafe code of
//! the crate. Each function checks its pointers, turns them into references for the duration
//! of the call and hands over to the safe code in [`crate::session`] and [`crate::boot`].
//! On hosted targets every call runs under `catch_unwind`: a panic (a bug) becomes
//! `ECU_UPDATE_E_PANIC`, never an abort of the host process.
//!
//! Thread rules (all functions): a handle is used by one thread at a time (no internal
//! locking, no global state); different handles are independent. Callbacks run on the calling
//! thread, during the call that triggers them.

mod store;

use core::ffi::{c_char, c_void};

use agent_core::install::{Checkpoint, INFLATE_WINDOW};
use agent_core::store::flash::{FlashLayout, FlashSlot, FlashStore};
use agent_core::Policy;

use crate::error::*;
use crate::session::{self, Backend, Session};
use crate::types::*;
pub use store::{CFlash, CallbackStore};

/// The installer handle: opaque, it lives in the memory lent to `ecu_update_init`.
pub struct EcuUpdate {
    _opaque: [u8; 0],
}

/// Runs `$body` (an `i32`-valued expression); on a hosted target a panic becomes
/// [`ECU_UPDATE_E_PANIC`].
macro_rules! guard {
    ($body:expr) => {{
        #[cfg(not(target_os = "none"))]
        {
            match std::panic::catch_unwind(core::panic::AssertUnwindSafe(|| $body)) {
                Ok(code) => code,
                Err(_) => ECU_UPDATE_E_PANIC,
            }
        }
        #[cfg(target_os = "none")]
        {
            $body
        }
    }};
}

/// The session behind a handle.
///
/// # Safety
/// `u` is NULL or a handle from `ecu_update_init` whose memory is still lent.
unsafe fn session<'a>(u: *mut EcuUpdate) -> Option<&'a mut Session> {
    // SAFETY: the caller's contract; `ecu_update_init` wrote a `Session` there.
    unsafe { u.cast::<Session>().as_mut() }
}

/// Runs `f` on the session, with a panic turned into `ECU_UPDATE_E_PANIC` recorded on it.
unsafe fn with(u: *mut EcuUpdate, f: impl FnOnce(&mut Session) -> i32) -> i32 {
    // SAFETY: the caller's contract.
    let Some(s) = (unsafe { session(u) }) else {
        return ECU_UPDATE_E_ARGUMENT;
    };
    let code = guard!(f(&mut *s));
    if code == ECU_UPDATE_E_PANIC {
        s.last = Last::Panic;
    }
    code
}

/// A byte slice from C (`len` 0 allows NULL).
unsafe fn bytes<'a>(p: *const u8, len: usize) -> Option<&'a [u8]> {
    if len == 0 {
        return Some(&[]);
    }
    // SAFETY: the caller's contract: `len` readable bytes at `p` when not NULL.
    (!p.is_null()).then(|| unsafe { core::slice::from_raw_parts(p, len) })
}

/// Writes `v` to `out` when `out` is not NULL.
unsafe fn put<T>(out: *mut T, v: T) {
    if !out.is_null() {
        // SAFETY: the caller's contract: `out` is NULL or valid for writes.
        unsafe { out.write(v) }
    }
}

/// Puts a handle in `mem` (`len` bytes, at least `ECU_UPDATE_MEM_SIZE`, aligned to
/// `ECU_UPDATE_MEM_ALIGN`) and stores it in `*out`: signatures required, no trusted key yet
/// (`ecu_update_set_policy`), no store yet (`ecu_update_use_store` or `ecu_update_use_flash`).
///
/// Ownership: the memory stays lent until the caller stops using the handle; there is nothing
/// to free. The handle must not be moved or copied bytewise. Calling it again on the same
/// memory starts afresh (an install in progress is forgotten, its store not told).
///
/// Returns `ECU_UPDATE_E_ARGUMENT` (NULL `mem` or `out`), `ECU_UPDATE_E_MEMORY` (too small
/// or misaligned), else `ECU_UPDATE_OK`. On a small stack, call it early: it builds the
/// handle in place but may need about 1 KiB of stack.
///
/// # Safety
/// `mem` is NULL or valid for `len` bytes of writes; `out` is NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn ecu_update_init(
    mem: *mut c_void,
    len: usize,
    out: *mut *mut EcuUpdate,
) -> i32 {
    if mem.is_null() || out.is_null() {
        return ECU_UPDATE_E_ARGUMENT;
    }
    if len < core::mem::size_of::<Session>() + INFLATE_WINDOW
        || len < crate::ECU_UPDATE_MEM_SIZE
        || !(mem as usize).is_multiple_of(crate::ECU_UPDATE_MEM_ALIGN)
    {
        return ECU_UPDATE_E_MEMORY;
    }
    let p = mem.cast::<Session>();
    guard!({
        // SAFETY: `mem` is valid for `len` >= size_of::<Session>() + INFLATE_WINDOW bytes and
        // aligned: the handle first, the installer's window (deflate's 32 KiB) right after
        // it, both within the lent memory and apart from each other.
        unsafe {
            let window = core::slice::from_raw_parts_mut(
                mem.cast::<u8>().add(core::mem::size_of::<Session>()),
                INFLATE_WINDOW,
            );
            p.write(Session::new(window));
            out.write(p.cast());
        }
        ECU_UPDATE_OK
    })
}

/// Sets what the device accepts (keys, floor, unsigned) and resets the installer (an install
/// in progress is abandoned and its store told). The key arrays are borrowed until the next
/// call or the end of the handle's use (see `struct ecu_update_policy`).
///
/// # Safety
/// `u` is a handle; `policy` is NULL or valid; its key pointers are valid for
/// `count * ECU_UPDATE_KEY_LEN` bytes and stay so while the handle uses them.
#[no_mangle]
pub unsafe extern "C" fn ecu_update_set_policy(
    u: *mut EcuUpdate,
    policy: *const EcuUpdatePolicy,
) -> i32 {
    // SAFETY: the caller's contract.
    let Some(p) = (unsafe { policy.as_ref() }).copied() else {
        return unsafe { with(u, |s| s.fail(Last::Argument("policy is NULL"))) };
    };
    let keys = |ptr: *const u8, n: usize| -> Option<&'static [[u8; 32]]> {
        if n == 0 {
            return Some(&[]);
        }
        let bytes = n.checked_mul(ECU_UPDATE_KEY_LEN)?;
        // SAFETY: the caller's contract (valid and unchanged while the handle uses them);
        // `[u8; 32]` has alignment 1.
        (!ptr.is_null() && bytes <= isize::MAX as usize)
            .then(|| unsafe { core::slice::from_raw_parts(ptr.cast::<[u8; 32]>(), n) })
    };
    let (Some(trusted), Some(revoked)) = (
        keys(p.trusted_keys, p.trusted_count),
        keys(p.revoked_keys, p.revoked_count),
    ) else {
        return unsafe { with(u, |s| s.fail(Last::Argument("a key pointer is NULL"))) };
    };
    unsafe {
        with(u, |s| {
            let mut policy = Policy::require(trusted)
                .with_revoked(revoked)
                .with_floor(p.min_security_version);
            if p.allow_unsigned {
                policy = policy.allow_unsigned();
            }
            s.abort();
            s.installer.set_policy(policy);
            s.ok()
        })
    }
}

/// Makes the installer write to a store implemented in C. `ops` is copied; `ctx` is passed to
/// every callback and must stay valid while the handle uses this store. An install in
/// progress is abandoned (the previous store told) and the installer reset.
///
/// Returns `ECU_UPDATE_E_CALLBACK` when a required callback is NULL.
///
/// # Safety
/// `u` is a handle; `ops` is NULL or valid; its callbacks and `ctx` stay valid while used.
#[no_mangle]
pub unsafe extern "C" fn ecu_update_use_store(
    u: *mut EcuUpdate,
    ops: *const EcuUpdateStoreOps,
    ctx: *mut c_void,
) -> i32 {
    // SAFETY: the caller's contract.
    let ops = unsafe { ops.as_ref() }.copied();
    unsafe {
        with(u, |s| {
            let Some(ops) = ops else {
                return s.fail(Last::Argument("ops is NULL"));
            };
            match CallbackStore::new(ops, ctx) {
                Ok(c) => {
                    s.abort();
                    s.installer.reset();
                    s.store = Backend::Callbacks(c);
                    s.ok()
                }
                Err(name) => s.fail(Last::Callback(name)),
            }
        })
    }
}

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

/// Ready for a new file: an install in progress is abandoned (its store told) and the
/// installer starts over; the policy and the store stay.
///
/// # Safety
/// `u` is a handle.
#[no_mangle]
pub unsafe extern "C" fn ecu_update_reset(u: *mut EcuUpdate) -> i32 {
    unsafe {
        with(u, |s| {
            s.abort();
            s.installer.reset();
            s.ok()
        })
    }
}

/// Resumes an interrupted install from `checkpoint` (`ECU_UPDATE_CHECKPOINT_LEN` bytes, from
/// the store). Call after `ecu_update_reset` and before the first `ecu_update_feed`, then feed
/// the file from its first byte: `progress.resume_offset` says from where bytes are really
/// needed. A checkpoint of another file makes the install start from the beginning.
///
/// # Safety
/// `u` is a handle; `checkpoint` is valid for `ECU_UPDATE_CHECKPOINT_LEN` bytes.
#[no_mangle]
pub unsafe extern "C" fn ecu_update_resume(u: *mut EcuUpdate, checkpoint: *const u8) -> i32 {
    // SAFETY: the caller's contract.
    let cp = unsafe { bytes(checkpoint, ECU_UPDATE_CHECKPOINT_LEN) };
    unsafe {
        with(u, |s| {
            let Some(Ok(cp)) = cp.map(Checkpoint::from_bytes) else {
                return s.fail(Last::Argument(
                    "the checkpoint is NULL or not a valid checkpoint",
                ));
            };
            if !s.installer.resume(cp) {
                return s.fail(Last::Argument(
                    "resume must come before the first ecu_update_feed (call ecu_update_reset)",
                ));
            }
            s.ok()
        })
    }
}

/// Feeds the next `len` bytes of the update (any length, 0 included), writing what they
/// complete to the store; `*progress` (when not NULL) gets the progress after them. On
/// failure the store is told (abort) and the handle stays failed (`ECU_UPDATE_E_FAILED`)
/// until `ecu_update_reset`. `data` is only read during the call.
///
/// # Safety
/// `u` is a handle; `data` is valid for `len` bytes (NULL allowed when `len` is 0);
/// `progress` NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn ecu_update_feed(
    u: *mut EcuUpdate,
    data: *const u8,
    len: usize,
    progress: *mut EcuUpdateProgress,
) -> i32 {
    // SAFETY: the caller's contract.
    let data = unsafe { bytes(data, len) };
    unsafe {
        with(u, |s| {
            let Some(data) = data else {
                return s.fail(Last::Argument("data is NULL"));
            };
            match s.feed(data) {
                Ok(p) => {
                    put(progress, session::progress(&p));
                    ECU_UPDATE_OK
                }
                Err(code) => code,
            }
        })
    }
}

/// The progress so far (also returned by `ecu_update_feed`).
///
/// # Safety
/// `u` is a handle; `out` valid for a write.
#[no_mangle]
pub unsafe extern "C" fn ecu_update_get_progress(
    u: *mut EcuUpdate,
    out: *mut EcuUpdateProgress,
) -> i32 {
    unsafe {
        with(u, |s| {
            if out.is_null() {
                return s.fail(Last::Argument("out is NULL"));
            }
            put(out, session::progress(&s.installer.progress()));
            s.ok()
        })
    }
}

/// The end of the input: when every byte was fed and verified (`progress.done`), records the
/// commit in the store (for the flash store: writes the inactive slot's header) and fills
/// `*out` (when not NULL). Before the end of the file it fails with
/// `ECU_UPDATE_E_TRUNCATED` and aborts the install. Calling it again after success gives the
/// same result without touching the store. The caller then switches the boot state
/// (`ecu_update_boot_stage`).
///
/// # Safety
/// `u` is a handle; `out` NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn ecu_update_finish(u: *mut EcuUpdate, out: *mut EcuUpdateInstalled) -> i32 {
    unsafe {
        with(u, |s| match s.finish() {
            Ok(i) => {
                put(out, session::installed(&i));
                ECU_UPDATE_OK
            }
            Err(code) => code,
        })
    }
}

/// Abandons the install in progress (for example when the transport fails): the store is
/// told, the handle stays failed until `ecu_update_reset`. Nothing happens after a successful
/// finish or a failure.
///
/// # Safety
/// `u` is a handle.
#[no_mangle]
pub unsafe extern "C" fn ecu_update_abort(u: *mut EcuUpdate) -> i32 {
    unsafe {
        with(u, |s| {
            s.abort();
            s.ok()
        })
    }
}

/// The code of the handle's last call (`ECU_UPDATE_OK` after a success).
///
/// # Safety
/// `u` is NULL or a handle.
#[no_mangle]
pub unsafe extern "C" fn ecu_update_last_error(u: *mut EcuUpdate) -> i32 {
    // SAFETY: the caller's contract.
    match unsafe { session(u) } {
        Some(s) => s.last.code(),
        None => ECU_UPDATE_E_ARGUMENT,
    }
}

/// When the last call failed with `ECU_UPDATE_E_STORE` or `ECU_UPDATE_E_FLASH`: the non-zero
/// value the store callback or the flash driver returned; 0 otherwise.
///
/// # Safety
/// `u` is NULL or a handle.
#[no_mangle]
pub unsafe extern "C" fn ecu_update_store_code(u: *mut EcuUpdate) -> i32 {
    // SAFETY: the caller's contract.
    unsafe { session(u) }.map_or(0, |s| s.last.store_code())
}

/// Writes the sentence explaining the handle's last failure, with its numbers (offsets,
/// versions, sizes), into `buf` (`len` bytes, NUL-terminated, cut to fit, as `snprintf`), and
/// returns the length of the whole sentence. `"success"` after a successful call. The text is
/// for people and logs; programs test the code. On a firmware that never calls it, the
/// linker drops the formatting code.
///
/// # Safety
/// `u` is NULL or a handle; `buf` is NULL (then `len` must be 0) or valid for `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn ecu_update_message(
    u: *mut EcuUpdate,
    buf: *mut c_char,
    len: usize,
) -> usize {
    // SAFETY: the caller's contract.
    let Some(s) = (unsafe { session(u) }) else {
        return 0;
    };
    let out: &mut [u8] = if buf.is_null() || len == 0 {
        &mut []
    } else {
        // SAFETY: the caller's contract.
        unsafe { core::slice::from_raw_parts_mut(buf.cast::<u8>(), len) }
    };
    let last = s.last.clone();
    let n = guard!(write_message(&last, out) as i32);
    n.max(0) as usize
}

/// The stable, static text of an `ECU_UPDATE_*` code (never NULL; the same text for the same
/// code in every version). Thread-safe.
#[no_mangle]
pub extern "C" fn ecu_update_strerror(code: i32) -> *const c_char {
    strerror(code).as_ptr()
}

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
