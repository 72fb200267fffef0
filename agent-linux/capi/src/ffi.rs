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

fn progress_of(p: &Progress) -> EcuAgentProgress {
    EcuAgentProgress {
        bytes: p.bytes,
        bytes_total: p.bytes_total.unwrap_or(0),
        objects: p.objects,
        objects_total: p.objects_total,
        parts: p.parts,
        parts_total: p.parts_total,
    }
}

/// The caller's progress callback as a sink; `true` to go on.
fn sink(cb: EcuAgentProgressFn, user: *mut c_void) -> impl FnMut(&Progress) -> bool {
    move |p| match cb {
        // SAFETY: the caller's contract: `cb` callable with `user` during the install call.
        Some(f) => unsafe { f(user, &progress_of(p)) == 0 },
        None => true,
    }
}

fn result_of(r: &StageReport) -> EcuAgentInstallResult {
    let mut out = EcuAgentInstallResult {
        commit: [0; ECU_AGENT_COMMIT_CAP],
        version: [0; ECU_AGENT_VERSION_CAP],
        deployment: [0; ECU_AGENT_NAME_CAP],
        action: [0; ECU_AGENT_WORD_CAP],
        security_version: r.applied.as_ref().map_or(0, |a| a.security_version),
        slot: slot_char(Some(r.slot.as_str())),
        tries: r.tries,
    };
    put_str(&mut out.commit, &r.commit);
    put_str(&mut out.version, &r.version);
    put_str(&mut out.deployment, &r.deployment);
    put_str(&mut out.action, r.action.as_str());
    out
}

fn put<T>(out: *mut T, v: T) {
    if !out.is_null() {
        // SAFETY: the caller's contract: NULL or valid for a write.
        unsafe { out.write(v) }
    }
}

/// Installs the update read from file descriptor `fd` (a file, a pipe or a socket; read to
/// its end, not closed, its offset moved) and stages it for the next boot (the first install
/// of an empty sysroot provisions it as the booted deployment). `progress` (NULL: none) is
/// called with `user` as the install goes; returning non-zero cancels. `*out` (NULL: not
/// wanted) gets what was done.
///
/// # Safety
/// `a` is a handle; `fd` an open descriptor; `progress` NULL or callable; `out` NULL or
/// valid for a write.
#[no_mangle]
pub unsafe extern "C" fn ecu_agent_install_fd(
    a: *mut EcuAgent,
    fd: RawFd,
    progress: EcuAgentProgressFn,
    user: *mut c_void,
    out: *mut EcuAgentInstallResult,
) -> i32 {
    with(a, |ag| {
        if fd < 0 {
            return Err(Failure::new(ECU_AGENT_E_ARGUMENT, "fd is negative"));
        }
        // SAFETY: the caller's contract: `fd` is open for the duration of the call.
        let owned = unsafe { BorrowedFd::borrow_raw(fd) }
            .try_clone_to_owned()
            .map_err(|e| Failure::new(ECU_AGENT_E_IO, format!("fd {fd}: {e}")))?;
        let mut file = File::from(owned);
        let mut s = sink(progress, user);
        let r = ag.install_read(&mut file, &mut s)?;
        put(out, result_of(&r));
        Ok(())
    })
}

/// Starts an install whose bytes the daemon pushes with `ecu_agent_install_push` as its
/// transport delivers them, then `ecu_agent_install_end`. The install runs on a thread of
/// the library reading a queue of at most two pushes (no temporary file); the progress
/// callback given to `push` and `end` is called on the pushing thread, during those calls.
///
/// # Safety
/// `a` is a handle.
#[no_mangle]
pub unsafe extern "C" fn ecu_agent_install_begin(a: *mut EcuAgent) -> i32 {
    with(a, |ag| ag.push_begin())
}

/// The next `len` bytes of the update being pushed (any length; copied before return, so
/// `data` may be reused). Blocks while two earlier pushes wait to be read. On a refusal
/// (signature, floor, corrupt part) or a cancellation it returns the code at once and the
/// install is over (no `ecu_agent_install_end` needed).
///
/// # Safety
/// `a` is a handle; `data` valid for `len` bytes (NULL when 0); `progress` NULL or callable.
#[no_mangle]
pub unsafe extern "C" fn ecu_agent_install_push(
    a: *mut EcuAgent,
    data: *const u8,
    len: usize,
    progress: EcuAgentProgressFn,
    user: *mut c_void,
) -> i32 {
    with(a, |ag| {
        if data.is_null() && len > 0 {
            return Err(Failure::new(ECU_AGENT_E_ARGUMENT, "data is NULL"));
        }
        let data: &[u8] = if len == 0 {
            &[]
        } else {
            // SAFETY: the caller's contract.
            unsafe { std::slice::from_raw_parts(data, len) }
        };
        let mut s = sink(progress, user);
        ag.push(data, &mut s)
    })
}

/// The end of the pushed update: waits for the install to verify and stage it, and fills
/// `*out` (NULL: not wanted).
///
/// # Safety
/// `a` is a handle; `progress` NULL or callable; `out` NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn ecu_agent_install_end(
    a: *mut EcuAgent,
    progress: EcuAgentProgressFn,
    user: *mut c_void,
    out: *mut EcuAgentInstallResult,
) -> i32 {
    with(a, |ag| {
        let mut s = sink(progress, user);
        let r = ag.push_end(&mut s)?;
        put(out, result_of(&r));
        Ok(())
    })
}

/// Cancels the install in progress on this handle, from any thread: it stops at its next
/// read with `ECU_AGENT_E_CANCELLED` and nothing of it becomes bootable. An install blocked
/// reading its file descriptor notices when that read returns: close or shut down the other
/// end of the pipe or socket after cancelling. Does nothing when no install runs. The next
/// install starts uncancelled.
///
/// # Safety
/// `a` is a handle (it may be in use by another thread).
#[no_mangle]
pub unsafe extern "C" fn ecu_agent_cancel(a: *mut EcuAgent) -> i32 {
    match agent(a) {
        Some(ag) => {
            ag.cancel();
            ECU_AGENT_OK
        }
        None => ECU_AGENT_E_ARGUMENT,
    }
}

fn status_of(st: &Status) -> EcuAgentStatus {
    let blank = EcuAgentDeployment {
        name: [0; ECU_AGENT_NAME_CAP],
        commit: [0; ECU_AGENT_COMMIT_CAP],
        version: [0; ECU_AGENT_VERSION_CAP],
        role: [0; ECU_AGENT_WORD_CAP],
        security_version: 0,
        timestamp: 0,
        slot: 0,
        booted: false,
        next_boot: false,
        good: false,
        present: false,
        tries_left: 0,
        priority: 0,
    };
    let mut out = EcuAgentStatus {
        state: [0; ECU_AGENT_WORD_CAP],
        deployments: [blank; 2],
        security_floor: st.security_floor,
        deployment_count: st.deployments.len().min(2) as u32,
        booted_slot: slot_char(st.booted_slot.as_deref()),
        next_boot: slot_char(st.next_boot.as_deref()),
        booted_good: st.booted_good.unwrap_or(false),
        rolled_back: st.rolled_back,
    };
    put_str(&mut out.state, st.state.as_str());
    for (o, d) in out.deployments.iter_mut().zip(&st.deployments) {
        put_str(&mut o.name, &d.name);
        put_str(&mut o.commit, &d.commit);
        put_str(&mut o.version, &d.version);
        put_str(&mut o.role, d.role.as_str());
        o.security_version = d.security_version;
        o.timestamp = d.timestamp;
        o.slot = slot_char(Some(d.slot.as_str()));
        o.booted = d.booted;
        o.next_boot = d.next_boot;
        o.good = d.good;
        o.present = d.present;
        o.tries_left = d.tries_left;
        o.priority = d.priority;
    }
    out
}

/// The sysroot's state into `*out`.
///
/// # Safety
/// `a` is a handle; `out` valid for a write.
#[no_mangle]
pub unsafe extern "C" fn ecu_agent_get_status(a: *mut EcuAgent, out: *mut EcuAgentStatus) -> i32 {
    with(a, |ag| {
        if out.is_null() {
            return Err(Failure::new(ECU_AGENT_E_ARGUMENT, "out is NULL"));
        }
        let st = ag.status()?;
        put(out, status_of(&st));
        Ok(())
    })
}

/// Marks the booted deployment good (it stays the default) and raises the anti-rollback
/// floor to its security version; `*floor` (NULL: not wanted) gets the floor afterwards.
///
/// # Safety
/// `a` is a handle; `floor` NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn ecu_agent_mark_good(a: *mut EcuAgent, floor: *mut u64) -> i32 {
    with(a, |ag| {
        let r = ag.mark_good()?;
        put(floor, r.security_floor.map_or(0, |(_, after)| after));
        Ok(())
    })
}

/// Rolls back: the next boot takes the other deployment (which must be able to boot);
/// `*slot` (NULL: not wanted) gets it, `'A'` or `'B'`.
///
/// # Safety
/// `a` is a handle; `slot` NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn ecu_agent_rollback(a: *mut EcuAgent, slot: *mut c_char) -> i32 {
    with(a, |ag| {
        let r = ag.rollback()?;
        put(slot, slot_char(Some(r.slot.as_str())));
        Ok(())
    })
}

/// For tests and dry runs: does what the bootloader does at the next boot (the decision on
/// the configured environment, a try counted), records the chosen slot as booted in
/// `S/run/booted`, and fills `*slot` (`'A'`/`'B'`) and `*kind` (0 confirmed, 1 trial, 2 last
/// resort). The handle then assumes that slot booted.
///
/// # Safety
/// `a` is a handle; `slot` and `kind` NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn ecu_agent_simulate_boot(
    a: *mut EcuAgent,
    slot: *mut c_char,
    kind: *mut u8,
) -> i32 {
    with(a, |ag| {
        let r = ag.simulate_boot()?;
        let s = slot_char(Some(r.slot.as_str()));
        put(slot, s);
        put(
            kind,
            match r.kind {
                Some(DecisionKind::Trial) => 1,
                Some(DecisionKind::LastResort) => 2,
                _ => 0,
            },
        );
        ag.set_booted(slot_of(s)?);
        Ok(())
    })
}

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
