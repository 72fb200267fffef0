//! The C callback store and the C flash driver, as agent-core's `Store` and
//! embedded-storage's `NorFlash`.

use core::ffi::c_void;

use agent_core::install::Checkpoint;
use agent_core::object::{ObjectId, ObjectKind};
use agent_core::store::{Declared, Store};
use embedded_storage::nor_flash::{ErrorType, NorFlash, ReadNorFlash};

use crate::error::{DriverError, StoreFail};
use crate::types::{EcuFlashDriver, EcuUpdateStoreOps};
use crate::{ECU_FLASH_SECTOR_SIZE, ECU_FLASH_WRITE_SIZE};

/// A store whose calls go to C callbacks (`struct ecu_update_store_ops`).
pub struct CallbackStore {
    ops: EcuUpdateStoreOps,
    ctx: *mut c_void,
}

impl CallbackStore {
    /// Checks that every required callback is set; `Err(name)` names the first NULL one.
    pub fn new(ops: EcuUpdateStoreOps, ctx: *mut c_void) -> Result<CallbackStore, &'static str> {
        let required = [
            ("has_commit", ops.has_commit.is_some()),
            ("has_object", ops.has_object.is_some()),
            ("begin_object", ops.begin_object.is_some()),
            ("write_object", ops.write_object.is_some()),
            ("finish_object", ops.finish_object.is_some()),
            ("abort_object", ops.abort_object.is_some()),
            ("reuse_object", ops.reuse_object.is_some()),
            ("commit", ops.commit.is_some()),
            ("abort", ops.abort.is_some()),
        ];
        for (name, set) in required {
            if !set {
                return Err(name);
            }
        }
        Ok(CallbackStore { ops, ctx })
    }
}

fn check(call: &'static str, code: i32) -> Result<(), StoreFail> {
    if code == 0 {
        Ok(())
    } else {
        Err(StoreFail::Callback { call, code })
    }
}

const MISSING: StoreFail = StoreFail::Callback {
    call: "(a required callback is NULL)",
    code: 0,
};

// SAFETY (every call below): `ecu_update_use_store`'s contract makes `ctx` and the callbacks
// valid for as long as the handle uses this store; each pointer passed points to memory valid
// for the call (ids and data borrowed from Rust, out-values on this frame).
impl Store for CallbackStore {
    type Error = StoreFail;

    fn has_commit(&mut self, id: &ObjectId) -> Result<bool, StoreFail> {
        let f = self.ops.has_commit.ok_or(MISSING)?;
        let mut out = false;
        check("has_commit", unsafe {
            f(self.ctx, id.0.as_ptr(), &mut out)
        })?;
        Ok(out)
    }

    fn has_object(&mut self, kind: ObjectKind, id: &ObjectId) -> Result<bool, StoreFail> {
        let f = self.ops.has_object.ok_or(MISSING)?;
        let mut out = false;
        check("has_object", unsafe {
            f(self.ctx, kind.code(), id.0.as_ptr(), &mut out)
        })?;
        Ok(out)
    }

    fn begin_object(&mut self, kind: ObjectKind, id: &ObjectId, len: u64) -> Result<(), StoreFail> {
        let f = self.ops.begin_object.ok_or(MISSING)?;
        check("begin_object", unsafe {
            f(self.ctx, kind.code(), id.0.as_ptr(), len)
        })
    }

    fn write_object(&mut self, data: &[u8]) -> Result<(), StoreFail> {
        let f = self.ops.write_object.ok_or(MISSING)?;
        check("write_object", unsafe {
            f(self.ctx, data.as_ptr(), data.len())
        })
    }

    fn finish_object(&mut self) -> Result<(), StoreFail> {
        let f = self.ops.finish_object.ok_or(MISSING)?;
        check("finish_object", unsafe { f(self.ctx) })
    }

    fn abort_object(&mut self) {
        if let Some(f) = self.ops.abort_object {
            unsafe { f(self.ctx) }
        }
    }

    fn read_object(
        &mut self,
        kind: ObjectKind,
        id: &ObjectId,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<Option<usize>, StoreFail> {
        let Some(f) = self.ops.read_object else {
            return Ok(None);
        };
        let (mut read, mut found) = (0usize, false);
        check("read_object", unsafe {
            f(
                self.ctx,
                kind.code(),
                id.0.as_ptr(),
                offset,
                buf.as_mut_ptr(),
                buf.len(),
                &mut read,
                &mut found,
            )
        })?;
        if !found {
            return Ok(None);
        }
        if read > buf.len() {
            return Err(StoreFail::TooManyBytes {
                call: "read_object",
                read,
                len: buf.len(),
            });
        }
        Ok(Some(read))
    }

    fn reuse_object(&mut self, kind: ObjectKind, id: &ObjectId) -> Result<bool, StoreFail> {
        let f = self.ops.reuse_object.ok_or(MISSING)?;
        let mut found = false;
        check("reuse_object", unsafe {
            f(self.ctx, kind.code(), id.0.as_ptr(), &mut found)
        })?;
        Ok(found)
    }

    fn part_verified(&mut self) -> Result<(), StoreFail> {
        match self.ops.part_verified {
            Some(f) => check("part_verified", unsafe { f(self.ctx) }),
            None => Ok(()),
        }
    }

    fn tree_depth(&mut self, id: &ObjectId) -> Result<Option<u16>, StoreFail> {
        let Some(f) = self.ops.tree_depth else {
            return Ok(None);
        };
        let (mut depth, mut known) = (0u16, false);
        check("tree_depth", unsafe {
            f(self.ctx, id.0.as_ptr(), &mut depth, &mut known)
        })?;
        Ok(known.then_some(depth))
    }

    fn commit(&mut self, ref_name: &str, id: &ObjectId) -> Result<(), StoreFail> {
        let f = self.ops.commit.ok_or(MISSING)?;
        check("commit", unsafe {
            f(
                self.ctx,
                ref_name.as_ptr().cast(),
                ref_name.len(),
                id.0.as_ptr(),
            )
        })
    }

    fn abort(&mut self) {
        if let Some(f) = self.ops.abort {
            unsafe { f(self.ctx) }
        }
    }

    fn declared(&mut self, declared: &Declared) -> Result<(), StoreFail> {
        match self.ops.declared {
            Some(f) => check("declared", unsafe {
                f(self.ctx, declared.records, declared.ops)
            }),
            None => Ok(()),
        }
    }

    fn checkpoint(&mut self, checkpoint: &Checkpoint) -> Result<(), StoreFail> {
        match self.ops.checkpoint {
            Some(f) => {
                let bytes = checkpoint.to_bytes();
                check("checkpoint", unsafe { f(self.ctx, bytes.as_ptr()) })
            }
            None => Ok(()),
        }
    }

    fn resume(&mut self, checkpoint: &Checkpoint) -> Result<bool, StoreFail> {
        let Some(f) = self.ops.resume else {
            return Ok(false);
        };
        let bytes = checkpoint.to_bytes();
        let mut resumed = false;
        check("resume", unsafe {
            f(self.ctx, bytes.as_ptr(), &mut resumed)
        })?;
        Ok(resumed)
    }
}

/// A C flash driver (`struct ecu_flash_driver`) as a `NorFlash` of
/// [`ECU_FLASH_WRITE_SIZE`]-byte program units and [`ECU_FLASH_SECTOR_SIZE`]-byte sectors.
pub struct CFlash {
    driver: EcuFlashDriver,
}

impl CFlash {
    /// Checks the driver: its callbacks are set, its program unit divides
    /// [`ECU_FLASH_WRITE_SIZE`] and its sector divides [`ECU_FLASH_SECTOR_SIZE`].
    pub fn new(driver: EcuFlashDriver) -> Result<CFlash, crate::error::Last> {
        use crate::error::Last;
        if driver.read.is_none() {
            return Err(Last::Callback("ecu_flash_driver.read"));
        }
        if driver.program.is_none() {
            return Err(Last::Callback("ecu_flash_driver.program"));
        }
        if driver.erase.is_none() {
            return Err(Last::Callback("ecu_flash_driver.erase"));
        }
        if driver.write_size == 0 || !ECU_FLASH_WRITE_SIZE.is_multiple_of(driver.write_size) {
            return Err(Last::Argument(
                "the driver's write_size must divide ECU_FLASH_WRITE_SIZE (32)",
            ));
        }
        if driver.sector_size == 0 || !ECU_FLASH_SECTOR_SIZE.is_multiple_of(driver.sector_size) {
            return Err(Last::Argument(
                "the driver's sector_size must divide ECU_FLASH_SECTOR_SIZE (4096)",
            ));
        }
        Ok(CFlash { driver })
    }
}

fn driver(code: i32) -> Result<(), DriverError> {
    if code == 0 {
        Ok(())
    } else {
        Err(DriverError(code))
    }
}

impl ErrorType for CFlash {
    type Error = DriverError;
}

// SAFETY (every call below): `ecu_update_use_flash`'s contract makes the driver's `ctx` and
// callbacks valid for as long as the handle uses it; buffers are Rust slices valid for the call.
impl ReadNorFlash for CFlash {
    const READ_SIZE: usize = 1;

    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), DriverError> {
        let f = self.driver.read.ok_or(DriverError(0))?;
        driver(unsafe { f(self.driver.ctx, offset, bytes.as_mut_ptr(), bytes.len()) })
    }

    fn capacity(&self) -> usize {
        self.driver.capacity as usize
    }
}

impl NorFlash for CFlash {
    const WRITE_SIZE: usize = ECU_FLASH_WRITE_SIZE as usize;
    const ERASE_SIZE: usize = ECU_FLASH_SECTOR_SIZE as usize;

    fn erase(&mut self, from: u32, to: u32) -> Result<(), DriverError> {
        let f = self.driver.erase.ok_or(DriverError(0))?;
        driver(unsafe { f(self.driver.ctx, from, to) })
    }

    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), DriverError> {
        let f = self.driver.program.ok_or(DriverError(0))?;
        driver(unsafe { f(self.driver.ctx, offset, bytes.as_ptr(), bytes.len()) })
    }
}

#[cfg(test)]
mod test {
    use super::*;

    /// A C-style source object: the bytes 0, 1, 2, ... 99 under id [7; 32].
    unsafe extern "C" fn read_object(
        _ctx: *mut c_void,
        kind: u8,
        id: *const u8,
        offset: u64,
        buf: *mut u8,
        len: usize,
        read: *mut usize,
        found: *mut bool,
    ) -> i32 {
        let id = unsafe { core::slice::from_raw_parts(id, 32) };
        let held = kind == ObjectKind::File.code() && id == [7u8; 32];
        unsafe { found.write(held) };
        if held {
            let n = 100u64.saturating_sub(offset).min(len as u64) as usize;
            for i in 0..n {
                unsafe { buf.add(i).write((offset as usize + i) as u8) };
            }
            // A broken callback: claims one byte more than the buffer when asked at 1000.
            unsafe { read.write(if offset == 1000 { len + 1 } else { n }) };
        }
        0
    }

    unsafe extern "C" fn nop(_: *mut c_void) {}

    fn store(with_read: bool) -> CallbackStore {
        let ops = EcuUpdateStoreOps {
            has_commit: None,
            has_object: None,
            begin_object: None,
            write_object: None,
            finish_object: None,
            abort_object: Some(nop),
            reuse_object: None,
            commit: None,
            abort: Some(nop),
            part_verified: None,
            tree_depth: None,
            declared: None,
            checkpoint: None,
            resume: None,
            read_object: if with_read { Some(read_object) } else { None },
        };
        CallbackStore {
            ops,
            ctx: core::ptr::null_mut(),
        }
    }

    #[test]
    fn read_object_forwards_windows_and_checks_the_count() {
        let mut s = store(true);
        let mut buf = [0u8; 16];
        let id = ObjectId([7; 32]);
        assert_eq!(
            s.read_object(ObjectKind::File, &id, 90, &mut buf),
            Ok(Some(10))
        );
        assert_eq!(&buf[..10], &[90, 91, 92, 93, 94, 95, 96, 97, 98, 99]);
        assert_eq!(
            s.read_object(ObjectKind::File, &id, 0, &mut buf),
            Ok(Some(16))
        );
        assert_eq!(buf[15], 15);
        assert_eq!(
            s.read_object(ObjectKind::File, &id, 100, &mut buf),
            Ok(Some(0))
        );
        assert_eq!(
            s.read_object(ObjectKind::DirTree, &id, 0, &mut buf),
            Ok(None),
            "another kind is not held"
        );
        assert_eq!(
            s.read_object(ObjectKind::File, &id, 1000, &mut buf),
            Err(StoreFail::TooManyBytes {
                call: "read_object",
                read: 17,
                len: 16
            })
        );
        assert_eq!(
            store(false).read_object(ObjectKind::File, &id, 0, &mut buf),
            Ok(None),
            "without the callback nothing is held"
        );
    }
}
