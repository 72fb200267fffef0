//! [`Policy`]: what a device accepts (trusted and revoked keys, unsigned files, the
//! anti-rollback floor, the refs it follows), and the checks of the signature and the
//! superblock against it, made before anything reaches the store.

#[cfg(doc)]
use super::Installer;
use super::{signature, InstallError, ERROR_REF_LEN};
use crate::wire::{FormatError, SignatureKind, PUBLIC_KEY_LEN, SIGNATURE_LEN};

/// What a device accepts: one value, handed to the [`Installer`] and checked at the superblock,
/// before anything reaches the store.
///
/// - A signed file is always verified against [`Policy::trusted_keys`]: it installs only when
///   one of them verifies it. With no trusted key a signed file is refused
///   ([`InstallError::NoTrustedKeys`]), whatever [`Policy::allow_unsigned`] says: an
///   unchecked signature is never taken for a checked one.
/// - An unsigned file installs only with [`Policy::allow_unsigned`].
/// - A file whose signature verifies against one of [`Policy::revoked_keys`] is refused
///   ([`InstallError::RevokedKey`]), even when that key is also trusted.
/// - A file whose security version is below [`Policy::min_security_version`] is refused
///   ([`InstallError::BelowFloor`]); a format-version-1 file has security version 0.
/// - With [`Policy::refs`] set, a file for a ref not in the list is refused
///   ([`InstallError::RefNotFollowed`]).
///
/// ```
/// # use agent_core::install::Policy;
/// const KEYS: [[u8; 32]; 1] = [[7; 32]];
/// const REVOKED: [[u8; 32]; 1] = [[9; 32]];
/// const REFS: [&str; 1] = ["ecu/main"];
/// let policy = Policy::require(&KEYS)
///     .with_revoked(&REVOKED)
///     .with_floor(3)
///     .with_refs(&REFS);
/// assert!(!policy.allow_unsigned);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy<'k> {
    /// The ed25519 public keys whose signatures are accepted.
    pub trusted_keys: &'k [[u8; PUBLIC_KEY_LEN]],
    /// Keys whose signatures are refused, even when also trusted.
    pub revoked_keys: &'k [[u8; PUBLIC_KEY_LEN]],
    /// Whether unsigned files are accepted.
    pub allow_unsigned: bool,
    /// The anti-rollback floor: the lowest security version accepted.
    pub min_security_version: u64,
    /// The refs this device follows; `None` accepts any ref.
    pub refs: Option<&'k [&'k str]>,
}

impl<'k> Policy<'k> {
    /// Signatures required, by one of `trusted_keys`; nothing revoked, no floor, any ref.
    pub const fn require(trusted_keys: &'k [[u8; PUBLIC_KEY_LEN]]) -> Policy<'k> {
        Policy {
            trusted_keys,
            revoked_keys: &[],
            allow_unsigned: false,
            min_security_version: 0,
            refs: None,
        }
    }

    /// The same, refusing files signed by any of `revoked_keys`.
    pub const fn with_revoked(self, revoked_keys: &'k [[u8; PUBLIC_KEY_LEN]]) -> Policy<'k> {
        Policy {
            revoked_keys,
            ..self
        }
    }

    /// The same, refusing files whose security version is below `min_security_version`.
    pub const fn with_floor(self, min_security_version: u64) -> Policy<'k> {
        Policy {
            min_security_version,
            ..self
        }
    }

    /// The same, accepting only files for one of `refs`.
    pub const fn with_refs(self, refs: &'k [&'k str]) -> Policy<'k> {
        Policy {
            refs: Some(refs),
            ..self
        }
    }

    /// The same, accepting unsigned files too (a signed file is still verified).
    pub const fn allow_unsigned(self) -> Policy<'k> {
        Policy {
            allow_unsigned: true,
            ..self
        }
    }

    /// Whether the policy accepts a file for `ref_name`.
    pub fn follows(&self, ref_name: &str) -> bool {
        self.refs.is_none_or(|refs| refs.contains(&ref_name))
    }
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
pub(super) fn prefix(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or("")
}

/// Checks the signature as `policy` says; returns whether it was verified against a trusted
/// key (false only for an unsigned file under [`Policy::allow_unsigned`]).
#[inline(never)]
pub(super) fn check_signature<E>(
    policy: &Policy<'_>,
    kind: SignatureKind,
    signature: &[u8; SIGNATURE_LEN],
    message: &[u8],
) -> Result<bool, InstallError<E>> {
    match kind {
        SignatureKind::Ed25519 => {
            let mut trusted = false;
            for (index, key) in policy.trusted_keys.iter().enumerate() {
                if signature::verify(key, message, signature)
                    .map_err(|_| InstallError::BadTrustedKey { index })?
                {
                    trusted = true;
                    break;
                }
            }
            // A revoked key is refused by name, also when it is trusted too. A revoked key
            // that is not a curve point signs nothing: it is skipped.
            for key in policy.revoked_keys {
                if signature::verify(key, message, signature) == Ok(true) {
                    return Err(InstallError::RevokedKey { key: *key });
                }
            }
            match (trusted, policy.trusted_keys.is_empty()) {
                (true, _) => Ok(true),
                (false, true) => Err(InstallError::NoTrustedKeys),
                (false, false) => Err(InstallError::BadSignature),
            }
        }
        SignatureKind::None if policy.allow_unsigned => Ok(false),
        SignatureKind::None => Err(InstallError::Unsigned),
        SignatureKind::Unknown(c) => Err(InstallError::Format(FormatError::UnknownSignature(c))),
    }
}

/// Checks the decoded superblock's ref and security version against `policy`.
pub(super) fn check_superblock<E>(
    policy: &Policy<'_>,
    ref_name: &str,
    security_version: u64,
) -> Result<(), InstallError<E>> {
    if !policy.follows(ref_name) {
        let cut = prefix(ref_name, ERROR_REF_LEN);
        return Err(InstallError::RefNotFollowed {
            ref_name: heapless::String::try_from(cut).unwrap_or_default(),
            cut: cut.len() < ref_name.len(),
        });
    }
    if security_version < policy.min_security_version {
        return Err(InstallError::BelowFloor {
            security_version,
            floor: policy.min_security_version,
        });
    }
    Ok(())
}
#[cfg(test)]
mod test {
    extern crate std;

    use super::*;

    #[test]
    fn long_refs_are_cut_in_the_error() {
        let long = "r".repeat(100);
        let refs = ["ecu/main"];
        let policy = Policy::require(&[]).with_refs(&refs);
        let e = check_superblock::<core::convert::Infallible>(&policy, &long, 0).unwrap_err();
        let InstallError::RefNotFollowed { ref_name, cut } = &e else {
            panic!("{e:?}");
        };
        assert!(*cut);
        assert_eq!(ref_name.as_str(), &long[..ERROR_REF_LEN]);
        assert!(std::format!("{e}").contains("(cut)"), "{e}");
        assert_eq!(
            check_superblock::<core::convert::Infallible>(&policy, "ecu/main", 0),
            Ok(())
        );
    }

    #[test]
    fn prefix_cuts_on_char_boundaries() {
        assert_eq!(prefix("héllo", 2), "h");
        assert_eq!(prefix("héllo", 3), "hé");
        assert_eq!(prefix("abc", 10), "abc");
    }
}
