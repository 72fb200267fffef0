//! The streaming installer: `.update` bytes in, verified objects out to a [`Store`].
//!
//! [`Installer`] is a sans-IO state machine in the shape of postcard's `CobsAccumulator`: the
//! caller hands it the file's bytes in whatever blocks its transport delivers
//! ([`Installer::feed`]), and calls [`Installer::finish`] at the end of the input. Feeding the
//! same file in 1-byte, 7-byte, 512-byte or whole-file blocks gives the same store calls in the
//! same order (up to how object bytes are split across [`Store::write_object`] calls), the
//! same result and the same error.
//!
//! What happens, in file order (`docs/FORMAT.md` has the full list of checks):
//!
//! 1. The 16-byte header is checked (magic, version, flags, superblock length).
//! 2. The superblock is gathered into the window the caller lent, which has no other use yet.
//! 3. The signature is checked against the [`Policy`] over `header || superblock`,
//!    **before anything reaches the store**; only then is the superblock decoded, what later
//!    steps need copied out of it (part table, ref, ids, metadata), and its ref and security
//!    version checked against the policy, still before any store call.
//! 4. A delta's source commit must be in the store ([`InstallError::MissingSource`]).
//! 5. Each part is hashed as it arrives (checked at its end), decoded (inflated through the
//!    lent window, or with feature `xz` an LZMA2 part through the dictionary lent with it),
//!    and split into operation records. Each object is checked as it streams: its
//!    structure, what it references being in place, its SHA-256 against its id.
//! 6. After the last part: the commit was the last operation, every count matches, and
//!    [`Installer::feed`] reports [`Progress::done`]. [`Installer::finish`] then calls
//!    [`Store::commit`]. Committing in `finish` rather than on the last byte means a file with
//!    trailing bytes is refused ([`InstallError::TrailingData`]) before anything is committed,
//!    whatever the chunking.
//!
//! Any error calls [`Store::abort_object`] (when an object is open) and [`Store::abort`], and
//! leaves the installer failed until [`Installer::reset`].
//!
//! An interrupted install can resume at its last verified part: after each part but the last
//! the store is handed a [`Checkpoint`] ([`Store::checkpoint`]); give it back to
//! [`Installer::resume`] and feed the file again from its first byte (see [`Checkpoint`]'s
//! module, `resume`, and `docs/RESUME.md`).

mod error;
#[cfg(feature = "std")]
mod gnu_gzip;
mod parts;
mod policy;
mod progress;
#[cfg(feature = "redeflate")]
mod redeflate;
mod resume;
mod signature;
mod state;
mod superblock;
#[cfg(feature = "xz")]
mod xz;

pub use error::{InstallError, ERROR_REF_LEN};
#[cfg(feature = "std")]
pub use gnu_gzip::GnuGzip;
pub use policy::Policy;
pub use progress::{Installed, PartCheck, Progress, UpdateInfo};
#[cfg(feature = "std")]
pub use redeflate::{deflate_all, Deflaters, Zlib};
#[cfg(feature = "redeflate")]
pub use redeflate::{Redeflate, RedeflateError};
pub use resume::{Checkpoint, CheckpointError, CHECKPOINT_LEN, CHECKPOINT_MAGIC};
#[cfg(feature = "xz")]
pub use xz::{XzDecode, XzDecodeError, XzDecoder, XzStep};

use miniz_oxide::inflate::core::DecompressorOxide;
use sha2::{Digest, Sha256};

use crate::object::{ObjectId, MAX_VERSION_LEN};
use crate::store::Store;
use crate::wire::{FormatError, Header, HeaderRepr, SignatureKind, HEADER_LEN, MAX_REF_LEN};
use policy::prefix;
use progress::PartHashing;
use state::{fill, Ops};
use superblock::Parts;

/// Bytes of the largest inflate window: deflate refers back up to 32 KiB. A device that lends
/// the [`Installer`] at least this much (a power of two is used; miniz_oxide's wrapping output
/// buffer needs one) installs every deflate file, including format versions 1 and 2; one that
/// lends less installs files written with a dictionary no larger than what it lends
/// (`--max-dictionary`). Before the parts start, the same buffer holds the header and the
/// superblock.
pub const INFLATE_WINDOW: usize = 32 * 1024;

/// Bytes of a source object read per [`Store::read_object`] call while a patch record builds
/// an object: 128. The window is a local of the function that applies the patch (on the
/// stack, not in the installer's RAM), so a larger one costs stack, a smaller one more store
/// calls.
pub const PATCH_WINDOW: usize = 128;

/// The most memory an [`Installer`] may take with the [`INFLATE_WINDOW`] it is lent
/// (`size_of::<Installer>() + INFLATE_WINDOW`), checked at compile time on every target, with
/// or without the `xz` feature (which adds 88 bytes: the part table's xz and filter bytes, the
/// lent decoder's pointer; the decoder itself is lent, `XzDecoder` (feature `xz`)): 48 KiB. Measured:
/// 15,216 + 32,768 bytes on `thumbv7em-none-eabihf` without `xz` (`cargo xtask size` prints the
/// installer without the window). On a 32-bit target `size_of::<Installer>()` is made of
///
/// | what | bytes |
/// | --- | --- |
/// | the lent window (a slice: pointer and length; the window itself is the caller's) | 8 |
/// | miniz_oxide `DecompressorOxide` (Huffman tables) | 10504 |
/// | part table: [`crate::wire::MAX_PARTS`] × 44 (sizes, op count, SHA-256) + codec bits | 2832 |
/// | copies for [`UpdateInfo`]: ref 255, version 255, subject [`INFO_SUBJECT_LEN`] (128) | ~690 |
/// | dirtree entry / object header buffer (also holds the signature and a checkpoint to resume from), previous entry name | 321 + 255 |
/// | record header buffer (a patch record's header, then each patch control) | 74 |
/// | two SHA-256 states (part, object) | 2 × 104 |
/// | the [`Policy`] (three slices, the floor, a flag) | 40 |
/// | counters, ids, phase, a patch's cursor (source id, position, lengths) | ~330 |
///
/// None of it grows with the update's size, its object count, path depth or the chunk size.
pub const INSTALLER_SIZE_BUDGET: usize = 48 * 1024;

// Every build, on every target, with or without `xz` (whose decoder is lent too, see
// [`XzDecoder`]), proves the budget.
const _: () =
    assert!(core::mem::size_of::<Installer<'static>>() + INFLATE_WINDOW <= INSTALLER_SIZE_BUDGET);

/// Bytes of the target commit's subject kept for [`UpdateInfo::subject`]: 128, enough for a
/// subject line as written (git wraps at 72) and for a device's display. A commit's subject
/// may be up to [`crate::object::MAX_SUBJECT_LEN`] bytes; a longer one is cut at a character
/// boundary. The commit object itself always carries the whole subject.
pub const INFO_SUBJECT_LEN: usize = 128;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Header,
    Superblock,
    SignatureKind,
    Signature,
    /// Resuming: the bytes up to `Installer::resumed` are skipped.
    Skip,
    Parts,
    Done,
    Committed,
    Failed,
}

/// Bounded copies of the superblock fields that outlive the superblock buffer. The target
/// commit, its timestamp and the object count are kept once, in [`Ops`], which checks them.
struct Meta {
    ref_name: heapless::String<MAX_REF_LEN, u8>,
    version: heapless::String<MAX_VERSION_LEN, u8>,
    subject: heapless::String<INFO_SUBJECT_LEN, u8>,
    from: Option<ObjectId>,
    verified: bool,
}

impl Meta {
    const fn new() -> Meta {
        Meta {
            ref_name: heapless::String::new(),
            version: heapless::String::new(),
            subject: heapless::String::new(),
            from: None,
            verified: false,
        }
    }
}

/// The streaming installer. See the [module docs](self).
///
/// Its size is fixed, and its window is lent: `size_of::<Installer>()` plus a 32 KiB window is
/// at most [`INSTALLER_SIZE_BUDGET`] (48 KiB; the table there says what makes it up). Firmware
/// should place one in a `static` (or construct it once, early, where the stack is deep
/// enough: [`Installer::new`] may build the 10.5 KB decompressor on the stack) and call
/// [`Installer::reset`] before each further install, which works in place.
///
/// The window ([`Installer::new`]) holds the header and superblock, then serves as deflate's
/// window; with the `xz` feature an LZMA2 decoder and its dictionary are lent too
/// (`Installer::with_xz`, feature `xz`). A file that needs more than was lent is refused before anything
/// reaches the store ([`InstallError::DictionaryTooLarge`], [`InstallError::WindowTooSmall`]).
pub struct Installer<'k> {
    policy: Policy<'k>,
    phase: Phase,
    /// The file's format version, from its header.
    format_version: u16,
    /// Bytes consumed from the file.
    consumed: u64,
    /// Bytes of the current fixed-size field held (header, superblock, signature).
    have: usize,
    superblock_len: usize,
    signature_kind: SignatureKind,
    /// `info` and `parts` hold the verified superblock (from `Phase::Parts` on).
    known: bool,
    info: Meta,
    parts: Parts,
    /// Index of the current part.
    part: usize,
    /// Raw bytes of the current part still to come.
    part_left: u64,
    part_hash: Sha256,
    /// How far the current part's SHA-256 got ([`Installer::check_part`] finishes it after a
    /// failure).
    part_check: PartHashing,
    /// Where the inflater writes next in `window`.
    out_pos: usize,
    /// A checkpoint given to [`Installer::resume`] waits in `ops`' entry buffer (unused
    /// before the parts) until it is checked against the file.
    pending: bool,
    /// The parts skipped by resuming (0: not resumed). While skipping, `part_left` holds the
    /// offset to skip to.
    resumed_parts: u8,
    ops: Ops<'k>,
    inflater: DecompressorOxide,
    /// The lent window's ring: its first power-of-two bytes, at most [`INFLATE_WINDOW`].
    window: &'k mut [u8],
    /// The LZMA2 decoder and its dictionary, when lent ([`Installer::with_xz`]).
    #[cfg(feature = "xz")]
    xz: Option<&'k mut XzDecoder<'k>>,
    /// The file's dictionary size (for the xz container's block header).
    #[cfg(feature = "xz")]
    dictionary: u32,
    /// Bytes of the current xz piece gathered in the ring's upper half.
    #[cfg(feature = "xz")]
    staged: usize,
}

type Res<E> = Result<(), InstallError<E>>;

impl<'k> Installer<'k> {
    /// A new installer that accepts files as `policy` says, decoding through `window`.
    ///
    /// `window` is lent for the installer's life. Its first bytes, the largest power of two
    /// that fits and at most [`INFLATE_WINDOW`], hold the file's header and superblock, then
    /// serve as deflate's window (more is unused). Lend [`INFLATE_WINDOW`] bytes to install any
    /// deflate file; a small MCU may lend less (8 KiB) and install files generated with
    /// `--max-dictionary` no larger. With the `xz` feature, lend an LZMA2 decoder and its
    /// dictionary too (`Installer::with_xz`, feature `xz`).
    ///
    /// This builds the 10.5 KB decompressor by value; on a small stack, construct it once
    /// into a `static` and use [`Installer::reset`] afterwards.
    pub fn new(policy: Policy<'k>, window: &'k mut [u8]) -> Self {
        // The ring: the largest power of two lent, at most `INFLATE_WINDOW` (miniz_oxide's
        // wrapping output buffer needs a power of two).
        let ring = window
            .len()
            .min(INFLATE_WINDOW)
            .checked_ilog2()
            .map_or(0, |l| 1 << l);
        let window = match window.split_at_mut_checked(ring) {
            Some((ring, _)) => ring,
            // Never: the ring is no longer than the window.
            None => &mut [][..],
        };
        Installer {
            policy,
            phase: Phase::Header,
            format_version: 0,
            consumed: 0,
            have: 0,
            superblock_len: 0,
            signature_kind: SignatureKind::None,
            known: false,
            info: Meta::new(),
            parts: Parts::new(),
            part: 0,
            part_left: 0,
            part_hash: Sha256::new(),
            part_check: PartHashing::Idle,
            out_pos: 0,
            pending: false,
            resumed_parts: 0,
            ops: Ops::new(),
            inflater: DecompressorOxide::new(),
            window,

            #[cfg(feature = "xz")]
            dictionary: crate::wire::DEFLATE_DICTIONARY,
            #[cfg(feature = "xz")]
            staged: 0,
            #[cfg(feature = "xz")]
            xz: None,
        }
    }

    /// The same installer, decoding xz parts with `xz` (and its dictionary). Without it xz
    /// parts are refused at the superblock.
    #[cfg(feature = "xz")]
    pub fn with_xz(mut self, xz: &'k mut XzDecoder<'k>) -> Self {
        self.xz = Some(xz);
        self
    }

    /// The same installer, rebuilding the deflate streams of redeflate records with
    /// `deflater` (`docs/FORMAT.md` §6). Without it such records are refused
    /// ([`InstallError::RedeflateUnsupported`]) before their object reaches the store.
    #[cfg(feature = "redeflate")]
    pub fn with_redeflate(mut self, deflater: &'k mut dyn Redeflate) -> Self {
        self.ops.deflater = Some(deflater);
        self
    }

    /// Bytes of the window used for deflate (and the header and superblock): the largest
    /// power of two lent, at most [`INFLATE_WINDOW`].
    fn ring_len(&self) -> usize {
        self.window.len()
    }

    /// Bytes of the LZMA2 dictionary lent (0 without the `xz` feature).
    fn dictionary_lent(&self) -> usize {
        #[cfg(feature = "xz")]
        return self.xz.as_ref().map_or(0, |x| x.dictionary_len());
        #[cfg(not(feature = "xz"))]
        0
    }

    /// Back to the start, ready for a new file, in place (no large temporaries). The policy
    /// stays. An install in progress is simply forgotten: call [`Store::abort`] first if the
    /// store holds its staged objects.
    pub fn reset(&mut self) {
        self.phase = Phase::Header;
        self.format_version = 0;
        self.consumed = 0;
        self.have = 0;
        self.superblock_len = 0;
        self.signature_kind = SignatureKind::None;
        self.known = false;
        self.info.ref_name.clear();
        self.info.version.clear();
        self.info.subject.clear();
        self.info.from = None;
        self.info.verified = false;
        self.parts.clear();
        self.part = 0;
        self.part_left = 0;
        Digest::reset(&mut self.part_hash);
        self.part_check = PartHashing::Idle;
        self.out_pos = 0;
        self.pending = false;
        self.resumed_parts = 0;
        self.ops.reset();
        self.inflater.init();
        #[cfg(feature = "xz")]
        if let Some(x) = self.xz.as_mut() {
            x.reset();
        }
    }

    /// Replaces the policy (and resets, as [`Installer::reset`]).
    pub fn set_policy(&mut self, policy: Policy<'k>) {
        self.reset();
        self.policy = policy;
    }

    /// Consumes all of `input`, the next bytes of the file, writing what it completes to
    /// `store`. Call again with the following bytes, and [`Installer::finish`] at the end of
    /// the input.
    ///
    /// On error, the store has been told ([`Store::abort`]) and the installer stays failed
    /// ([`InstallError::Failed`]) until [`Installer::reset`].
    pub fn feed<S: Store>(
        &mut self,
        store: &mut S,
        input: &[u8],
    ) -> Result<Progress, InstallError<S::Error>> {
        match self.phase {
            Phase::Failed => return Err(InstallError::Failed),
            Phase::Committed if !input.is_empty() => {
                return Err(InstallError::TrailingData {
                    offset: self.consumed,
                });
            }
            _ => {}
        }
        if let Err(e) = self.feed_inner(store, input) {
            warn!("install failed at byte {}", self.consumed);
            self.fail(store);
            return Err(e);
        }
        Ok(self.progress())
    }

    /// The end of the input: when every byte was fed and verified, records the commit in the
    /// store ([`Store::commit`]) and returns what was installed. Before the end of the file,
    /// fails with [`InstallError::Truncated`] (and aborts the store). Calling it again after
    /// success returns the same [`Installed`] without touching the store.
    pub fn finish<S: Store>(&mut self, store: &mut S) -> Result<Installed, InstallError<S::Error>> {
        match self.phase {
            Phase::Done => {
                if let Err(e) = store.commit(&self.info.ref_name, &self.ops.to) {
                    self.fail(store);
                    return Err(InstallError::Store(e));
                }
                info!("installed commit {}", self.ops.to);
                self.phase = Phase::Committed;
                Ok(self.installed())
            }
            Phase::Committed => Ok(self.installed()),
            Phase::Failed => Err(InstallError::Failed),
            _ => {
                let expected = self.known.then(|| self.total());
                self.fail(store);
                Err(InstallError::Truncated {
                    expected,
                    got: self.consumed,
                })
            }
        }
    }

    /// Abandons the install (for example when the transport fails): tells the store
    /// ([`Store::abort_object`] if an object is open, [`Store::abort`]) and leaves the
    /// installer failed until [`Installer::reset`]. Does nothing after a successful
    /// [`Installer::finish`] or after a failure, which already aborted.
    pub fn abort<S: Store>(&mut self, store: &mut S) {
        if !matches!(self.phase, Phase::Committed | Phase::Failed) {
            self.fail(store);
        }
    }

    /// While the installer reads the file's signed prefix (`header || superblock ||
    /// signature`): how many more bytes it reads before it knows more of the prefix's length
    /// (the rest of the header, of the superblock, the signature-kind byte, the rest of the
    /// signature). Feeding at most that many bytes at a time stops exactly at the prefix's
    /// end, which is then [`Progress::bytes`] when [`Installer::superblock_info`] turns
    /// `Some`. `None` once the prefix is read (or the install failed).
    pub fn prefix_left(&self) -> Option<usize> {
        let sig_len = |k: SignatureKind| k.len().unwrap_or(0);
        match self.phase {
            Phase::Header => Some(HEADER_LEN - self.have.min(HEADER_LEN)),
            Phase::Superblock => Some(self.superblock_len.saturating_sub(self.have).max(1)),
            Phase::SignatureKind => Some(1),
            Phase::Signature => Some(
                sig_len(self.signature_kind)
                    .saturating_sub(self.have)
                    .max(1),
            ),
            _ => None,
        }
    }

    /// What the file installs, once its signature and superblock are verified.
    pub fn superblock_info(&self) -> Option<UpdateInfo<'_>> {
        self.known.then(|| UpdateInfo {
            ref_name: &self.info.ref_name,
            from: self.info.from,
            to: self.ops.to,
            timestamp: self.ops.timestamp,
            version: &self.info.version,
            subject: &self.info.subject,
            objects: self.ops.objects_declared,
            parts: self.parts.len() as u32,
            bytes: self.total(),
            security_version: self.ops.security_version,
            format_version: self.format_version,
            signed: self.signature_kind != SignatureKind::None,
            verified: self.info.verified,
        })
    }

    /// The progress so far (also returned by [`Installer::feed`]).
    pub fn progress(&self) -> Progress {
        let known = self.known;
        Progress {
            bytes: self.consumed,
            bytes_total: self.known.then(|| self.total()),
            objects: self.ops.objects_done,
            objects_total: if known { self.ops.objects_declared } else { 0 },
            parts: if matches!(self.phase, Phase::Done | Phase::Committed) {
                self.parts.len() as u32
            } else {
                self.part as u32
            },
            parts_total: self.parts.len() as u32,
            done: matches!(self.phase, Phase::Done | Phase::Committed),
            resume_offset: self.resume_offset(),
        }
    }

    /// Bytes of the whole file, once the superblock is known: computed from the part table
    /// rather than kept (8 bytes less installer RAM).
    fn total(&self) -> u64 {
        let sig_len = self.signature_kind.len().unwrap_or(0) as u64;
        (HEADER_LEN + self.superblock_len) as u64 + 1 + sig_len + self.parts.total_size()
    }

    fn installed(&self) -> Installed {
        Installed {
            commit: self.ops.to,
            from: self.info.from,
            // Same capacity.
            ref_name: heapless::String::try_from(self.info.ref_name.as_str()).unwrap_or_default(),
            security_version: self.ops.security_version,
        }
    }

    /// After [`Installer::feed`] failed inside a part: whether that part is damaged, so that
    /// the failure is the damage's consequence (a flipped byte can make a part's contents name
    /// an object that does not exist, or look malformed) and not what the file says. Feed it the
    /// file's next bytes, from [`Progress::bytes`] on, until it answers something else than
    /// [`PartCheck::NeedMore`]: at most the rest of the part is hashed, nothing reaches the
    /// store. Chunking does not change the answer. Without a failure inside a part (or when the
    /// input ends first) the failure stands: [`PartCheck::Intact`].
    pub fn check_part(&mut self, input: &[u8]) -> PartCheck {
        if self.phase != Phase::Failed {
            return PartCheck::Intact;
        }
        let Some(p) = self.parts.get(self.part) else {
            return PartCheck::Intact;
        };
        if self.part_check == PartHashing::Open {
            let n = usize::try_from(self.part_left)
                .unwrap_or(usize::MAX)
                .min(input.len());
            self.part_hash.update(input.get(..n).unwrap_or(&[]));
            self.part_left -= n as u64;
            self.consumed += n as u64;
            if self.part_left > 0 {
                return PartCheck::NeedMore;
            }
            let found: [u8; 32] = self.part_hash.finalize_reset().into();
            self.part_check = match found == p.sha256 {
                true => PartHashing::Idle,
                false => PartHashing::Mismatch,
            };
        }
        match self.part_check {
            PartHashing::Mismatch => PartCheck::Damaged {
                part: self.part as u32,
                start: self.consumed - u64::from(p.size),
                end: self.consumed,
            },
            _ => PartCheck::Intact,
        }
    }

    fn fail<S: Store>(&mut self, store: &mut S) {
        if self.ops.object_open {
            self.ops.object_open = false;
            store.abort_object();
        }
        store.abort();
        self.phase = Phase::Failed;
    }

    fn feed_inner<S: Store>(&mut self, store: &mut S, mut input: &[u8]) -> Res<S::Error> {
        // After `skip`, the next part starts here.
        self.end_skip(store)?;
        while !input.is_empty() {
            let before = input.len();
            match self.phase {
                Phase::Header => {
                    // The ring is at most 32 KiB.
                    let lent = self.window.len() as u32;
                    let Some(buf) = self.window.get_mut(..HEADER_LEN) else {
                        return Err(InstallError::WindowTooSmall {
                            needed: HEADER_LEN as u32,
                            lent,
                        });
                    };
                    if fill(buf, &mut self.have, &mut input) {
                        let header = HeaderRepr::parse(&Header::new_unchecked(&*buf))
                            .map_err(InstallError::Format)?;
                        self.superblock_len = header.superblock_len as usize;
                        self.format_version = header.version;
                        self.have = 0;
                        // At most 32 KiB (the header's check).
                        let needed = (HEADER_LEN + self.superblock_len) as u32;
                        if needed > lent {
                            return Err(InstallError::WindowTooSmall { needed, lent });
                        }
                        self.phase = Phase::Superblock;
                    }
                }
                Phase::Superblock => {
                    let end = HEADER_LEN.saturating_add(self.superblock_len);
                    let buf = self.window.get_mut(HEADER_LEN..end).unwrap_or(&mut []);
                    if fill(buf, &mut self.have, &mut input) {
                        self.have = 0;
                        self.phase = Phase::SignatureKind;
                    }
                }
                Phase::SignatureKind => {
                    let (&code, rest) = input.split_first().unwrap_or((&0, &[]));
                    input = rest;
                    self.signature_kind = SignatureKind::from_code(code);
                    match self.signature_kind {
                        SignatureKind::None => {
                            self.consumed += 1;
                            self.verified(store)?;
                            continue;
                        }
                        SignatureKind::Ed25519 => self.phase = Phase::Signature,
                        SignatureKind::Unknown(c) => {
                            return Err(InstallError::Format(FormatError::UnknownSignature(c)))
                        }
                    }
                }
                Phase::Signature => {
                    if fill(self.ops.signature_buf(), &mut self.have, &mut input) {
                        self.have = 0;
                        self.consumed += (before - input.len()) as u64;
                        self.verified(store)?;
                        continue;
                    }
                }
                Phase::Skip => {
                    let left = self.part_left.saturating_sub(self.consumed);
                    let n = usize::try_from(left).unwrap_or(usize::MAX).min(input.len());
                    input = input.get(n..).unwrap_or(&[]);
                    self.consumed += n as u64;
                    self.end_skip(store)?;
                    continue;
                }
                Phase::Parts => {
                    let n = usize::try_from(self.part_left)
                        .unwrap_or(usize::MAX)
                        .min(input.len());
                    let (chunk, rest) = input.split_at(n);
                    input = rest;
                    self.consumed += n as u64;
                    self.part_bytes(store, chunk)?;
                    continue;
                }
                Phase::Done | Phase::Committed | Phase::Failed => {
                    return Err(InstallError::TrailingData {
                        offset: self.consumed,
                    });
                }
            }
            self.consumed += (before - input.len()) as u64;
        }
        Ok(())
    }
}

#[cfg(test)]
mod test {
    extern crate std;

    use std::vec;
    use std::vec::Vec;

    use super::*;
    use crate::object::{self, Commit, DirEntry, DirMeta, ObjectKind, Xattrs, S_IFDIR};
    use crate::wire::{Codec, OpRepr, PartEntry, Superblock, TargetMeta};

    fn window() -> Vec<u8> {
        vec![0u8; INFLATE_WINDOW + 64 * 1024]
    }

    /// Records what reaches it; a shared store as in the integration tests, reduced.
    #[derive(Default)]
    struct Recorder {
        objects: Vec<(ObjectKind, ObjectId)>,
        open: Option<(ObjectKind, ObjectId)>,
        committed: Option<ObjectId>,
        aborts: u32,
    }

    impl Store for Recorder {
        type Error = core::convert::Infallible;
        fn has_commit(&mut self, _: &ObjectId) -> Result<bool, core::convert::Infallible> {
            Ok(false)
        }
        fn has_object(
            &mut self,
            kind: ObjectKind,
            id: &ObjectId,
        ) -> Result<bool, core::convert::Infallible> {
            Ok(self.objects.contains(&(kind, *id)))
        }
        fn begin_object(
            &mut self,
            kind: ObjectKind,
            id: &ObjectId,
            _: u64,
        ) -> Result<(), core::convert::Infallible> {
            self.open = Some((kind, *id));
            Ok(())
        }
        fn write_object(&mut self, _: &[u8]) -> Result<(), core::convert::Infallible> {
            Ok(())
        }
        fn finish_object(&mut self) -> Result<(), core::convert::Infallible> {
            self.objects.extend(self.open.take());
            Ok(())
        }
        fn abort_object(&mut self) {
            self.open = None;
        }
        fn reuse_object(
            &mut self,
            _: ObjectKind,
            _: &ObjectId,
        ) -> Result<bool, core::convert::Infallible> {
            Ok(false)
        }
        fn tree_depth(&mut self, _: &ObjectId) -> Result<Option<u16>, core::convert::Infallible> {
            Ok(Some(0))
        }
        fn commit(&mut self, _: &str, id: &ObjectId) -> Result<(), core::convert::Infallible> {
            self.committed = Some(*id);
            Ok(())
        }
        fn abort(&mut self) {
            self.aborts += 1;
        }
    }

    fn record(out: &mut Vec<u8>, kind: ObjectKind, bytes: &[u8]) -> ObjectId {
        let id = ObjectId::of(bytes);
        let op = OpRepr::Write {
            kind,
            id,
            len: bytes.len() as u64,
        };
        let mut h = [0u8; crate::wire::WRITE_HEADER_LEN];
        op.emit(&mut h);
        out.extend_from_slice(&h);
        out.extend_from_slice(bytes);
        id
    }

    /// An unsigned file with one stored part: a file, the root dirtree and dirmeta, the commit.
    fn tiny_file() -> (Vec<u8>, ObjectId) {
        let mut records = Vec::new();
        let file = object::file_object(0o644, 0, 0, b"hi");
        let fid = record(&mut records, ObjectKind::File, &file);
        let tree = object::dirtree_object(&[DirEntry::File {
            name: b"greeting",
            id: fid,
        }])
        .unwrap();
        let tid = record(&mut records, ObjectKind::DirTree, &tree);
        let meta = DirMeta {
            mode: S_IFDIR | 0o755,
            uid: 0,
            gid: 0,
            xattrs: Xattrs::EMPTY,
        }
        .to_vec();
        let mid = record(&mut records, ObjectKind::DirMeta, &meta);
        let c = Commit {
            parent: None,
            timestamp: 7,
            root_tree: tid,
            root_meta: mid,
            version: "1",
            subject: "s",
            body: "",
            security_version: 0,
        };
        let to = record(&mut records, ObjectKind::Commit, &c.to_vec().unwrap());
        let mut parts = heapless::Vec::new();
        let part = PartEntry {
            codec: Codec::Stored,
            filter: crate::wire::Filter::None,
            size: records.len() as u32,
            uncompressed_size: records.len() as u32,
            ops: 4,
            sha256: Sha256::digest(&records).into(),
        };
        parts.push(part).unwrap();
        let sb = Superblock {
            ref_name: "r",
            from: None,
            to,
            meta: TargetMeta {
                timestamp: 7,
                version: "1",
                subject: "s",
            },
            objects: 4,
            parts,
            security_version: 0,
            dictionary: crate::wire::DEFLATE_DICTIONARY,
        };
        let mut out = vec![0u8; 4096];
        let n = sb.emit(&mut out[HEADER_LEN..]).unwrap().len();
        HeaderRepr {
            version: crate::wire::FORMAT_VERSION,
            superblock_len: n as u32,
        }
        .emit(&mut Header::new_unchecked(&mut out[..HEADER_LEN]));
        out.truncate(HEADER_LEN + n);
        out.push(SignatureKind::None.code());
        out.extend_from_slice(&records);
        (out, to)
    }

    #[test]
    fn one_byte_at_a_time_then_reset_and_again() {
        let (file, to) = tiny_file();
        let mut win = window();
        let mut inst = Installer::new(Policy::require(&[]).allow_unsigned(), &mut win);
        for _ in 0..2 {
            let mut store = Recorder::default();
            assert!(inst.superblock_info().is_none());
            let mut last = None;
            for b in file.chunks(1) {
                let p = inst.feed(&mut store, b).unwrap();
                if let Some(prev) = last.replace(p) {
                    assert!(p.bytes == prev.bytes + 1 && p.objects >= prev.objects);
                }
            }
            let p = last.unwrap();
            assert_eq!(
                p,
                Progress {
                    bytes: file.len() as u64,
                    bytes_total: Some(file.len() as u64),
                    objects: 4,
                    objects_total: 4,
                    parts: 1,
                    parts_total: 1,
                    done: true,
                    resume_offset: None,
                }
            );
            assert_eq!(store.committed, None, "commit waits for finish");
            let installed = inst.finish(&mut store).unwrap();
            assert_eq!(installed.commit, to);
            assert_eq!(store.committed, Some(to));
            assert_eq!(store.objects.len(), 4);
            let info = inst.superblock_info().unwrap();
            assert_eq!(
                (info.ref_name, info.version, info.subject, info.timestamp),
                ("r", "1", "s", 7)
            );
            inst.reset();
        }
    }

    #[test]
    fn required_signature_refuses_before_the_store_sees_anything() {
        let (file, _) = tiny_file();
        let keys = [[0u8; 32]];
        let mut win = window();
        let mut inst = Installer::new(Policy::require(&keys), &mut win);
        let mut store = Recorder::default();
        assert_eq!(inst.feed(&mut store, &file), Err(InstallError::Unsigned));
        assert!(store.objects.is_empty() && store.open.is_none());
        assert_eq!(store.aborts, 1);
    }

    #[test]
    fn abort_tells_the_store_once() {
        let (file, _) = tiny_file();
        let mut win = window();
        let mut inst = Installer::new(Policy::require(&[]).allow_unsigned(), &mut win);
        let mut store = Recorder::default();
        let _ = inst.feed(&mut store, &file[..file.len() - 10]).unwrap();
        inst.abort(&mut store);
        inst.abort(&mut store);
        assert_eq!(store.aborts, 1);
        assert_eq!(
            inst.feed(&mut store, &file[file.len() - 10..]),
            Err(InstallError::Failed)
        );
    }

    #[test]
    fn size_is_within_budget() {
        assert!(core::mem::size_of::<Installer<'static>>() <= INSTALLER_SIZE_BUDGET);
        assert_eq!(INFLATE_WINDOW, 32 * 1024);
    }
}
