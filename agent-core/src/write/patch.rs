//! Patches: [`diff`] makes the bsdiff-style stream of controls and bytes a `Patch` record
//! carries, [`apply_patch`] applies one on the host, [`patch_len`] checks its framing and
//! [`patch_pays`] whether it is worth writing instead of the object.

use std::io;
use std::vec;
use std::vec::Vec;

use crate::wire::{PATCH_CONTROL_LEN, PATCH_HEADER_LEN, WRITE_HEADER_LEN};

/// A patch that builds `new` from `old`, as a `Patch` record carries it (`docs/FORMAT.md`
/// §6): bsdiff's suffix-array matching, written as one stream of controls, each followed by
/// its bytes to add to the source's and its bytes to copy. The bytes are those of the `bsdiff`
/// crate (Colin Percival's matcher over the same suffix array), but the suffix array comes
/// from `divsufsort` (several times faster than bsdiff's qsufsort, and 4 bytes of memory per
/// source byte instead of 16).
pub fn diff(old: &[u8], new: &[u8]) -> Vec<u8> {
    let mut patch = Vec::new();
    let Ok(n) = i32::try_from(old.len()) else {
        // Past divsufsort's 2 GiB: bsdiff's own suffix sort (writing into a Vec cannot fail).
        let _ = bsdiff::diff(old, new, &mut patch);
        return patch;
    };
    // The suffix array of `old` with the empty suffix first, as qsufsort makes it (suffix
    // arrays are unique, so the matches and the patch are bsdiff's).
    let mut sa = vec![0i32; old.len() + 1];
    divsufsort::sort_in_place(old, &mut sa[1..]);
    sa[0] = n;
    bsdiff_matches(old, new, &sa, &mut patch);
    patch
}

/// How many leading bytes `a` and `b` share.
fn match_len(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// The suffix of `old` (its start and the match length) sharing the longest prefix with
/// `new`, by binary search in the suffix array `sa` (bsdiff's `search`, without recursion).
fn longest_match(sa: &[i32], old: &[u8], new: &[u8]) -> (usize, usize) {
    let at = |i: usize| sa[i] as usize;
    let (mut lo, mut hi) = (0usize, sa.len() - 1);
    while hi - lo >= 2 {
        let mid = lo + (hi - lo) / 2;
        let left = &old[at(mid)..];
        let n = left.len().min(new.len());
        if left[..n] < new[..n] {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    let x = match_len(&old[at(lo)..], new);
    let y = match_len(&old[at(hi)..], new);
    if x > y {
        (at(lo), x)
    } else {
        (at(hi), y)
    }
}

/// bsdiff's sign-and-magnitude 64-bit integer.
fn offt(x: i64) -> [u8; 8] {
    if x >= 0 {
        x.to_le_bytes()
    } else {
        (x.unsigned_abs() | (1 << 63)).to_le_bytes()
    }
}

/// Colin Percival's bsdiff matcher over the suffix array `sa` of `old` (with the empty suffix
/// first), writing controls and their bytes into `patch`.
fn bsdiff_matches(old: &[u8], new: &[u8], sa: &[i32], patch: &mut Vec<u8>) {
    let (oldlen, newlen) = (old.len() as i64, new.len());
    let (mut scan, mut len, mut pos) = (0usize, 0usize, 0usize);
    let (mut lastscan, mut lastpos, mut lastoffset) = (0usize, 0usize, 0i64);
    let old_eq = |i: usize, off: i64, b: u8| {
        let j = i as i64 + off;
        j >= 0 && j < oldlen && old[j as usize] == b
    };
    while scan < newlen {
        let mut oldscore = 0i64;
        scan += len;
        let mut scsc = scan;
        while scan < newlen {
            (pos, len) = longest_match(sa, old, &new[scan..]);
            while scsc < scan + len {
                if old_eq(scsc, lastoffset, new[scsc]) {
                    oldscore += 1;
                }
                scsc += 1;
            }
            if (len as i64 == oldscore && len != 0) || len as i64 > oldscore + 8 {
                break;
            }
            if old_eq(scan, lastoffset, new[scan]) {
                oldscore -= 1;
            }
            scan += 1;
        }
        if len as i64 == oldscore && scan != newlen {
            continue;
        }
        // Extend the previous match forwards...
        let (mut s, mut sf, mut lenf) = (0i64, 0i64, 0usize);
        let mut i = 0usize;
        while lastscan + i < scan && lastpos + i < old.len() {
            if old[lastpos + i] == new[lastscan + i] {
                s += 1;
            }
            i += 1;
            if s * 2 - i as i64 > sf * 2 - lenf as i64 {
                sf = s;
                lenf = i;
            }
        }
        // ...and this one backwards...
        let mut lenb = 0usize;
        if scan < newlen {
            let (mut s, mut sb) = (0i64, 0i64);
            let mut i = 1usize;
            while scan >= lastscan + i && pos >= i {
                if old[pos - i] == new[scan - i] {
                    s += 1;
                }
                if s * 2 - i as i64 > sb * 2 - lenb as i64 {
                    sb = s;
                    lenb = i;
                }
                i += 1;
            }
        }
        // ...and split where they overlap.
        if lastscan + lenf > scan - lenb {
            let overlap = lastscan + lenf - (scan - lenb);
            let (mut s, mut ss, mut lens) = (0i64, 0i64, 0usize);
            for i in 0..overlap {
                if new[lastscan + lenf - overlap + i] == old[lastpos + lenf - overlap + i] {
                    s += 1;
                }
                if new[scan - lenb + i] == old[pos - lenb + i] {
                    s -= 1;
                }
                if s > ss {
                    ss = s;
                    lens = i + 1;
                }
            }
            lenf = lenf + lens - overlap;
            lenb -= lens;
        }
        let copy = scan - lenb - (lastscan + lenf);
        patch.extend_from_slice(&offt(lenf as i64));
        patch.extend_from_slice(&offt(copy as i64));
        patch.extend_from_slice(&offt((pos - lenb) as i64 - (lastpos + lenf) as i64));
        patch.extend(
            new[lastscan..lastscan + lenf]
                .iter()
                .zip(&old[lastpos..lastpos + lenf])
                .map(|(n, o)| n.wrapping_sub(*o)),
        );
        patch.extend_from_slice(&new[lastscan + lenf..lastscan + lenf + copy]);
        lastscan = scan - lenb;
        lastpos = pos - lenb;
        lastoffset = pos as i64 - scan as i64;
    }
}

/// Applies a patch as [`diff`] makes it to `old` (host side: checks and tests; the device
/// applies patches in the installer, in fixed memory).
pub fn apply_patch(old: &[u8], patch: &[u8]) -> io::Result<Vec<u8>> {
    let mut new = Vec::new();
    bsdiff::patch(old, &mut &patch[..], &mut new)?;
    Ok(new)
}

/// The bytes a patch builds, when its framing is sound: every control complete, its add and
/// copy bytes present, nothing after the last. `None` otherwise.
pub fn patch_len(mut patch: &[u8]) -> Option<u64> {
    let mut built = 0u64;
    while !patch.is_empty() {
        let control = patch.get(..PATCH_CONTROL_LEN)?;
        let word = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&control[i..i + 8]);
            w
        };
        // As the installer reads them: a sign bit makes a length too long.
        let (add, copy) = (u64::from_le_bytes(word(0)), u64::from_le_bytes(word(8)));
        let data = add.checked_add(copy)?;
        patch = patch.get(PATCH_CONTROL_LEN + usize::try_from(data).ok()?..)?;
        built = built.checked_add(data)?;
    }
    Some(built)
}

/// Whether writing `new` as a patch pays: the patch, deflated, is smaller than `new`
/// deflated, both at level 3 (a quick stand-in for the part's codec, which compresses both
/// the same way).
pub fn patch_pays(new: &[u8], patch: &[u8]) -> bool {
    use miniz_oxide::deflate::compress_to_vec;
    let patch = compress_to_vec(patch, 3).len() + PATCH_HEADER_LEN;
    let whole = compress_to_vec(new, 3).len() + WRITE_HEADER_LEN;
    patch < whole
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn diff_apply_and_framing() {
        let old: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut new = old.clone();
        new[100..110].fill(9);
        new.splice(2000..2000, b"inserted".iter().copied());
        let p = diff(&old, &new);
        assert_eq!(apply_patch(&old, &p).unwrap(), new);
        assert_eq!(patch_len(&p), Some(new.len() as u64));
        assert!(patch_pays(&new, &p));
        assert_eq!(patch_len(&p[..p.len() - 1]), None);
        let mut longer = p.clone();
        longer.push(0);
        assert_eq!(patch_len(&longer), None);
        assert_eq!(patch_len(&[]), Some(0));
        let mut negative = p.clone();
        negative[7] |= 0x80;
        assert_eq!(patch_len(&negative), None);
    }

    /// Pseudo-random bytes with repeats, as code and data are.
    fn lumpy(seed: u64, len: usize) -> Vec<u8> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut out: Vec<u8> = Vec::with_capacity(len);
        while out.len() < len {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if out.len() > 64 && x.is_multiple_of(3) {
                let from = (x >> 8) as usize % (out.len() - 32);
                let n = 4 + (x >> 40) as usize % 28;
                for i in 0..n {
                    out.push(out[from + i]);
                }
            } else {
                out.push((x >> 24) as u8 & 0x3f);
            }
        }
        out.truncate(len);
        out
    }

    #[test]
    fn diff_writes_the_bytes_of_the_bsdiff_crate() {
        let mut cases: Vec<(Vec<u8>, Vec<u8>)> = vec![
            (vec![], vec![]),
            (vec![], b"new".to_vec()),
            (b"old".to_vec(), vec![]),
            (b"a".to_vec(), b"a".to_vec()),
            (b"ab".to_vec(), b"ba".to_vec()),
            (vec![7; 1000], vec![7; 1500]),
            (b"hello world\n".to_vec(), b"hello, world!\n".to_vec()),
        ];
        for seed in 1..6u64 {
            let old = lumpy(seed, 20_000 + seed as usize * 3_000);
            let mut new = old.clone();
            new[1_000..1_040].fill(seed as u8);
            new.splice(5_000..5_000, lumpy(seed + 100, 700));
            new.drain(12_000..12_500);
            cases.push((old.clone(), new));
            cases.push((old, lumpy(seed + 50, 9_000)));
        }
        for (old, new) in &cases {
            let mut want = Vec::new();
            bsdiff::diff(old, new, &mut want).unwrap();
            let p = diff(old, new);
            assert_eq!(p, want, "old {} new {}", old.len(), new.len());
            assert_eq!(apply_patch(old, &p).unwrap(), *new);
        }
    }
}
