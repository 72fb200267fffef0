//! C ABI for bootloaders written in C: the boot decision on a pair of flash records in memory.
//! Declared in `include/ecu_boot_state.h`. This is the only module with unsafe code.

use crate::flash_record::{self, RECORD_LEN};

/// Result of [`ecu_boot_decide`] (`struct ecu_boot_decision` in the C header).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EcuBootDecision {
    /// Slot to boot: 0 = A, 1 = B.
    pub slot: u8,
    /// 1 if `record` must be written to copy `write_copy` before booting, else 0.
    pub write_needed: u8,
    /// Copy (0 or 1) to erase and write `record` to.
    pub write_copy: u8,
    /// 0 = confirmed slot, 1 = trial (a try used), 2 = last resort.
    pub kind: u8,
    /// The new record (valid when `write_needed` is 1).
    pub record: [u8; RECORD_LEN],
}

/// Success.
pub const ECU_BOOT_OK: i32 = 0;
/// A pointer was NULL or `len` is shorter than a record.
pub const ECU_BOOT_EINVAL: i32 = -1;
/// Neither copy holds a valid record; boot the bootloader's default slot.
pub const ECU_BOOT_ENOSTATE: i32 = -2;

/// Runs the boot decision on the two record copies `copy0` and `copy1`, each `len` bytes
/// (at least `ECU_BOOT_RECORD_LEN`), and fills `out`.
///
/// Returns [`ECU_BOOT_OK`], [`ECU_BOOT_EINVAL`] or [`ECU_BOOT_ENOSTATE`]. On success, if
/// `out->write_needed` is 1 the caller erases copy `out->write_copy` and writes
/// `out->record` (`ECU_BOOT_RECORD_LEN` bytes) there before booting `out->slot`. A write cut
/// short by a power loss leaves the other copy current, so the next boot decides again.
///
/// # Safety
/// `copy0` and `copy1` must each point to `len` readable bytes and `out` to a writable
/// `struct ecu_boot_decision`; none may be written by others during the call.
#[no_mangle]
pub unsafe extern "C" fn ecu_boot_decide(
    copy0: *const u8,
    copy1: *const u8,
    len: usize,
    out: *mut EcuBootDecision,
) -> i32 {
    if copy0.is_null() || copy1.is_null() || out.is_null() || len < RECORD_LEN {
        return ECU_BOOT_EINVAL;
    }
    // SAFETY: the caller guarantees `len` readable bytes behind each non-null pointer.
    let (c0, c1) = unsafe {
        (
            core::slice::from_raw_parts(copy0, len),
            core::slice::from_raw_parts(copy1, len),
        )
    };
    // SAFETY: the caller guarantees `out` is valid for writes.
    let out = unsafe { &mut *out };
    decide_into(c0, c1, out)
}

/// The safe body of [`ecu_boot_decide`].
pub fn decide_into(c0: &[u8], c1: &[u8], out: &mut EcuBootDecision) -> i32 {
    let state = match flash_record::select(c0, c1) {
        Ok((_, s)) => s,
        Err(_) => return ECU_BOOT_ENOSTATE,
    };
    let d = state.decide();
    out.slot = d.slot.index() as u8;
    // A flash record is read with the native rules: only confirmed, trial or last resort.
    out.kind = d.kind.code();
    out.write_needed = u8::from(d.changed);
    out.write_copy = 0;
    out.record = [0; RECORD_LEN];
    if d.changed {
        out.write_copy = flash_record::prepare_write(c0, c1, &d.state, &mut out.record) as u8;
    }
    ECU_BOOT_OK
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::flash_record::{emit, select};
    use crate::state::{BootState, Slot, SlotName};

    fn blank() -> EcuBootDecision {
        EcuBootDecision {
            slot: 9,
            write_needed: 9,
            write_copy: 9,
            kind: 9,
            record: [0; RECORD_LEN],
        }
    }

    #[test]
    fn c_abi_runs_trial_then_fallback() {
        let mut s = BootState::initial(Slot::A, SlotName::EMPTY);
        s.stage(Slot::B, 2, SlotName::EMPTY).unwrap();
        let mut copies = [[0xFFu8; RECORD_LEN]; 2];
        emit(&s, &mut copies[0]);
        let mut seen = std::vec::Vec::new();
        for _ in 0..4 {
            let mut out = blank();
            let rc = unsafe {
                ecu_boot_decide(copies[0].as_ptr(), copies[1].as_ptr(), RECORD_LEN, &mut out)
            };
            assert_eq!(rc, ECU_BOOT_OK);
            seen.push((out.slot, out.kind, out.write_needed));
            if out.write_needed == 1 {
                copies[out.write_copy as usize] = out.record;
            }
        }
        assert_eq!(seen, [(1, 1, 1), (1, 1, 1), (0, 0, 0), (0, 0, 0)]);
        let (_, st) = select(&copies[0], &copies[1]).unwrap();
        assert_eq!(st.slot(Slot::B).tries_left, 0);
    }

    #[test]
    fn c_abi_rejects_bad_input() {
        let mut out = blank();
        let c = [0xFFu8; RECORD_LEN];
        assert_eq!(
            unsafe { ecu_boot_decide(core::ptr::null(), c.as_ptr(), RECORD_LEN, &mut out) },
            ECU_BOOT_EINVAL
        );
        assert_eq!(
            unsafe { ecu_boot_decide(c.as_ptr(), c.as_ptr(), RECORD_LEN - 1, &mut out) },
            ECU_BOOT_EINVAL
        );
        assert_eq!(
            unsafe { ecu_boot_decide(c.as_ptr(), c.as_ptr(), RECORD_LEN, &mut out) },
            ECU_BOOT_ENOSTATE
        );
    }
}
