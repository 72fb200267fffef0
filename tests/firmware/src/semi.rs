//! Host files through ARM semihosting (SYS_OPEN, SYS_READ, SYS_CLOSE), relative to QEMU's
//! working directory.
use cortex_m_semihosting::{nr, syscall};

/// An open host file.
pub struct File(usize);

impl File {
    /// Opens `name` for reading (binary). `None` when the host cannot open it.
    pub fn open(name: &str) -> Option<File> {
        let mut path = [0u8; 64];
        let n = name.len();
        if n >= path.len() {
            return None;
        }
        path[..n].copy_from_slice(name.as_bytes());
        // SYS_OPEN: NUL-terminated name, mode, length without the NUL.
        let fd = unsafe { syscall!(OPEN, path.as_ptr(), nr::open::R_BINARY, n) } as isize;
        (fd >= 0).then_some(File(fd as usize))
    }

    /// Reads until `buf` is full or the file ends; returns the bytes read (0 at the end).
    pub fn read_full(&mut self, buf: &mut [u8]) -> usize {
        let mut done = 0;
        while done < buf.len() {
            let want = buf.len() - done;
            // SYS_READ returns the number of bytes NOT read.
            let left = unsafe { syscall!(READ, self.0, buf[done..].as_mut_ptr(), want) };
            let got = want.saturating_sub(left);
            if got == 0 {
                break;
            }
            done += got;
        }
        done
    }
}

impl Drop for File {
    fn drop(&mut self) {
        unsafe {
            syscall!(CLOSE, self.0);
        }
    }
}
