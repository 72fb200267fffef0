//! The C structs of `ecu_update.h`: all `#[repr(C)]`, defined here for the C API only (no
//! Rust type of agent-core crosses the boundary).

use core::ffi::{c_char, c_void};

/// Bytes of an object id (SHA-256).
pub const ECU_UPDATE_ID_LEN: usize = 32;
/// Bytes of an ed25519 public key.
pub const ECU_UPDATE_KEY_LEN: usize = 32;
/// Bytes of a checkpoint (`ecu_update_resume`, the store's `checkpoint` callback).
pub const ECU_UPDATE_CHECKPOINT_LEN: usize = 96;
/// Bytes of `struct ecu_update_installed`'s `ref_name`, NUL included (a ref is at most 255
/// bytes).
pub const ECU_UPDATE_REF_CAP: usize = 256;
/// Bytes of one boot record copy (`ecu_boot_state.h`'s `ECU_BOOT_RECORD_LEN`).
pub const ECU_UPDATE_BOOT_RECORD_LEN: usize = 304;

/// Object kinds, as the store callbacks receive them.
pub const ECU_UPDATE_KIND_FILE: u8 = 1;
/// A directory listing.
pub const ECU_UPDATE_KIND_DIRTREE: u8 = 2;
/// A directory's metadata.
pub const ECU_UPDATE_KIND_DIRMETA: u8 = 3;
/// A commit.
pub const ECU_UPDATE_KIND_COMMIT: u8 = 4;

/// Flash slot A.
pub const ECU_UPDATE_SLOT_A: u8 = 0;
/// Flash slot B.
pub const ECU_UPDATE_SLOT_B: u8 = 1;

/// What the device accepts. The key arrays are borrowed, not copied: they must stay valid
/// and unchanged until the next `ecu_update_set_policy` or until the handle is no longer
/// used (a `static const` array is the usual choice).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct EcuUpdatePolicy {
    /// `trusted_count` ed25519 public keys of `ECU_UPDATE_KEY_LEN` bytes each, one after the
    /// other; a signed update installs only when one of them verifies it. May be NULL when
    /// `trusted_count` is 0.
    pub trusted_keys: *const u8,
    /// Number of trusted keys.
    pub trusted_count: usize,
    /// `revoked_count` keys whose signatures are refused even when also trusted. May be NULL
    /// when `revoked_count` is 0.
    pub revoked_keys: *const u8,
    /// Number of revoked keys.
    pub revoked_count: usize,
    /// The anti-rollback floor: updates with a lower security version are refused.
    pub min_security_version: u64,
    /// Non-zero to accept unsigned updates too (a signed update is still verified).
    pub allow_unsigned: bool,
}

/// How far an install has come.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EcuUpdateProgress {
    /// Bytes of the file consumed so far.
    pub bytes: u64,
    /// Bytes of the whole file; 0 until the signature and superblock are verified.
    pub bytes_total: u64,
    /// When resuming: the file offset of the first byte still needed (0 otherwise).
    pub resume_offset: u64,
    /// Objects written and verified, or reused.
    pub objects: u32,
    /// Objects the file declares (0 until the superblock is verified).
    pub objects_total: u32,
    /// Parts completed and verified.
    pub parts: u32,
    /// Parts in the file (0 until the superblock is verified).
    pub parts_total: u32,
    /// Everything is verified: call `ecu_update_finish`. More bytes are an error.
    pub done: bool,
}

/// What `ecu_update_finish` installed.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct EcuUpdateInstalled {
    /// The commit recorded on the ref.
    pub commit: [u8; ECU_UPDATE_ID_LEN],
    /// The source commit of a delta (all zero for a from-scratch update).
    pub from: [u8; ECU_UPDATE_ID_LEN],
    /// The commit's security version: raise the anti-rollback floor to it once the new
    /// image has booted and been marked good, not before.
    pub security_version: u64,
    /// Whether the update was a delta (`from` is meaningful).
    pub is_delta: bool,
    /// The ref, NUL-terminated.
    pub ref_name: [c_char; ECU_UPDATE_REF_CAP],
}

/// A store implemented in C: the installer calls these on the thread that called
/// `ecu_update_feed` / `ecu_update_finish` / `ecu_update_abort`, never concurrently, with
/// `ctx` as given to `ecu_update_use_store`. Every callback that returns `int32_t` returns 0
/// on success and any other value on failure (the install then fails with
/// `ECU_UPDATE_E_STORE` and `ecu_update_store_code` returns that value). Ids are
/// `ECU_UPDATE_ID_LEN` bytes, valid only during the call. The calling sequence is agent-core's
/// `Store` trait (docs/C-API.md).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct EcuUpdateStoreOps {
    /// Required. Sets `*out` to whether the complete commit `id` is installed (a delta's
    /// source must be).
    pub has_commit:
        Option<unsafe extern "C" fn(ctx: *mut c_void, id: *const u8, out: *mut bool) -> i32>,
    /// Required. Sets `*out` to whether object `id` of `kind` is in place for the commit being
    /// installed.
    pub has_object: Option<
        unsafe extern "C" fn(ctx: *mut c_void, kind: u8, id: *const u8, out: *mut bool) -> i32,
    >,
    /// Required. Starts object `id` of `kind`, `len` bytes long; its bytes follow through
    /// `write_object`.
    pub begin_object:
        Option<unsafe extern "C" fn(ctx: *mut c_void, kind: u8, id: *const u8, len: u64) -> i32>,
    /// Required. The next `len` bytes of the object begun last (`data` valid during the
    /// call only).
    pub write_object:
        Option<unsafe extern "C" fn(ctx: *mut c_void, data: *const u8, len: usize) -> i32>,
    /// Required. The object begun last was written whole and its SHA-256 matched: keep it.
    pub finish_object: Option<unsafe extern "C" fn(ctx: *mut c_void) -> i32>,
    /// Required. The object begun last failed verification or the install stopped: drop it.
    pub abort_object: Option<unsafe extern "C" fn(ctx: *mut c_void)>,
    /// Required. Puts in place an object the installed source commit has (a dirtree with
    /// everything under it); `*found` = false when the store does not have it.
    pub reuse_object: Option<
        unsafe extern "C" fn(ctx: *mut c_void, kind: u8, id: *const u8, found: *mut bool) -> i32,
    >,
    /// Required. Everything checked out: record commit `id` on the ref (`ref_name`,
    /// `ref_len` bytes, not NUL-terminated) as installed, atomically.
    pub commit: Option<
        unsafe extern "C" fn(
            ctx: *mut c_void,
            ref_name: *const c_char,
            ref_len: usize,
            id: *const u8,
        ) -> i32,
    >,
    /// Required. The install failed or was abandoned: drop what it staged.
    pub abort: Option<unsafe extern "C" fn(ctx: *mut c_void)>,
    /// Optional (NULL: no privilege step). The objects finished since the previous call
    /// belong to a part whose hash matched: only now may they get privileged modes.
    pub part_verified: Option<unsafe extern "C" fn(ctx: *mut c_void) -> i32>,
    /// Optional (NULL: nested directories are refused). Sets `*depth` to the depth of dirtree
    /// `id` (0 when it names no subdirectory) and `*known` to true, or `*known` to false when
    /// the store cannot tell.
    pub tree_depth: Option<
        unsafe extern "C" fn(
            ctx: *mut c_void,
            id: *const u8,
            depth: *mut u16,
            known: *mut bool,
        ) -> i32,
    >,
    /// Optional (NULL: accept). What the verified update declares before anything is
    /// written: `records` bytes of operation records, `ops` operations. Return non-zero to
    /// refuse an update that cannot fit.
    pub declared: Option<unsafe extern "C" fn(ctx: *mut c_void, records: u64, ops: u32) -> i32>,
    /// Optional (NULL: installs always start over). Record the `ECU_UPDATE_CHECKPOINT_LEN`
    /// bytes durably, after making the finished objects durable.
    pub checkpoint: Option<unsafe extern "C" fn(ctx: *mut c_void, checkpoint: *const u8) -> i32>,
    /// Optional (NULL: start over). Sets `*resumed` to whether the objects of the parts before
    /// `checkpoint` are still in place.
    pub resume: Option<
        unsafe extern "C" fn(ctx: *mut c_void, checkpoint: *const u8, resumed: *mut bool) -> i32,
    >,
    /// Optional (NULL: the store holds no source, so patch records are refused as a missing
    /// source). Reads bytes of object `id` of `kind` that the store held before this install
    /// began (the source of a patch record, or the dirtree of a reuse-entries record when the
    /// library is built with them): up to `len` bytes from byte `offset` of its
    /// canonical bytes into `buf`; sets `*read` to how many (`len`, fewer only when the object
    /// ends first, 0 at or past its end) and `*found` to false when the store does not hold
    /// the object. Called with small buffers (a few hundred bytes).
    pub read_object: Option<
        unsafe extern "C" fn(
            ctx: *mut c_void,
            kind: u8,
            id: *const u8,
            offset: u64,
            buf: *mut u8,
            len: usize,
            read: *mut usize,
            found: *mut bool,
        ) -> i32,
    >,
}

/// A NOR flash driver in C, for the ready flash store (`ecu_update_use_flash`). Offsets are
/// bytes from the start of the device. Callbacks return 0 on success, anything else on
/// failure (`ECU_UPDATE_E_FLASH`, the value in `ecu_update_store_code`).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct EcuFlashDriver {
    /// Passed to every callback.
    pub ctx: *mut c_void,
    /// Required. Reads `len` bytes at `offset` into `buf` (any offset and length).
    pub read: Option<
        unsafe extern "C" fn(ctx: *mut c_void, offset: u32, buf: *mut u8, len: usize) -> i32,
    >,
    /// Required. Programs `len` bytes at `offset`; both are multiples of
    /// `ECU_FLASH_WRITE_SIZE`, and every byte was erased before and is programmed once.
    pub program: Option<
        unsafe extern "C" fn(ctx: *mut c_void, offset: u32, data: *const u8, len: usize) -> i32,
    >,
    /// Required. Erases `[from, to)` (to all 0xFF); both are multiples of
    /// `ECU_FLASH_SECTOR_SIZE`.
    pub erase: Option<unsafe extern "C" fn(ctx: *mut c_void, from: u32, to: u32) -> i32>,
    /// Bytes of the device.
    pub capacity: u32,
    /// The device's program unit in bytes: must divide `ECU_FLASH_WRITE_SIZE`.
    pub write_size: u32,
    /// The device's erase sector in bytes: must divide `ECU_FLASH_SECTOR_SIZE`.
    pub sector_size: u32,
}

/// Where the two slots are: device offsets of slot A and slot B, and their common size, all
/// multiples of `ECU_FLASH_SECTOR_SIZE`; the slots must not overlap.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EcuFlashLayout {
    /// Device offset of slot A.
    pub slot_a: u32,
    /// Device offset of slot B.
    pub slot_b: u32,
    /// Bytes of each slot.
    pub slot_size: u32,
}

/// A valid flash slot (docs/FLASH.md: its header).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EcuFlashSlotInfo {
    /// The commit it holds.
    pub commit: [u8; ECU_UPDATE_ID_LEN],
    /// SHA-256 of the image (`firmware.bin`).
    pub image_sha256: [u8; ECU_UPDATE_ID_LEN],
    /// Device offset of the image.
    pub image_offset: u32,
    /// Bytes of the image.
    pub image_len: u32,
    /// Objects in the slot.
    pub objects: u32,
}

/// A boot record write: when `needed`, erase copy `copy` (0 or 1) of the boot record and
/// program `record` there (`ECU_UPDATE_BOOT_RECORD_LEN` bytes). The other copy stays current
/// until this one is complete, so a power cut during the write loses nothing.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct EcuBootWrite {
    /// The new record.
    pub record: [u8; ECU_UPDATE_BOOT_RECORD_LEN],
    /// Whether anything changed (nothing to write when false).
    pub needed: bool,
    /// The copy to write: 0 or 1.
    pub copy: u8,
}
