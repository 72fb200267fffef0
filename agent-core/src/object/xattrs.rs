//! [`Xattrs`]: the extended-attribute block of a file or a directory, checked once when parsed.

use super::{le_u16, need, ObjectError, MAX_XATTRS, MAX_XATTR_BYTES};

/// An extended-attribute block: entries `u8 name_len, name, u16 value_len, value`, sorted by
/// name, each name once, at most [`MAX_XATTRS`] entries and [`MAX_XATTR_BYTES`] bytes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Xattrs<'a>(&'a [u8]);

impl<'a> Xattrs<'a> {
    /// No extended attributes.
    pub const EMPTY: Xattrs<'static> = Xattrs(&[]);

    /// Validates a block.
    pub fn parse(block: &'a [u8]) -> Result<Xattrs<'a>, ObjectError> {
        if block.len() > MAX_XATTR_BYTES {
            return Err(ObjectError::TooLong {
                field: "xattr block",
                len: block.len(),
                max: MAX_XATTR_BYTES,
            });
        }
        let mut rest = block;
        let mut prev: Option<&[u8]> = None;
        let mut count = 0;
        while !rest.is_empty() {
            let (name, value, tail) = split_xattr(rest)?;
            if name.is_empty() || name.contains(&0) || prev.is_some_and(|p| p >= name) {
                return Err(ObjectError::BadXattrs);
            }
            let _ = value;
            count += 1;
            if count > MAX_XATTRS {
                return Err(ObjectError::BadXattrs);
            }
            prev = Some(name);
            rest = tail;
        }
        Ok(Xattrs(block))
    }

    /// The raw block, as hashed.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.0
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The `(name, value)` pairs, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&'a [u8], &'a [u8])> {
        let mut rest = self.0;
        core::iter::from_fn(move || {
            if rest.is_empty() {
                return None;
            }
            // The block was validated by `parse`.
            let (n, v, tail) = split_xattr(rest).ok()?;
            rest = tail;
            Some((n, v))
        })
    }
}

/// An xattr entry's name, its value and the bytes after it.
type XattrSplit<'a> = (&'a [u8], &'a [u8], &'a [u8]);

fn split_xattr(b: &[u8]) -> Result<XattrSplit<'_>, ObjectError> {
    need(b, 1)?;
    let nlen = usize::from(b[0]);
    need(b, 1 + nlen + 2)?;
    let vlen = usize::from(le_u16(b, 1 + nlen));
    let end = 1 + nlen + 2 + vlen;
    need(b, end)?;
    Ok((&b[1..1 + nlen], &b[3 + nlen..end], &b[end..]))
}
