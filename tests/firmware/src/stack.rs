//! Stack high-water mark by painting: fill the unused stack with a pattern, run, then find the
//! deepest word that changed.
use core::ptr::{addr_of, addr_of_mut};

const PAINT: u32 = 0xDEAD_BEEF;
/// Bytes below the stack pointer left unpainted (the painting function's own frame).
const MARGIN: usize = 64;

extern "C" {
    /// Lowest address the stack may reach (end of .uninit, after .bss), from cortex-m-rt's link.x.
    static mut __euninit: u32;
    /// Top of the stack (end of RAM).
    static _stack_start: u32;
}

/// Paints from the bottom of the stack area up to 64 bytes below the current stack pointer;
/// returns that stack pointer: the caller's depth, from which [`peak`] measures.
#[inline(never)]
pub fn paint() -> usize {
    let sp = cortex_m::register::msp::read() as usize;
    let mut p = addr_of_mut!(__euninit) as usize;
    while p + MARGIN < sp {
        // Below the stack pointer: memory no live frame uses.
        unsafe { (p as *mut u32).write_volatile(PAINT) };
        p += 4;
    }
    sp
}

/// Deepest stack address written since [`paint`].
#[inline(never)]
fn lowest() -> usize {
    let top = addr_of!(_stack_start) as usize;
    let mut p = addr_of_mut!(__euninit) as usize;
    while p < top && unsafe { (p as *const u32).read_volatile() } == PAINT {
        p += 4;
    }
    p
}

/// Bytes of stack used below `base` (what [`paint`] returned) since the painting: what the
/// code called after the painting needed, beyond its caller's frames.
pub fn peak(base: usize) -> usize {
    base.saturating_sub(lowest())
}

#[allow(dead_code)] // not in the no-agent build
/// Bytes of stack used from the top of RAM at the deepest point since [`paint`].
pub fn peak_total() -> usize {
    addr_of!(_stack_start) as usize - lowest()
}

#[allow(dead_code)] // not in the no-agent build
/// Bytes between the end of static RAM and the top of RAM.
pub fn available() -> usize {
    addr_of!(_stack_start) as usize - addr_of_mut!(__euninit) as usize
}
