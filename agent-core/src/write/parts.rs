//! Laying out parts: the BCJ filter of an ELF file ([`elf_filter`]), the locality key of a
//! file name, the order records go into the file and where parts split ([`lay_out`]).

use std::vec::Vec;

use super::{
    Locality, Rec, WriteError, DEFAULT_PART_SIZE, MAX_XZ_PART, MIN_XZ_SPLIT_PART, XZ_PARTS,
};
use crate::object::{FileHeader, FILE_HEADER_LEN, MAX_SYMLINK_TARGET, MAX_XATTR_BYTES};
use crate::wire::{Filter, MAX_PARTS};

/// The filter for an ELF file object's content (`object` starts with the file object's
/// header): by its `e_machine`, x86 for `EM_386` and `EM_X86_64`, ARM-Thumb for `EM_ARM` with
/// an odd entry point (Thumb code, as Cortex-M firmware and Debian's armhf are), ARM for other
/// `EM_ARM`, ARM64 for `EM_AARCH64`; none for anything else. Little-endian ELF only (the BCJ
/// filters are for little-endian code).
pub fn elf_filter(object: &[u8]) -> Filter {
    let Some(h) = object
        .get(..FILE_HEADER_LEN)
        .and_then(|b| FileHeader::parse(b).ok())
    else {
        return Filter::None;
    };
    let start = FILE_HEADER_LEN + usize::from(h.target_len) + usize::from(h.xattrs_len);
    let Some(elf) = object.get(start..start.saturating_add(28)) else {
        return Filter::None;
    };
    if elf[..4] != *b"\x7fELF" || elf[5] != 1 {
        return Filter::None;
    }
    let machine = u16::from_le_bytes([elf[18], elf[19]]);
    let entry = u32::from_le_bytes([elf[24], elf[25], elf[26], elf[27]]);
    match machine {
        3 | 62 => Filter::X86,
        40 if entry & 1 == 1 => Filter::ArmThumb,
        40 => Filter::Arm,
        183 => Filter::Arm64,
        _ => Filter::None,
    }
}

/// Bytes of a file object [`elf_filter`] may need to read: header, the longest symlink target
/// and xattr block, the ELF header's first 28 bytes.
pub(super) const SNIFF_LEN: usize = FILE_HEADER_LEN + MAX_SYMLINK_TARGET + MAX_XATTR_BYTES + 28;

/// The locality key for a file named `name`: its extension's hash, then the name's first four
/// bytes.
pub(super) fn name_key(name: &[u8]) -> u64 {
    let ext = match name.iter().rposition(|&b| b == b'.') {
        Some(dot) if dot > 0 => &name[dot..],
        _ => &b""[..],
    };
    // FNV-1a, 24 bits: enough to keep extensions apart.
    let mut h: u32 = 0x811c_9dc5;
    for &b in ext {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    let mut prefix = [0u8; 4];
    for (d, s) in prefix.iter_mut().zip(name) {
        *d = *s;
    }
    (u64::from(h & 0xff_ffff) << 32) | u64::from(u32::from_be_bytes(prefix))
}

/// One part to compress: where its records are in the spool, in order.
pub(super) struct Job {
    /// Offset and length of each record.
    pub(super) ranges: Vec<(u64, u64)>,
    /// The part's BCJ filter.
    pub(super) filter: Filter,
    /// Records in it.
    pub(super) ops: u32,
}

/// The parts of a file: `records` (as the writer remembers them, in the order written) in the
/// order they go into the file (see the [module docs](super) for [`Locality`]), split into
/// parts of `part_size` (or the default for the codec), each with its BCJ filter for xz.
pub(super) fn lay_out(
    records: &[Rec],
    xz: bool,
    locality: Locality,
    part_size: Option<usize>,
    max_dictionary: u32,
) -> Result<Vec<Job>, WriteError> {
    // Where each record starts in the spool, and the order they go into the file.
    let mut offsets = Vec::with_capacity(records.len());
    let mut at = 0u64;
    for r in records {
        offsets.push(at);
        at += r.len;
    }
    let mut order: Vec<usize> = (0..records.len()).collect();
    let by_name = xz && locality == Locality::Name;
    if by_name {
        let group = |f: Filter| match f {
            Filter::X86 => 0u8,
            Filter::Arm => 1,
            Filter::ArmThumb => 2,
            Filter::Arm64 => 3,
            _ => 4,
        };
        // Written files first (by filter, then name), the rest in their order: still
        // bottom-up, as files name nothing.
        order.sort_by_key(|&i| {
            let r = &records[i];
            if r.file {
                (0u8, group(r.filter), r.key)
            } else {
                (1, 0, 0)
            }
        });
    }
    let ordered: Vec<(u64, Filter)> = order
        .iter()
        .map(|&i| {
            let r = &records[i];
            (r.len, if xz { r.filter } else { Filter::None })
        })
        .collect();
    let plan = if xz && !by_name {
        match part_size {
            None => {
                let total: u64 = ordered.iter().map(|r| r.0).sum();
                let target = if total >= XZ_PARTS * u64::from(max_dictionary) {
                    // XZ_PARTS parts, none smaller than the dictionary.
                    total.div_ceil(XZ_PARTS).min(MAX_XZ_PART)
                } else if total >= 2 * MIN_XZ_SPLIT_PART {
                    // Two, so that both cores of the host compress. Never three: a third
                    // part only adds a boundary the dictionary would have bridged, and
                    // on two cores one of them compresses two of the three.
                    total.div_ceil(2).min(MAX_XZ_PART)
                } else {
                    total
                };
                plan_even(&ordered, target)?
            }
            // Packed up to the size asked for, each part with the filter of most of its
            // code.
            Some(p) => {
                let lens: Vec<(u64, Filter)> =
                    ordered.iter().map(|r| (r.0, Filter::None)).collect();
                let mut next = 0usize;
                let mut plan = plan_parts(&lens, p as u64)?;
                for (count, filter) in &mut plan {
                    *filter = majority_filter(&ordered[next..next + *count]);
                    next += *count;
                }
                plan
            }
        }
    } else {
        let target = part_size.map_or(
            if xz {
                max_dictionary as u64
            } else {
                DEFAULT_PART_SIZE as u64
            },
            |p| p as u64,
        );
        plan_parts(&ordered, target)?
    };

    // The parts, each a list of spool ranges.
    let mut jobs = Vec::with_capacity(plan.len());
    let mut next = 0usize;
    for &(count, filter) in &plan {
        let ranges: Vec<(u64, u64)> = order[next..next + count]
            .iter()
            .map(|&i| (offsets[i], records[i].len))
            .collect();
        next += count;
        jobs.push(Job {
            ranges,
            filter,
            ops: count as u32,
        });
    }
    Ok(jobs)
}

/// Splits records (by length and filter) into parts of at most `target` decoded bytes each (a
/// larger record alone), a new part wherever the filter changes, doubling `target` until at
/// most [`MAX_PARTS`] parts are needed. Returns each part's record count and filter.
fn plan_parts(
    records: &[(u64, Filter)],
    mut target: u64,
) -> Result<Vec<(usize, Filter)>, WriteError> {
    loop {
        let mut plan = Vec::new();
        let mut count = 0usize;
        let mut size = 0u64;
        let mut filter = Filter::None;
        for &(len, f) in records {
            if count > 0 && (size.saturating_add(len) > target || len > target || f != filter) {
                plan.push((count, filter));
                count = 0;
                size = 0;
            }
            if count == 0 {
                filter = f;
            }
            count += 1;
            size = size.saturating_add(len);
            if size > u64::from(u32::MAX) {
                return Err(WriteError::TooLarge);
            }
        }
        if count > 0 {
            plan.push((count, filter));
        }
        if plan.len() <= MAX_PARTS {
            return Ok(plan);
        }
        if target >= u64::from(u32::MAX) {
            return Err(WriteError::TooLarge);
        }
        target = target.saturating_mul(2).min(u64::from(u32::MAX));
    }
}

/// The filter for a part of `records` (length and filter each): the one most of its bytes
/// of ELF code are for, none without any.
fn majority_filter(records: &[(u64, Filter)]) -> Filter {
    let mut bytes = [0u64; 4];
    let filters = [Filter::X86, Filter::Arm, Filter::ArmThumb, Filter::Arm64];
    for &(len, f) in records {
        if let Some(i) = filters.iter().position(|&g| g == f) {
            bytes[i] = bytes[i].saturating_add(len);
        }
    }
    let mut best = (0u64, Filter::None);
    for (i, &b) in bytes.iter().enumerate() {
        if b > best.0 {
            best = (b, filters[i]);
        }
    }
    best.1
}

/// Splits records (by length and filter), in their order, into parts of equal decoded size
/// about `target` bytes each: as many as `target` makes (at most [`MAX_PARTS`]), each ending
/// at the record boundary nearest to its share of the total (so that a large record that
/// crosses a share does not make its part much larger than the others: on two cores the
/// largest part is the time to compress), never an empty part; each part's filter is that of
/// most of its ELF bytes ([`majority_filter`]). A part larger than `u32::MAX` bytes makes
/// more parts, or [`WriteError::TooLarge`] at [`MAX_PARTS`]. Returns each part's record count
/// and filter.
fn plan_even(records: &[(u64, Filter)], target: u64) -> Result<Vec<(usize, Filter)>, WriteError> {
    let total: u128 = records.iter().map(|r| u128::from(r.0)).sum();
    let mut n = total
        .div_ceil(u128::from(target.max(1)))
        .clamp(1, MAX_PARTS as u128);
    loop {
        // Where parts end (exclusive record indices), scaled by n to stay in integers: the
        // k-th share ends at k·total, a record boundary after `done` bytes at done·n.
        let mut ends: Vec<usize> = Vec::new();
        let (mut k, mut done) = (1u128, 0u128);
        for (i, &(len, _)) in records.iter().enumerate() {
            let after = done + u128::from(len);
            while k < n && after * n >= k * total {
                // Share k ends within record i: at its start or its end, whichever is nearer
                // (its end on a tie).
                let end = if k * total - done * n < after * n - k * total {
                    i
                } else {
                    i + 1
                };
                if end > ends.last().copied().unwrap_or(0) && end < records.len() {
                    ends.push(end);
                }
                k += 1;
            }
            done = after;
        }
        let mut plan = Vec::with_capacity(ends.len() + 1);
        let (mut start, mut fits) = (0usize, true);
        for end in ends.into_iter().chain([records.len()]) {
            if end > start {
                let size: u128 = records[start..end].iter().map(|r| u128::from(r.0)).sum();
                fits &= size <= u128::from(u32::MAX);
                plan.push((end - start, majority_filter(&records[start..end])));
                start = end;
            }
        }
        if fits {
            return Ok(plan);
        }
        if n >= MAX_PARTS as u128 {
            return Err(WriteError::TooLarge);
        }
        n = (n * 2).min(MAX_PARTS as u128);
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use std::vec;

    fn plain(lens: &[u64]) -> Vec<(u64, Filter)> {
        lens.iter().map(|&l| (l, Filter::None)).collect()
    }

    fn counts(plan: Vec<(usize, Filter)>) -> Vec<usize> {
        plan.into_iter().map(|p| p.0).collect()
    }

    #[test]
    fn plan_groups_small_and_isolates_large() {
        assert_eq!(
            counts(plan_parts(&plain(&[10, 10, 10]), 100).unwrap()),
            vec![3]
        );
        assert_eq!(
            counts(plan_parts(&plain(&[60, 60, 60]), 100).unwrap()),
            vec![1, 1, 1]
        );
        assert_eq!(
            counts(plan_parts(&plain(&[10, 500, 10, 10]), 100).unwrap()),
            vec![1, 1, 2]
        );
        // 200 records of 10 bytes with a 10-byte target would need 200 parts: the target grows.
        let many = plain(&[10u64; 200]);
        let plan = plan_parts(&many, 10).unwrap();
        assert!(plan.len() <= MAX_PARTS);
        assert_eq!(plan.iter().map(|p| p.0).sum::<usize>(), 200);
    }

    #[test]
    fn even_plan_splits_into_equal_parts_in_order() {
        let counts = |p: Vec<(usize, Filter)>| p.into_iter().map(|p| p.0).collect::<Vec<_>>();
        // 12 records of 10 bytes, target 40: three parts of four.
        assert_eq!(
            counts(plan_even(&plain(&[10; 12]), 40).unwrap()),
            vec![4, 4, 4]
        );
        // Target 50 makes three parts too (120 / 50, rounded up), of equal size.
        assert_eq!(
            counts(plan_even(&plain(&[10; 12]), 50).unwrap()),
            vec![4, 4, 4]
        );
        // A large record crossing several shares gets a part of its own; the rest share the
        // others.
        assert_eq!(
            counts(plan_even(&plain(&[10, 500, 10, 10, 10, 10]), 100).unwrap()),
            vec![1, 1, 4]
        );
        // A part ends at the record boundary nearest its share (50 of 100 bytes): before a
        // large record that crosses it when that is nearer (it spans 40 to 70), after it
        // otherwise (30 to 60).
        assert_eq!(
            counts(plan_even(&plain(&[10, 10, 10, 10, 30, 10, 10, 10]), 55).unwrap()),
            vec![4, 4]
        );
        assert_eq!(
            counts(plan_even(&plain(&[10, 10, 10, 30, 10, 10, 10, 10]), 55).unwrap()),
            vec![4, 4]
        );
        // One part when everything fits; nothing for nothing.
        assert_eq!(counts(plan_even(&plain(&[10; 3]), 100).unwrap()), vec![3]);
        assert!(plan_even(&[], 100).unwrap().is_empty());
        // Never more than MAX_PARTS.
        let many = plan_even(&plain(&[10u64; 200]), 1).unwrap();
        assert_eq!(many.len(), MAX_PARTS);
        assert_eq!(many.iter().map(|p| p.0).sum::<usize>(), 200);
        // A part over 4 GiB splits further: one part is too large, two are (three records of
        // half of it each), four fit.
        let huge = plan_even(&plain(&[u64::from(u32::MAX) / 2; 6]), u64::MAX).unwrap();
        assert_eq!(counts(huge), vec![2, 1, 2, 1]);
    }

    #[test]
    fn an_xz_update_is_two_parts_from_twice_the_split_floor_and_four_from_four_dictionaries() {
        let recs = |n: u64, len: u64| -> Vec<Rec> {
            (0..n)
                .map(|_| Rec {
                    len,
                    key: 0,
                    file: true,
                    filter: Filter::None,
                })
                .collect()
        };
        let parts = |records: &[Rec], xz: bool| -> Vec<u32> {
            lay_out(records, xz, Locality::Tree, None, 8 << 20)
                .unwrap()
                .iter()
                .map(|j| j.ops)
                .collect()
        };
        let floor = MIN_XZ_SPLIT_PART;
        // Just under twice the floor: one part, as the dictionary holds it.
        assert_eq!(parts(&recs(64, (2 * floor - 1) / 64), true), vec![64]);
        // Twice the floor: two equal parts.
        assert_eq!(parts(&recs(64, 2 * floor / 64), true), vec![32, 32]);
        assert_eq!(parts(&recs(64, (6 << 20) / 64), true), vec![32, 32]);
        // Past the dictionary (8 MiB), still two until four parts would each hold a whole
        // dictionary's worth; never three.
        assert_eq!(parts(&recs(64, (12 << 20) / 64), true), vec![32, 32]);
        assert_eq!(parts(&recs(64, (24 << 20) / 64), true), vec![32, 32]);
        assert_eq!(parts(&recs(64, (32 << 20) / 64 - 1), true), vec![32, 32]);
        assert_eq!(
            parts(&recs(64, (32 << 20) / 64), true),
            vec![16, 16, 16, 16]
        );
        assert_eq!(
            parts(&recs(64, (64 << 20) / 64), true),
            vec![16, 16, 16, 16]
        );
        // Deflate packs parts of 512 KiB, as before.
        assert_eq!(parts(&recs(64, 2 * floor / 64), false), vec![64]);
        assert_eq!(parts(&recs(64, 4 * floor / 64), false), vec![32, 32]);
    }

    #[test]
    fn a_part_gets_the_filter_of_most_of_its_code() {
        let recs = [
            (10, Filter::Arm64),
            (30, Filter::X86),
            (50, Filter::None),
            (25, Filter::Arm64),
        ];
        assert_eq!(majority_filter(&recs), Filter::Arm64);
        assert_eq!(majority_filter(&recs[1..3]), Filter::X86);
        assert_eq!(majority_filter(&recs[2..3]), Filter::None);
        // Two parts (115 bytes, target 60): the first ends at the record boundary nearest
        // 57.5 bytes, 40 (the 50-byte record would take it to 90).
        assert_eq!(
            plan_even(&recs, 60).unwrap(),
            vec![(2, Filter::X86), (2, Filter::Arm64)]
        );
    }

    #[test]
    fn plan_splits_where_the_filter_changes() {
        let recs = [
            (10, Filter::X86),
            (10, Filter::X86),
            (10, Filter::Arm64),
            (10, Filter::None),
            (10, Filter::None),
        ];
        assert_eq!(
            plan_parts(&recs, 100).unwrap(),
            vec![(2, Filter::X86), (1, Filter::Arm64), (2, Filter::None)]
        );
    }

    fn file_with(content: &[u8], target: &[u8]) -> Vec<u8> {
        let mut b = vec![0u8; FILE_HEADER_LEN];
        FileHeader {
            mode: if target.is_empty() {
                0o100755
            } else {
                0o120777
            },
            uid: 0,
            gid: 0,
            size: if target.is_empty() {
                content.len() as u64
            } else {
                0
            },
            target_len: target.len() as u16,
            xattrs_len: 0,
        }
        .emit(&mut b);
        b.extend_from_slice(target);
        if target.is_empty() {
            b.extend_from_slice(content);
        }
        b
    }

    fn elf(machine: u16, entry: u32, data: u8) -> Vec<u8> {
        let mut e = vec![0u8; 64];
        e[..4].copy_from_slice(b"\x7fELF");
        e[4] = 2;
        e[5] = data;
        e[18..20].copy_from_slice(&machine.to_le_bytes());
        e[24..28].copy_from_slice(&entry.to_le_bytes());
        e
    }

    #[test]
    fn elf_machines_choose_their_filter() {
        for (machine, entry, want) in [
            (62, 0x1000, Filter::X86),
            (3, 0x1000, Filter::X86),
            (183, 0x1000, Filter::Arm64),
            (40, 0x1001, Filter::ArmThumb),
            (40, 0x1000, Filter::Arm),
            (243, 0x1000, Filter::None), // RISC-V: no filter chosen
        ] {
            assert_eq!(
                elf_filter(&file_with(&elf(machine, entry, 1), b"")),
                want,
                "{machine}"
            );
        }
        // Big-endian, not ELF, a symlink, too short.
        assert_eq!(elf_filter(&file_with(&elf(62, 0, 2), b"")), Filter::None);
        assert_eq!(elf_filter(&file_with(b"#!/bin/sh\n", b"")), Filter::None);
        assert_eq!(elf_filter(&file_with(b"", b"libc.so.6")), Filter::None);
        assert_eq!(
            elf_filter(&file_with(&elf(62, 0, 1)[..20], b"")),
            Filter::None
        );
        assert_eq!(elf_filter(&[1, 2, 3]), Filter::None);
    }

    #[test]
    fn names_group_by_extension_then_name() {
        assert_eq!(name_key(b"a.so") >> 32, name_key(b"zz.so") >> 32);
        assert_ne!(name_key(b"a.so") >> 32, name_key(b"a.py") >> 32);
        assert!(name_key(b"libc.so") < name_key(b"libm.so"));
        assert_eq!(name_key(b".bashrc") >> 32, name_key(b"README") >> 32);
    }
}
