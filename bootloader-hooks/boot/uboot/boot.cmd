# ECU A/B boot decision for U-Boot (native ECU_* variables), the same rule as
# bootloader_hooks::BootState::decide. See docs/BOOTSTATE.md for installation.
#
# Build:   mkimage -A arm -O linux -T script -C none -n ecu-ab -d boot.cmd boot.scr
#
# The board environment provides:
#   ecu_boot_a, ecu_boot_b   commands that boot slot A / B (load kernel, bootz/booti ...)
#   ecu_load_state           optional: command that loads ECU_* into the environment
#                            (default: the environment U-Boot loaded at start)
#   ecu_save_state           optional: command that persists ECU_* (default: saveenv)
# Numbers are hex, as setexpr writes them; itest compares hex. Counting a try does
# not change ECU_REV (only the agent's own changes do).

if test -n "${ecu_load_state}"; then run ecu_load_state; fi

# A missing variable means no state was ever written (or it could not be read):
# boot slot A as confirmed and write nothing.
env exists ECU_A_PRIO || setenv ECU_A_PRIO 1
env exists ECU_A_TRIES || setenv ECU_A_TRIES 0
env exists ECU_A_OK || setenv ECU_A_OK 1
env exists ECU_B_PRIO || setenv ECU_B_PRIO 0
env exists ECU_B_TRIES || setenv ECU_B_TRIES 0
env exists ECU_B_OK || setenv ECU_B_OK 0

setenv ecu_boot
setenv ecu_kind
setenv ecu_changed 0

# A slot boots if its priority is above 0 and it is confirmed (ECU_x_OK=1, nothing
# counted) or on trial with tries left (one try is used before the boot).
setenv ecu_try_A 'if itest ${ECU_A_PRIO} -gt 0; then if itest ${ECU_A_OK} == 1; then setenv ecu_boot A; setenv ecu_kind confirmed; elif itest ${ECU_A_TRIES} -gt 0; then setexpr ECU_A_TRIES ${ECU_A_TRIES} - 1; setenv ecu_boot A; setenv ecu_kind trial; setenv ecu_changed 1; fi; fi'
setenv ecu_try_B 'if itest ${ECU_B_PRIO} -gt 0; then if itest ${ECU_B_OK} == 1; then setenv ecu_boot B; setenv ecu_kind confirmed; elif itest ${ECU_B_TRIES} -gt 0; then setexpr ECU_B_TRIES ${ECU_B_TRIES} - 1; setenv ecu_boot B; setenv ecu_kind trial; setenv ecu_changed 1; fi; fi'

# Higher priority first, A on a tie; if neither slot qualifies, the second one in that
# order boots as a last resort (nothing written).
if itest ${ECU_B_PRIO} -gt ${ECU_A_PRIO}; then
    run ecu_try_B
    if test -z "${ecu_boot}"; then run ecu_try_A; fi
    if test -z "${ecu_boot}"; then setenv ecu_boot A; setenv ecu_kind last-resort; fi
else
    run ecu_try_A
    if test -z "${ecu_boot}"; then run ecu_try_B; fi
    if test -z "${ecu_boot}"; then setenv ecu_boot B; setenv ecu_kind last-resort; fi
fi

setenv ecu_try_A
setenv ecu_try_B

echo "ECU-DECISION: slot=${ecu_boot} kind=${ecu_kind} changed=${ecu_changed} A=${ECU_A_PRIO},${ECU_A_TRIES},${ECU_A_OK} B=${ECU_B_PRIO},${ECU_B_TRIES},${ECU_B_OK}"

if itest ${ecu_changed} == 1; then
    if test -n "${ecu_save_state}"; then run ecu_save_state; else saveenv; fi
fi

if test "${ecu_boot}" = "A"; then run ecu_boot_a; else run ecu_boot_b; fi
echo "ECU: booting slot ${ecu_boot} failed"
