//! Ed25519 verification of the signed message (`header || superblock`) with `salty`.
//!
//! `salty` is an ed25519 implementation for microcontrollers (field arithmetic in Cortex-M4
//! assembly on `thumbv7em`, TweetNaCl's elsewhere). On the test firmware it verifies in
//! about 1.7 KB of stack, where `ed25519-dalek` 3 needs about 6 KB and `ed25519-compact` 2
//! about 4.4 KB (`docs/BUDGET.md`), and it links about 5 KB less code than either.
//!
//! `salty`'s own `PublicKey::verify` checks the cofactorless equation
//! `encode([S]B - [k]A) == R` (the 32 bytes of `R` as they stand, `k = SHA-512(R || A || M)
//! mod L`), so a non-canonical encoding of `R` never verifies. It does not check `S` or the
//! orders of `A` and `R`. [`verify`] adds those checks, so that the whole is at least as
//! strict as `ed25519-dalek`'s `verify_strict`, which the format specifies:
//!
//! 1. `S` is canonical: `S < L` (else the signature does not verify).
//! 2. `A`, the trusted key, decodes to a curve point ([`BadKey`] otherwise), and is not of
//!    small order (a small-order key never verifies).
//! 3. `R` decodes to a curve point and is not of small order.
//! 4. The cofactorless equation above, on the bytes of `R` (so `R` must also be canonically
//!    encoded, which `verify_strict` does not require).
//!
//! Every signature a standard ed25519 signer makes passes all four. The tests compare
//! [`verify`] with `verify_strict` on honest signatures, altered ones, non-canonical `S`,
//! and small-order keys and `R`.

use salty::{CompressedY, EdwardsPoint, PublicKey, Signature};

use crate::wire::{PUBLIC_KEY_LEN, SIGNATURE_LEN};

/// The key bytes are not the encoding of a curve point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BadKey;

/// The group order `L = 2^252 + 27742317777372353535851937790883648493`, little-endian.
const L: [u8; 32] = [
    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
];

/// `s < L`, both little-endian.
fn canonical_scalar(s: &[u8; 32]) -> bool {
    for (a, l) in s.iter().rev().zip(L.iter().rev()) {
        if a != l {
            return a < l;
        }
    }
    false
}

/// Whether `[8]p` is the neutral element (`p` is one of the 8 points of small order).
fn small_order(p: &EdwardsPoint) -> bool {
    let p2 = p + p;
    let p4 = &p2 + &p2;
    let p8 = &p4 + &p4;
    p8.compressed() == EdwardsPoint::neutral_element().compressed()
}

/// Verifies `signature` over `message` under `key` with the checks in the [module
/// docs](self). `Ok(false)`: it does not verify.
pub(crate) fn verify(
    key: &[u8; PUBLIC_KEY_LEN],
    message: &[u8],
    signature: &[u8; SIGNATURE_LEN],
) -> Result<bool, BadKey> {
    Ok(strict(key, signature)? && equation(key, message, signature))
}

/// Checks 1 to 3 of the [module docs](self). Out of line, as [`equation`]: the stack holds
/// one of the two frames at a time, never both.
#[inline(never)]
fn strict(key: &[u8; PUBLIC_KEY_LEN], signature: &[u8; SIGNATURE_LEN]) -> Result<bool, BadKey> {
    let a = CompressedY(*key).decompressed().map_err(|_| BadKey)?;
    if small_order(&a) {
        return Ok(false);
    }
    let Some((r, s)) = signature.split_first_chunk::<32>() else {
        return Ok(false);
    };
    let Some(s) = s.first_chunk::<32>() else {
        return Ok(false);
    };
    if !canonical_scalar(s) {
        return Ok(false);
    }
    Ok(matches!(CompressedY(*r).decompressed(), Ok(r) if !small_order(&r)))
}

/// Check 4 of the [module docs](self): `salty`'s verification.
#[inline(never)]
fn equation(key: &[u8; PUBLIC_KEY_LEN], message: &[u8], signature: &[u8; SIGNATURE_LEN]) -> bool {
    // `strict` decoded the key already; salty keeps its point private, so it decodes it again.
    PublicKey::try_from(key)
        .is_ok_and(|key| key.verify(message, &Signature::from(signature)).is_ok())
}

#[cfg(test)]
mod test {
    extern crate std;

    use std::vec::Vec;

    use curve25519_dalek::constants::EIGHT_TORSION;
    use ed25519_dalek::{Signer, SigningKey, VerifyingKey};

    use super::*;

    /// `verify_strict` of ed25519-dalek, the reference.
    fn strict(key: &[u8; 32], message: &[u8], sig: &[u8; 64]) -> Result<bool, BadKey> {
        let key = VerifyingKey::from_bytes(key).map_err(|_| BadKey)?;
        Ok(key
            .verify_strict(message, &ed25519_dalek::Signature::from_bytes(sig))
            .is_ok())
    }

    fn keys() -> Vec<SigningKey> {
        (0u8..8)
            .map(|i| SigningKey::from_bytes(&[i.wrapping_mul(37).wrapping_add(1); 32]))
            .collect()
    }

    /// Adds `L` to the little-endian `s`: the same scalar, not canonical.
    fn plus_l(s: &[u8]) -> [u8; 32] {
        let mut out = [0u8; 32];
        let mut carry = 0u16;
        for i in 0..32 {
            let v = u16::from(s[i]) + u16::from(L[i]) + carry;
            out[i] = v as u8;
            carry = v >> 8;
        }
        out
    }

    #[test]
    fn honest_signatures_verify_and_altered_ones_do_not() {
        for (i, k) in keys().iter().enumerate() {
            let public = k.verifying_key().to_bytes();
            let message: Vec<u8> = (0..i * 37 + 3).map(|b| b as u8).collect();
            let sig = k.sign(&message).to_bytes();
            assert_eq!(verify(&public, &message, &sig), Ok(true));
            assert_eq!(strict(&public, &message, &sig), Ok(true));
            for bit in [0, 7, 100, 255, 256, 300, 511] {
                let mut bad = sig;
                bad[bit / 8] ^= 1 << (bit % 8);
                let ours = verify(&public, &message, &bad);
                assert_eq!(ours, Ok(false), "signature bit {bit}");
                assert_eq!(ours, strict(&public, &message, &bad));
            }
            let mut other = message.clone();
            other.push(0);
            assert_eq!(verify(&public, &other, &sig), Ok(false));
            let wrong_key = keys()[(i + 1) % 8].verifying_key().to_bytes();
            assert_eq!(verify(&wrong_key, &message, &sig), Ok(false));
        }
    }

    #[test]
    fn non_canonical_s_is_refused() {
        for k in keys() {
            let public = k.verifying_key().to_bytes();
            let sig = k.sign(b"m").to_bytes();
            let mut bad = sig;
            let s = plus_l(&sig[32..]);
            if s[31] & 0xe0 != 0 {
                continue; // not representable without touching the top bits
            }
            bad[32..].copy_from_slice(&s);
            assert_eq!(verify(&public, b"m", &bad), Ok(false));
            assert_eq!(strict(&public, b"m", &bad), Ok(false));
        }
        assert!(canonical_scalar(&[0; 32]));
        let mut l_minus_1 = L;
        l_minus_1[0] -= 1;
        assert!(canonical_scalar(&l_minus_1));
        assert!(!canonical_scalar(&L));
        assert!(!canonical_scalar(&[0xff; 32]));
    }

    #[test]
    fn small_order_keys_and_r_are_refused() {
        let k = &keys()[3];
        let public = k.verifying_key().to_bytes();
        let sig = k.sign(b"m").to_bytes();
        for t in EIGHT_TORSION.iter() {
            let t = t.compress().to_bytes();
            // A small-order key: dalek decodes it too, and neither verifies anything with it.
            for s in [sig, [0u8; 64]] {
                let ours = verify(&t, b"m", &s);
                assert_eq!(ours, Ok(false));
                assert_eq!(ours, strict(&t, b"m", &s));
            }
            // A small-order R, with S = 0 and with the honest S.
            for s in [[0u8; 32], {
                let mut s = [0u8; 32];
                s.copy_from_slice(&sig[32..]);
                s
            }] {
                let mut bad = [0u8; 64];
                bad[..32].copy_from_slice(&t);
                bad[32..].copy_from_slice(&s);
                let ours = verify(&public, b"m", &bad);
                assert_eq!(ours, Ok(false));
                assert_eq!(ours, strict(&public, b"m", &bad));
            }
        }
        assert!(small_order(&EdwardsPoint::neutral_element()));
        assert!(!small_order(&EdwardsPoint::basepoint()));
    }

    #[test]
    fn keys_that_are_not_points_are_bad_keys() {
        // y = 2 is not the y of a curve point (as dalek agrees).
        let mut key = [0u8; 32];
        key[0] = 2;
        assert_eq!(strict(&key, b"m", &[0; 64]), Err(BadKey));
        assert_eq!(verify(&key, b"m", &[0; 64]), Err(BadKey));
    }
}
