//! An install: reset, resume, feed, progress, finish, abort, and what the last call did.

use super::*;

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
