//! Resumable installs (`docs/RESUME.md`): a transfer failure or a power cut at any byte, then
//! the same file again with the stored checkpoint, resumes at the last verified part, and the
//! result is the uninterrupted install's.

mod common;

use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::OnceLock;

use agent_core::install::{Checkpoint, InstallError, Installed, Installer, Policy};
use agent_core::object::ObjectId;
use common::*;

const TS: u64 = 1_700_000_000;

fn keys() -> &'static [[u8; 32]] {
    static K: OnceLock<[[u8; 32]; 1]> = OnceLock::new();
    K.get_or_init(|| [public_key(&SEED)])
}

fn tree() -> Tree {
    let mut t = sample_tree();
    for i in 0..12u32 {
        let noise: Vec<u8> = (0..700u32)
            .map(|j| (j.wrapping_mul(2_654_435_761).wrapping_add(i * 7919) >> 13) as u8)
            .collect();
        t = t.file(&format!("n{i:02}"), noise);
    }
    t
}

/// A signed from-scratch file of many parts (deflated and stored).
fn file() -> &'static [u8] {
    static F: OnceLock<Vec<u8>> = OnceLock::new();
    F.get_or_init(|| {
        write_update(
            &build(&tree(), None, TS, &HashSet::new()),
            None,
            Some(&SEED),
            1500,
        )
    })
}

/// The uninterrupted install: the store afterwards, and every checkpoint (parts, offset).
fn reference(file: &[u8], base: &MemStore) -> (Installed, MemStore, Vec<Checkpoint>) {
    let mut store = base.clone();
    lent!(win, xz);
    let mut inst = Installer::new(Policy::require(keys()), win).with_xz(xz);
    let mut cps = Vec::new();
    for b in file.chunks(1) {
        let _ = inst.feed(&mut store, b).unwrap();
        if let Some(cp) = inst.checkpoint() {
            if cps.last() != Some(&cp) {
                assert_eq!(store.resumable.as_ref().map(|r| r.0), Some(cp));
                cps.push(cp);
            }
        }
    }
    (inst.finish(&mut store).unwrap(), store, cps)
}

/// Feeds `file[..cut]` in `chunk`-byte pieces; then the transfer fails (`abort`) or the power
/// is cut (nothing more is called). Returns the store as found afterwards.
fn interrupted(file: &[u8], base: &MemStore, cut: usize, chunk: usize, power: bool) -> MemStore {
    let mut store = base.clone();
    lent!(win, xz);
    let mut inst = Installer::new(Policy::require(keys()), win).with_xz(xz);
    for b in file[..cut].chunks(chunk.max(1)) {
        let _ = inst.feed(&mut store, b).unwrap();
    }
    if power {
        store.after_power_cut()
    } else {
        inst.abort(&mut store);
        let s = store.after_power_cut();
        assert_eq!(store.abort_calls, 1);
        s
    }
}

/// What a resumed run did.
struct Resumed {
    result: Result<Installed, InstallError<Infallible>>,
    /// Where the installer resumed.
    resume_offset: Option<u64>,
    /// Bytes fed in all.
    fed: u64,
}

/// Resumes with the store's checkpoint (if any), a seekable input read in `chunk`-byte pieces:
/// after the signature, `skip` moves the input to the resume offset.
fn resume(file: &[u8], store: &mut MemStore, chunk: usize, cp: Option<Checkpoint>) -> Resumed {
    lent!(win, xz);
    let mut inst = Installer::new(Policy::require(keys()), win).with_xz(xz);
    if let Some(cp) = cp.or(store.resumable.as_ref().map(|r| r.0)) {
        assert!(inst.resume(cp));
    }
    let mut pos = 0usize;
    let mut fed = 0u64;
    let mut resume_offset = None;
    while pos < file.len() {
        let end = (pos + chunk.max(1)).min(file.len());
        let p = match inst.feed(store, &file[pos..end]) {
            Ok(p) => p,
            Err(e) => {
                return Resumed {
                    result: Err(e),
                    resume_offset,
                    fed,
                }
            }
        };
        fed += (end - pos) as u64;
        pos = end;
        resume_offset = p.resume_offset;
        if p.resume_offset.is_some_and(|o| o > pos as u64) {
            pos = inst.skip() as usize;
            assert_eq!(Some(pos as u64), p.resume_offset);
        }
    }
    Resumed {
        result: inst.finish(store),
        resume_offset,
        fed,
    }
}

/// Cut points: every part boundary and the bytes around it, points inside parts, inside the
/// header, superblock and signature.
fn cuts(file: &[u8], cps: &[Checkpoint]) -> Vec<usize> {
    let mut c: Vec<usize> = vec![0, 1, 15, 16, 100];
    let mut prev = 200usize;
    for cp in cps {
        let b = cp.offset as usize;
        c.extend([b - 1, b, b + 1, (prev + b) / 2, b + 41]);
        prev = b;
    }
    c.extend([(prev + file.len()) / 2, file.len() - 1]);
    c.retain(|&x| x < file.len());
    c.sort_unstable();
    c.dedup();
    c
}

fn check_cut_everywhere(file: &[u8], base: &MemStore) -> usize {
    let (r0, s0, cps) = reference(file, base);
    assert!(cps.len() >= 4, "only {} part boundaries", cps.len());
    let mut n = 0;
    for cut in cuts(file, &cps) {
        for (power, chunk) in [(true, 7), (false, 512)] {
            let mut store = interrupted(file, base, cut, chunk, power);
            // The last verified part boundary at or before the cut.
            let expected = cps.iter().rev().find(|cp| cp.offset as usize <= cut);
            assert_eq!(
                store.resumable.as_ref().map(|r| r.0),
                expected.copied(),
                "cut {cut}"
            );
            let kept = store
                .resumable
                .as_ref()
                .map(|r| r.1.clone())
                .unwrap_or_default();
            let r = resume(file, &mut store, 333, None);
            assert_eq!(r.result.as_ref(), Ok(&r0), "cut {cut}");
            assert_eq!(r.resume_offset, expected.map(|cp| cp.offset), "cut {cut}");
            if let Some(cp) = expected {
                // Only the bytes from the resume point on were read (besides the signed
                // prefix and one chunk), and no object of a completed part was written again.
                assert!(
                    r.fed <= prefix_len(file) + 333 + (file.len() as u64 - cp.offset),
                    "cut {cut}: fed {} bytes",
                    r.fed
                );
                for l in &store.log {
                    if let Some(rest) = l.strip_prefix("begin ") {
                        assert!(
                            !kept
                                .keys()
                                .any(|(k, id)| rest.starts_with(&format!("{k} {id}"))),
                            "cut {cut}: {l} written again after resuming"
                        );
                    }
                }
            } else {
                assert_eq!(r.fed, file.len() as u64);
            }
            assert_eq!(store.objects, s0.objects, "cut {cut}");
            assert_eq!(store.commits, s0.commits);
            assert_eq!(store.refs, s0.refs);
            assert!(store.resumable.is_none() && store.staged.is_empty());
            n += 1;
        }
    }
    n
}

/// Bytes of header, superblock and signature (an Ed25519-signed file).
fn prefix_len(file: &[u8]) -> u64 {
    16 + u64::from(u32::from_le_bytes(file[12..16].try_into().unwrap())) + 1 + 64
}

#[test]
fn cut_at_every_part_boundary_and_inside_parts_resumes_at_the_last_verified_part() {
    let n = check_cut_everywhere(file(), &MemStore::default());
    println!("{n} interrupted installs resumed");
}

#[test]
fn a_delta_resumes_too() {
    // v1 installed, then a delta to v2 that changes some files and reuses the rest.
    let v1 = build(&tree(), None, TS, &HashSet::new());
    let mut base = MemStore::default();
    let f1 = write_update(&v1, None, Some(&SEED), 1500);
    install_all(&mut base, &f1, policy(keys())).unwrap();
    let mut t2 = tree();
    for i in 0..8u32 {
        t2 = t2.file(&format!("m{i}"), vec![i as u8; 900 + i as usize]);
    }
    let v2 = build(&t2, Some(v1.commit), TS + 1, &v1.ids);
    let f2 = write_update(&v2, Some(v1.commit), Some(&SEED), 1000);
    let base = base.after_power_cut();
    check_cut_everywhere(&f2, &base);
}

#[test]
fn resume_does_not_depend_on_chunk_sizes() {
    let f = file();
    let (r0, _, cps) = reference(f, &MemStore::default());
    let cut = (cps[2].offset + cps[3].offset) as usize / 2;
    let mut logs = Vec::new();
    for chunk in [1usize, 7, 512, 64 * 1024, f.len()] {
        let mut store = interrupted(f, &MemStore::default(), cut, chunk, true);
        assert_eq!(store.resumable.as_ref().map(|r| r.0), Some(cps[2]));
        // Fed from the start (a stream sent again): skipped bytes are consumed, not read.
        lent!(win, xz);
        let mut inst = Installer::new(Policy::require(keys()), win).with_xz(xz);
        assert!(inst.resume(store.resumable.as_ref().unwrap().0));
        let r = install_chunks(&mut inst, &mut store, f, &[chunk]);
        assert_eq!(r.as_ref(), Ok(&r0), "chunk {chunk}");
        assert_eq!(inst.progress().resume_offset, Some(cps[2].offset));
        assert!(inst.progress().done);
        logs.push(store.log.clone());
        // And seeking instead.
        let mut store = interrupted(f, &MemStore::default(), cut, chunk, true);
        let r = resume(f, &mut store, chunk, None);
        assert_eq!(r.result.as_ref(), Ok(&r0), "chunk {chunk}");
        if chunk < 1000 {
            assert!(r.fed <= prefix_len(f) + chunk as u64 + (f.len() as u64 - cps[2].offset));
        }
        assert_eq!(store.log, logs[0], "chunk {chunk}");
    }
    assert!(logs.windows(2).all(|w| w[0] == w[1]));
    assert!(logs[0][0].starts_with("resume 3 true"), "{:?}", logs[0][0]);
}

#[test]
fn a_tampered_part_after_the_resume_point_is_refused_with_nothing_committed() {
    let f = file();
    let (_, _, cps) = reference(f, &MemStore::default());
    for (i, cp) in cps.iter().enumerate() {
        let at = cp.offset as usize + 3;
        let mut bad = f.to_vec();
        bad[at] ^= 0x20;
        let mut store = interrupted(f, &MemStore::default(), cp.offset as usize, 64, true);
        let r = resume(&bad, &mut store, 100, None);
        assert_eq!(r.resume_offset, Some(cp.offset), "boundary {i}");
        let e = r.result.unwrap_err();
        assert!(
            matches!(
                e,
                InstallError::PartHash { .. }
                    | InstallError::Inflate { .. }
                    | InstallError::Lzma { .. }
                    | InstallError::Object { .. }
                    | InstallError::ObjectHash { .. }
                    | InstallError::Format(_)
                    | InstallError::OpCount { .. }
                    | InstallError::PartTrailing { .. }
                    | InstallError::PartSize { .. }
                    | InstallError::PartOverrun { .. }
                    | InstallError::ObjectTooLong { .. }
                    | InstallError::MissingObject { .. }
            ),
            "boundary {i}: {e:?}"
        );
        assert!(store.commits.is_empty() && store.refs.is_empty());
        assert_eq!(store.commit_calls, 0);
        assert_eq!(store.abort_calls, 1);
        // A byte after the resume point is still read and checked: `PartHash` at the latest.
    }
}

#[test]
fn a_checkpoint_of_another_file_is_ignored() {
    let f = file();
    let (_, _, cps) = reference(f, &MemStore::default());
    // Another file: the same tree, another timestamp (so another commit).
    let other = write_update(
        &build(&tree(), None, TS + 5, &HashSet::new()),
        None,
        Some(&SEED),
        1500,
    );
    let mut store = interrupted(f, &MemStore::default(), cps[3].offset as usize, 64, true);
    let (r_other, s_other, _) = reference(&other, &MemStore::default());
    let r = resume(&other, &mut store, 512, None);
    assert_eq!(r.result, Ok(r_other));
    assert_eq!(r.resume_offset, None);
    assert_eq!(r.fed, other.len() as u64, "nothing skipped");
    assert!(
        !store.log.iter().any(|l| l.starts_with("resume")),
        "the store was asked to resume another file's checkpoint"
    );
    assert_eq!(store.objects, s_other.objects);
    // The same file with a different part size: same commit, other superblock.
    let resized = write_update(
        &build(&tree(), None, TS, &HashSet::new()),
        None,
        Some(&SEED),
        700,
    );
    assert_ne!(resized[..200], f[..200]);
    let mut store = interrupted(f, &MemStore::default(), cps[3].offset as usize, 64, true);
    let r = resume(&resized, &mut store, 512, None);
    assert!(r.result.is_ok());
    assert_eq!(r.resume_offset, None);
}

#[test]
fn a_checkpoint_that_disagrees_with_the_file_or_the_store_starts_over() {
    let f = file();
    let (r0, s0, cps) = reference(f, &MemStore::default());
    let cp = cps[2];
    // Edited to claim more parts, fewer objects, another offset: each consistent CRC, none
    // a boundary of this file as its part table says.
    for forged in [
        Checkpoint {
            parts: cp.parts + 1,
            ..cp
        },
        Checkpoint {
            objects: cp.objects - 1,
            ..cp
        },
        Checkpoint {
            offset: cp.offset + 1,
            ..cp
        },
        Checkpoint { parts: 200, ..cp },
        Checkpoint {
            target: ObjectId::ZERO,
            ..cp
        },
        Checkpoint {
            file: [0; 32],
            ..cp
        },
    ] {
        let bytes = forged.to_bytes();
        let forged = Checkpoint::from_bytes(&bytes).unwrap();
        let mut store = interrupted(f, &MemStore::default(), cp.offset as usize + 10, 64, true);
        // A store that would confirm it: only the installer's own check stands in the way.
        store.resumable.as_mut().unwrap().0 = forged;
        let r = resume(f, &mut store, 512, Some(forged));
        assert!(
            !store.log.iter().any(|l| l.starts_with("resume")),
            "the store was asked about {forged:?}"
        );
        assert_eq!(r.result.as_ref(), Ok(&r0), "{forged:?}");
        assert_eq!(r.resume_offset, None, "{forged:?}");
        assert_eq!(store.objects, s0.objects);
    }
    // The store lost the staged objects (it cannot confirm): from the first part.
    let mut store = interrupted(f, &MemStore::default(), cp.offset as usize + 10, 64, true);
    let kept = store.resumable.take().unwrap().0;
    let r = resume(f, &mut store, 512, Some(kept));
    assert_eq!(r.result.as_ref(), Ok(&r0));
    assert_eq!(r.resume_offset, None);
    assert!(store.log.contains(&format!("resume {} false", kept.parts)));
    assert_eq!(store.objects, s0.objects);
}

#[test]
fn the_signature_is_verified_again_on_resume() {
    let f = file();
    let (_, _, cps) = reference(f, &MemStore::default());
    let mut store = interrupted(f, &MemStore::default(), cps[1].offset as usize, 64, true);
    let cp = store.resumable.as_ref().unwrap().0;
    let other = [public_key(&OTHER_SEED)];
    lent!(win, xz);
    let mut inst = Installer::new(Policy::require(&other), win).with_xz(xz);
    assert!(inst.resume(cp));
    assert_eq!(
        install_chunks(&mut inst, &mut store, f, &[4096]),
        Err(InstallError::BadSignature)
    );
    assert!(store.commits.is_empty());
    assert!(!store.log.iter().any(|l| l.starts_with("resume")));
    // Too late once feeding began.
    lent!(win, xz);
    let mut inst = Installer::new(Policy::require(keys()), win).with_xz(xz);
    let _ = inst.feed(&mut MemStore::default(), &f[..10]).unwrap();
    assert!(!inst.resume(cp));
}

#[test]
fn checkpoint_example_matches_the_spec() {
    let cp = Checkpoint {
        file: [0x11; 32],
        target: ObjectId([0x22; 32]),
        offset: 0x1_0000_0203,
        parts: 2,
        objects: 7,
    };
    let b = cp.to_bytes();
    let mut dump = String::new();
    for (i, row) in b.chunks(16).enumerate() {
        let hex: Vec<String> = row.iter().map(|x| format!("{x:02x}")).collect();
        dump.push_str(&format!("{:04x}: {}\n", i * 16, hex.join(" ")));
    }
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/RESUME.md");
    let doc = std::fs::read_to_string(path).expect("docs/RESUME.md");
    assert!(
        doc.contains(&dump),
        "the checkpoint example in docs/RESUME.md is out of date:\n{dump}"
    );
    assert_eq!(Checkpoint::from_bytes(&b), Ok(cp));
}
