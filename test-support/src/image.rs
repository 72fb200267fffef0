//! Firmware-like images for patch tests: code-like bytes with literal words pointing into
//! the image, and the next build of one after a small code change (everything after it
//! shifted, the literals relinked), which is what a binary patch has to find.

use crate::rng::XorShift64;

/// Code-like bytes, as a linker lays out firmware: little-endian Thumb-ish halfwords, and
/// (one step in seven) literal words pointing into the image itself, which is linked at
/// `base`.
pub fn code(seed: u64, len: usize, base: u32) -> Vec<u8> {
    let mut rng = XorShift64::new(seed);
    let mut out = Vec::with_capacity(len + 4);
    while out.len() < len {
        let x = rng.next_u64();
        if x.is_multiple_of(7) {
            let target = base + (x >> 20) as u32 % len as u32;
            out.extend_from_slice(&target.to_le_bytes());
        } else {
            out.extend_from_slice(&((x as u16 & 0x0fff) | 0x4600).to_le_bytes());
        }
    }
    out.truncate(len);
    out
}

/// The next build of `old` (linked at `base`) after a small code change: `inserted` put at
/// `at`, and every literal word that pointed at or past `at` moved by its length, as a relink
/// moves them.
pub fn relinked(old: &[u8], base: u32, at: usize, inserted: &[u8]) -> Vec<u8> {
    let shift = inserted.len() as u32;
    let moved = base + at as u32..base + old.len() as u32;
    let mut new = old.to_vec();
    for w in new.chunks_exact_mut(4) {
        let v = u32::from_le_bytes([w[0], w[1], w[2], w[3]]);
        if moved.contains(&v) {
            w.copy_from_slice(&(v + shift).to_le_bytes());
        }
    }
    new.splice(at..at, inserted.iter().copied());
    new
}
