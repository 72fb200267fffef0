//! `index_parse`: the index of a published folder (`agent_linux::index`, docs/PUBLISH.md),
//! which `ecu-agent upgrade` reads from a server it does not trust.
//!
//! Input: byte 0 bit 0 allows unsigned indexes; the rest is the index file, checked under the
//! sample key ([`crate::public_key`]) trusted. Asserts: nothing panics; verifying allocates
//! at most [`ALLOC_FACTOR`] times the input's length (plus 64 KiB); a refusal has a
//! message; an accepted index is exactly what [`index::emit`] writes for what was parsed (the
//! encoding is canonical: nothing in the file is ignored), its file names are plain names and
//! its refs valid; the body parsed on its own gives the same result as behind the signature.

use agent_linux::index::{self, KeyPolicy, HEADER_LEN};

/// What verifying may allocate at most, beyond 64 KiB: this many times the index's length
/// (the entries' vector is sized from a count bounded by the body's length, each entry about
/// 200 bytes for at least 86 of the body, plus its strings).
pub const ALLOC_FACTOR: usize = 8;

/// What a check did (for the seed test).
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// Refused.
    Refused,
    /// Accepted with this many entries.
    Accepted(usize),
}

/// Runs the checks of the module docs on `data`.
pub fn check(data: &[u8]) -> Parsed {
    let Some((&mode, file)) = data.split_first() else {
        return Parsed::Refused;
    };
    let key = [crate::public_key()];
    let policy = KeyPolicy {
        trusted: &key,
        revoked: &[],
        allow_unsigned: mode & 1 == 1,
    };
    // The body alone, whatever the header says: never panics.
    let _ = file.get(HEADER_LEN..).map(index::parse);
    let (verified, peak) = crate::peak_during(|| index::verify(file, &policy));
    assert!(
        peak <= ALLOC_FACTOR * file.len() + 64 * 1024,
        "{peak} bytes allocated for a {}-byte index",
        file.len()
    );
    match verified {
        Ok((idx, _)) => {
            let signed_len = file.len() - if file[file.len() - 1] == 0 { 1 } else { 65 };
            let again = index::emit(&idx, None);
            assert_eq!(&again[..again.len() - 1], &file[..signed_len]);
            assert_eq!(
                index::parse(&file[HEADER_LEN..signed_len]).as_ref(),
                Ok(&idx)
            );
            for e in &idx.entries {
                assert!(index::valid_file_name(&e.file), "{:?}", e.file);
                assert!(agent_linux::repo::validate_ref(&e.ref_name).is_ok());
            }
            Parsed::Accepted(idx.entries.len())
        }
        Err(e) => {
            assert!(!e.to_string().is_empty());
            Parsed::Refused
        }
    }
}
