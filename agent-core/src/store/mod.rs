//! Where the installer puts objects: the [`Store`] trait, implemented by each platform.
//!
//! The installer drives a store through one install at a time:
//!
//! 1. [`Store::has_commit`] for a delta's source commit, before anything is written.
//! 2. For each operation, in file order: [`Store::begin_object`], [`Store::write_object`]
//!    (any number of times), then [`Store::finish_object`] once the installer has checked the
//!    object's SHA-256, or [`Store::abort_object`] if it did not match; or
//!    [`Store::reuse_object`] for an object the target shares with the source.
//!    [`Store::has_object`] answers whether an object the target references is in place.
//!    A patch record begins its object the same way and builds its bytes from a source
//!    object read through [`Store::read_object`] (in small windows) and the patch.
//!    After the last operation of each part, once the part's SHA-256 matched the superblock,
//!    [`Store::part_verified`].
//! 3. [`Store::commit`] when the signature, every part, every object and the commit checked
//!    out; [`Store::abort`] when the install fails or is dropped.
//!
//! Objects arrive bottom-up: everything a dirtree names is in place before the dirtree, and the
//! commit object comes last. A store may therefore rely on this invariant: **a dirtree is
//! present only if everything under it is present**, and reusing a dirtree reuses its
//! whole tree.
//!
//! **Verify before privilege.** An object's SHA-256 matching its own id proves nothing about
//! where it came from: the signature covers the superblock, the superblock covers each part's
//! SHA-256, and only a part's hash ties its objects to the signature. So the objects finished
//! ([`Store::finish_object`]) since the previous [`Store::part_verified`] (or since the install
//! began) belong to a part whose hash matched only when [`Store::part_verified`] is called. A
//! store must not give any object a privileged mode (setuid, setgid, executable bits where
//! others can reach it), an owner or a capability, nor put it where others can read or run
//! it, before that call; until then it stays private to the install. The installer calls it
//! before anything of the next part reaches the store.
//!
//! **Tree depth.** The installer refuses trees that nest deeper than
//! [`MAX_TREE_DEPTH`](crate::object::MAX_TREE_DEPTH) directories without keeping a map of
//! depths: when a dirtree entry names a subdirectory, it asks the store for that dirtree's
//! depth ([`Store::tree_depth`]), and refuses the entry when the subdirectory is already
//! [`MAX_TREE_DEPTH`](crate::object::MAX_TREE_DEPTH) deep. Since a dirtree is in place only
//! with its whole tree, a store can always answer, from the dirtree's bytes and the depths of
//! the dirtrees it names (the Linux store remembers the depths it computed; the flash store
//! walks the tree in the slot with its bounded stack).
//!
//! Nothing an install writes may become visible as an installed commit before
//! [`Store::commit`]; a store that is interrupted at any point (power loss) must come back
//! with the previously installed commits intact.

use crate::install::Checkpoint;
use crate::object::{ObjectId, ObjectKind};

pub mod flash;

/// What an update declares it writes, from its verified superblock ([`Store::declared`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Declared {
    /// Bytes of operation records over all parts (the sum of the parts' `uncompressed_size`):
    /// every record is at least [`Declared::MIN_RECORD`] bytes of framing, the rest is object
    /// bytes to store.
    pub records: u64,
    /// Operation records in the file.
    pub ops: u32,
    /// The file's format version has redeflate records (version 4 on), whose record bytes
    /// (the plaintext) may be many times the object bytes they build.
    pub inflated: bool,
}

impl Declared {
    /// Framing bytes of the shortest record (a reuse: code, kind, id); a write has 42.
    pub const MIN_RECORD: u64 = 34;

    /// The most bytes of plaintext one byte of a deflate stream stands for (zlib's figure,
    /// 1032:1): a redeflate record's object is at least its plaintext over this.
    pub const MAX_DEFLATE_RATIO: u64 = 1032;

    /// A lower bound of the object bytes the update stores: its record bytes less the
    /// shortest framing of each record (divided by [`Declared::MAX_DEFLATE_RATIO`] when
    /// records may carry inflated deflate streams: only a weak bound then).
    pub fn object_bytes_at_least(&self) -> u64 {
        let bytes = self
            .records
            .saturating_sub(Self::MIN_RECORD.saturating_mul(u64::from(self.ops)));
        if self.inflated {
            bytes / Self::MAX_DEFLATE_RATIO
        } else {
            bytes
        }
    }
}

/// Object storage for the installer. See the [module docs](self) for the calling sequence.
pub trait Store {
    /// The platform's error, printed with `Display` in the installer's messages
    /// ([`crate::install::InstallError::Store`]): one sentence a person can act on.
    type Error: core::fmt::Debug + core::fmt::Display;

    /// Whether the store holds the complete commit `id` (a delta's source must be held).
    fn has_commit(&mut self, id: &ObjectId) -> Result<bool, Self::Error>;

    /// Whether the object is in place for the commit being installed (written by this install,
    /// reused into it, or, on a shared store, already there).
    fn has_object(&mut self, kind: ObjectKind, id: &ObjectId) -> Result<bool, Self::Error>;

    /// Starts a new object of `len` bytes. Its bytes follow through
    /// [`Store::write_object`].
    fn begin_object(
        &mut self,
        kind: ObjectKind,
        id: &ObjectId,
        len: u64,
    ) -> Result<(), Self::Error>;

    /// The next bytes of the object begun last.
    fn write_object(&mut self, data: &[u8]) -> Result<(), Self::Error>;

    /// The object begun last was written whole and its SHA-256 matched: keep it.
    fn finish_object(&mut self) -> Result<(), Self::Error>;

    /// The object begun last failed verification or the install stopped: drop it.
    fn abort_object(&mut self);

    /// Reads bytes of an object the store held before this install began (a delta's source
    /// objects; for a copying store such as flash A/B, the active slot), for a patch record
    /// that builds a new object from it (`docs/FORMAT.md` §6, format version 3), or a
    /// reuse-entries record that reuses what its dirtree names (format version 5). Fills
    /// `buf` from byte `offset` of the object's canonical bytes and returns how many bytes it
    /// read: `buf.len()`, or fewer only when the object ends first (0 at or past its end).
    /// `Ok(None)` means the store does not hold the object. The installer reads in small
    /// windows, first the whole object to check its SHA-256 ([`crate::install::PATCH_WINDOW`]
    /// bytes a call), then the ranges a patch names (the same) or a dirtree's entries one at a
    /// time (at most [`crate::object::MAX_DIR_ENTRY_LEN`] bytes a call). The default holds nothing (`Ok(None)`): a
    /// store without it refuses every patch record as a missing source.
    fn read_object(
        &mut self,
        kind: ObjectKind,
        id: &ObjectId,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<Option<usize>, Self::Error> {
        let _ = (kind, id, offset, buf);
        Ok(None)
    }

    /// Puts in place, for the commit being installed, an object the source commit has (for a
    /// dirtree, with everything under it). Returns `Ok(false)` when the store does not have it.
    fn reuse_object(&mut self, kind: ObjectKind, id: &ObjectId) -> Result<bool, Self::Error>;

    /// The part whose operations came last matched its SHA-256 (which the signature covers):
    /// every object finished since the previous call (or since the install began) is now
    /// verified, and may be given its privileged mode, owner and capabilities. See "Verify
    /// before privilege" in the [module docs](self). Called after each part, before any call
    /// for the next part, and before [`Store::commit`]; never with an object open.
    fn part_verified(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }

    /// The depth of dirtree `id`, which is in place for this install ([`Store::has_object`] said
    /// so): 0 when it names no subdirectory, else one more than its deepest subdirectory's.
    /// A store may stop counting past [`MAX_TREE_DEPTH`](crate::object::MAX_TREE_DEPTH) and
    /// answer any larger value. `Ok(None)` means the store cannot tell; the installer then
    /// refuses the tree ([`InstallError::TreeDepthUnknown`](crate::install::InstallError)),
    /// since the limit could not be checked. The default answers `None`, so every store that
    /// holds nested trees implements it.
    fn tree_depth(&mut self, id: &ObjectId) -> Result<Option<u16>, Self::Error> {
        let _ = id;
        Ok(None)
    }

    /// Everything checked out: record commit `id` on `ref_name` as installed, atomically.
    fn commit(&mut self, ref_name: &str, id: &ObjectId) -> Result<(), Self::Error>;

    /// The install failed or was abandoned: drop what it staged. Installed commits stay.
    ///
    /// A store that resumes installs ([`Store::checkpoint`]) may keep what the completed
    /// parts staged, for a later [`Store::resume`]; it must never make it look installed.
    fn abort(&mut self);

    /// What the update declares, once its signature and superblock are verified and before
    /// any object call: a store that cannot hold that much refuses here, before it writes
    /// anything. The default accepts.
    fn declared(&mut self, declared: &Declared) -> Result<(), Self::Error> {
        let _ = declared;
        Ok(())
    }

    /// Every part before `checkpoint.parts` is verified and its objects were finished or
    /// reused: a store that can resume an interrupted install records the checkpoint durably
    /// (after making those objects durable), to hand it to [`crate::install::Installer::resume`]
    /// after a transfer failure or a power cut. Called after each part but the last. The
    /// default records nothing (the install then always starts over).
    fn checkpoint(&mut self, checkpoint: &Checkpoint) -> Result<(), Self::Error> {
        let _ = checkpoint;
        Ok(())
    }

    /// Called once, before any object call, when the file being installed is the one
    /// `checkpoint` was taken for (its signature and superblock verified again): `Ok(true)` when
    /// every object the completed parts staged is still in place for this install (the
    /// installer then skips those parts), `Ok(false)` to install from the first part (the
    /// store then drops what an earlier attempt left). The default is `Ok(false)`.
    fn resume(&mut self, checkpoint: &Checkpoint) -> Result<bool, Self::Error> {
        let _ = checkpoint;
        Ok(false)
    }
}

#[cfg(test)]
mod test {
    use super::Declared;

    #[test]
    fn the_declared_bound_allows_for_inflated_records() {
        let d = Declared {
            records: 1032 * 100 + 2 * 34,
            ops: 2,
            inflated: false,
        };
        assert_eq!(d.object_bytes_at_least(), 103_200);
        let v4 = Declared {
            inflated: true,
            ..d
        };
        assert_eq!(v4.object_bytes_at_least(), 100);
    }
}
