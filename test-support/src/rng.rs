//! Seeded generators for test data: reproducible, no dependency, no global state (as smoltcp's
//! `tests/netsim.rs` and sequential-storage's fuzz targets do it).
//!
//! Two generators, because the committed test data and the sizes the tests assert were made
//! with both:
//! - [`XorShift64`]: Marsaglia's xorshift64 (shifts 13, 7, 17); the state is the output.
//! - [`XorShift64Star`]: Vigna's xorshift64* (shifts 12, 25, 27, then a multiply); its high
//!   byte is incompressible to deflate and LZMA2.

/// The golden-ratio constant the seeds are spread with (and the usual fixed start state).
pub const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// Marsaglia's xorshift64 (13, 7, 17). Never zero after a non-zero start.
#[derive(Clone, Debug)]
pub struct XorShift64(u64);

impl XorShift64 {
    /// A generator for `seed`: the state `seed * GOLDEN | 1`, so that nearby seeds give
    /// unrelated sequences and the state is never zero.
    pub fn new(seed: u64) -> XorShift64 {
        XorShift64(seed.wrapping_mul(GOLDEN) | 1)
    }

    /// A generator starting from the state `x` itself (not zero).
    pub const fn from_state(x: u64) -> XorShift64 {
        XorShift64(x)
    }

    /// The next state, which is the output.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number below `n` (not zero), by remainder.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// `len` bytes, each the low byte of one step.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next_u64() as u8).collect()
    }
}

/// Vigna's xorshift64* (12, 25, 27, times `0x2545_F491_4F6C_DD1D`).
#[derive(Clone, Debug)]
pub struct XorShift64Star(u64);

impl XorShift64Star {
    /// A generator starting from the state `x` (not zero).
    pub const fn from_state(x: u64) -> XorShift64Star {
        XorShift64Star(x)
    }

    /// The next output.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number below `n` (not zero), by remainder.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// `len` incompressible bytes: the high byte of each output.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| (self.next_u64() >> 56) as u8).collect()
    }
}

#[cfg(test)]
mod test {
    use super::*;

    /// The first outputs, as the copies this replaced computed them: the data the tests
    /// assert sizes of must not change.
    #[test]
    fn sequences_are_the_ones_the_tests_were_written_with() {
        let mut x = 1u64.wrapping_mul(GOLDEN) | 1;
        let mut r = XorShift64::new(1);
        for _ in 0..100 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            assert_eq!(r.next_u64(), x);
        }
        let mut x = GOLDEN;
        let mut r = XorShift64Star::from_state(GOLDEN);
        for _ in 0..100 {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            assert_eq!(r.next_u64(), x.wrapping_mul(0x2545_f491_4f6c_dd1d));
        }
        assert_ne!(XorShift64::new(1).next_u64(), XorShift64::new(2).next_u64());
    }
}
