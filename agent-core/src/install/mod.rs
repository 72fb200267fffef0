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

mod resume;
mod signature;
mod state;
mod superblock;
#[cfg(feature = "xz")]
mod xz;

pub use resume::{Checkpoint, CheckpointError, CHECKPOINT_LEN, CHECKPOINT_MAGIC};

use core::fmt;

use miniz_oxide::inflate::core::inflate_flags::TINFL_FLAG_HAS_MORE_INPUT;
use miniz_oxide::inflate::core::{decompress, DecompressorOxide};
use miniz_oxide::inflate::TINFLStatus;
use sha2::{Digest, Sha256};

use crate::object::{ObjectError, ObjectId, ObjectKind, MAX_VERSION_LEN};
use crate::store::Store;
use crate::wire::{
    dictionary_at_most, Codec, FormatError, Header, HeaderRepr, PartEntry, SignatureKind,
    HEADER_LEN, MAX_REF_LEN, PATCH_FORMAT_VERSION, PUBLIC_KEY_LEN, SIGNATURE_LEN,
};
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

/// What one [`XzDecode::decode`] call did.
#[cfg(feature = "xz")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XzStep {
    /// Bytes of the input taken.
    pub consumed: usize,
    /// Bytes written to the start of the output.
    pub produced: usize,
    /// The `.xz` stream ended (its footer was decoded).
    pub end: bool,
}

/// Why an [`XzDecode`] refused its input.
#[cfg(feature = "xz")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum XzDecodeError {
    /// The stream is not valid `.xz` (corrupt, cut short, or needing more than the decoder has).
    Corrupt,
    /// Bytes followed the end of the stream.
    Trailing,
}

/// An `.xz` stream decoder (feature `xz`): the installer's codec interface for xz parts. The
/// installer wraps each xz part in an `.xz` container made from its verified part table
/// (`docs/FORMAT.md` section 5) and hands the decoder the container's bytes, the part's bytes
/// in fixed pieces, and the container's end. [`XzDecoder`] (no_std, no alloc, a lent
/// dictionary) is the device's; a Linux device may lend one backed by liblzma, or one that
/// decodes on another core.
#[cfg(feature = "xz")]
pub trait XzDecode {
    /// Bytes of the largest LZMA2 dictionary it decodes with: a file that declares a larger one
    /// is refused at the superblock, before anything reaches the store.
    fn dictionary_len(&self) -> usize;

    /// Forgets the stream in progress: the next [`XzDecode::decode`] starts a new stream.
    fn reset(&mut self);

    /// Decodes the next bytes of the stream, `input`, into `output`, in stream order. A call
    /// with input takes some of it or produces some output (or both); it may hold input and
    /// output back (a decoder on another core does), but a call without input delivers what
    /// is held: it returns with output, with [`XzStep::end`], or with nothing produced only
    /// once everything given so far is decoded and delivered. Output before a failure is
    /// delivered before the failure.
    fn decode(&mut self, input: &[u8], output: &mut [u8]) -> Result<XzStep, XzDecodeError>;
}

/// The LZMA2 decoder (feature `xz`) lent to an installer ([`Installer::with_xz`]), so that an
/// installer is as small with the feature as without and only a caller that decodes xz parts
/// pays for it: `xz4rust`'s state (about 30 KB: probability tables, range decoder, BCJ
/// filters) and the dictionary it is lent ([`XzDecoder::new`]), or any other [`XzDecode`] the
/// caller has ([`XzDecoder::with_decoder`]: a Linux device's liblzma). An installer without
/// one refuses xz parts before anything reaches the store
/// ([`InstallError::DictionaryTooLarge`] with 0 lent).
#[cfg(feature = "xz")]
pub struct XzDecoder<'d> {
    inner: Inner<'d>,
    lent: usize,
}

/// By value: no alloc here, and the embedded decoder is the device's case (as large as
/// before); a lent one only leaves the space unused.
#[cfg(feature = "xz")]
#[allow(clippy::large_enum_variant)]
enum Inner<'d> {
    Embedded(xz4rust::XzDecoder<'d>),
    Lent(&'d mut (dyn XzDecode + 'd)),
}

#[cfg(feature = "xz")]
impl<'d> XzDecoder<'d> {
    /// A decoder whose LZMA2 dictionary is `dictionary`: files whose dictionary
    /// ([`crate::wire::Superblock::dictionary`]) is larger are refused. Builds about 30 KB by
    /// value; box it on a small stack.
    pub fn new(dictionary: &'d mut [u8]) -> XzDecoder<'d> {
        XzDecoder {
            lent: dictionary.len(),
            inner: Inner::Embedded(xz4rust::XzDecoder::with_fixed_size_dict(dictionary)),
        }
    }

    /// The installer's decoder is `decoder` (its [`XzDecode::dictionary_len`] bounds the
    /// files accepted).
    pub fn with_decoder(decoder: &'d mut (dyn XzDecode + 'd)) -> XzDecoder<'d> {
        XzDecoder {
            lent: decoder.dictionary_len(),
            inner: Inner::Lent(decoder),
        }
    }

    /// Bytes of its dictionary.
    pub fn dictionary_len(&self) -> usize {
        self.lent
    }
}

#[cfg(feature = "xz")]
impl XzDecode for XzDecoder<'_> {
    fn dictionary_len(&self) -> usize {
        self.lent
    }

    fn reset(&mut self) {
        match &mut self.inner {
            Inner::Embedded(x) => x.reset(),
            Inner::Lent(d) => d.reset(),
        }
    }

    /// `xz4rust` drops a failing call's output.
    fn decode(&mut self, input: &[u8], output: &mut [u8]) -> Result<XzStep, XzDecodeError> {
        let x = match &mut self.inner {
            Inner::Embedded(x) => x,
            Inner::Lent(d) => return d.decode(input, output),
        };
        let r = x
            .decode(input, output)
            .map_err(|_| XzDecodeError::Corrupt)?;
        Ok(XzStep {
            consumed: r.input_consumed().min(input.len()),
            produced: r.output_produced().min(output.len()),
            end: r.is_end_of_stream(),
        })
    }
}

/// Bytes of the target commit's subject kept for [`UpdateInfo::subject`]: 128, enough for a
/// subject line as written (git wraps at 72) and for a device's display. A commit's subject
/// may be up to [`crate::object::MAX_SUBJECT_LEN`] bytes; a longer one is cut at a character
/// boundary. The commit object itself always carries the whole subject.
pub const INFO_SUBJECT_LEN: usize = 128;

/// Bytes of a ref kept in [`InstallError::RefNotFollowed`]: 64, enough for the refs a car
/// uses (`cs9/x86_64/qemu-minimal` is 23) while the error stays small (it is returned by
/// value through every step of the installer).
pub const ERROR_REF_LEN: usize = 64;

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

/// How far an install has come. Returned by every successful [`Installer::feed`].
#[must_use = "a caller should at least look at `done` to know when to call `finish`"]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Progress {
    /// Bytes of the file consumed so far.
    pub bytes: u64,
    /// Bytes of the whole file, once the superblock is verified.
    pub bytes_total: Option<u64>,
    /// Operations completed (objects written and verified, or reused).
    pub objects: u32,
    /// Operations the file declares (0 until the superblock is verified).
    pub objects_total: u32,
    /// Parts completed and verified.
    pub parts: u32,
    /// Parts in the file (0 until the superblock is verified).
    pub parts_total: u32,
    /// Everything is verified: call [`Installer::finish`] to commit. More bytes are an error.
    pub done: bool,
    /// The install resumed from a [`Checkpoint`]: the file offset of the first part it still
    /// needs. Until [`Progress::bytes`] reaches it, fed bytes are skipped unread; a caller
    /// that can seek calls [`Installer::skip`] and continues from this offset instead.
    pub resume_offset: Option<u64>,
}

/// Whether a part of a file that failed is damaged ([`Installer::check_part`]).
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum PartCheck {
    /// The rest of the part is needed: feed the file's next bytes.
    NeedMore,
    /// The part matches its SHA-256 (or the failure was not inside a part): the failure is what
    /// the file holds or what the store did.
    Intact,
    /// The part's bytes do not hash to the SHA-256 its superblock gives: the file is damaged,
    /// and a failure inside the part came from the damage.
    Damaged {
        /// The part (0-based).
        part: u32,
        /// Its first byte in the file.
        start: u64,
        /// The byte after its last.
        end: u64,
    },
}

/// How far a part's SHA-256 got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PartHashing {
    /// No part is being hashed, or the last one matched.
    Idle,
    /// Bytes of the current part are being hashed.
    Open,
    /// The current part's bytes do not match its SHA-256.
    Mismatch,
}

/// What [`Installer::finish`] installed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Installed {
    /// The commit now recorded on the ref.
    pub commit: ObjectId,
    /// The source commit, for a delta.
    pub from: Option<ObjectId>,
    /// The ref the commit was recorded on.
    pub ref_name: heapless::String<MAX_REF_LEN>,
    /// The commit's security version (0 for a format-version-1 file). A device raises its
    /// anti-rollback floor to it once the commit has booted and been marked good, not before.
    pub security_version: u64,
}

/// What a file installs, as its verified superblock says ([`Installer::superblock_info`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct UpdateInfo<'a> {
    /// The ref the update moves.
    pub ref_name: &'a str,
    /// The source commit of a delta; `None` for a from-scratch file.
    pub from: Option<ObjectId>,
    /// The commit the update installs.
    pub to: ObjectId,
    /// The target commit's timestamp (seconds since the epoch, UTC).
    pub timestamp: u64,
    /// The target commit's version string.
    pub version: &'a str,
    /// The target commit's subject, its first [`INFO_SUBJECT_LEN`] bytes at most.
    pub subject: &'a str,
    /// Operations in the file.
    pub objects: u32,
    /// Parts in the file.
    pub parts: u32,
    /// Bytes of the whole file.
    pub bytes: u64,
    /// The target commit's security version (0 for a format-version-1 file); the installer
    /// checks that the commit object carries the same.
    pub security_version: u64,
    /// The file's format version (1 or 2).
    pub format_version: u16,
    /// Whether the file carries a signature.
    pub signed: bool,
    /// Whether the signature was verified against a trusted key (false for an unsigned file,
    /// which only installs under [`Policy::allow_unsigned`]).
    pub verified: bool,
}

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
    ops: Ops,
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

    /// Bytes of the window used for deflate (and the header and superblock): the largest
    /// power of two lent, at most [`INFLATE_WINDOW`].
    fn ring_len(&self) -> usize {
        self.window.len()
    }

    /// Bytes of the LZMA2 dictionary lent (0 without the `xz` feature).
    fn dictionary_lent(&self) -> usize {
        #[cfg(feature = "xz")]
        return self.xz.as_ref().map_or(0, |x| x.lent);
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

    /// Resume an interrupted install from `checkpoint` (what the store recorded through
    /// [`Store::checkpoint`]). Call it after [`Installer::new`] or [`Installer::reset`], before
    /// the first [`Installer::feed`], then feed the file from its first byte: the header,
    /// superblock and signature are verified again. If the checkpoint was taken for this very
    /// file (same signed `header || superblock`, same target), agrees with its part table, and
    /// [`Store::resume`] confirms the objects of the completed parts are in place, the
    /// installer skips to the next part ([`Progress::resume_offset`]); otherwise it installs
    /// from the first part. Returns false (and does nothing) once feeding has begun, and
    /// always without the feature `resume` (on with `std`).
    pub fn resume(&mut self, checkpoint: Checkpoint) -> bool {
        if !cfg!(feature = "resume") || self.phase != Phase::Header || self.consumed != 0 {
            return false;
        }
        self.ops.stash().copy_from_slice(&checkpoint.to_bytes());
        self.pending = true;
        true
    }

    /// While resuming ([`Progress::resume_offset`] is ahead of [`Progress::bytes`]): skips the
    /// bytes up to the resume offset without reading them, for a caller that can seek its
    /// input. Returns the file offset of the next byte to feed (unchanged when there is
    /// nothing to skip).
    pub fn skip(&mut self) -> u64 {
        if self.phase == Phase::Skip {
            self.consumed = self.consumed.max(self.part_left);
        }
        self.consumed
    }

    /// The checkpoint of the last verified part boundary of the install in progress: `None`
    /// before the first part is verified, after the last one, and after a failure. The same
    /// value the store was given through [`Store::checkpoint`].
    pub fn checkpoint(&self) -> Option<Checkpoint> {
        if !matches!(self.phase, Phase::Parts | Phase::Skip) {
            return None;
        }
        self.checkpoint_at(self.part)
    }

    /// The checkpoint after the first `parts` parts (1 ..= the number of parts − 1).
    fn checkpoint_at(&self, parts: usize) -> Option<Checkpoint> {
        let (offset, objects) = self.boundary(parts)?;
        Some(Checkpoint {
            file: self.file_id(),
            target: self.ops.to,
            offset,
            parts: parts as u32,
            objects,
        })
    }

    /// The file offset where part `parts` starts and the operations before it, for
    /// `1 ..= the number of parts − 1`.
    fn boundary(&self, parts: usize) -> Option<(u64, u32)> {
        if !self.known || parts == 0 || parts >= self.parts.len() {
            return None;
        }
        let sig_len = self.signature_kind.len().unwrap_or(0) as u64;
        let mut offset = (HEADER_LEN + self.superblock_len) as u64 + 1 + sig_len;
        let mut objects = 0u32;
        for i in 0..parts {
            let p = self.parts.get(i)?;
            offset += u64::from(p.size);
            objects = objects.saturating_add(p.ops);
        }
        Some((offset, objects))
    }

    /// What a checkpoint is bound to (`docs/RESUME.md`): the SHA-256 of the verified
    /// superblock's ref, source, target and part table (every part's sizes, operation count and
    /// SHA-256). Two files with the same value have byte-identical parts for the same commit.
    /// Computed when needed, so that it costs no installer RAM.
    #[inline(never)]
    fn file_id(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(CHECKPOINT_MAGIC);
        h.update([self.info.ref_name.len() as u8]);
        h.update(self.info.ref_name.as_bytes());
        match self.info.from {
            Some(f) => {
                h.update([1]);
                h.update(f.0);
            }
            None => h.update([0]),
        }
        h.update(self.ops.to.0);
        h.update([self.parts.len() as u8]);
        for i in 0..self.parts.len() {
            if let Some(p) = self.parts.get(i) {
                // One update a part (smaller code than one a field): codec, [filter,] sizes,
                // op count, SHA-256.
                let mut b = [0u8; 46];
                b[0] = p.codec.into();
                #[allow(unused_mut)]
                let mut at = 1;
                #[cfg(feature = "xz")]
                if p.codec == Codec::Xz {
                    // What the part decodes with (format version 3); other codecs have none.
                    b[1] = p.filter.into();
                    at = 2;
                }
                b[at..at + 4].copy_from_slice(&p.size.to_le_bytes());
                b[at + 4..at + 8].copy_from_slice(&p.uncompressed_size.to_le_bytes());
                b[at + 8..at + 12].copy_from_slice(&p.ops.to_le_bytes());
                b[at + 12..at + 44].copy_from_slice(&p.sha256);
                h.update(&b[..at + 44]);
            }
        }
        h.finalize().into()
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

    /// Where a resumed install resumed.
    fn resume_offset(&self) -> Option<u64> {
        self.boundary(usize::from(self.resumed_parts))
            .map(|(offset, _)| offset)
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

    /// The signature byte (and bytes) are in: check the signature, decode the superblock and
    /// start the parts.
    ///
    /// Each step is out of line, so that the stack holds one step's frame at a time: the
    /// signature check (ed25519, about 2.2 KB), the superblock decoding (serde, about 0.5 KB)
    /// and the store's look-up of a delta's source, rather than one frame holding all of them
    /// on the path of every part.
    fn verified<S: Store>(&mut self, store: &mut S) -> Res<S::Error> {
        self.check_and_decode()?;
        self.start_parts(store)
    }

    /// Checks the signature, then decodes the superblock into `info`, `parts` and `ops`.
    #[inline(never)]
    fn check_and_decode<E>(&mut self) -> Res<E> {
        let message = self
            .window
            .get(..HEADER_LEN + self.superblock_len)
            .unwrap_or(&[]);
        self.info.verified = check_signature(
            &self.policy,
            self.signature_kind,
            self.ops.signature(),
            message,
        )?;
        let target = superblock::decode(
            self.window
                .get(HEADER_LEN..HEADER_LEN + self.superblock_len)
                .unwrap_or(&[]),
            self.format_version,
            &mut self.info,
            &mut self.parts,
        )
        .map_err(InstallError::Format)?;
        check_superblock(&self.policy, &self.info.ref_name, target.security_version)?;
        self.ops.patches = self.format_version >= PATCH_FORMAT_VERSION;
        self.check_dictionary(target.dictionary)?;
        #[cfg(feature = "xz")]
        {
            self.dictionary = target.dictionary;
        }
        self.ops.start_file(
            target.to,
            target.timestamp,
            target.objects,
            target.security_version,
        );
        self.known = true;
        debug!(
            "update for {} installs {} ({} parts)",
            self.info.ref_name.as_str(),
            self.ops.to,
            self.parts.len()
        );
        Ok(())
    }

    /// The window the file's parts need against what was lent ([`InstallError::DictionaryTooLarge`]):
    /// deflate parts need a power-of-two ring of at least `dictionary` bytes (at most
    /// [`INFLATE_WINDOW`]: deflate reaches no further), xz parts an LZMA2 dictionary of
    /// `dictionary` bytes.
    fn check_dictionary<E>(&self, dictionary: u32) -> Res<E> {
        // Lent sizes over 4 GiB count as 4 GiB: no dictionary is larger.
        let lent = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        if self.parts.any_deflate() {
            let needed = dictionary.min(INFLATE_WINDOW as u32).next_power_of_two();
            let have = lent(self.ring_len());
            if needed > have {
                return Err(InstallError::DictionaryTooLarge { needed, lent: have });
            }
        }
        if self.parts.any_xz() {
            let have = lent(self.dictionary_lent());
            if dictionary > have {
                return Err(InstallError::DictionaryTooLarge {
                    needed: dictionary,
                    lent: have,
                });
            }
        }
        Ok(())
    }

    /// The superblock is verified: a delta's source must be in the store; then the first part.
    #[inline(never)]
    fn start_parts<S: Store>(&mut self, store: &mut S) -> Res<S::Error> {
        if let Some(from) = self.info.from {
            if !store.has_commit(&from).map_err(InstallError::Store)? {
                return Err(InstallError::MissingSource(from));
            }
        }
        let mut records = 0u64;
        for i in 0..self.parts.len() {
            records += self
                .parts
                .get(i)
                .map_or(0, |p| u64::from(p.uncompressed_size));
        }
        let declared = crate::store::Declared {
            records,
            ops: self.ops.objects_declared,
        };
        store.declared(&declared).map_err(InstallError::Store)?;
        self.phase = Phase::Parts;
        self.part = 0;
        if cfg!(feature = "resume") && core::mem::take(&mut self.pending) {
            // Only a checkpoint of this very file, at one of its part boundaries, whose
            // objects the store still holds.
            let cp = Checkpoint::from_bytes(self.ops.stash()).ok();
            if let Some(cp) = cp.filter(|cp| self.checkpoint_at(cp.parts as usize) == Some(*cp)) {
                if store.resume(&cp).map_err(InstallError::Store)? {
                    info!("resuming at part {} (byte {})", cp.parts, cp.offset);
                    self.part = cp.parts as usize;
                    self.ops.resume(cp.objects);
                    // `checkpoint_at` accepted it: fewer parts than `MAX_PARTS`.
                    self.resumed_parts = cp.parts as u8;
                    self.part_left = cp.offset;
                    self.phase = Phase::Skip;
                    return self.end_skip(store);
                }
            }
            info!("checkpoint does not apply to this file: installing from the first part");
        }
        self.open_parts(store)
    }

    /// Resuming: once every byte before the resume offset is consumed, opens the next part.
    fn end_skip<S: Store>(&mut self, store: &mut S) -> Res<S::Error> {
        if self.phase == Phase::Skip && self.consumed >= self.part_left {
            self.phase = Phase::Parts;
            return self.open_parts(store);
        }
        Ok(())
    }

    /// Part `self.part - 1` was just verified (and [`Store::part_verified`] told): the store
    /// may record the checkpoint (with the feature `resume`).
    fn take_checkpoint<S: Store>(&mut self, store: &mut S) -> Res<S::Error> {
        if !cfg!(feature = "resume") {
            return Ok(());
        }
        match self.checkpoint_at(self.part) {
            Some(cp) => store.checkpoint(&cp).map_err(InstallError::Store),
            None => Ok(()),
        }
    }

    /// Opens the part at `self.part`, closing at once any that are empty; after the last part,
    /// runs the final checks.
    fn open_parts<S: Store>(&mut self, store: &mut S) -> Res<S::Error> {
        loop {
            let Some(p) = self.parts.get(self.part) else {
                self.ops.end_file()?;
                self.phase = Phase::Done;
                return Ok(());
            };
            self.part_left = u64::from(p.size);
            Digest::reset(&mut self.part_hash);
            self.part_check = PartHashing::Open;
            self.inflater.init();
            self.out_pos = 0;
            let last = self.part + 1 == self.parts.len();
            self.ops
                .start_part(self.part as u32, p.uncompressed_size, p.ops, last);
            #[cfg(feature = "xz")]
            if p.codec == Codec::Xz {
                if let Some(x) = self.xz.as_mut() {
                    x.reset();
                }
                self.staged = 0;
                let header = xz::block_header(p.filter, self.dictionary);
                // The stream cannot end inside the headers (they are ours).
                let _ = self.xz_run(store, &xz::STREAM_HEADER)?;
                let _ = self.xz_run(store, &header)?;
            }
            if p.size > 0 {
                return Ok(());
            }
            match p.codec {
                Codec::Deflate => self.inflate(store, &[], true)?,
                #[cfg(feature = "xz")]
                Codec::Xz => self.xz_end(store, &p)?,
                _ => {}
            }
            self.close_part(store, p)?;
            self.take_checkpoint(store)?;
        }
    }

    /// Takes the next raw bytes of the current part (at most what is left of it).
    fn part_bytes<S: Store>(&mut self, store: &mut S, chunk: &[u8]) -> Res<S::Error> {
        let Some(p) = self.parts.get(self.part) else {
            return Ok(());
        };
        self.part_hash.update(chunk);
        self.part_left = self.part_left.saturating_sub(chunk.len() as u64);
        let last = self.part_left == 0;
        match p.codec {
            Codec::Deflate => self.inflate(store, chunk, last)?,
            #[cfg(feature = "xz")]
            Codec::Xz => {
                self.xz_bytes(store, chunk, last)?;
                if last {
                    self.xz_end(store, &p)?;
                }
            }
            _ => self.ops.decoded(store, chunk)?,
        }
        if last {
            self.close_part(store, p)?;
            self.take_checkpoint(store)?;
            self.open_parts(store)?;
        }
        Ok(())
    }

    /// Runs the inflater over `chunk`; `last` when it ends the part.
    fn inflate<S: Store>(&mut self, store: &mut S, chunk: &[u8], last: bool) -> Res<S::Error> {
        let part = self.part as u32;
        let flags = if last { 0 } else { TINFL_FLAG_HAS_MORE_INPUT };
        let ring = self.ring_len();
        let mut data = chunk;
        loop {
            let (status, used, written) =
                decompress(&mut self.inflater, data, self.window, self.out_pos, flags);
            data = data.get(used..).unwrap_or(&[]);
            let end = self.out_pos.saturating_add(written).min(ring);
            self.ops
                .decoded(store, self.window.get(self.out_pos..end).unwrap_or(&[]))?;
            self.out_pos = end & ring.wrapping_sub(1);
            match status {
                TINFLStatus::Done => {
                    return if data.is_empty() && last {
                        Ok(())
                    } else {
                        Err(InstallError::PartTrailing { part })
                    };
                }
                TINFLStatus::NeedsMoreInput if !last && data.is_empty() => return Ok(()),
                TINFLStatus::HasMoreOutput | TINFLStatus::NeedsMoreInput
                    if used > 0 || written > 0 => {}
                _ => return Err(InstallError::Inflate { part }),
            }
        }
    }

    /// Bytes of an xz input piece (and of the decoder's output space): half the ring.
    #[cfg(feature = "xz")]
    fn xz_piece_len(&self) -> usize {
        self.ring_len() / 2
    }

    /// Takes the next raw bytes of an xz part. The decoder gets them in pieces of
    /// [`Installer::xz_piece_len`] bytes at fixed offsets of the part (the last one shorter),
    /// gathered in the ring's upper half when the input splits them, so that it sees the same
    /// calls whatever the chunking: `xz4rust` drops a call's output when the call fails, and
    /// only identical calls make the same records reach the store before a failure.
    #[cfg(feature = "xz")]
    fn xz_bytes<S: Store>(&mut self, store: &mut S, mut chunk: &[u8], last: bool) -> Res<S::Error> {
        let k = self.xz_piece_len();
        while !chunk.is_empty() {
            if self.staged == 0 && chunk.len() >= k {
                let (piece, rest) = chunk.split_at(k);
                chunk = rest;
                if self.xz_run(store, piece)? {
                    return Err(InstallError::PartTrailing {
                        part: self.part as u32,
                    });
                }
                continue;
            }
            let n = (k - self.staged).min(chunk.len());
            let (now, rest) = chunk.split_at(n);
            chunk = rest;
            if let Some(dst) = self.window.get_mut(k + self.staged..k + self.staged + n) {
                dst.copy_from_slice(now);
            }
            self.staged += n;
            if self.staged == k {
                self.xz_staged(store)?;
            }
        }
        if last && self.staged > 0 {
            self.xz_staged(store)?;
        }
        Ok(())
    }

    /// Decodes the piece gathered in the ring's upper half.
    #[cfg(feature = "xz")]
    fn xz_staged<S: Store>(&mut self, store: &mut S) -> Res<S::Error> {
        let k = self.xz_piece_len();
        let staged = core::mem::take(&mut self.staged);
        let (out, stage) = self.window.split_at_mut(k);
        let input = stage.get(..staged).unwrap_or(&[]);
        let part = self.part as u32;
        if xz_decode(
            self.xz.as_deref_mut(),
            out,
            &mut self.ops,
            store,
            input,
            false,
            part,
        )? {
            return Err(InstallError::PartTrailing { part });
        }
        Ok(())
    }

    /// Runs the LZMA2 decoder over `data` (a piece of the part, or of the container the
    /// installer wraps around it). Returns whether the xz stream ended.
    #[cfg(feature = "xz")]
    fn xz_run<S: Store>(
        &mut self,
        store: &mut S,
        data: &[u8],
    ) -> Result<bool, InstallError<S::Error>> {
        self.xz_run_drain(store, data, false)
    }

    /// As [`Installer::xz_run`]; with `drain`, also takes everything the decoder holds.
    #[cfg(feature = "xz")]
    fn xz_run_drain<S: Store>(
        &mut self,
        store: &mut S,
        data: &[u8],
        drain: bool,
    ) -> Result<bool, InstallError<S::Error>> {
        let k = self.xz_piece_len();
        let out = self.window.get_mut(..k).unwrap_or(&mut []);
        let part = self.part as u32;
        xz_decode(
            self.xz.as_deref_mut(),
            out,
            &mut self.ops,
            store,
            data,
            drain,
            part,
        )
    }

    /// All of xz part `p`'s bytes are in (and decoded): the container's end (block padding,
    /// index, footer) must end the stream.
    #[cfg(feature = "xz")]
    fn xz_end<S: Store>(&mut self, store: &mut S, p: &PartEntry) -> Res<S::Error> {
        let mut trailer = [0u8; xz::TRAILER_MAX];
        let n = xz::trailer(p.size, p.uncompressed_size, &mut trailer);
        if self.xz_run_drain(store, trailer.get(..n).unwrap_or(&[]), true)? {
            Ok(())
        } else {
            Err(InstallError::Lzma {
                part: self.part as u32,
            })
        }
    }

    /// All raw bytes of part `p` are in and decoded: check its hash and its declared sizes,
    /// then tell the store ([`Store::part_verified`]).
    fn close_part<S: Store>(&mut self, store: &mut S, p: PartEntry) -> Res<S::Error> {
        let found: [u8; 32] = self.part_hash.finalize_reset().into();
        if found != p.sha256 {
            self.part_check = PartHashing::Mismatch;
            return Err(InstallError::PartHash {
                part: self.part as u32,
            });
        }
        self.part_check = PartHashing::Idle;
        self.ops.end_part()?;
        store.part_verified().map_err(InstallError::Store)?;
        debug!("part {} verified", self.part);
        self.part += 1;
        Ok(())
    }
}

/// Runs the LZMA2 decoder over all of `data`, the decoded bytes going through `out` to the
/// records; with `drain`, then takes what the decoder still holds until it has nothing more
/// ([`XzDecode::decode`] without input). Returns whether the xz stream ended; bytes after its
/// end are an error.
#[cfg(feature = "xz")]
fn xz_decode<S: Store>(
    xz: Option<&mut XzDecoder<'_>>,
    out: &mut [u8],
    ops: &mut Ops,
    store: &mut S,
    mut data: &[u8],
    drain: bool,
    part: u32,
) -> Result<bool, InstallError<S::Error>> {
    // Never without one: the superblock's check refused xz parts then.
    let Some(xz) = xz else {
        return Err(InstallError::Lzma { part });
    };
    while !data.is_empty() || drain {
        let r = xz.decode(data, out).map_err(|e| match e {
            XzDecodeError::Trailing => InstallError::PartTrailing { part },
            _ => InstallError::Lzma { part },
        })?;
        let written = r.produced.min(out.len());
        ops.decoded(store, out.get(..written).unwrap_or(&[]))?;
        data = data.get(r.consumed..).unwrap_or(&[]);
        if r.end {
            return if data.is_empty() {
                Ok(true)
            } else {
                Err(InstallError::PartTrailing { part })
            };
        }
        if r.consumed == 0 && written == 0 {
            // Nothing more without input (a decoder that neither takes nor gives is stuck).
            return if data.is_empty() {
                Ok(false)
            } else {
                Err(InstallError::Lzma { part })
            };
        }
    }
    Ok(false)
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
fn prefix(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or("")
}

/// Checks the signature as `policy` says; returns whether it was verified against a trusted
/// key (false only for an unsigned file under [`Policy::allow_unsigned`]).
#[inline(never)]
fn check_signature<E>(
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
fn check_superblock<E>(
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

/// Why an install failed. Each variant says what and where; `E` is the store's error.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum InstallError<E> {
    /// The file's framing is wrong (header, superblock, unknown codes).
    Format(FormatError),
    /// An object's bytes are not a valid object of its kind.
    Object {
        /// The object's kind.
        kind: ObjectKind,
        /// Its id.
        id: ObjectId,
        /// What is wrong.
        error: ObjectError,
    },
    /// The file is not signed and the policy does not allow unsigned files.
    Unsigned,
    /// The signature verifies against none of the trusted keys.
    BadSignature,
    /// The file is signed and the policy lists no trusted key to verify it with.
    NoTrustedKeys,
    /// The file is signed by a key the policy revokes.
    RevokedKey {
        /// The revoked public key.
        key: [u8; PUBLIC_KEY_LEN],
    },
    /// The file's security version is below the device's anti-rollback floor.
    BelowFloor {
        /// The file's security version (0 for a format-version-1 file).
        security_version: u64,
        /// The lowest security version the device accepts.
        floor: u64,
    },
    /// The file is for a ref the device does not follow.
    RefNotFollowed {
        /// The file's ref, its first [`ERROR_REF_LEN`] bytes at most (cut at a character
        /// boundary), so that the error stays small.
        ref_name: heapless::String<ERROR_REF_LEN, u8>,
        /// Whether `ref_name` was cut.
        cut: bool,
    },
    /// A configured trusted key is not a valid ed25519 public key.
    BadTrustedKey {
        /// Its index in the policy's key list.
        index: usize,
    },
    /// A delta whose source commit is not in the store.
    MissingSource(ObjectId),
    /// An object the update references (a dirtree entry, a commit root, a reuse) is not in
    /// place.
    MissingObject {
        /// Its kind.
        kind: ObjectKind,
        /// Its id.
        id: ObjectId,
    },
    /// A dirtree would nest deeper than [`crate::object::MAX_TREE_DEPTH`] directories (refused
    /// at the entry that makes it so, before the dirtree reaches the store).
    TreeTooDeep {
        /// The dirtree being written.
        id: ObjectId,
        /// The depth it would have (its deepest subdirectory's depth plus one).
        depth: u16,
        /// The limit.
        max: u16,
    },
    /// The store cannot tell how deep a dirtree it holds is, so the depth limit cannot be
    /// checked ([`Store::tree_depth`] answered `None`).
    TreeDepthUnknown {
        /// The dirtree whose depth is unknown.
        id: ObjectId,
    },
    /// A patch record's source object is not in the store.
    PatchSourceMissing {
        /// The kind of both objects.
        kind: ObjectKind,
        /// The object the patch builds.
        id: ObjectId,
        /// The source it reads.
        source: ObjectId,
    },
    /// A patch record's source object is in the store but its bytes do not hash to its id.
    PatchSourceDamaged {
        /// Its kind.
        kind: ObjectKind,
        /// The source object's id.
        source: ObjectId,
        /// The SHA-256 of the bytes the store holds.
        found: ObjectId,
    },
    /// A patch control reads outside its source object.
    PatchRange {
        /// The kind of the object being built.
        kind: ObjectKind,
        /// The object being built.
        id: ObjectId,
        /// Source offset of the read (negative after a seek before the start).
        offset: i64,
        /// Bytes it reads.
        len: u64,
        /// Bytes of the source object.
        source_len: u64,
    },
    /// A patch control produces more bytes than the record's length.
    PatchOverrun {
        /// The kind of the object being built.
        kind: ObjectKind,
        /// The object being built.
        id: ObjectId,
        /// The record's length.
        len: u64,
        /// Bytes built before the control.
        at: u64,
    },
    /// A patch record names a commit (commits are always written).
    PatchCommit {
        /// Its id.
        id: ObjectId,
    },
    /// An object's bytes do not hash to its id.
    ObjectHash {
        /// The object's kind.
        kind: ObjectKind,
        /// The id the record names.
        expected: ObjectId,
        /// The SHA-256 of the bytes received.
        found: ObjectId,
    },
    /// An object's declared length does not fit in what is left of its part.
    ObjectTooLong {
        /// The object's kind.
        kind: ObjectKind,
        /// Its id.
        id: ObjectId,
        /// Its declared length.
        len: u64,
        /// Bytes left in the part.
        room: u64,
    },
    /// A part's bytes do not hash to the SHA-256 in the superblock.
    PartHash {
        /// Which part.
        part: u32,
    },
    /// A part decodes to fewer bytes than the superblock declares.
    PartSize {
        /// Which part.
        part: u32,
        /// Declared decoded size.
        declared: u32,
        /// Bytes it decoded to.
        found: u64,
    },
    /// A part decodes to more bytes than the superblock declares.
    PartOverrun {
        /// Which part.
        part: u32,
        /// Declared decoded size.
        declared: u32,
    },
    /// A part's deflate stream ends before the part's bytes do.
    PartTrailing {
        /// Which part.
        part: u32,
    },
    /// A part's deflate stream is invalid or ends early.
    Inflate {
        /// Which part.
        part: u32,
    },
    /// An xz part's LZMA2 stream is invalid, ends early, or does not end at the part's end.
    Lzma {
        /// Which part.
        part: u32,
    },
    /// The file's parts need a larger window or dictionary than the caller lent the
    /// installer (refused before anything reaches the store).
    DictionaryTooLarge {
        /// Bytes the file needs (a deflate window, or an LZMA2 dictionary).
        needed: u32,
        /// Bytes lent for it (4 GiB or more count as `u32::MAX`).
        lent: u32,
    },
    /// The file's header and superblock do not fit in the window lent to the installer.
    WindowTooSmall {
        /// Bytes of header and superblock.
        needed: u32,
        /// Bytes lent (the part of the window that holds them: at most 32 KiB).
        lent: u32,
    },
    /// A part ends inside an operation record.
    PartEndsInsideOp {
        /// Which part.
        part: u32,
    },
    /// A part holds another number of operations than the superblock declares.
    OpCount {
        /// Which part.
        part: u32,
        /// Declared.
        declared: u32,
        /// Found (when more, the count at the first one too many).
        found: u32,
    },
    /// The file holds another number of operations than the superblock declares.
    ObjectCount {
        /// Declared.
        declared: u32,
        /// Found (when more, the count at the first one too many).
        found: u32,
    },
    /// The commit object is not the last operation of the last part.
    CommitNotLast {
        /// Its id.
        id: ObjectId,
    },
    /// The file writes a commit other than the one its superblock names.
    CommitNotTarget {
        /// The superblock's target.
        expected: ObjectId,
        /// The commit written.
        found: ObjectId,
    },
    /// A reuse operation names a commit (commits are always written).
    ReuseCommit {
        /// Its id.
        id: ObjectId,
    },
    /// The file ends without writing its commit object.
    NoCommit,
    /// The superblock's security version is not the commit object's.
    SecurityVersionMismatch {
        /// The superblock's security version (0 for a format-version-1 file).
        superblock: u64,
        /// The commit's security version (0 when it carries none).
        commit: u64,
    },
    /// The superblock's timestamp is not the commit object's.
    MetaMismatch {
        /// The superblock's timestamp.
        superblock: u64,
        /// The commit's timestamp.
        commit: u64,
    },
    /// The input ended before the file did.
    Truncated {
        /// The file's length, once the superblock was read.
        expected: Option<u64>,
        /// Bytes received.
        got: u64,
    },
    /// Bytes after the end of the file.
    TrailingData {
        /// Offset of the first extra byte.
        offset: u64,
    },
    /// The installer already failed; [`Installer::reset`] it to start again.
    Failed,
    /// The store failed.
    Store(E),
}

impl<E: fmt::Display> fmt::Display for InstallError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use InstallError as I;
        match self {
            I::Format(e) => fmt::Display::fmt(e, f),
            I::Object { kind, id, error } => write!(f, "{kind} object {id} is malformed: {error}"),
            I::Unsigned => f.write_str(
                "the update is not signed and this device only accepts signed updates; sign it with a trusted key",
            ),
            I::BadSignature => f.write_str(
                "the update's signature does not verify against any trusted key: it was signed with another key or altered",
            ),
            I::NoTrustedKeys => f.write_str(
                "the update is signed but no trusted key is configured to verify it; configure the signer's public key as trusted",
            ),
            I::RevokedKey { key } => write!(
                f,
                "the update is signed by key {}…, which this device has revoked; ask for an update signed with a current key",
                HexPrefix(key)
            ),
            I::BelowFloor { security_version, floor } => write!(
                f,
                "the update's security version {security_version} is below this device's floor {floor}; an update at security version {floor} or later is needed"
            ),
            I::RefNotFollowed { ref_name, cut } => write!(
                f,
                "the update is for ref {:?}{}, which this device does not follow; use an update for a ref it follows",
                ref_name.as_str(),
                if *cut { " (cut)" } else { "" }
            ),
            I::BadTrustedKey { index } => write!(f, "trusted key {index} is not a valid ed25519 public key"),
            I::MissingSource(id) => write!(f, "commit {id}, the source of this delta, is not in the store"),
            I::MissingObject { kind, id } => {
                write!(f, "{kind} object {id}, which the update references, is not in the store")
            }
            I::TreeTooDeep { id, depth, max } => write!(
                f,
                "dirtree {id} nests {depth} directories deep, deeper than the {max} this device accepts; flatten the image's tree"
            ),
            I::TreeDepthUnknown { id } => write!(
                f,
                "the store cannot tell how deep dirtree {id} is, so the depth limit cannot be checked; the store must implement tree_depth"
            ),
            I::PatchSourceMissing { kind, id, source } => write!(
                f,
                "{kind} object {id} is a patch of {kind} object {source}, which is not in the store; install a from-scratch update"
            ),
            I::PatchSourceDamaged { kind, source, found } => write!(
                f,
                "{kind} object {source}, the source of a patch, is damaged in the store (its bytes hash to {found}); install a from-scratch update"
            ),
            I::PatchRange { kind, id, offset, len, source_len } => write!(
                f,
                "the patch of {kind} object {id} reads {len} bytes at offset {offset} of a source of {source_len} bytes"
            ),
            I::PatchOverrun { kind, id, len, at } => write!(
                f,
                "the patch of {kind} object {id} builds more than its {len} bytes (a control at byte {at} goes past the end)"
            ),
            I::PatchCommit { id } => write!(f, "the update patches commit object {id}; a commit must be written"),
            I::ObjectHash { kind, expected, found } => {
                write!(f, "{kind} object {expected} is corrupt: its bytes hash to {found}")
            }
            I::ObjectTooLong { kind, id, len, room } => write!(
                f,
                "{kind} object {id} declares {len} bytes but only {room} are left in its part"
            ),
            I::PartHash { part } => write!(
                f,
                "the file is damaged: part {part} does not hash to the SHA-256 its superblock gives; get the file again"
            ),
            I::PartSize { part, declared, found } => {
                write!(f, "part {part} decodes to {found} bytes, the superblock declares {declared}")
            }
            I::PartOverrun { part, declared } => {
                write!(f, "part {part} decodes to more than the {declared} bytes the superblock declares")
            }
            I::PartTrailing { part } => write!(f, "part {part} has bytes after the end of its deflate stream"),
            I::Inflate { part } => write!(f, "part {part} is not a valid deflate stream (corrupt or cut short)"),
            I::Lzma { part } => write!(f, "part {part} is not a valid LZMA2 stream (corrupt, cut short or with bytes after its end)"),
            I::DictionaryTooLarge { needed, lent } => match dictionary_at_most(u64::from(*lent)) {
                Some(fits) => write!(
                    f,
                    "the update needs a {needed}-byte dictionary but this device lends {lent} bytes; ask for an update generated with --max-dictionary {fits}"
                ),
                None => write!(
                    f,
                    "the update needs a {needed}-byte dictionary but this device lends {lent} bytes, too little for any compressed update; lend more or ask for an uncompressed one"
                ),
            },
            I::WindowTooSmall { needed, lent } => write!(
                f,
                "the update's header and superblock take {needed} bytes but this device lends a {lent}-byte window; lend a larger window or ask for an update with fewer parts"
            ),
            I::PartEndsInsideOp { part } => write!(f, "part {part} ends inside an operation record"),
            I::OpCount { part, declared, found } if found > declared => {
                write!(f, "part {part} holds more than the {declared} operations the superblock declares")
            }
            I::OpCount { part, declared, found } => {
                write!(f, "part {part} holds {found} operations, the superblock declares {declared}")
            }
            I::ObjectCount { declared, found } if found > declared => {
                write!(f, "the update holds more than the {declared} operations its superblock declares")
            }
            I::ObjectCount { declared, found } => {
                write!(f, "the update holds {found} operations, its superblock declares {declared}")
            }
            I::CommitNotLast { id } => {
                write!(f, "commit object {id} is not the last operation of the last part")
            }
            I::CommitNotTarget { expected, found } => {
                write!(f, "the update writes commit {found}, but its superblock names {expected}")
            }
            I::ReuseCommit { id } => write!(f, "the update reuses commit object {id}; a commit must be written"),
            I::NoCommit => f.write_str("the update ends without its commit object"),
            I::SecurityVersionMismatch { superblock, commit } => write!(
                f,
                "the superblock's security version {superblock} differs from the commit's {commit}; the file was built wrongly, rebuild it"
            ),
            I::MetaMismatch { superblock, commit } => write!(
                f,
                "the superblock's timestamp {superblock} differs from the commit's {commit}"
            ),
            I::Truncated { expected: Some(n), got } => {
                write!(f, "the update is truncated: {got} of {n} bytes received")
            }
            I::Truncated { expected: None, got } => {
                write!(f, "the update is truncated: it ends after {got} bytes, inside its header or signature")
            }
            I::TrailingData { offset } => {
                write!(f, "the update has extra bytes after its end, from offset {offset}")
            }
            I::Failed => f.write_str("this install already failed; reset the installer to start again"),
            I::Store(e) => write!(f, "the store failed: {e}"),
        }
    }
}

impl<E: fmt::Debug + fmt::Display> core::error::Error for InstallError<E> {}

/// The first 8 bytes of a key in hex, enough to tell keys apart in a message.
struct HexPrefix<'a>(&'a [u8; PUBLIC_KEY_LEN]);

impl fmt::Display for HexPrefix<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0.iter().take(8) {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl<E> From<FormatError> for InstallError<E> {
    fn from(e: FormatError) -> Self {
        InstallError::Format(e)
    }
}

#[cfg(test)]
mod test {
    extern crate std;

    use std::vec;
    use std::vec::Vec;

    use super::*;
    use crate::object::{self, Commit, DirEntry, DirMeta, Xattrs, S_IFDIR};
    use crate::wire::{OpRepr, Superblock, TargetMeta};

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

    #[test]
    fn size_is_within_budget() {
        assert!(core::mem::size_of::<Installer<'static>>() <= INSTALLER_SIZE_BUDGET);
        assert_eq!(INFLATE_WINDOW, 32 * 1024);
    }
}
