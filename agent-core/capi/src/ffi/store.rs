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
