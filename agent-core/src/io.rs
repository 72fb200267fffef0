//! The feed loops: thin drivers that hand the installer its input piece by piece
//! ([`Installer::feed`]) and then call [`Installer::finish`]. No logic of their own.
//!
//! - [`install_from_reader`]: an `embedded-io` reader, read into a lent buffer.
//! - [`install_pieces`]: any sequence of byte slices (the blocks a transport delivered).
//! - [`install_chunks`]: one buffer cut into pieces of given sizes ([`Pieces`]), as tests,
//!   fuzz targets and a transport with fixed block sizes feed it.

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

/// Feeds each piece `pieces` yields, in order, then finishes. Stops at the first error (the
/// installer has then told the store, [`Store::abort`]). Empty pieces are fed like any other
/// (the installer takes them as no input).
pub fn install_pieces<'a, S: Store>(
    inst: &mut Installer<'_>,
    store: &mut S,
    pieces: impl IntoIterator<Item = &'a [u8]>,
) -> Result<Installed, InstallError<S::Error>> {
    for piece in pieces {
        let _progress = inst.feed(store, piece)?;
    }
    inst.finish(store)
}

/// Feeds `input` in pieces whose sizes cycle through `sizes` ([`Pieces`]), then finishes:
/// `&[1]` feeds it byte by byte, `&[7, 512]` alternates, `&[]` feeds it whole.
pub fn install_chunks<S: Store>(
    inst: &mut Installer<'_>,
    store: &mut S,
    input: &[u8],
    sizes: &[usize],
) -> Result<Installed, InstallError<S::Error>> {
    install_pieces(inst, store, Pieces::new(input, sizes))
}

/// `input` cut into consecutive pieces whose sizes cycle through `sizes`; each piece is at
/// least 1 byte (a size of 0 counts as 1) and the last one is what is left. With no sizes,
/// one piece: the whole input. An empty input has no pieces.
#[derive(Clone, Debug)]
pub struct Pieces<'a, 's> {
    rest: &'a [u8],
    sizes: &'s [usize],
    next: usize,
}

impl<'a, 's> Pieces<'a, 's> {
    /// The pieces of `input`, sized as `sizes` says.
    pub fn new(input: &'a [u8], sizes: &'s [usize]) -> Self {
        Pieces {
            rest: input,
            sizes,
            next: 0,
        }
    }
}

impl<'a> Iterator for Pieces<'a, '_> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.rest.is_empty() {
            return None;
        }
        let want = match self.sizes.len() {
            0 => self.rest.len(),
            n => self.sizes[self.next % n],
        };
        self.next = self.next.wrapping_add(1);
        let (piece, rest) = self.rest.split_at(want.clamp(1, self.rest.len()));
        self.rest = rest;
        Some(piece)
    }
}

#[cfg(test)]
mod test {
    use super::Pieces;

    #[test]
    fn pieces_cycle_through_the_sizes() {
        let input: [u8; 10] = core::array::from_fn(|i| i as u8);
        let mut p = Pieces::new(&input, &[3, 0, 2]);
        assert_eq!(p.next(), Some(&input[0..3]));
        assert_eq!(p.next(), Some(&input[3..4]));
        assert_eq!(p.next(), Some(&input[4..6]));
        assert_eq!(p.next(), Some(&input[6..9]));
        assert_eq!(p.next(), Some(&input[9..10]));
        assert_eq!(p.next(), None);
        assert_eq!(Pieces::new(&input, &[]).count(), 1);
        assert_eq!(Pieces::new(&input, &[1]).count(), 10);
        assert_eq!(Pieces::new(&input, &[usize::MAX]).count(), 1);
        assert_eq!(Pieces::new(&[], &[4]).count(), 0);
    }
}
