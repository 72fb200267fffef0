//! The boot-record steps a C firmware takes around an install, over bootloader-hooks' raw
//! flash record (two copies; `ecu_boot_state.h`): the safe bodies of `ecu_update_boot_*`.

use bootloader_hooks::flash_record::{self, RECORD_LEN};
use bootloader_hooks::{BootState, Slot, SlotName};

use crate::error::Last;
use crate::types::{EcuBootWrite, ECU_UPDATE_BOOT_RECORD_LEN};

const _: () = assert!(ECU_UPDATE_BOOT_RECORD_LEN == RECORD_LEN);

/// A slot from its C number.
pub fn slot(n: u8) -> Result<Slot, Last> {
    Slot::from_index(usize::from(n)).ok_or(Last::Argument("a slot is 0 (A) or 1 (B)"))
}

/// The current state of the two copies.
pub fn read(c0: &[u8], c1: &[u8]) -> Result<BootState, Last> {
    flash_record::select(c0, c1)
        .map(|(_, s)| s)
        .map_err(|_| Last::NoBootState)
}

/// The write that stores `state` (to the copy that is not current).
pub fn write(c0: &[u8], c1: &[u8], state: &BootState, changed: bool) -> EcuBootWrite {
    let mut out = EcuBootWrite {
        record: [0xFF; ECU_UPDATE_BOOT_RECORD_LEN],
        needed: changed,
        copy: 0,
    };
    if changed {
        out.copy = flash_record::prepare_write(c0, c1, state, &mut out.record) as u8;
    }
    out
}

/// The first record of a device: `booted` good and first, named `name`; written to copy 0.
pub fn initial(booted: u8, name: &[u8]) -> Result<EcuBootWrite, Last> {
    let name = SlotName::from_bytes(name).map_err(Last::BootState)?;
    let st = BootState::initial(slot(booted)?, name);
    let mut out = EcuBootWrite {
        record: [0xFF; ECU_UPDATE_BOOT_RECORD_LEN],
        needed: true,
        copy: 0,
    };
    flash_record::emit(&st, &mut out.record);
    Ok(out)
}

/// Takes `target` out of the boot order before its slot is erased (nothing to write when it
/// is out already). Refused when the other slot could not boot.
pub fn retire(c0: &[u8], c1: &[u8], target: u8) -> Result<EcuBootWrite, Last> {
    let mut st = read(c0, c1)?;
    let changed = st.retire(slot(target)?).map_err(Last::BootState)?;
    Ok(write(c0, c1, &st, changed))
}

/// Stages `target` for `tries` trial boots, holding `commit` at `security_version`.
pub fn stage(
    c0: &[u8],
    c1: &[u8],
    target: u8,
    tries: u8,
    commit: &[u8; 32],
    security_version: u64,
) -> Result<EcuBootWrite, Last> {
    let mut st = read(c0, c1)?;
    let mut hex = [0u8; 64];
    for (i, b) in commit.iter().enumerate() {
        const H: &[u8; 16] = b"0123456789abcdef";
        hex[2 * i] = H[usize::from(b >> 4)];
        hex[2 * i + 1] = H[usize::from(b & 15)];
    }
    let name = SlotName::from_bytes(&hex).map_err(Last::BootState)?;
    let changed = st
        .stage_versioned(slot(target)?, tries, name, security_version)
        .map_err(Last::BootState)?;
    Ok(write(c0, c1, &st, changed))
}

/// Marks `booted` good, raising the floor to its security version.
pub fn mark_good(c0: &[u8], c1: &[u8], booted: u8) -> Result<EcuBootWrite, Last> {
    let mut st = read(c0, c1)?;
    let changed = st.mark_good(slot(booted)?);
    Ok(write(c0, c1, &st, changed))
}
