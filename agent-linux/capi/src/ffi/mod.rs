//! The C boundary of `ecu_agent.h`: every `extern "C"` function, and the only unsafe code of
//! the crate. Each call checks its pointers, runs under `catch_unwind` (a panic becomes
//! `ECU_AGENT_E_PANIC`) and records its failure on the handle for `ecu_agent_message`.
//!
//! Thread rules: a handle may be used from any thread but by one call at a time (calls on
//! the same handle are serialised by a lock inside, so a second thread waits), except
//! `ecu_agent_cancel`, which may be called from any thread at any time to stop the install
//! in progress. Progress callbacks run on the thread that made the install call, during it.

use std::ffi::{c_char, c_void, CStr};
use std::fs::File;
use std::os::fd::{BorrowedFd, RawFd};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;

use agent_core::install::Progress;
use agent_linux::deploy::{InstallOptions, Options, StageReport, Status};
use bootloader_hooks::{DecisionKind, Slot};

use crate::agent::{Agent, Failure};
use crate::error::*;
use crate::types::*;

/// The handle: opaque, made by `ecu_agent_open`, freed by `ecu_agent_close`.
pub struct EcuAgent {
    _opaque: [u8; 0],
}

fn agent<'a>(a: *mut EcuAgent) -> Option<&'a Agent> {
    // SAFETY: the caller's contract: NULL or a handle from `ecu_agent_open` not yet closed.
    unsafe { a.cast::<Agent>().as_ref() }
}

/// Runs `f` on the handle under `catch_unwind`, recording its failure.
fn with(a: *mut EcuAgent, f: impl FnOnce(&Agent) -> Result<(), Failure>) -> i32 {
    let Some(ag) = agent(a) else {
        return ECU_AGENT_E_ARGUMENT;
    };
    let r = catch_unwind(AssertUnwindSafe(|| f(ag))).unwrap_or_else(|_| {
        Err(Failure::new(
            ECU_AGENT_E_PANIC,
            "the library panicked (a bug, please report it); close the handle",
        ))
    });
    let code = r.as_ref().err().map_or(ECU_AGENT_OK, |f| f.code);
    ag.inner().last = r.err();
    code
}

fn slot_of(c: c_char) -> Result<Option<Slot>, Failure> {
    match c as u8 {
        0 => Ok(None),
        b'A' | b'a' => Ok(Some(Slot::A)),
        b'B' | b'b' => Ok(Some(Slot::B)),
        _ => Err(Failure::new(
            ECU_AGENT_E_ARGUMENT,
            "booted_slot is 'A', 'B' or 0 (detect)",
        )),
    }
}

/// Opens the sysroot at `sysroot` (a NUL-terminated path) with `opts` (NULL: defaults) and
/// stores a new handle in `*out`. On failure `*out` is NULL, the code says why and
/// `ecu_agent_message(NULL, ...)` cannot tell more: `errbuf` (when not NULL) gets the
/// sentence (`errlen` bytes, NUL-terminated, cut to fit).
///
/// # Safety
/// `sysroot` is a NUL-terminated string; `opts` NULL or valid (its key array valid for
/// `trusted_count * 32` bytes during the call); `out` valid for a write; `errbuf` NULL or
/// valid for `errlen` bytes.
#[no_mangle]
pub unsafe extern "C" fn ecu_agent_open(
    sysroot: *const c_char,
    opts: *const EcuAgentOptions,
    out: *mut *mut EcuAgent,
    errbuf: *mut c_char,
    errlen: usize,
) -> i32 {
    if out.is_null() {
        return ECU_AGENT_E_ARGUMENT;
    }
    // SAFETY: checked not NULL; the caller's contract.
    unsafe { out.write(std::ptr::null_mut()) };
    let r = catch_unwind(AssertUnwindSafe(|| {
        if sysroot.is_null() {
            return Err(Failure::new(ECU_AGENT_E_ARGUMENT, "sysroot is NULL"));
        }
        // SAFETY: the caller's contract.
        let path = unsafe { CStr::from_ptr(sysroot) };
        let path = PathBuf::from(std::ffi::OsStr::from_encoded_bytes_checked(path));
        // SAFETY: the caller's contract.
        let o = unsafe { opts.as_ref() }.copied();
        let mut options = Options::default();
        let mut install = InstallOptions::default();
        let mut create = false;
        if let Some(o) = o {
            options.booted = slot_of(o.booted_slot)?;
            options.tries = (o.tries != 0).then_some(o.tries);
            create = o.create;
            install.allow_unsigned = o.allow_unsigned;
            if o.trusted_count > 0 {
                if o.trusted_keys.is_null() || o.trusted_count > 1024 {
                    return Err(Failure::new(
                        ECU_AGENT_E_ARGUMENT,
                        "trusted_keys is NULL or trusted_count above 1024",
                    ));
                }
                // SAFETY: the caller's contract: trusted_count * 32 readable bytes.
                let keys =
                    unsafe { std::slice::from_raw_parts(o.trusted_keys, o.trusted_count * 32) };
                install.extra_keys = keys
                    .chunks_exact(32)
                    .map(|k| k.try_into().unwrap_or([0; 32]))
                    .collect();
            }
        }
        Agent::open(path, options, install, create)
    }))
    .unwrap_or_else(|_| {
        Err(Failure::new(
            ECU_AGENT_E_PANIC,
            "the library panicked (a bug, please report it)",
        ))
    });
    match r {
        Ok(a) => {
            // SAFETY: checked not NULL.
            unsafe { out.write(Box::into_raw(Box::new(a)).cast()) };
            ECU_AGENT_OK
        }
        Err(f) => {
            if !errbuf.is_null() && errlen > 0 {
                // SAFETY: the caller's contract.
                let buf = unsafe { std::slice::from_raw_parts_mut(errbuf.cast::<u8>(), errlen) };
                write_cut(&f.message, buf);
            }
            f.code
        }
    }
}

/// OsStr from bytes: on Unix every byte string is a path.
trait FromBytes {
    fn from_encoded_bytes_checked(b: &CStr) -> &std::ffi::OsStr;
}

impl FromBytes for std::ffi::OsStr {
    fn from_encoded_bytes_checked(b: &CStr) -> &std::ffi::OsStr {
        use std::os::unix::ffi::OsStrExt;
        std::ffi::OsStr::from_bytes(b.to_bytes())
    }
}

fn write_cut(s: &str, buf: &mut [u8]) -> usize {
    let n = s.len().min(buf.len().saturating_sub(1));
    buf[..n].copy_from_slice(&s.as_bytes()[..n]);
    if let Some(end) = buf.get_mut(n) {
        *end = 0;
    }
    s.len()
}

/// Closes a handle (NULL is ignored): an install being pushed is abandoned (nothing of it
/// becomes bootable). The handle must not be used afterwards.
///
/// # Safety
/// `a` is NULL or a handle not yet closed, used by no other thread.
#[no_mangle]
pub unsafe extern "C" fn ecu_agent_close(a: *mut EcuAgent) {
    if !a.is_null() {
        // SAFETY: made by `Box::into_raw` in `ecu_agent_open`; the caller's contract.
        let b = unsafe { Box::from_raw(a.cast::<Agent>()) };
        let _ = catch_unwind(AssertUnwindSafe(move || drop(b)));
    }
}

/// Sets the booted slot the handle assumes: `'A'`, `'B'`, or 0 to detect it (after a real
/// reboot a daemon opens a new handle instead).
///
/// # Safety
/// `a` is a handle.
#[no_mangle]
pub unsafe extern "C" fn ecu_agent_set_booted_slot(a: *mut EcuAgent, slot: c_char) -> i32 {
    with(a, |ag| {
        ag.set_booted(slot_of(slot)?);
        Ok(())
    })
}

fn put<T>(out: *mut T, v: T) {
    if !out.is_null() {
        // SAFETY: the caller's contract: NULL or valid for a write.
        unsafe { out.write(v) }
    }
}

// The functions by topic, in the order of `ecu_agent.h` (cbindgen reads them in this order).
mod install;

mod boot;

mod message;

pub use boot::*;
pub use install::*;
pub use message::*;
