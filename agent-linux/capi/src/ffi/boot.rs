//! The boot side: status, mark-good, rollback and a simulated boot.

use super::*;

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
        booted_slot: slot_char(st.booted_slot.map(|s| s.as_str())),
        next_boot: slot_char(st.next_boot.map(|s| s.as_str())),
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
/// `S/run/booted`, and fills `*slot` (`'A'`/`'B'`; 0 when RAUC's GRUB boots its rescue entry)
/// and `*kind` (0 confirmed, 1 trial, 2 last resort, 3 refill, 4 rescue, 5 rollback: the codes
/// of `ecu_boot_decide`). The handle then assumes that slot booted.
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
        put(kind, r.kind.map_or(0, DecisionKind::code));
        ag.set_booted(slot_of(s)?);
        Ok(())
    })
}
