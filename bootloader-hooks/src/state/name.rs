//! [`SlotName`]: what a slot holds, a short ASCII name stored inline (no allocation).

use core::fmt;

use super::{StateError, MAX_NAME_LEN};

/// What a slot holds: a commit id or deployment name, at most [`MAX_NAME_LEN`] bytes of
/// ASCII letters, digits and `._-:/+@,~`. Empty means "nothing recorded".
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SlotName {
    len: u8,
    bytes: [u8; MAX_NAME_LEN],
}

impl SlotName {
    /// The empty name.
    pub const EMPTY: SlotName = SlotName {
        len: 0,
        bytes: [0; MAX_NAME_LEN],
    };

    /// Whether `b` may appear in a slot name.
    pub const fn is_allowed_byte(b: u8) -> bool {
        b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'.' | b'_' | b'-' | b':' | b'/' | b'+' | b'@' | b',' | b'~'
            )
    }

    /// Validates and copies `bytes`.
    pub fn from_bytes(bytes: &[u8]) -> Result<SlotName, StateError> {
        if bytes.len() > MAX_NAME_LEN {
            return Err(StateError::NameTooLong { len: bytes.len() });
        }
        let mut name = SlotName::EMPTY;
        for (offset, &byte) in bytes.iter().enumerate() {
            if !Self::is_allowed_byte(byte) {
                return Err(StateError::InvalidNameByte { offset, byte });
            }
            name.bytes[offset] = byte;
        }
        name.len = bytes.len() as u8;
        Ok(name)
    }

    /// Validates and copies `s`.
    #[allow(clippy::should_implement_trait)]
    pub fn from_str(s: &str) -> Result<SlotName, StateError> {
        Self::from_bytes(s.as_bytes())
    }

    /// The name's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }

    /// The name as text (always ASCII).
    pub fn as_str(&self) -> &str {
        // Only allowed (ASCII) bytes are ever stored, so this never fails.
        core::str::from_utf8(self.as_bytes()).unwrap_or("")
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether nothing is recorded.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Default for SlotName {
    fn default() -> Self {
        SlotName::EMPTY
    }
}

impl fmt::Debug for SlotName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

impl fmt::Display for SlotName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(feature = "defmt")]
impl defmt::Format for SlotName {
    fn format(&self, f: defmt::Formatter) {
        defmt::write!(f, "{=str}", self.as_str())
    }
}
