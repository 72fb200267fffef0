//! `ecu_agent_simulate_boot` reports every kind of boot decision with its own code (0
//! confirmed, 1 trial, 2 last resort, 3 refill, 4 rescue, 5 rollback: the codes of
//! `DecisionKind::code`), not only the first three: RAUC's GRUB rescue entry is 4, never 0
//! ("confirmed"), which a caller would take for a good boot.

use std::ffi::{c_char, CString};
use std::fs;

use bootloader_hooks::{grub_env, DecisionKind, VarSet};
use ecu_agent::ffi::{ecu_agent_close, ecu_agent_open, ecu_agent_simulate_boot, EcuAgent};
use ecu_agent::{EcuAgentOptions, ECU_AGENT_OK};

#[test]
fn simulate_boot_reports_raucs_grub_rescue_as_rescue() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("sysroot");
    fs::create_dir_all(root.join("boot")).unwrap();
    fs::write(root.join("agent.conf"), "backend = grub\nscheme = rauc\n").unwrap();
    // Both slots marked OK and tried (`x_TRY=1`): RAUC's grub.conf has nothing left to boot
    // and takes its rescue entry.
    let vars: &[(&[u8], &[u8])] = &[
        (b"ORDER", b"A B"),
        (b"A_OK", b"1"),
        (b"A_TRY", b"1"),
        (b"B_OK", b"1"),
        (b"B_TRY", b"1"),
    ];
    let mut block = vec![b'#'; grub_env::DEFAULT_SIZE];
    grub_env::write(&mut block, vars.iter().copied(), &VarSet::new()).unwrap();
    fs::write(root.join("boot/grubenv"), &block).unwrap();

    let path = CString::new(root.to_str().unwrap()).unwrap();
    let mut a: *mut EcuAgent = std::ptr::null_mut();
    let mut err = [0 as c_char; 256];
    // A sysroot with no deployment yet: only the boot environment matters here.
    let opts = EcuAgentOptions {
        booted_slot: b'A' as c_char,
        tries: 0,
        create: true,
        allow_unsigned: false,
        trusted_keys: std::ptr::null(),
        trusted_count: 0,
    };
    // SAFETY: a NUL-terminated path, valid options, out pointer and error buffer.
    let rc = unsafe { ecu_agent_open(path.as_ptr(), &opts, &mut a, err.as_mut_ptr(), err.len()) };
    // SAFETY: `ecu_agent_open` NUL-terminates the error buffer.
    let msg = unsafe { std::ffi::CStr::from_ptr(err.as_ptr()) };
    assert_eq!(rc, ECU_AGENT_OK, "open: {rc} {msg:?}");
    let mut slot: c_char = b'?' as c_char;
    let mut kind: u8 = 0xEE;
    // SAFETY: `a` is the handle just opened; `slot` and `kind` are valid for writes.
    let rc = unsafe { ecu_agent_simulate_boot(a, &mut slot, &mut kind) };
    // SAFETY: the handle, closed once.
    unsafe { ecu_agent_close(a) };
    assert_eq!(rc, ECU_AGENT_OK, "simulate_boot: {rc}");
    assert_eq!(slot, 0, "the rescue entry is neither slot");
    assert_eq!(
        kind,
        DecisionKind::Rescue.code(),
        "the rescue entry was reported as {kind}"
    );
    assert_eq!(kind, 4);
}
