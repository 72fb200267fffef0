//! U-Boot environment images, single and redundant.
//!
//! One copy is `env_size` bytes:
//!
//! | layout | bytes 0..4 | byte 4 | data |
//! |---|---|---|---|
//! | single | CRC-32 (LE) of data | - | bytes 4..env_size |
//! | redundant | CRC-32 (LE) of data | flag (counter) | bytes 5..env_size |
//!
//! Data is `key=value\0key=value\0...\0` followed by one more `\0`; whatever follows that
//! terminator (0xFF from `mkenvimage`, 0x00 from `env export`, stale bytes from `fw_setenv`) is
//! covered by the CRC but ignored. A redundant pair is two copies; the valid one with the newer
//! flag wins (counter compare as U-Boot: 0 beats 255). Writes go to the other copy with the
//! next flag, so a torn write leaves the current copy intact.

use core::fmt;

use crate::vars::{EnvRead, VarSet};

/// Single or redundant copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Layout {
    /// `[crc][data]` (`CONFIG_SYS_REDUNDAND_ENVIRONMENT` off).
    Single,
    /// `[crc][flag][data]`, two copies.
    Redundant,
}

impl Layout {
    /// Bytes before the data: 4 (single) or 5 (redundant).
    pub const fn header_len(self) -> usize {
        match self {
            Layout::Single => 4,
            Layout::Redundant => 5,
        }
    }

    /// Smallest usable copy: header plus two NULs (an empty list).
    pub const fn min_size(self) -> usize {
        self.header_len() + 2
    }
}

/// What is wrong with one copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum CopyError {
    /// The copy is shorter than the header plus an empty list.
    TooSmall {
        /// Bytes given.
        size: usize,
    },
    /// The stored CRC does not match the data.
    BadCrc {
        /// CRC in the header.
        stored: u32,
        /// CRC of the data.
        computed: u32,
    },
    /// No NUL ends the entry starting at `offset` (from the start of the copy).
    Unterminated {
        /// Offset of the entry.
        offset: usize,
    },
    /// The entry at `offset` has no `=` or an empty name.
    MalformedEntry {
        /// Offset of the entry.
        offset: usize,
    },
}

impl fmt::Display for CopyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            CopyError::TooSmall { size } => write!(
                f,
                "{size} bytes is too small for a U-Boot environment; check --env-size"
            ),
            CopyError::BadCrc { stored, computed } => write!(
                f,
                "CRC mismatch (stored {stored:08x}, computed {computed:08x}): not a U-Boot environment of this size and layout, or corrupted"
            ),
            CopyError::Unterminated { offset } => write!(
                f,
                "the variable at byte {offset} is not NUL-terminated; the environment is corrupted"
            ),
            CopyError::MalformedEntry { offset } => write!(
                f,
                "the entry at byte {offset} is not of the form name=value; the environment is corrupted"
            ),
        }
    }
}

impl core::error::Error for CopyError {}

/// U-Boot environment errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum EnvError {
    /// The only copy (single layout) is invalid.
    Copy(CopyError),
    /// Neither copy of a redundant environment is valid.
    NoValidCopy {
        /// Why the first copy is invalid.
        first: CopyError,
        /// Why the second copy is invalid.
        second: CopyError,
    },
    /// The two copies of a redundant environment differ in size.
    SizeMismatch {
        /// Size of the first copy.
        first: usize,
        /// Size of the second copy.
        second: usize,
    },
    /// The variables do not fit.
    Overflow {
        /// Data bytes needed.
        needed: usize,
        /// Data bytes available.
        available: usize,
    },
    /// A variable name is empty or holds `=` or NUL.
    InvalidKey,
    /// A value holds a NUL byte.
    InvalidValue,
}

impl fmt::Display for EnvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            EnvError::Copy(e) => write!(f, "invalid U-Boot environment: {e}"),
            EnvError::NoValidCopy { first, second } => write!(
                f,
                "neither copy of the redundant U-Boot environment is valid (first: {first}; second: {second})"
            ),
            EnvError::SizeMismatch { first, second } => write!(
                f,
                "the two environment copies are {first} and {second} bytes; they must be the same size"
            ),
            EnvError::Overflow { needed, available } => write!(
                f,
                "the variables need {needed} bytes but the environment holds {available}; use a larger env size or fewer variables"
            ),
            EnvError::InvalidKey => f.write_str(
                "a variable name is empty or contains '=' or NUL; U-Boot cannot store it",
            ),
            EnvError::InvalidValue => {
                f.write_str("a variable value contains a NUL byte; U-Boot cannot store it")
            }
        }
    }
}

impl core::error::Error for EnvError {}

impl From<CopyError> for EnvError {
    fn from(e: CopyError) -> Self {
        EnvError::Copy(e)
    }
}

/// A checked view of one environment copy. Holds the variable list, borrowed.
#[derive(Clone, Copy, Debug)]
pub struct Env<'a> {
    /// The list: entries each ending in NUL, not including the final NUL.
    list: &'a [u8],
    /// Offset of `list` in the copy.
    base: usize,
    flag: Option<u8>,
    /// Whether the list ends with its terminating NUL inside the copy. U-Boot also imports a
    /// list whose last entry ends exactly at the end of the copy, with no room for it.
    terminated: bool,
}

impl<'a> Env<'a> {
    /// Checks the CRC and the entries of `copy` (its whole length is the env size).
    pub fn parse(copy: &'a [u8], layout: Layout) -> Result<Env<'a>, CopyError> {
        if copy.len() < layout.min_size() {
            return Err(CopyError::TooSmall { size: copy.len() });
        }
        let stored = u32::from_le_bytes([copy[0], copy[1], copy[2], copy[3]]);
        let hdr = layout.header_len();
        let data = &copy[hdr..];
        let computed = crate::crc32(data);
        if stored != computed {
            return Err(CopyError::BadCrc { stored, computed });
        }
        let mut p = 0;
        while p < data.len() && data[p] != 0 {
            let end = match data[p..].iter().position(|&b| b == 0) {
                Some(n) => p + n,
                None => return Err(CopyError::Unterminated { offset: hdr + p }),
            };
            match data[p..end].iter().position(|&b| b == b'=') {
                Some(0) | None => return Err(CopyError::MalformedEntry { offset: hdr + p }),
                Some(_) => {}
            }
            p = end + 1;
        }
        let flag = match layout {
            Layout::Single => None,
            Layout::Redundant => Some(copy[4]),
        };
        Ok(Env {
            list: &data[..p],
            base: hdr,
            flag,
            terminated: p < data.len(),
        })
    }

    /// The redundant flag byte (`None` for a single copy).
    pub fn flag(&self) -> Option<u8> {
        self.flag
    }

    /// The variables in stored order, as `(name, value)`.
    pub fn vars(&self) -> Vars<'a> {
        Vars { rest: self.list }
    }

    /// Bytes used by the list including its terminator, from the start of the data. Never
    /// more than the data holds: a list that fills the copy to its last byte has no terminator.
    pub fn used_len(&self) -> usize {
        self.list.len() + usize::from(self.terminated)
    }

    /// Offset of the data in the copy.
    pub fn data_offset(&self) -> usize {
        self.base
    }
}

impl EnvRead for Env<'_> {
    fn get_raw(&self, key: &str) -> Option<&[u8]> {
        crate::vars::last_value(self.vars(), key)
    }
}

/// Iterator over `(name, value)` of an [`Env`].
#[derive(Clone, Debug)]
pub struct Vars<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Vars<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let end = self
            .rest
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(self.rest.len());
        let entry = &self.rest[..end];
        self.rest = self.rest.get(end + 1..).unwrap_or(&[]);
        let eq = entry.iter().position(|&b| b == b'=').unwrap_or(entry.len());
        Some((&entry[..eq], entry.get(eq + 1..).unwrap_or(&[])))
    }
}

/// Which copy of a redundant pair is current.
pub fn select_copy(first: u8, second: u8) -> usize {
    // U-Boot env_import_redund / libubootenv: the flag is a wrapping counter.
    if first == 0xFF && second == 0 {
        1
    } else if second == 0xFF && first == 0 {
        0
    } else if second > first {
        1
    } else {
        0
    }
}

/// Parses a redundant pair and returns the index (0 or 1) and view of the current copy.
/// A copy that fails its CRC is ignored; both failing is [`EnvError::NoValidCopy`].
pub fn parse_redundant<'a>(
    first: &'a [u8],
    second: &'a [u8],
) -> Result<(usize, Env<'a>), EnvError> {
    if first.len() != second.len() {
        return Err(EnvError::SizeMismatch {
            first: first.len(),
            second: second.len(),
        });
    }
    match (
        Env::parse(first, Layout::Redundant),
        Env::parse(second, Layout::Redundant),
    ) {
        (Ok(a), Ok(b)) => {
            let i = select_copy(a.flag.unwrap_or(0), b.flag.unwrap_or(0));
            Ok(if i == 0 { (0, a) } else { (1, b) })
        }
        (Ok(a), Err(e)) => {
            warn!("second U-Boot env copy invalid, using the first");
            let _ = e;
            Ok((0, a))
        }
        (Err(e), Ok(b)) => {
            warn!("first U-Boot env copy invalid, using the second");
            let _ = e;
            Ok((1, b))
        }
        (Err(first), Err(second)) => Err(EnvError::NoValidCopy { first, second }),
    }
}

fn check_key(k: &[u8]) -> Result<(), EnvError> {
    if k.is_empty() || k.iter().any(|&b| b == b'=' || b == 0) {
        Err(EnvError::InvalidKey)
    } else {
        Ok(())
    }
}

fn check_value(v: &[u8]) -> Result<(), EnvError> {
    if v.contains(&0) {
        Err(EnvError::InvalidValue)
    } else {
        Ok(())
    }
}

/// Writes one copy into `out` (its whole length is the env size): the variables `vars` with
/// `updates` applied (an updated variable keeps its place, new ones go last, deleted ones and
/// later duplicates of updated ones are dropped), the terminator, 0x00 padding, the flag (for
/// [`Layout::Redundant`]) and the CRC. Returns the data bytes used.
///
/// `out` must not alias the source of `vars`; for an in-place update of a single copy, encode
/// into a scratch buffer and copy.
pub fn write<'v, I>(
    out: &mut [u8],
    layout: Layout,
    flag: u8,
    vars: I,
    updates: &VarSet<'_>,
) -> Result<usize, EnvError>
where
    I: Iterator<Item = (&'v [u8], &'v [u8])> + Clone,
{
    if out.len() < layout.min_size() {
        return Err(EnvError::Copy(CopyError::TooSmall { size: out.len() }));
    }
    let hdr = layout.header_len();
    let available = out.len() - hdr;
    // First pass: validate and size.
    let mut needed = 1usize; // final NUL
    let emit = |k: &[u8], v: &[u8], data: Option<&mut [u8]>, pos: &mut usize| {
        let n = k.len() + 1 + v.len() + 1;
        if let Some(d) = data {
            if *pos + n <= d.len() {
                d[*pos..*pos + k.len()].copy_from_slice(k);
                d[*pos + k.len()] = b'=';
                d[*pos + k.len() + 1..*pos + n - 1].copy_from_slice(v);
                d[*pos + n - 1] = 0;
            }
        }
        *pos += n;
    };
    for (k, v) in updates.iter() {
        check_key(k.as_bytes())?;
        if let Some(v) = v {
            check_value(v)?;
        }
    }
    let mut pos = 0usize;
    for_each_merged(vars.clone(), updates, |k, v| {
        check_key(k)?;
        check_value(v)?;
        emit(k, v, None, &mut pos);
        Ok(())
    })?;
    needed += pos;
    if needed > available {
        return Err(EnvError::Overflow { needed, available });
    }
    // Second pass: write.
    let (head, data) = out.split_at_mut(hdr);
    data.fill(0);
    let mut pos = 0usize;
    for_each_merged(vars, updates, |k, v| {
        emit(k, v, Some(&mut *data), &mut pos);
        Ok(())
    })?;
    let crc = crate::crc32(data);
    head[..4].copy_from_slice(&crc.to_le_bytes());
    if layout == Layout::Redundant {
        head[4] = flag;
    }
    Ok(needed)
}

/// Calls `f` for every variable of the merge of `vars` and `updates` (see [`write()`]).
fn for_each_merged<'v, I, F>(vars: I, updates: &VarSet<'_>, mut f: F) -> Result<(), EnvError>
where
    I: Iterator<Item = (&'v [u8], &'v [u8])>,
    F: FnMut(&[u8], &[u8]) -> Result<(), EnvError>,
{
    // An updated key is written at its first occurrence only.
    let mut done = [false; crate::vars::MAX_VARS];
    for (k, v) in vars {
        match updates.iter().position(|(uk, _)| uk.as_bytes() == k) {
            None => f(k, v)?,
            Some(i) => {
                if !done[i] {
                    done[i] = true;
                    if let Some(Some(nv)) = updates.iter().nth(i).map(|(_, v)| v) {
                        f(k, nv)?;
                    }
                }
            }
        }
    }
    for (i, (k, v)) in updates.iter().enumerate() {
        if let (false, Some(v)) = (done[i], v) {
            f(k.as_bytes(), v)?;
        }
    }
    Ok(())
}

/// The copy a change of a redundant environment rewrites and the flag it gets: the copy
/// that is not `current`, with `flag` (the current copy's) plus one, wrapping as U-Boot's
/// counter does. The current copy stays untouched, so a torn write leaves it in force.
pub const fn next_copy(current: usize, flag: u8) -> (usize, u8) {
    ((current + 1) % 2, flag.wrapping_add(1))
}

/// An empty variable list, for [`write()`] when creating an environment from scratch.
pub fn no_vars<'a>() -> core::iter::Empty<(&'a [u8], &'a [u8])> {
    core::iter::empty()
}

#[cfg(test)]
mod test {
    use super::*;
    use std::vec;
    use std::vec::Vec;

    #[test]
    fn next_copy_is_the_other_with_the_next_flag() {
        assert_eq!(next_copy(0, 1), (1, 2));
        assert_eq!(next_copy(1, 2), (0, 3));
        assert_eq!(next_copy(1, 255), (0, 0));
    }

    fn image(layout: Layout, size: usize, flag: u8, body: &[u8], pad: u8) -> Vec<u8> {
        let mut v = vec![pad; size];
        let hdr = layout.header_len();
        v[hdr..hdr + body.len()].copy_from_slice(body);
        let crc = crate::crc32(&v[hdr..]);
        v[..4].copy_from_slice(&crc.to_le_bytes());
        if layout == Layout::Redundant {
            v[4] = flag;
        }
        v
    }

    #[test]
    fn parse_mkenvimage_style_with_ff_padding() {
        let img = image(Layout::Single, 64, 0, b"a=1\0bb=hello world\0\0", 0xFF);
        let env = Env::parse(&img, Layout::Single).unwrap();
        let vars: Vec<_> = env.vars().collect();
        assert_eq!(vars, [(&b"a"[..], &b"1"[..]), (b"bb", b"hello world")]);
        assert_eq!(env.get_raw("bb"), Some(&b"hello world"[..]));
        assert_eq!(env.get_raw("c"), None);
    }

    #[test]
    fn parse_ignores_stale_bytes_after_terminator() {
        let img = image(Layout::Single, 64, 0, b"a=1\0\0long=stale\0\0", 0xFF);
        let env = Env::parse(&img, Layout::Single).unwrap();
        assert_eq!(env.vars().count(), 1);
    }

    #[test]
    fn bad_crc_and_malformed() {
        let mut img = image(Layout::Single, 64, 0, b"a=1\0\0", 0);
        img[10] ^= 1;
        assert!(matches!(
            Env::parse(&img, Layout::Single),
            Err(CopyError::BadCrc { .. })
        ));
        let img = image(Layout::Single, 64, 0, b"a=1\0junk\0\0", 0);
        assert_eq!(
            Env::parse(&img, Layout::Single).unwrap_err(),
            CopyError::MalformedEntry { offset: 8 }
        );
        let img = image(Layout::Single, 8, 0, b"abcd", 0x41);
        assert_eq!(
            Env::parse(&img, Layout::Single).unwrap_err(),
            CopyError::Unterminated { offset: 4 }
        );
        assert_eq!(
            Env::parse(&[0; 5], Layout::Single).unwrap_err(),
            CopyError::TooSmall { size: 5 }
        );
    }

    #[test]
    fn list_filling_the_copy_has_no_terminator_byte() {
        // "a=1\0b=2\0" ends exactly at the copy's last byte: U-Boot imports it; the used length
        // stays inside the copy (found by fuzz/bootenv_parse).
        let img = image(Layout::Single, 12, 0, b"a=1\0b=2\0", 0);
        let env = Env::parse(&img, Layout::Single).unwrap();
        assert_eq!(env.vars().count(), 2);
        assert_eq!(env.used_len(), 8);
        assert!(env.data_offset() + env.used_len() <= img.len());
        let img = image(Layout::Single, 13, 0, b"a=1\0b=2\0\0", 0);
        assert_eq!(Env::parse(&img, Layout::Single).unwrap().used_len(), 9);
    }

    #[test]
    fn redundant_selection_wraps() {
        assert_eq!(select_copy(1, 2), 1);
        assert_eq!(select_copy(2, 1), 0);
        assert_eq!(select_copy(255, 0), 1);
        assert_eq!(select_copy(0, 255), 0);
        assert_eq!(select_copy(7, 7), 0);
        let a = image(Layout::Redundant, 32, 255, b"v=old\0\0", 0);
        let b = image(Layout::Redundant, 32, 0, b"v=new\0\0", 0);
        let (i, env) = parse_redundant(&a, &b).unwrap();
        assert_eq!((i, env.get_raw("v")), (1, Some(&b"new"[..])));
        let mut b2 = b.clone();
        b2[20] ^= 0xFF;
        let (i, env) = parse_redundant(&a, &b2).unwrap();
        assert_eq!((i, env.get_raw("v")), (0, Some(&b"old"[..])));
        let mut a2 = a.clone();
        a2[0] ^= 1;
        assert!(matches!(
            parse_redundant(&a2, &b2),
            Err(EnvError::NoValidCopy { .. })
        ));
    }

    #[test]
    fn write_merges_updates() {
        let src = image(Layout::Single, 64, 0, b"a=1\0b=2\0a=3\0c=4\0\0", 0xFF);
        let env = Env::parse(&src, Layout::Single).unwrap();
        let mut up = VarSet::new();
        up.set("a", b"x").unwrap();
        up.delete("b").unwrap();
        up.set("d", b"5").unwrap();
        let mut out = vec![0xAA; 64];
        let used = write(&mut out, Layout::Redundant, 9, env.vars(), &up).unwrap();
        assert_eq!(&out[5..5 + used], b"a=x\0c=4\0d=5\0\0");
        let env2 = Env::parse(&out, Layout::Redundant).unwrap();
        assert_eq!(env2.flag(), Some(9));
        assert!(out[5 + used..].iter().all(|&b| b == 0));
    }

    #[test]
    fn write_refuses_overflow_and_bad_names() {
        let mut up = VarSet::new();
        up.set("key", b"0123456789").unwrap();
        let mut out = [0u8; 16];
        assert_eq!(
            write(&mut out, Layout::Single, 0, no_vars(), &up),
            Err(EnvError::Overflow {
                needed: 16,
                available: 12
            })
        );
        let mut up = VarSet::new();
        up.set("a=b", b"1").unwrap();
        let mut out = [0u8; 64];
        assert_eq!(
            write(&mut out, Layout::Single, 0, no_vars(), &up),
            Err(EnvError::InvalidKey)
        );
        let mut up = VarSet::new();
        up.set("a", b"1\x002").unwrap();
        assert_eq!(
            write(&mut out, Layout::Single, 0, no_vars(), &up),
            Err(EnvError::InvalidValue)
        );
    }

    #[test]
    fn exact_fit() {
        let mut up = VarSet::new();
        up.set("k", b"12345678").unwrap();
        // 4 crc + "k=12345678\0" (11) + "\0" = 16
        let mut out = [0xFFu8; 16];
        assert_eq!(write(&mut out, Layout::Single, 0, no_vars(), &up), Ok(12));
        let env = Env::parse(&out, Layout::Single).unwrap();
        assert_eq!(env.get_raw("k"), Some(&b"12345678"[..]));
    }
}
