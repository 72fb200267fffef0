//! The `embedded-io` adapter: a thin loop that reads into a lent buffer and calls
//! [`Installer::feed`], then [`Installer::finish`] at the end of the input. No logic of its own.

use core::fmt;

use embedded_io::Read;

use crate::install::{InstallError, Installed, Installer};
use crate::store::Store;

/// Why [`install_from_reader`] failed.
#[derive(Debug)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ReadInstallError<R, S> {
    /// The reader failed. The install was abandoned ([`Store::abort`]).
    Read(R),
    /// The install failed.
    Install(InstallError<S>),
    /// The lent buffer is empty.
    EmptyBuffer,
}

impl<R: fmt::Debug, S: fmt::Display> fmt::Display for ReadInstallError<R, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadInstallError::Read(e) => write!(f, "reading the update failed: {e:?}"),
            ReadInstallError::Install(e) => fmt::Display::fmt(e, f),
            ReadInstallError::EmptyBuffer => {
                f.write_str("the read buffer is empty; lend at least one byte")
            }
        }
    }
}

impl<R: fmt::Debug, S: fmt::Debug + fmt::Display> core::error::Error for ReadInstallError<R, S> {}

impl<R, S> From<InstallError<S>> for ReadInstallError<R, S> {
    fn from(e: InstallError<S>) -> Self {
        ReadInstallError::Install(e)
    }
}

/// Installs the update `reader` yields (until it returns 0 bytes) into `store`, reading
/// through `buf` (any size; a few hundred bytes to a few KiB is typical). `inst` must be fresh
/// or [`Installer::reset`].
pub fn install_from_reader<R: Read, S: Store>(
    inst: &mut Installer<'_>,
    store: &mut S,
    reader: &mut R,
    buf: &mut [u8],
) -> Result<Installed, ReadInstallError<R::Error, S::Error>> {
    if buf.is_empty() {
        return Err(ReadInstallError::EmptyBuffer);
    }
    loop {
        let n = match reader.read(buf) {
            Ok(n) => n.min(buf.len()),
            Err(e) => {
                inst.abort(store);
                return Err(ReadInstallError::Read(e));
            }
        };
        if n == 0 {
            return Ok(inst.finish(store)?);
        }
        let _progress = inst.feed(store, &buf[..n])?;
    }
}
