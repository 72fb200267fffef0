//! The `bootenv_parse` check: one input through every boot-state decoder of
//! `bootloader-hooks`, and whatever decodes re-encoded and decoded again.
//!
//! Input: a mode byte, then the body. Mode bit 0 (bit 1) recomputes the CRC of the first
//! (second) copy before parsing, so that the fuzzer reaches the entry parsers instead of
//! stopping at the CRC; with both bits clear the CRC is checked as it comes. Bit 2 puts the
//! GRUB signature in front of the body for the GRUB decoder. The decoders themselves run with
//! every check on.
//!
//! - U-Boot single: the whole body is one copy.
//! - U-Boot redundant: the body's two halves are the two copies.
//! - Flash record: bytes 0..280 and 280..560 of the body are the two copies.
//! - GRUB: the body (after the optional signature).

use bootloader_hooks::flash_record::{self, RECORD_LEN};
use bootloader_hooks::grub_env::{self, GrubEnv};
use bootloader_hooks::uboot_env::{self, Env, Layout};
use bootloader_hooks::vars::{EnvRead, VarSet};
use bootloader_hooks::{BootState, Flavor, MenderConfig, RaucConfig, Scheme};

type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

fn pairs<'a>(it: impl Iterator<Item = (&'a [u8], &'a [u8])>) -> Pairs {
    it.map(|(k, v)| (k.to_vec(), v.to_vec())).collect()
}

const SCHEMES: [Scheme; 3] = [
    Scheme::Native,
    Scheme::Rauc(RaucConfig { max_tries: 3 }),
    Scheme::Mender(MenderConfig {
        part_a: 2,
        part_b: 3,
    }),
];

/// Which decoders accepted the input (for the corpus test).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Accepted {
    /// U-Boot single copy.
    pub uboot_single: bool,
    /// U-Boot redundant pair.
    pub uboot_redundant: bool,
    /// GRUB block.
    pub grub: bool,
    /// One flash record copy.
    pub flash: bool,
    /// Some scheme decoded a boot state (from U-Boot or GRUB).
    pub state: bool,
}

fn fix_uboot_crc(copy: &mut [u8], layout: Layout) {
    if copy.len() >= layout.header_len() {
        let crc = bootloader_hooks::crc32(&copy[layout.header_len()..]);
        copy[..4].copy_from_slice(&crc.to_le_bytes());
    }
}

fn fix_record_crc(copy: &mut [u8]) {
    if copy.len() >= RECORD_LEN {
        // at the CRC offset of the version the copy claims (1 or 2)
        let at = if copy[4..6] == flash_record::VERSION_1.to_le_bytes() {
            flash_record::field::V1_CRC
        } else {
            flash_record::field::CRC
        };
        let crc = bootloader_hooks::crc32(&copy[..at]);
        copy[at..at + 4].copy_from_slice(&crc.to_le_bytes());
    }
}

/// Runs every decoder on `data` (see the module docs) and asserts the round trips.
pub fn check(data: &[u8]) -> Accepted {
    let Some((&mode, body)) = data.split_first() else {
        return Accepted::default();
    };
    let mut acc = Accepted::default();

    // U-Boot, single copy.
    let mut single = body.to_vec();
    if mode & 1 != 0 {
        fix_uboot_crc(&mut single, Layout::Single);
    }
    if let Ok(env) = Env::parse(&single, Layout::Single) {
        acc.uboot_single = true;
        uboot_vars_roundtrip(&single, &env, Layout::Single);
        for scheme in SCHEMES {
            acc.state |= uboot_scheme_roundtrip(&env, scheme);
        }
    }

    // U-Boot, redundant pair.
    let half = body.len() / 2;
    let mut first = body[..half].to_vec();
    let mut second = body[half..2 * half].to_vec();
    if mode & 1 != 0 {
        fix_uboot_crc(&mut first, Layout::Redundant);
    }
    if mode & 2 != 0 {
        fix_uboot_crc(&mut second, Layout::Redundant);
    }
    if let Ok((i, env)) = uboot_env::parse_redundant(&first, &second) {
        acc.uboot_redundant = true;
        redundant_roundtrip(&first, &second, i, &env);
    }

    // GRUB.
    let mut grub = Vec::new();
    if mode & 4 != 0 {
        grub.extend_from_slice(grub_env::SIGNATURE);
    }
    grub.extend_from_slice(body);
    if let Ok(env) = GrubEnv::parse(&grub) {
        acc.grub = true;
        if grub_vars_roundtrip(&env) {
            for scheme in SCHEMES {
                acc.state |= grub_scheme_roundtrip(&env, scheme);
            }
        }
    }

    // Flash record.
    let mut rec = [vec![0xFF; RECORD_LEN], vec![0xFF; RECORD_LEN]];
    for (i, r) in rec.iter_mut().enumerate() {
        let src = body.get(i * RECORD_LEN..).unwrap_or(&[]);
        let n = src.len().min(RECORD_LEN);
        r[..n].copy_from_slice(&src[..n]);
        if mode & (1 << i) != 0 {
            fix_record_crc(r);
        }
    }
    let parsed = [flash_record::parse(&rec[0]), flash_record::parse(&rec[1])];
    for p in parsed.iter().flatten() {
        acc.flash = true;
        let mut out = [0u8; RECORD_LEN];
        flash_record::emit(p, &mut out);
        assert_eq!(
            flash_record::parse(&out).as_ref(),
            Ok(p),
            "flash record emit/parse"
        );
    }
    match flash_record::select(&rec[0], &rec[1]) {
        Ok((i, st)) => {
            assert_eq!(
                parsed[i].as_ref(),
                Ok(&st),
                "select returned a copy that does not parse to it"
            );
            if let Ok(other) = &parsed[1 - i] {
                assert!(
                    !flash_record::is_newer(other.revision, st.revision),
                    "select picked the older copy"
                );
            }
            // Writing the same state goes to the other copy and wins.
            let mut out = [0u8; RECORD_LEN];
            let target = flash_record::prepare_write(&rec[0], &rec[1], &st, &mut out);
            assert_eq!(target, 1 - i);
            let mut next = rec.clone();
            next[target].copy_from_slice(&out);
            let (j, st2) =
                flash_record::select(&next[0], &next[1]).expect("a complete write decodes");
            assert_eq!(j, target);
            assert_eq!(
                BootState {
                    revision: st.revision,
                    ..st2
                },
                st
            );
            assert!(flash_record::is_newer(st2.revision, st.revision));
        }
        Err(_) => assert!(parsed.iter().all(|p| p.is_err())),
    }
    acc
}

/// Whether the variable list fills all `data_len` bytes, leaving no room for its final NUL.
fn unterminated(env: &Env<'_>, data_len: usize) -> bool {
    env.vars()
        .map(|(k, v)| k.len() + 1 + v.len() + 1)
        .sum::<usize>()
        == data_len
}

/// Re-encodes the variables of a single copy into a copy of the same size: must succeed and
/// decode to the same list; with zero padding the bytes are identical.
///
/// A list that runs to the last byte of the copy without the closing NUL decodes (U-Boot's
/// importer accepts it too) with `used_len()` inside the copy; the writer always writes the
/// NUL, so it needs one byte more, and says so.
fn uboot_vars_roundtrip(copy: &[u8], env: &Env<'_>, layout: Layout) {
    let data_len = copy.len() - layout.header_len();
    assert!(
        env.used_len() <= data_len,
        "used_len() stays inside the copy"
    );
    let mut size = copy.len();
    let terminated = !unterminated(env, data_len);
    if !terminated {
        assert_eq!(env.used_len(), data_len);
        let mut out = vec![0u8; copy.len()];
        let r = uboot_env::write(&mut out, layout, 0, env.vars(), &VarSet::new());
        assert_eq!(
            r,
            Err(uboot_env::EnvError::Overflow {
                needed: data_len + 1,
                available: data_len
            })
        );
        size += 1;
    }
    let mut out = vec![0xA5; size];
    let used = uboot_env::write(
        &mut out,
        layout,
        env.flag().unwrap_or(0),
        env.vars(),
        &VarSet::new(),
    )
    .expect("a decoded env re-encodes in its own size");
    assert_eq!(used, env.used_len() + usize::from(!terminated));
    let env2 = Env::parse(&out, layout).expect("a re-encoded env decodes");
    assert_eq!(pairs(env2.vars()), pairs(env.vars()));
    assert_eq!(env2.flag(), env.flag());
    let hdr = layout.header_len();
    if size == copy.len() && copy[hdr + used..].iter().all(|&b| b == 0) {
        assert_eq!(out, copy, "re-encoding a zero-padded env changed its bytes");
    }
}

/// Writes the current copy's variables to the other copy with the next flag: the pair must
/// then select the new copy, with the same variables.
fn redundant_roundtrip(first: &[u8], second: &[u8], i: usize, env: &Env<'_>) {
    let flag = env.flag().expect("a redundant copy has a flag");
    if unterminated(env, first.len() - Layout::Redundant.header_len()) {
        return; // unterminated list: the writer needs one byte more, see uboot_vars_roundtrip
    }
    let mut pair = [first.to_vec(), second.to_vec()];
    let mut out = vec![0u8; first.len()];
    uboot_env::write(
        &mut out,
        Layout::Redundant,
        flag.wrapping_add(1),
        env.vars(),
        &VarSet::new(),
    )
    .expect("a decoded env re-encodes in its own size");
    pair[1 - i] = out;
    let (j, env2) = uboot_env::parse_redundant(&pair[0], &pair[1]).expect("the new pair decodes");
    assert_eq!(j, 1 - i, "the copy written with the next flag must win");
    assert_eq!(env2.flag(), Some(flag.wrapping_add(1)));
    assert_eq!(pairs(env2.vars()), pairs(env.vars()));
}

/// A state some scheme decodes, encoded back into the env and decoded again, is the same.
fn uboot_scheme_roundtrip(env: &Env<'_>, scheme: Scheme) -> bool {
    let Ok(st) = scheme.decode(Flavor::UBoot, env) else {
        return false;
    };
    let mut set = VarSet::new();
    scheme
        .encode(Flavor::UBoot, &st, env, &mut set)
        .expect("a decoded state encodes");
    let mut out = vec![0u8; env.data_offset() + env.used_len() + 4096];
    uboot_env::write(&mut out, Layout::Single, 0, env.vars(), &set)
        .expect("an encoded state is written");
    let env2 = Env::parse(&out, Layout::Single).expect("a written env decodes");
    let st2 = scheme
        .decode(Flavor::UBoot, &env2)
        .expect("a written state decodes");
    assert_eq!(
        st2,
        st,
        "U-Boot {} decode/encode/decode changed the state",
        scheme.name()
    );
    true
}

/// Re-encodes a GRUB block's variables (raw) into a block with room for the warning line:
/// succeeds exactly when every key is writable, and decodes to the same list. Returns whether
/// it succeeded.
fn grub_vars_roundtrip(env: &GrubEnv<'_>) -> bool {
    let vars = pairs(env.vars());
    let writable = vars
        .iter()
        .all(|(k, _)| !k.is_empty() && !k.iter().any(|&b| b == b'\n' || b == 0));
    let mut out = vec![0u8; env.size() + grub_env::SIGNATURE.len() + grub_env::WARNING.len()];
    match grub_env::write(&mut out, env.vars(), &VarSet::new()) {
        Ok(_) => {
            assert!(
                writable,
                "GRUB write accepted a key it should refuse: {vars:?}"
            );
            let env2 = GrubEnv::parse(&out).expect("a written GRUB block decodes");
            assert_eq!(pairs(env2.vars()), vars, "GRUB vars changed by a re-encode");
            true
        }
        Err(e) => {
            assert!(!writable, "GRUB write refused a writable list: {e}");
            false
        }
    }
}

fn grub_scheme_roundtrip(env: &GrubEnv<'_>, scheme: Scheme) -> bool {
    let Ok(st) = scheme.decode(Flavor::Grub, env) else {
        return false;
    };
    let mut set = VarSet::new();
    scheme
        .encode(Flavor::Grub, &st, env, &mut set)
        .expect("a decoded state encodes");
    let mut out = vec![0u8; env.size() + 4096];
    grub_env::write(&mut out, env.vars(), &set).expect("an encoded state is written");
    let env2 = GrubEnv::parse(&out).expect("a written GRUB block decodes");
    let st2 = scheme
        .decode(Flavor::Grub, &env2)
        .expect("a written state decodes");
    assert_eq!(
        st2,
        st,
        "GRUB {} decode/encode/decode changed the state",
        scheme.name()
    );
    // The lookup the schemes rely on sees the last duplicate, as GRUB does.
    for k in ["ECU_REV", "ECU_A_NAME"] {
        let last = env
            .vars()
            .filter(|(kk, _)| *kk == k.as_bytes())
            .last()
            .map(|(_, v)| v);
        assert_eq!(env.get_raw(k), last);
    }
    true
}
