//! Installing an update: from a file descriptor or pushed in pieces, with progress callbacks,
//! and cancelling it from another thread.

use super::*;

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
