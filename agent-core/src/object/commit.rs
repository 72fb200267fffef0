//! Commit objects: [`Commit`] and the root ids a streaming parser reads from its fixed header.

use super::*;

/// A commit.
///
/// | offset | size | field |
/// | --- | --- | --- |
/// | 0 | 1 | 1 if there is a parent, else 0 |
/// | 1 | 32 | parent id (zero when none) |
/// | 33 | 8 | timestamp, seconds since 1970-01-01 UTC |
/// | 41 | 32 | root dirtree id |
/// | 73 | 32 | root dirmeta id |
/// | 105 | 1 + n | version: `u8` length, UTF-8 |
/// | | 2 + n | subject: `u16` length, UTF-8 |
/// | | 2 + n | body: `u16` length, UTF-8 |
/// | | 0 or 8 | security version, `u64` LE: present only when not 0 |
///
/// The trailer keeps the id of every commit at security version 0 what it was before security
/// versions existed (`docs/FORMAT.md` section 7).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Commit<'a> {
    /// The previous commit on the ref, if any.
    pub parent: Option<ObjectId>,
    /// Seconds since the epoch, UTC.
    pub timestamp: u64,
    /// The root directory's listing.
    pub root_tree: ObjectId,
    /// The root directory's metadata.
    pub root_meta: ObjectId,
    /// A version string, e.g. `9.1`.
    pub version: &'a str,
    /// One-line subject.
    pub subject: &'a str,
    /// Longer description.
    pub body: &'a str,
    /// The anti-rollback security version: a device refuses commits below its floor. 0 (no
    /// trailer) for commits made before security versions existed.
    pub security_version: u64,
}

impl<'a> Commit<'a> {
    /// Parses and validates a whole commit object.
    pub fn parse(b: &'a [u8]) -> Result<Commit<'a>, ObjectError> {
        need(b, COMMIT_HEADER_LEN + 1)?;
        let parent = match b[0] {
            0 => None,
            1 => Some(id_at(b, 1)),
            f => return Err(ObjectError::BadFlag(f)),
        };
        let vlen = usize::from(b[COMMIT_HEADER_LEN]);
        let mut at = COMMIT_HEADER_LEN + 1;
        need(b, at + vlen)?;
        let version =
            core::str::from_utf8(&b[at..at + vlen]).map_err(|_| ObjectError::NotUtf8("version"))?;
        at += vlen;
        let (subject, next) = text16(b, at, "subject", MAX_SUBJECT_LEN)?;
        let (body, next) = text16(b, next, "body", MAX_BODY_LEN)?;
        let security_version = match b.len() - next {
            0 => 0,
            COMMIT_TRAILER_LEN => match le_u64(b, next) {
                0 => return Err(ObjectError::ZeroSecurityVersion),
                v => v,
            },
            n if n < COMMIT_TRAILER_LEN => return Err(ObjectError::TrailingBytes(n)),
            n => return Err(ObjectError::TrailingBytes(n - COMMIT_TRAILER_LEN)),
        };
        Ok(Commit {
            parent,
            timestamp: le_u64(b, 33),
            root_tree: id_at(b, 41),
            root_meta: id_at(b, 73),
            version,
            subject,
            body,
            security_version,
        })
    }

    /// Bytes [`Commit::emit`] writes.
    pub fn buffer_len(&self) -> usize {
        let trailer = if self.security_version == 0 {
            0
        } else {
            COMMIT_TRAILER_LEN
        };
        COMMIT_HEADER_LEN
            + 1
            + self.version.len()
            + 2
            + self.subject.len()
            + 2
            + self.body.len()
            + trailer
    }

    /// Checks the bounds [`Commit::emit`] relies on.
    pub fn check(&self) -> Result<(), ObjectError> {
        for (field, len, max) in [
            ("version", self.version.len(), MAX_VERSION_LEN),
            ("subject", self.subject.len(), MAX_SUBJECT_LEN),
            ("body", self.body.len(), MAX_BODY_LEN),
        ] {
            if len > max {
                return Err(ObjectError::TooLong { field, len, max });
            }
        }
        Ok(())
    }

    /// Writes the commit into `out[..self.buffer_len()]`.
    ///
    /// # Panics
    /// If `out` is shorter than [`Commit::buffer_len`] or [`Commit::check`] fails.
    pub fn emit(&self, out: &mut [u8]) {
        self.check().expect("commit fields over their bounds");
        out[0] = u8::from(self.parent.is_some());
        out[1..33].copy_from_slice(&self.parent.unwrap_or(ObjectId::ZERO).0);
        out[33..41].copy_from_slice(&self.timestamp.to_le_bytes());
        out[41..73].copy_from_slice(&self.root_tree.0);
        out[73..105].copy_from_slice(&self.root_meta.0);
        let mut at = COMMIT_HEADER_LEN;
        out[at] = self.version.len() as u8;
        at += 1;
        out[at..at + self.version.len()].copy_from_slice(self.version.as_bytes());
        at += self.version.len();
        for text in [self.subject, self.body] {
            out[at..at + 2].copy_from_slice(&(text.len() as u16).to_le_bytes());
            at += 2;
            out[at..at + text.len()].copy_from_slice(text.as_bytes());
            at += text.len();
        }
        if self.security_version != 0 {
            out[at..at + COMMIT_TRAILER_LEN].copy_from_slice(&self.security_version.to_le_bytes());
        }
    }
}

fn text16<'a>(
    b: &'a [u8],
    at: usize,
    field: &'static str,
    max: usize,
) -> Result<(&'a str, usize), ObjectError> {
    need(b, at + 2)?;
    let len = usize::from(le_u16(b, at));
    if len > max {
        return Err(ObjectError::TooLong { field, len, max });
    }
    let start = at + 2;
    need(b, start + len)?;
    let s =
        core::str::from_utf8(&b[start..start + len]).map_err(|_| ObjectError::NotUtf8(field))?;
    Ok((s, start + len))
}

/// Reads the root dirtree and dirmeta ids from the fixed part of a commit object (its first
/// [`COMMIT_HEADER_LEN`] bytes), as a streaming reader that does not hold the whole commit
/// needs.
pub fn commit_roots(header: &[u8; COMMIT_HEADER_LEN]) -> (ObjectId, ObjectId) {
    (id_at(header, 41), id_at(header, 73))
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn commit_round_trip() {
        let c = Commit {
            parent: Some(ObjectId([9; 32])),
            timestamp: 1_700_000_000,
            root_tree: ObjectId([1; 32]),
            root_meta: ObjectId([2; 32]),
            version: "9.1",
            subject: "Update",
            body: "",
            security_version: 0,
        };
        let mut buf = [0u8; 200];
        let n = c.buffer_len();
        c.emit(&mut buf[..n]);
        assert_eq!(Commit::parse(&buf[..n]), Ok(c));
        let mut header = [0u8; COMMIT_HEADER_LEN];
        header.copy_from_slice(&buf[..COMMIT_HEADER_LEN]);
        assert_eq!(commit_roots(&header), (c.root_tree, c.root_meta));
        assert!(matches!(
            Commit::parse(&buf[..n - 1]),
            Err(ObjectError::Truncated { .. })
        ));
        assert_eq!(
            Commit::parse(&buf[..n + 1]),
            Err(ObjectError::TrailingBytes(1))
        );
        buf[0] = 2;
        assert_eq!(Commit::parse(&buf[..n]), Err(ObjectError::BadFlag(2)));
    }

    #[test]
    fn commit_security_version_is_an_optional_trailer() {
        let c0 = Commit {
            parent: None,
            timestamp: 7,
            root_tree: ObjectId([1; 32]),
            root_meta: ObjectId([2; 32]),
            version: "1",
            subject: "s",
            body: "b",
            security_version: 0,
        };
        let mut buf = [0u8; 200];
        let n0 = c0.buffer_len();
        c0.emit(&mut buf[..n0]);
        let v0 = buf[..n0].to_vec();
        // Security version 0: the encoding (and so the id) of a commit without the field.
        assert_eq!(n0, COMMIT_HEADER_LEN + 1 + 1 + 2 + 1 + 2 + 1);
        for sv in [1u64, 3, u64::MAX] {
            let c = Commit {
                security_version: sv,
                ..c0
            };
            let n = c.buffer_len();
            assert_eq!(n, n0 + COMMIT_TRAILER_LEN);
            let mut buf = [0u8; 200];
            c.emit(&mut buf[..n]);
            assert_eq!(&buf[..n0], &v0[..], "the trailer only appends");
            assert_eq!(&buf[n0..n], &sv.to_le_bytes());
            assert_eq!(Commit::parse(&buf[..n]), Ok(c));
            assert_eq!(
                Commit::parse(&buf[..n + 1]),
                Err(ObjectError::TrailingBytes(1))
            );
        }
        let mut zero = v0.clone();
        zero.extend_from_slice(&[0; 8]);
        assert_eq!(Commit::parse(&zero), Err(ObjectError::ZeroSecurityVersion));
        for extra in 1..COMMIT_TRAILER_LEN {
            let mut short = v0.clone();
            short.extend(core::iter::repeat_n(1, extra));
            assert_eq!(
                Commit::parse(&short),
                Err(ObjectError::TrailingBytes(extra))
            );
        }
    }
}
