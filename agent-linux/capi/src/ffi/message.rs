//! What the last call did: its code, its sentence, and the stable text of every code.

use super::*;

/// The code of the handle's last call (`ECU_AGENT_OK` after a success).
///
/// # Safety
/// `a` is NULL or a handle.
#[no_mangle]
pub unsafe extern "C" fn ecu_agent_last_error(a: *mut EcuAgent) -> i32 {
    match agent(a) {
        Some(ag) => ag.inner().last.as_ref().map_or(ECU_AGENT_OK, |f| f.code),
        None => ECU_AGENT_E_ARGUMENT,
    }
}

/// Writes the sentence of the handle's last failure (what happened, with its numbers and
/// paths, and what to do) into `buf` (`len` bytes, NUL-terminated, cut to fit, as
/// `snprintf`); returns the whole sentence's length. `"success"` after a successful call.
///
/// # Safety
/// `a` is NULL or a handle; `buf` NULL (`len` 0) or valid for `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn ecu_agent_message(
    a: *mut EcuAgent,
    buf: *mut c_char,
    len: usize,
) -> usize {
    let Some(ag) = agent(a) else {
        return 0;
    };
    let msg = catch_unwind(AssertUnwindSafe(|| {
        ag.inner()
            .last
            .as_ref()
            .map_or_else(|| "success".to_string(), |f| f.message.clone())
    }))
    .unwrap_or_else(|_| "the library panicked".to_string());
    if buf.is_null() || len == 0 {
        return msg.len();
    }
    // SAFETY: the caller's contract.
    let out = unsafe { std::slice::from_raw_parts_mut(buf.cast::<u8>(), len) };
    write_cut(&msg, out)
}

/// The stable, static text of an `ECU_AGENT_*` code (never NULL). Thread-safe.
#[no_mangle]
pub extern "C" fn ecu_agent_strerror(code: i32) -> *const c_char {
    strerror(code).as_ptr()
}
