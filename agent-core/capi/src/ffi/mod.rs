//! The C boundary: every `extern "C"` function of `ecu_update.h`, and the only unsafe code of
//! the crate. Each function checks its pointers, turns them into references for the duration
//! of the call and hands over to the safe code in [`crate::session`] and [`crate::boot`].
//! On hosted targets every call runs under `catch_unwind`: a panic (a bug) becomes
//! `ECU_UPDATE_E_PANIC`, never an abort of the host process.
//!
//! Thread rules (all functions): a handle is used by one thread at a time (no internal
//! locking, no global state); different handles are independent. Callbacks run on the calling
//! thread, during the call that triggers them.

use core::ffi::{c_char, c_void};

use agent_core::install::{Checkpoint, INFLATE_WINDOW};
use agent_core::store::flash::{FlashLayout, FlashSlot, FlashStore};
use agent_core::Policy;

use crate::error::*;
use crate::session::{self, Backend, Session};
use crate::types::*;

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

// The functions by topic, declared after `guard!` and in the order of `ecu_update.h` (cbindgen
// reads them in this order).
mod flash;

mod install;

mod boot;

mod store;

pub use boot::*;
pub use flash::*;
pub use install::*;
pub use store::{CFlash, CallbackStore};
