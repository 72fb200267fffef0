//! How each scheme's bootloader code reads its variables: number parsing as U-Boot's
//! `simple_strtoul` and GRUB's `grub_strtol` do it, RAUC's `BOOT_ORDER`, and Mender's variables.

use super::{mender, Flavor, MenderConfig, SchemeError};
use crate::state::{BootState, Slot, SlotName};
use crate::vars::{parse_dec, parse_hex, EnvRead, Value};

pub(super) fn hex_var(
    env: &impl EnvRead,
    var: &'static str,
    max: u32,
) -> Result<Option<u32>, SchemeError> {
    num_var(env, var, max, parse_hex)
}

pub(super) fn dec_var(
    env: &impl EnvRead,
    var: &'static str,
    max: u32,
) -> Result<Option<u32>, SchemeError> {
    num_var(env, var, max, parse_dec)
}

/// `var` read with `parse`, at most `max`; `None` when it is not set.
fn num_var(
    env: &impl EnvRead,
    var: &'static str,
    max: u32,
    parse: impl Fn(&[u8]) -> Option<u32>,
) -> Result<Option<u32>, SchemeError> {
    let Some(v) = env.get_raw(var) else {
        return Ok(None);
    };
    let n = parse(v).ok_or(SchemeError::NotANumber { var })?;
    if n > max {
        return Err(SchemeError::OutOfRange { var, value: n, max });
    }
    Ok(Some(n))
}

pub(super) fn required(v: Option<u32>, var: &'static str) -> Result<u32, SchemeError> {
    v.ok_or(SchemeError::Missing { var })
}

pub(super) fn name_var(env: &impl EnvRead, var: &'static str) -> Result<SlotName, SchemeError> {
    match env.get_raw(var) {
        None => Ok(SlotName::EMPTY),
        Some(v) => SlotName::from_bytes(v).map_err(|error| SchemeError::BadName { var, error }),
    }
}

/// Parses a slot order (`"A B"`) into priorities: first 2, second 1, absent 0.
pub(super) fn parse_order(v: &[u8], var: &'static str) -> Result<[u8; 2], SchemeError> {
    let mut prio = [0u8; 2];
    let mut next = 2u8;
    for tok in v.split(|&b| b == b' ').filter(|t| !t.is_empty()) {
        let s = match tok {
            b"A" => Slot::A,
            b"B" => Slot::B,
            _ => return Err(SchemeError::BadOrder { var }),
        };
        if prio[s.index()] != 0 || next == 0 {
            return Err(SchemeError::BadOrder { var });
        }
        prio[s.index()] = next;
        next -= 1;
    }
    Ok(prio)
}

/// Formats the order of slots with priority above 0, highest first; `" "` when there is none.
pub(super) fn order_value(state: &BootState) -> Value {
    let [first, second] = state.order();
    let p1 = state.slot(first).priority > 0;
    let p2 = state.slot(second).priority > 0;
    let both = [
        first.as_str().as_bytes()[0],
        b' ',
        second.as_str().as_bytes()[0],
    ];
    let v: &[u8] = match (p1, p2) {
        (true, true) => &both,
        (true, false) => first.as_str().as_bytes(),
        (false, true) => second.as_str().as_bytes(),
        // No slot enabled. An empty value would read back as RAUC's default "A B"; a lone
        // space lists no slot and reads back as it was (found by fuzz/bootenv_parse).
        (false, false) => b" ",
    };
    // at most 3 bytes
    Value::new(v).unwrap_or(Value::hex(0))
}

/// U-Boot's `simple_strtoul` (`lib/strto.c`) on a 32-bit `ulong`: base 0 picks 16 after
/// `0x`, 8 after a leading `0`, 10 otherwise; base 16 skips a `0x`; digits up to the first
/// that is not one of the base; wraps.
pub(super) fn uboot_strtoul(s: &[u8], base: u32) -> u32 {
    let mut base = base;
    let mut s = s;
    if s.first() == Some(&b'0') {
        if matches!(s.get(1), Some(b'x' | b'X')) && (base == 0 || base == 16) {
            base = 16;
            s = &s[2..];
        } else if base == 0 {
            base = 8;
        }
    }
    if base == 0 {
        base = 10;
    }
    let mut n: u32 = 0;
    for &c in s {
        match (c as char).to_digit(16) {
            Some(d) if d < base => n = n.wrapping_mul(base).wrapping_add(d),
            _ => break,
        }
    }
    n
}

/// `test X -gt 0` in U-Boot 2023.01 (`cmd/test.c`: `simple_strtol(X, NULL, 0) > 0`).
pub(super) fn uboot_test_positive(s: &[u8]) -> bool {
    let v = match s.split_first() {
        Some((b'-', rest)) => (uboot_strtoul(rest, 0) as i32).wrapping_neg(),
        _ => uboot_strtoul(s, 0) as i32,
    };
    v > 0
}

/// Most boots a `BOOT_x_LEFT` value may grant (more is refused, not guessed).
pub(super) const RAUC_UBOOT_MAX_BOOTS: u32 = u8::MAX as u32;

/// How many boots RAUC's `contrib/uboot.sh` gives a slot whose `BOOT_x_LEFT` is `v`: it boots
/// while `test ${BOOT_x_LEFT} -gt 0` (line 10/17) holds and then writes `setexpr BOOT_x_LEFT
/// ${BOOT_x_LEFT} - 1` (line 12/19: hex in, `%lx` out). `None` if that is more than
/// [`RAUC_UBOOT_MAX_BOOTS`].
pub(super) fn rauc_uboot_boots(v: &[u8]) -> Option<u32> {
    let mut hex = uboot_strtoul(v, 16);
    let mut positive = uboot_test_positive(v);
    let mut n = 0;
    while positive {
        if n == RAUC_UBOOT_MAX_BOOTS {
            return None;
        }
        n += 1;
        hex = hex.wrapping_sub(1);
        let text = Value::hex(hex);
        positive = uboot_test_positive(text.as_bytes());
    }
    Some(n)
}

/// The `BOOT_x_LEFT` value that gives exactly `n` boots: the digit for 0-9 (what RAUC and the
/// script write), else the smallest two-digit hex value that does (10-144 boots: "9f" gives
/// 0x9f - 0xf, then "f" reads as 0), else `0xff + n` (145-255 boots: "1xy" reads as a positive
/// decimal down to "100", then "ff" reads as 0). Every count [`rauc_uboot_tries`] decodes is
/// written, so decode, encode and decode again give the same state.
pub(super) fn rauc_uboot_left(n: u8) -> Value {
    if n <= 9 {
        return Value::dec(n.into());
    }
    (0x10..=0x9fu32)
        .map(Value::hex)
        .find(|v| rauc_uboot_boots(v.as_bytes()) == Some(n.into()))
        .unwrap_or(Value::hex(0xff + u32::from(n)))
}

/// RAUC's `BOOT_x_LEFT` as tries: missing or empty is 3 (`contrib/uboot.sh` lines 2-3), else
/// the boots the script grants. A value the script's `test` would split or could not read
/// (anything but letters, digits and `-`) is refused.
pub(super) fn rauc_uboot_tries(env: &impl EnvRead, var: &'static str) -> Result<u8, SchemeError> {
    match env.get_raw(var) {
        None | Some(b"") => Ok(3),
        Some(v) => {
            if !v.iter().all(|&c| c.is_ascii_alphanumeric() || c == b'-') {
                return Err(SchemeError::NotANumber { var });
            }
            rauc_uboot_boots(v)
                .map(|n| n as u8)
                .ok_or(SchemeError::OutOfRange {
                    var,
                    value: uboot_strtoul(v, 16),
                    max: 0x99,
                })
        }
    }
}

/// What the agent last wrote about the inactive slot under Mender ([`mender::INACTIVE`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Inactive {
    /// Successful: a system to roll back to.
    Good,
    /// Used its tries without being marked good.
    Failed,
    /// Given up, or nothing in it (priority 0).
    Off,
}

impl Inactive {
    pub(super) fn value(self, slot: Slot) -> Value {
        let v: &[u8] = match (slot, self) {
            (Slot::A, Inactive::Good) => b"A:good",
            (Slot::A, Inactive::Failed) => b"A:failed",
            (Slot::A, Inactive::Off) => b"A:off",
            (Slot::B, Inactive::Good) => b"B:good",
            (Slot::B, Inactive::Failed) => b"B:failed",
            (Slot::B, Inactive::Off) => b"B:off",
        };
        // at most 8 bytes
        Value::new(v).unwrap_or(Value::dec(0))
    }

    pub(super) fn parse(v: &[u8]) -> Option<(Slot, Inactive)> {
        let (slot, state) = match v {
            [b'A', b':', rest @ ..] => (Slot::A, rest),
            [b'B', b':', rest @ ..] => (Slot::B, rest),
            _ => return None,
        };
        let st = match state {
            b"good" => Inactive::Good,
            b"failed" => Inactive::Failed,
            b"off" => Inactive::Off,
            _ => return None,
        };
        Some((slot, st))
    }
}

/// A number as U-Boot's `env_get_ulong(name, 10, 0)` reads it (`simple_strtoul`, base 10):
/// the leading decimal digits, 0 when there are none, wrapping at 32 bits (`ulong` on a
/// 32-bit ARM board).
pub(super) fn uboot_ulong(v: &[u8]) -> u32 {
    v.iter()
        .take_while(|b| b.is_ascii_digit())
        .fold(0u32, |n, &d| {
            n.wrapping_mul(10).wrapping_add(u32::from(d - b'0'))
        })
}

/// A number as GRUB's `test -eq`/`-ne` reads it (`grub_strtol(s, 0, 0)`): leading blanks, a
/// sign, `0x` for hex or a leading `0` for octal, the leading digits; 0 when there are none,
/// saturated on overflow.
pub(super) fn grub_strtol(v: &[u8]) -> i64 {
    let mut i = 0;
    while i < v.len() && matches!(v[i], b' ' | b'\t' | b'\n' | b'\r') {
        i += 1;
    }
    let mut neg = false;
    if i < v.len() && (v[i] == b'-' || v[i] == b'+') {
        neg = v[i] == b'-';
        i += 1;
    }
    let mut base = 10u32;
    if v.len() > i + 1 && v[i] == b'0' && (v[i + 1] | 0x20) == b'x' {
        base = 16;
        i += 2;
    } else if i < v.len() && v[i] == b'0' {
        base = 8;
    }
    let mut n: i64 = 0;
    while i < v.len() {
        let Some(d) = (v[i] as char).to_digit(base) else {
            break;
        };
        n = n
            .saturating_mul(i64::from(base))
            .saturating_add(i64::from(d));
        i += 1;
    }
    if neg {
        -n
    } else {
        n
    }
}

/// Mender's variables as the flavor's boot code reads them.
pub(super) struct MenderVars {
    /// The slot `mender_boot_part` names (`None`: neither partition).
    pub(super) active: Option<Slot>,
    /// `mender_boot_part` as a number (for errors).
    pub(super) part_number: u32,
    /// A trial is running (U-Boot: `upgrade_available` is a non-zero number; GRUB: it is `1`).
    pub(super) upgrade: bool,
    /// Boots left in the trial.
    pub(super) tries: u8,
    /// U-Boot only: `upgrade_available` is 0 and `bootcount` exceeds a non-zero `bootlimit`,
    /// what `altbootcmd` leaves after a rollback.
    pub(super) rolled_back_trace: bool,
    /// [`mender::INACTIVE`], when it holds a valid value.
    pub(super) recorded: Option<(Slot, Inactive)>,
}

impl MenderVars {
    pub(super) fn read(
        cfg: MenderConfig,
        flavor: Flavor,
        env: &impl EnvRead,
    ) -> Result<MenderVars, SchemeError> {
        let Some(part) = env.get_raw(mender::BOOT_PART) else {
            if env.get_raw(mender::UPGRADE_AVAILABLE).is_none() {
                return Err(SchemeError::NotThisScheme { scheme: "mender" });
            }
            return Err(SchemeError::Missing {
                var: mender::BOOT_PART,
            });
        };
        let ua = env.get_raw(mender::UPGRADE_AVAILABLE).unwrap_or(b"");
        let bc = env.get_raw(mender::BOOTCOUNT).unwrap_or(b"");
        let recorded = env.get_raw(mender::INACTIVE).and_then(Inactive::parse);
        Ok(match flavor {
            Flavor::UBoot => {
                // meta-mender's scripts compare mender_boot_part as a string
                // (`test ${mender_boot_part} = 2`).
                let active = Slot::ALL
                    .into_iter()
                    .find(|&s| part == Value::dec(cfg.part(s).into()).as_bytes());
                let upgrade = uboot_ulong(ua) != 0;
                let count = uboot_ulong(bc);
                let limit = env.get_raw(mender::BOOTLIMIT).map_or(0, uboot_ulong);
                let tries = if limit == 0 {
                    u8::MAX
                } else {
                    limit.saturating_sub(count).min(u8::MAX.into()) as u8
                };
                MenderVars {
                    active,
                    part_number: uboot_ulong(part),
                    upgrade,
                    tries,
                    rolled_back_trace: !upgrade && limit != 0 && count > limit,
                    recorded,
                }
            }
            Flavor::Grub => {
                // grub-mender-grubenv compares mender_boot_part with `-eq`, the others as
                // strings; a value outside 0 and 1 is "corrupt" and, unless GRUB enforces
                // signatures, booted on with the same comparisons.
                let n = grub_strtol(part);
                let active = Slot::ALL.into_iter().find(|&s| n == i64::from(cfg.part(s)));
                MenderVars {
                    active,
                    part_number: n.clamp(0, u32::MAX.into()) as u32,
                    upgrade: ua == b"1",
                    tries: u8::from(bc == b"0"),
                    rolled_back_trace: false,
                    recorded,
                }
            }
        })
    }
}
