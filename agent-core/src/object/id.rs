//! [`ObjectId`]: an object's SHA-256 name, its hex form and the errors of parsing one.

use core::fmt;

use sha2::{Digest, Sha256};

use super::ID_LEN;

/// The SHA-256 name of an object. Prints as 64 lowercase hex characters.
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct ObjectId(pub [u8; ID_LEN]);

impl ObjectId {
    /// The all-zero id, used where a layout has a slot for an id that is absent.
    pub const ZERO: ObjectId = ObjectId([0; ID_LEN]);

    /// The id of the object whose canonical bytes are `bytes`.
    pub fn of(bytes: &[u8]) -> ObjectId {
        ObjectId(Sha256::digest(bytes).into())
    }

    /// Parses 64 hex characters (either case).
    pub fn from_hex(s: &str) -> Result<ObjectId, IdError> {
        let s = s.as_bytes();
        if s.len() != 2 * ID_LEN {
            return Err(IdError::Length(s.len()));
        }
        let mut id = [0u8; ID_LEN];
        for (i, byte) in id.iter_mut().enumerate() {
            *byte = (hex_val(s[2 * i])? << 4) | hex_val(s[2 * i + 1])?;
        }
        Ok(ObjectId(id))
    }

    /// True when this id's hex form starts with `prefix` (either case), as a person types a
    /// short id. An empty prefix or one with a non-hex character matches nothing.
    pub fn matches_prefix(&self, prefix: &str) -> bool {
        let p = prefix.as_bytes();
        if p.is_empty() || p.len() > 2 * ID_LEN {
            return false;
        }
        let hex = self.to_hex();
        p.iter()
            .zip(hex.as_str().as_bytes())
            .all(|(a, b)| a.to_ascii_lowercase() == *b)
    }

    /// The id as 64 lowercase hex characters, without allocating.
    pub fn to_hex(&self) -> HexId {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut out = [0u8; 2 * ID_LEN];
        for (i, b) in self.0.iter().enumerate() {
            out[2 * i] = DIGITS[usize::from(b >> 4)];
            out[2 * i + 1] = DIGITS[usize::from(b & 15)];
        }
        HexId(out)
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; ID_LEN] {
        &self.0
    }
}

fn hex_val(c: u8) -> Result<u8, IdError> {
    match c {
        b'0'..=b'9' => Ok(c - b'0'),
        b'a'..=b'f' => Ok(c - b'a' + 10),
        b'A'..=b'F' => Ok(c - b'A' + 10),
        _ => Err(IdError::NotHex(c)),
    }
}

/// An object id in hex, on the stack.
#[derive(Clone, Copy)]
pub struct HexId([u8; 2 * ID_LEN]);

impl HexId {
    /// The 64 hex characters.
    pub fn as_str(&self) -> &str {
        // Only ASCII hex digits are ever stored.
        core::str::from_utf8(&self.0).unwrap_or("")
    }
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.to_hex().as_str())
    }
}

impl fmt::Debug for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.to_hex().as_str())
    }
}

#[cfg(feature = "defmt")]
impl defmt::Format for ObjectId {
    fn format(&self, f: defmt::Formatter) {
        defmt::write!(f, "{=str}", self.to_hex().as_str())
    }
}

/// A string that is not an object id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum IdError {
    /// Not 64 characters long.
    Length(usize),
    /// A character that is not a hex digit.
    NotHex(u8),
}

impl fmt::Display for IdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdError::Length(n) => write!(f, "an object id has 64 hex characters, this has {n}"),
            IdError::NotHex(c) => {
                write!(f, "an object id has only hex digits, found byte {c:#04x}")
            }
        }
    }
}

impl core::error::Error for IdError {}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn id_hex_round_trip_and_prefix() {
        let id = ObjectId::of(b"hello");
        let hex = id.to_hex();
        assert_eq!(
            hex.as_str(),
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert_eq!(ObjectId::from_hex(hex.as_str()), Ok(id));
        assert_eq!(ObjectId::from_hex(&hex.as_str().to_uppercase()), Ok(id));
        assert!(id.matches_prefix("2cf24d"));
        assert!(id.matches_prefix("2CF24D"));
        assert!(!id.matches_prefix("2cf24e"));
        assert!(!id.matches_prefix(""));
        assert_eq!(ObjectId::from_hex("abc"), Err(IdError::Length(3)));
        assert!(matches!(
            ObjectId::from_hex(&"g".repeat(64)),
            Err(IdError::NotHex(b'g'))
        ));
    }
}
