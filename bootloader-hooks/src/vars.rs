//! Environment variables shared by both env encodings: a read trait, a fixed-capacity set of
//! updates, and the number formats bootloaders use.

use core::fmt;

/// Read access to an environment's variables (U-Boot or GRUB).
pub trait EnvRead {
    /// The raw value of `key` as stored (GRUB values keep their `\` escapes), or `None` if the
    /// variable is not set. When a key appears twice the last one wins, as in the bootloaders.
    fn get_raw(&self, key: &str) -> Option<&[u8]>;
}

/// [`EnvRead::get_raw`] over an environment stored as a list of `(name, value)`: the value of
/// the last pair named `key`.
pub(crate) fn last_value<'a>(
    vars: impl Iterator<Item = (&'a [u8], &'a [u8])>,
    key: &str,
) -> Option<&'a [u8]> {
    vars.filter(|(k, _)| *k == key.as_bytes())
        .last()
        .map(|(_, v)| v)
}

/// An environment without variables (for encoding into a fresh environment).
#[derive(Clone, Copy, Debug, Default)]
pub struct Empty;

impl EnvRead for Empty {
    fn get_raw(&self, _key: &str) -> Option<&[u8]> {
        None
    }
}

/// Longest value a [`VarSet`] holds (a slot name plus room).
pub const MAX_VALUE_LEN: usize = 136;

/// Most updates a [`VarSet`] holds.
pub const MAX_VARS: usize = 16;

/// A value in a [`VarSet`].
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Value {
    len: u8,
    bytes: [u8; MAX_VALUE_LEN],
}

impl Value {
    /// Copies `v`; `None` if longer than [`MAX_VALUE_LEN`].
    pub fn new(v: &[u8]) -> Option<Value> {
        if v.len() > MAX_VALUE_LEN {
            return None;
        }
        let mut out = Value {
            len: v.len() as u8,
            bytes: [0; MAX_VALUE_LEN],
        };
        out.bytes[..v.len()].copy_from_slice(v);
        Some(out)
    }

    /// `n` in lowercase hex without `0x`, as U-Boot's `setexpr` writes numbers.
    pub fn hex(n: u32) -> Value {
        let mut digits = [0u8; 8];
        let mut i = digits.len();
        let mut n = n;
        loop {
            i -= 1;
            digits[i] = b"0123456789abcdef"[(n & 0xf) as usize];
            n >>= 4;
            if n == 0 {
                break;
            }
        }
        // at most 8 bytes: always fits
        Value::new(&digits[i..]).unwrap_or(Value {
            len: 0,
            bytes: [0; MAX_VALUE_LEN],
        })
    }

    /// `n` in decimal.
    pub fn dec(n: u32) -> Value {
        let mut digits = [0u8; 10];
        let mut i = digits.len();
        let mut n = n;
        loop {
            i -= 1;
            digits[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        Value::new(&digits[i..]).unwrap_or(Value {
            len: 0,
            bytes: [0; MAX_VALUE_LEN],
        })
    }

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match core::str::from_utf8(self.as_bytes()) {
            Ok(s) => write!(f, "{s:?}"),
            Err(_) => write!(f, "{:?}", self.as_bytes()),
        }
    }
}

/// Too many updates or too long a value for a [`VarSet`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct VarSetFull;

impl fmt::Display for VarSetFull {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "more than {MAX_VARS} variables or a value over {MAX_VALUE_LEN} bytes in one update"
        )
    }
}

impl core::error::Error for VarSetFull {}

/// A set of variable updates: set `key` to a value, or delete it (`None`). Fixed capacity
/// ([`MAX_VARS`] entries of at most [`MAX_VALUE_LEN`] bytes, about 2.3 KiB).
#[derive(Clone, Debug)]
pub struct VarSet<'k> {
    len: usize,
    entries: [(&'k str, Option<Value>); MAX_VARS],
}

impl Default for VarSet<'_> {
    fn default() -> Self {
        Self::new()
    }
}

impl<'k> VarSet<'k> {
    /// An empty set.
    pub const fn new() -> Self {
        VarSet {
            len: 0,
            entries: [("", None); MAX_VARS],
        }
    }

    /// Sets `key` to `value` (replacing an earlier update of the same key).
    pub fn set(&mut self, key: &'k str, value: &[u8]) -> Result<(), VarSetFull> {
        let v = Value::new(value).ok_or(VarSetFull)?;
        self.put(key, Some(v))
    }

    /// Sets `key` to a prepared [`Value`].
    pub fn set_value(&mut self, key: &'k str, value: Value) -> Result<(), VarSetFull> {
        self.put(key, Some(value))
    }

    /// Deletes `key`.
    pub fn delete(&mut self, key: &'k str) -> Result<(), VarSetFull> {
        self.put(key, None)
    }

    fn put(&mut self, key: &'k str, value: Option<Value>) -> Result<(), VarSetFull> {
        if let Some(e) = self.entries[..self.len].iter_mut().find(|e| e.0 == key) {
            e.1 = value;
            return Ok(());
        }
        if self.len == MAX_VARS {
            return Err(VarSetFull);
        }
        self.entries[self.len] = (key, value);
        self.len += 1;
        Ok(())
    }

    /// The update for `key`: `None` if untouched, `Some(None)` if deleted.
    pub fn lookup(&self, key: &[u8]) -> Option<Option<&[u8]>> {
        self.iter()
            .find(|(k, _)| k.as_bytes() == key)
            .map(|(_, v)| v)
    }

    /// The updates in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = (&'k str, Option<&[u8]>)> + '_ {
        self.entries[..self.len]
            .iter()
            .map(|(k, v)| (*k, v.as_ref().map(Value::as_bytes)))
    }

    /// Number of updates.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Parses a number as U-Boot's `setexpr`, `itest` and `env_get_ulong(.., 16, ..)` do: hex,
/// optional `0x`/`0X`, 1 to 8 digits. Decimal single digits read the same.
pub fn parse_hex(v: &[u8]) -> Option<u32> {
    let digits = match v {
        [b'0', b'x' | b'X', rest @ ..] => rest,
        _ => v,
    };
    if digits.is_empty() || digits.len() > 8 {
        return None;
    }
    let mut n: u32 = 0;
    for &d in digits {
        let x = (d as char).to_digit(16)?;
        n = (n << 4) | x;
    }
    Some(n)
}

/// Parses a decimal number (1 to 9 digits), as U-Boot reads `bootlimit` and GRUB's `test`
/// compares numbers.
pub fn parse_dec(v: &[u8]) -> Option<u32> {
    if v.is_empty() || v.len() > 9 {
        return None;
    }
    let mut n: u32 = 0;
    for &d in v {
        let x = (d as char).to_digit(10)?;
        n = n * 10 + x;
    }
    Some(n)
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(parse_hex(b"a"), Some(10));
        assert_eq!(parse_hex(b"0x10"), Some(16));
        assert_eq!(parse_hex(b"15"), Some(0x15));
        assert_eq!(parse_hex(b""), None);
        assert_eq!(parse_hex(b"0x"), None);
        assert_eq!(parse_hex(b"-1"), None);
        assert_eq!(parse_hex(b"123456789"), None);
        assert_eq!(parse_dec(b"15"), Some(15));
        assert_eq!(parse_dec(b"a"), None);
        assert_eq!(Value::hex(0).as_bytes(), b"0");
        assert_eq!(Value::hex(0xdead_beef).as_bytes(), b"deadbeef");
        assert_eq!(Value::dec(1234).as_bytes(), b"1234");
        assert_eq!(Value::dec(0).as_bytes(), b"0");
    }

    #[test]
    fn varset_replaces_and_bounds() {
        let mut s = VarSet::new();
        s.set("a", b"1").unwrap();
        s.set("a", b"2").unwrap();
        s.delete("b").unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s.lookup(b"a"), Some(Some(&b"2"[..])));
        assert_eq!(s.lookup(b"b"), Some(None));
        assert_eq!(s.lookup(b"c"), None);
        assert_eq!(s.set("x", &[b'x'; MAX_VALUE_LEN + 1]), Err(VarSetFull));
        const KEYS: [&str; MAX_VARS] = [
            "k0", "k1", "k2", "k3", "k4", "k5", "k6", "k7", "k8", "k9", "ka", "kb", "kc", "kd",
            "ke", "kf",
        ];
        let mut s = VarSet::new();
        for k in KEYS {
            s.set(k, b"v").unwrap();
        }
        assert_eq!(s.set("overflow", b"v"), Err(VarSetFull));
    }
}
