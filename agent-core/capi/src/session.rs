//! What lives in the memory lent to `ecu_update_init`: the installer, the store it writes to,
//! and the last failure. All safe code; the C boundary is in [`crate::ffi`].

use agent_core::install::{Checkpoint, Installed, Installer, Policy, Progress};
use agent_core::object::{ObjectId, ObjectKind};
use agent_core::store::flash::FlashStore;
use agent_core::store::{Declared, Store};

use crate::error::{Last, StoreFail};
use crate::ffi::{CFlash, CallbackStore};

/// The store an installer writes to. It lives in the lent memory, so the flash store is kept
/// by value (no allocation) although it is larger than the other variants.
#[allow(clippy::large_enum_variant)]
pub enum Backend {
    /// None set yet.
    None,
    /// A store implemented in C (`struct ecu_update_store_ops`).
    Callbacks(CallbackStore),
    /// agent-core's flash A/B store over a C flash driver.
    Flash(FlashStore<CFlash>),
}

macro_rules! dispatch {
    ($self:ident, $s:ident => $e:expr) => {
        match $self {
            Backend::None => Err(StoreFail::NoStore),
            Backend::Callbacks($s) => $e,
            Backend::Flash($s) => $e.map_err(StoreFail::Flash),
        }
    };
}

impl Store for Backend {
    type Error = StoreFail;

    fn has_commit(&mut self, id: &ObjectId) -> Result<bool, StoreFail> {
        dispatch!(self, s => s.has_commit(id))
    }
    fn has_object(&mut self, kind: ObjectKind, id: &ObjectId) -> Result<bool, StoreFail> {
        dispatch!(self, s => s.has_object(kind, id))
    }
    fn begin_object(&mut self, kind: ObjectKind, id: &ObjectId, len: u64) -> Result<(), StoreFail> {
        dispatch!(self, s => s.begin_object(kind, id, len))
    }
    fn write_object(&mut self, data: &[u8]) -> Result<(), StoreFail> {
        dispatch!(self, s => s.write_object(data))
    }
    fn finish_object(&mut self) -> Result<(), StoreFail> {
        dispatch!(self, s => s.finish_object())
    }
    fn abort_object(&mut self) {
        match self {
            Backend::None => {}
            Backend::Callbacks(s) => s.abort_object(),
            Backend::Flash(s) => s.abort_object(),
        }
    }
    fn read_object(
        &mut self,
        kind: ObjectKind,
        id: &ObjectId,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<Option<usize>, StoreFail> {
        dispatch!(self, s => s.read_object(kind, id, offset, buf))
    }
    fn reuse_object(&mut self, kind: ObjectKind, id: &ObjectId) -> Result<bool, StoreFail> {
        dispatch!(self, s => s.reuse_object(kind, id))
    }
    fn part_verified(&mut self) -> Result<(), StoreFail> {
        dispatch!(self, s => s.part_verified())
    }
    fn tree_depth(&mut self, id: &ObjectId) -> Result<Option<u16>, StoreFail> {
        dispatch!(self, s => s.tree_depth(id))
    }
    fn commit(&mut self, ref_name: &str, id: &ObjectId) -> Result<(), StoreFail> {
        dispatch!(self, s => s.commit(ref_name, id))
    }
    fn abort(&mut self) {
        match self {
            Backend::None => {}
            Backend::Callbacks(s) => s.abort(),
            Backend::Flash(s) => s.abort(),
        }
    }
    fn declared(&mut self, declared: &Declared) -> Result<(), StoreFail> {
        dispatch!(self, s => s.declared(declared))
    }
    fn checkpoint(&mut self, checkpoint: &Checkpoint) -> Result<(), StoreFail> {
        dispatch!(self, s => s.checkpoint(checkpoint))
    }
    fn resume(&mut self, checkpoint: &Checkpoint) -> Result<bool, StoreFail> {
        dispatch!(self, s => s.resume(checkpoint))
    }
}

/// The handle's contents (`ecu_update` in C, opaque).
pub struct Session {
    /// The streaming installer.
    pub installer: Installer<'static>,
    /// Where it writes.
    pub store: Backend,
    /// The last failure, for `ecu_update_message`.
    pub last: Last,
}

impl Session {
    /// A fresh handle that decodes through `window` (the installer's lent window, see
    /// `agent_core::install::Installer::new`): signatures required, no trusted key yet, no
    /// store.
    pub fn new(window: &'static mut [u8]) -> Session {
        Session {
            installer: Installer::new(Policy::require(&[]), window),
            store: Backend::None,
            last: Last::None,
        }
    }

    /// Records `last` as the last failure and returns its code.
    pub fn fail(&mut self, last: Last) -> i32 {
        let code = last.code();
        self.last = last;
        code
    }

    /// Records success.
    pub fn ok(&mut self) -> i32 {
        self.last = Last::None;
        crate::error::ECU_UPDATE_OK
    }

    /// Feeds the next bytes of the file.
    pub fn feed(&mut self, data: &[u8]) -> Result<Progress, i32> {
        if matches!(self.store, Backend::None) {
            return Err(self.fail(Last::Store(StoreFail::NoStore)));
        }
        match self.installer.feed(&mut self.store, data) {
            Ok(p) => {
                self.ok();
                Ok(p)
            }
            Err(e) => Err(self.fail(Last::Install(e))),
        }
    }

    /// The end of the file: commits.
    pub fn finish(&mut self) -> Result<Installed, i32> {
        if matches!(self.store, Backend::None) {
            return Err(self.fail(Last::Store(StoreFail::NoStore)));
        }
        match self.installer.finish(&mut self.store) {
            Ok(i) => {
                self.ok();
                Ok(i)
            }
            Err(e) => Err(self.fail(Last::Install(e))),
        }
    }

    /// Abandons the install in progress.
    pub fn abort(&mut self) {
        self.installer.abort(&mut self.store);
    }

    /// The flash store, or the failure code when the handle has another store.
    pub fn flash(&mut self) -> Result<&mut FlashStore<CFlash>, i32> {
        if !matches!(self.store, Backend::Flash(_)) {
            return Err(self.fail(Last::Argument(
                "this handle has no flash store (ecu_update_use_flash)",
            )));
        }
        match &mut self.store {
            Backend::Flash(f) => Ok(f),
            _ => Err(crate::error::ECU_UPDATE_E_NO_STORE),
        }
    }
}

/// Converts a progress to the C struct.
pub fn progress(p: &Progress) -> crate::types::EcuUpdateProgress {
    crate::types::EcuUpdateProgress {
        bytes: p.bytes,
        bytes_total: p.bytes_total.unwrap_or(0),
        resume_offset: p.resume_offset.unwrap_or(0),
        objects: p.objects,
        objects_total: p.objects_total,
        parts: p.parts,
        parts_total: p.parts_total,
        done: p.done,
    }
}

/// Converts what was installed to the C struct.
pub fn installed(i: &Installed) -> crate::types::EcuUpdateInstalled {
    let mut out = crate::types::EcuUpdateInstalled {
        commit: i.commit.0,
        from: i.from.map_or([0; 32], |f| f.0),
        security_version: i.security_version,
        is_delta: i.from.is_some(),
        ref_name: [0; crate::types::ECU_UPDATE_REF_CAP],
    };
    for (d, s) in out.ref_name.iter_mut().zip(i.ref_name.as_bytes()) {
        *d = *s as core::ffi::c_char;
    }
    out
}
