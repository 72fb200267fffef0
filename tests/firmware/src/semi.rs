//! Host files through ARM semihosting (SYS_OPEN, SYS_READ, SYS_CLOSE), relative to QEMU's
//! working directory.
use cortex_m_semihosting::{nr, syscall};

/// An open host file.
pub struct File {
    fd: usize,
    /// Reads that returned bytes.
    pub reads: u32,
}

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
        (fd >= 0).then_some(File {
            fd: fd as usize,
            reads: 0,
        })
    }

    /// Reads until `buf` is full or the file ends; returns the bytes read (0 at the end).
    pub fn read_full(&mut self, buf: &mut [u8]) -> usize {
        let mut done = 0;
        while done < buf.len() {
            let want = buf.len() - done;
            // SYS_READ returns the number of bytes NOT read.
            let left = unsafe { syscall!(READ, self.fd, buf[done..].as_mut_ptr(), want) };
            let got = want.saturating_sub(left);
            if got == 0 {
                break;
            }
            done += got;
        }
        done
    }
}

/// The transport as the agent reads it: each read fills the buffer (a bus's full block) unless
/// the file ends.
impl embedded_io::ErrorType for File {
    type Error = core::convert::Infallible;
}

impl embedded_io::Read for File {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        let n = self.read_full(buf);
        self.reads += u32::from(n > 0);
        Ok(n)
    }
}

impl Drop for File {
    fn drop(&mut self) {
        unsafe {
            syscall!(CLOSE, self.fd);
        }
    }
}
