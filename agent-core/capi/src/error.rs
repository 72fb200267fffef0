//! Error codes of the C API, their stable messages, and the detailed message of the last
//! failure (the Rust error's `Display`, with its numbers).

use core::ffi::CStr;
use core::fmt::{self, Write};

use agent_core::store::flash::FlashStoreError;
use agent_core::InstallError;
use bootloader_hooks::StateError;

/// Success.
pub const ECU_UPDATE_OK: i32 = 0;
/// A pointer argument is NULL, or a number is out of range (a slot other than 0 or 1, a
/// length too short).
pub const ECU_UPDATE_E_ARGUMENT: i32 = -1;
/// The memory lent to `ecu_update_init` is smaller than `ECU_UPDATE_MEM_SIZE` or not aligned
/// to `ECU_UPDATE_MEM_ALIGN`.
pub const ECU_UPDATE_E_MEMORY: i32 = -2;
/// The call needs a store and none is set (`ecu_update_use_store`, `ecu_update_use_flash`),
/// or a flash call was made on a callback store.
pub const ECU_UPDATE_E_NO_STORE: i32 = -3;
/// A required callback of `struct ecu_update_store_ops` or `struct ecu_flash_driver` is
/// NULL.
pub const ECU_UPDATE_E_CALLBACK: i32 = -4;
/// The update file's framing is wrong (header, superblock, unknown codes).
pub const ECU_UPDATE_E_FORMAT: i32 = -10;
/// An object in the update is malformed or does not hash to its id.
pub const ECU_UPDATE_E_OBJECT: i32 = -11;
/// The update is not signed and the policy requires signatures.
pub const ECU_UPDATE_E_UNSIGNED: i32 = -12;
/// The signature verifies against none of the trusted keys.
pub const ECU_UPDATE_E_SIGNATURE: i32 = -13;
/// The update is signed and no trusted key is set.
pub const ECU_UPDATE_E_NO_TRUSTED_KEYS: i32 = -14;
/// The update is signed by a revoked key.
pub const ECU_UPDATE_E_REVOKED_KEY: i32 = -15;
/// The update's security version is below the anti-rollback floor.
pub const ECU_UPDATE_E_BELOW_FLOOR: i32 = -16;
/// The update is for a ref the device does not follow.
pub const ECU_UPDATE_E_REF: i32 = -17;
/// A trusted key of the policy is not a valid ed25519 public key.
pub const ECU_UPDATE_E_BAD_KEY: i32 = -18;
/// The update is a delta whose source commit is not in the store.
pub const ECU_UPDATE_E_MISSING_SOURCE: i32 = -19;
/// An object the update references, or the source of a patch record, is not in the store.
pub const ECU_UPDATE_E_MISSING_OBJECT: i32 = -20;
/// A directory tree nests too deep, or the store cannot tell how deep it is.
pub const ECU_UPDATE_E_TREE_DEPTH: i32 = -21;
/// A part of the update is corrupt (hash, size, deflate stream, operation records).
pub const ECU_UPDATE_E_PART: i32 = -22;
/// The update's operations or commit do not match what its superblock declares.
pub const ECU_UPDATE_E_CONTENT: i32 = -23;
/// The input ended before the update did (`ecu_update_finish` too early).
pub const ECU_UPDATE_E_TRUNCATED: i32 = -24;
/// Bytes were fed after the end of the update.
pub const ECU_UPDATE_E_TRAILING: i32 = -25;
/// The install already failed or was aborted; `ecu_update_reset` starts a new one.
pub const ECU_UPDATE_E_FAILED: i32 = -26;
/// A store callback returned non-zero (`ecu_update_store_code` gives its code).
pub const ECU_UPDATE_E_STORE: i32 = -30;
/// A flash driver callback returned non-zero (`ecu_update_store_code` gives its code).
pub const ECU_UPDATE_E_FLASH: i32 = -31;
/// The flash layout or the driver's geometry does not suit the flash store.
pub const ECU_UPDATE_E_LAYOUT: i32 = -32;
/// The update does not fit in a flash slot.
pub const ECU_UPDATE_E_NO_SPACE: i32 = -33;
/// A flash slot's contents are corrupt, bytes read back after writing differ, or a patch's
/// source object in the store does not hash to its id.
pub const ECU_UPDATE_E_CORRUPT: i32 = -34;
/// The commit has no `firmware.bin` at its root, so there is no image to boot.
pub const ECU_UPDATE_E_NO_IMAGE: i32 = -35;
/// Neither copy of the boot record is valid.
pub const ECU_UPDATE_E_NO_BOOT_STATE: i32 = -40;
/// The boot-state change is not allowed (tries out of range, no slot to fall back to).
pub const ECU_UPDATE_E_BOOT_STATE: i32 = -41;
/// A failure this version of the library has no specific code for.
pub const ECU_UPDATE_E_OTHER: i32 = -98;
/// The library panicked (a bug); the handle must be initialised again. Only on hosted
/// targets, where panics are caught at the boundary.
pub const ECU_UPDATE_E_PANIC: i32 = -99;

/// The stable message of a code (never changes between versions for the same code).
pub fn strerror(code: i32) -> &'static CStr {
    match code {
        ECU_UPDATE_OK => c"success",
        ECU_UPDATE_E_ARGUMENT => c"invalid argument (NULL pointer or value out of range)",
        ECU_UPDATE_E_MEMORY => c"the lent memory is too small or misaligned",
        ECU_UPDATE_E_NO_STORE => c"no suitable store is set for this call",
        ECU_UPDATE_E_CALLBACK => c"a required callback is NULL",
        ECU_UPDATE_E_FORMAT => c"the update file is malformed",
        ECU_UPDATE_E_OBJECT => c"an object in the update is malformed or corrupt",
        ECU_UPDATE_E_UNSIGNED => c"the update is not signed",
        ECU_UPDATE_E_SIGNATURE => c"the update's signature does not verify",
        ECU_UPDATE_E_NO_TRUSTED_KEYS => c"no trusted key is set",
        ECU_UPDATE_E_REVOKED_KEY => c"the update is signed by a revoked key",
        ECU_UPDATE_E_BELOW_FLOOR => c"the update is below the anti-rollback floor",
        ECU_UPDATE_E_REF => c"the update is for a ref this device does not follow",
        ECU_UPDATE_E_BAD_KEY => c"a trusted key is not a valid ed25519 public key",
        ECU_UPDATE_E_MISSING_SOURCE => c"the source commit of this delta is not installed",
        ECU_UPDATE_E_MISSING_OBJECT => c"an object the update references is missing",
        ECU_UPDATE_E_TREE_DEPTH => c"a directory tree is too deep",
        ECU_UPDATE_E_PART => c"a part of the update is corrupt",
        ECU_UPDATE_E_CONTENT => c"the update's content does not match its superblock",
        ECU_UPDATE_E_TRUNCATED => c"the update is truncated",
        ECU_UPDATE_E_TRAILING => c"extra bytes after the end of the update",
        ECU_UPDATE_E_FAILED => c"the install already failed; reset to start again",
        ECU_UPDATE_E_STORE => c"a store callback failed",
        ECU_UPDATE_E_FLASH => c"the flash driver failed",
        ECU_UPDATE_E_LAYOUT => c"the flash layout does not suit the flash store",
        ECU_UPDATE_E_NO_SPACE => c"the update does not fit in a flash slot",
        ECU_UPDATE_E_CORRUPT => c"flash contents are corrupt",
        ECU_UPDATE_E_NO_IMAGE => c"the commit has no firmware.bin image",
        ECU_UPDATE_E_NO_BOOT_STATE => c"no valid boot record copy",
        ECU_UPDATE_E_BOOT_STATE => c"the boot-state change is not allowed",
        ECU_UPDATE_E_OTHER => c"the update failed",
        ECU_UPDATE_E_PANIC => c"internal error (panic); initialise the handle again",
        _ => c"unknown error code",
    }
}

/// A flash driver's non-zero return code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DriverError(pub i32);

impl embedded_storage::nor_flash::NorFlashError for DriverError {
    fn kind(&self) -> embedded_storage::nor_flash::NorFlashErrorKind {
        embedded_storage::nor_flash::NorFlashErrorKind::Other
    }
}

/// Why a store failed: a callback's code, or the flash store's error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreFail {
    /// A store callback returned non-zero.
    Callback {
        /// The callback's name in `struct ecu_update_store_ops`.
        call: &'static str,
        /// What it returned.
        code: i32,
    },
    /// A store callback reported more bytes than its buffer holds.
    TooManyBytes {
        /// The callback's name.
        call: &'static str,
        /// What it reported.
        read: usize,
        /// The buffer's length.
        len: usize,
    },
    /// The flash store failed.
    Flash(FlashStoreError<DriverError>),
    /// No store is set.
    NoStore,
}

impl fmt::Display for StoreFail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreFail::Callback { call, code } => {
                write!(f, "the store callback {call} failed with code {code}")
            }
            StoreFail::TooManyBytes { call, read, len } => write!(
                f,
                "the store callback {call} reported {read} bytes read into a {len}-byte buffer; fix the callback"
            ),
            StoreFail::Flash(FlashStoreError::Flash(DriverError(code))) => write!(
                f,
                "the flash driver failed with code {code}; check the device and its driver"
            ),
            StoreFail::Flash(e) => fmt::Display::fmt(e, f),
            StoreFail::NoStore => f.write_str(
                "no store is set; call ecu_update_use_store or ecu_update_use_flash first",
            ),
        }
    }
}

impl StoreFail {
    /// The C code of this failure.
    pub fn code(&self) -> i32 {
        match self {
            StoreFail::Callback { .. } | StoreFail::TooManyBytes { .. } => ECU_UPDATE_E_STORE,
            StoreFail::NoStore => ECU_UPDATE_E_NO_STORE,
            StoreFail::Flash(e) => match e {
                FlashStoreError::Flash(_) => ECU_UPDATE_E_FLASH,
                FlashStoreError::Layout(_) => ECU_UPDATE_E_LAYOUT,
                FlashStoreError::NoSpace { .. }
                | FlashStoreError::SlotTooSmall { .. }
                | FlashStoreError::TooLarge { .. } => ECU_UPDATE_E_NO_SPACE,
                FlashStoreError::Corrupted { .. } | FlashStoreError::Verify { .. } => {
                    ECU_UPDATE_E_CORRUPT
                }
                FlashStoreError::TreeTooDeep => ECU_UPDATE_E_TREE_DEPTH,
                FlashStoreError::MissingCommit(_) => ECU_UPDATE_E_MISSING_OBJECT,
                FlashStoreError::NoImage => ECU_UPDATE_E_NO_IMAGE,
                _ => ECU_UPDATE_E_OTHER,
            },
        }
    }

    /// The callback's or the driver's own code, 0 when the failure is not theirs.
    pub fn store_code(&self) -> i32 {
        match self {
            StoreFail::Callback { code, .. } => *code,
            StoreFail::Flash(FlashStoreError::Flash(DriverError(code))) => *code,
            _ => 0,
        }
    }
}

/// The C code of an install error.
pub fn install_code(e: &InstallError<StoreFail>) -> i32 {
    use InstallError as I;
    match e {
        I::Format(_) => ECU_UPDATE_E_FORMAT,
        I::Object { .. } | I::ObjectHash { .. } | I::ObjectTooLong { .. } => ECU_UPDATE_E_OBJECT,
        I::Unsigned => ECU_UPDATE_E_UNSIGNED,
        I::BadSignature => ECU_UPDATE_E_SIGNATURE,
        I::NoTrustedKeys => ECU_UPDATE_E_NO_TRUSTED_KEYS,
        I::RevokedKey { .. } => ECU_UPDATE_E_REVOKED_KEY,
        I::BelowFloor { .. } => ECU_UPDATE_E_BELOW_FLOOR,
        I::RefNotFollowed { .. } => ECU_UPDATE_E_REF,
        I::BadTrustedKey { .. } => ECU_UPDATE_E_BAD_KEY,
        I::MissingSource(_) => ECU_UPDATE_E_MISSING_SOURCE,
        I::MissingObject { .. } | I::PatchSourceMissing { .. } | I::EntriesSourceMissing { .. } => {
            ECU_UPDATE_E_MISSING_OBJECT
        }
        I::PatchSourceDamaged { .. } => ECU_UPDATE_E_CORRUPT,
        I::PatchRange { .. } | I::PatchOverrun { .. } => ECU_UPDATE_E_OBJECT,
        I::PatchCommit { .. } => ECU_UPDATE_E_CONTENT,
        // A firmware's installer has no deflate encoder: a redeflate record is `Format`
        // (unknown operation 4) there; these come from a build with the feature unified in.
        I::RedeflateNotFile { .. } | I::RedeflateLength { .. } => ECU_UPDATE_E_OBJECT,
        I::TreeTooDeep { .. } | I::TreeDepthUnknown { .. } => ECU_UPDATE_E_TREE_DEPTH,
        I::PartHash { .. }
        | I::PartSize { .. }
        | I::PartOverrun { .. }
        | I::PartTrailing { .. }
        | I::Inflate { .. }
        | I::PartEndsInsideOp { .. }
        | I::OpCount { .. } => ECU_UPDATE_E_PART,
        I::ObjectCount { .. }
        | I::CommitNotLast { .. }
        | I::CommitNotTarget { .. }
        | I::ReuseCommit { .. }
        | I::EntriesBitmap { .. }
        | I::NoCommit
        | I::SecurityVersionMismatch { .. }
        | I::MetaMismatch { .. } => ECU_UPDATE_E_CONTENT,
        I::Truncated { .. } => ECU_UPDATE_E_TRUNCATED,
        I::TrailingData { .. } => ECU_UPDATE_E_TRAILING,
        I::Failed => ECU_UPDATE_E_FAILED,
        I::Store(s) => s.code(),
        _ => ECU_UPDATE_E_OTHER,
    }
}

/// The last failure of a handle, kept for `ecu_update_message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Last {
    /// The last call succeeded.
    None,
    /// The installer failed.
    Install(InstallError<StoreFail>),
    /// A store call outside an install (flash set-up, slot reads) failed.
    Store(StoreFail),
    /// The lent memory does not suit.
    Memory {
        /// Its address.
        addr: usize,
        /// Its length.
        len: usize,
    },
    /// An argument is wrong: what.
    Argument(&'static str),
    /// A required callback is NULL: which.
    Callback(&'static str),
    /// The boot record has no valid copy.
    NoBootState,
    /// A boot-state change was refused.
    BootState(StateError),
    /// A panic was caught at the boundary.
    Panic,
}

impl Last {
    /// The C code of this failure.
    pub fn code(&self) -> i32 {
        match self {
            Last::None => ECU_UPDATE_OK,
            Last::Install(e) => install_code(e),
            Last::Store(s) => s.code(),
            Last::Memory { .. } => ECU_UPDATE_E_MEMORY,
            Last::Argument(_) => ECU_UPDATE_E_ARGUMENT,
            Last::Callback(_) => ECU_UPDATE_E_CALLBACK,
            Last::NoBootState => ECU_UPDATE_E_NO_BOOT_STATE,
            Last::BootState(_) => ECU_UPDATE_E_BOOT_STATE,
            Last::Panic => ECU_UPDATE_E_PANIC,
        }
    }

    /// The store's or driver's own code, 0 when the failure is not theirs.
    pub fn store_code(&self) -> i32 {
        match self {
            Last::Install(InstallError::Store(s)) | Last::Store(s) => s.store_code(),
            _ => 0,
        }
    }
}

impl fmt::Display for Last {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Last::None => f.write_str("success"),
            Last::Install(InstallError::Store(s)) => fmt::Display::fmt(s, f),
            Last::Install(e) => fmt::Display::fmt(e, f),
            Last::Store(s) => fmt::Display::fmt(s, f),
            Last::Memory { addr, len } => write!(
                f,
                "the lent memory at {addr:#x} holds {len} bytes; it needs {} bytes aligned to {}",
                crate::ECU_UPDATE_MEM_SIZE,
                crate::ECU_UPDATE_MEM_ALIGN
            ),
            Last::Argument(what) => write!(f, "invalid argument: {what}"),
            Last::Callback(which) => write!(f, "the required callback {which} is NULL"),
            Last::NoBootState => f.write_str(
                "neither copy of the boot record is valid; write an initial record (ecu_update_boot_initial)",
            ),
            Last::BootState(e) => fmt::Display::fmt(e, f),
            Last::Panic => f.write_str(
                "the library panicked (a bug, please report it); initialise the handle again",
            ),
        }
    }
}

/// Writes `what`'s text into `buf` as a NUL-terminated string, cut to fit; returns the length
/// of the whole text (without NUL), as `snprintf` does.
pub fn write_message(what: &dyn fmt::Display, buf: &mut [u8]) -> usize {
    struct Cut<'a> {
        buf: &'a mut [u8],
        at: usize,
        total: usize,
    }
    impl Write for Cut<'_> {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            for &b in s.as_bytes() {
                if self.at + 1 < self.buf.len() {
                    self.buf[self.at] = b;
                    self.at += 1;
                }
                self.total += 1;
            }
            Ok(())
        }
    }
    let mut w = Cut {
        buf,
        at: 0,
        total: 0,
    };
    let _ = write!(w, "{what}");
    if let Some(end) = w.buf.get_mut(w.at) {
        *end = 0;
    }
    w.total
}
