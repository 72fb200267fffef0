//! The deflate encoder a caller lends for redeflate records (`docs/FORMAT.md` §6, feature
//! `redeflate`), and with `std` the one this crate's writer and the Linux agent use: zlib's.
//!
//! A redeflate record carries a gzip file's (or any file's) raw deflate stream as the bytes it
//! inflates to, which the part's codec compresses far better than the stream itself; the
//! device deflates them again and must get the original stream byte for byte. zlib's
//! `deflate` is deterministic for given parameters and input, whatever the pieces the input
//! comes in (Debian's zlib 1.2.13 and the 1.4 that `libz-sys` bundles made the same streams
//! for every gzip file of the benchmark's Debian tree); the writer emits a record only after
//! deflating the plaintext with the same encoder and comparing. The installer hashes what the
//! encoder produces, so an encoder that deflates differently fails the object's id check and
//! nothing is committed.

use crate::wire::DeflateParams;

/// Why a [`Redeflate`] encoder stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum RedeflateError {
    /// The encoder cannot deflate with these parameters.
    Unsupported,
    /// The encoder failed.
    Failed,
}

/// A raw deflate encoder (no zlib or gzip wrapper) that the installer drives for redeflate
/// records ([`Installer::with_redeflate`](crate::install::Installer::with_redeflate)).
///
/// For each record the installer calls [`Redeflate::start`] once, then [`Redeflate::deflate`]
/// with the plaintext in pieces of any size, the last call with `finish` set (and possibly no
/// input). The encoder hands the stream to `out` in order, in pieces of any size; it stops
/// when `out` returns false. It must produce exactly what zlib's `deflateInit2(level,
/// Z_DEFLATED, -window_bits, mem_level, strategy)` then `deflate` (`Z_NO_FLUSH`, and
/// `Z_FINISH` at the end) produce, whatever the pieces.
pub trait Redeflate {
    /// Starts a new stream deflated with `params`.
    fn start(&mut self, params: DeflateParams) -> Result<(), RedeflateError>;
    /// Deflates the next plaintext bytes (the last when `finish`), handing the stream bytes
    /// produced so far to `out`.
    fn deflate(
        &mut self,
        plain: &[u8],
        finish: bool,
        out: &mut dyn FnMut(&[u8]) -> bool,
    ) -> Result<(), RedeflateError>;
}

#[cfg(feature = "std")]
pub use deflaters::Deflaters;
#[cfg(feature = "std")]
pub use zlib::Zlib;

/// The whole raw deflate stream `enc` makes of `plain` with `params`, as a redeflate record's
/// device rebuilds it.
#[cfg(feature = "std")]
pub fn deflate_all(
    enc: &mut dyn Redeflate,
    params: DeflateParams,
    plain: &[u8],
) -> Result<std::vec::Vec<u8>, RedeflateError> {
    let mut stream = std::vec::Vec::with_capacity(plain.len() / 2 + 64);
    enc.start(params)?;
    enc.deflate(plain, true, &mut |b| {
        stream.extend_from_slice(b);
        true
    })?;
    Ok(stream)
}

#[cfg(feature = "std")]
mod deflaters {
    use super::super::GnuGzip;
    use super::{Redeflate, RedeflateError, Zlib};
    use crate::wire::DeflateParams;

    /// zlib's deflate and GNU gzip's ([`GnuGzip`]), each for the records whose parameters name
    /// it: what the writer checks streams with and what `ecu-agent apply` lends. Each one's
    /// state is allocated at its first stream.
    #[derive(Default)]
    pub struct Deflaters {
        zlib: Zlib,
        gzip: GnuGzip,
        gnu: bool,
    }

    impl Deflaters {
        /// Both encoders, nothing allocated yet.
        pub fn new() -> Deflaters {
            Deflaters::default()
        }

        /// Whether [`Redeflate::start`] accepts `params`.
        pub fn supports(params: DeflateParams) -> bool {
            Zlib::supports(params) || GnuGzip::supports(params)
        }
    }

    impl Redeflate for Deflaters {
        fn start(&mut self, params: DeflateParams) -> Result<(), RedeflateError> {
            self.gnu = params.is_gzip();
            if self.gnu {
                self.gzip.start(params)
            } else {
                self.zlib.start(params)
            }
        }

        fn deflate(
            &mut self,
            plain: &[u8],
            finish: bool,
            out: &mut dyn FnMut(&[u8]) -> bool,
        ) -> Result<(), RedeflateError> {
            if self.gnu {
                self.gzip.deflate(plain, finish, out)
            } else {
                self.zlib.deflate(plain, finish, out)
            }
        }
    }
}

#[cfg(feature = "std")]
mod zlib {
    use std::boxed::Box;
    use std::vec;
    use std::vec::Vec;

    use flate2::{Compress, Compression, FlushCompress, Status};

    use super::{Redeflate, RedeflateError};
    use crate::wire::DeflateParams;

    /// Bytes of stream produced per call to zlib.
    const OUT: usize = 16 * 1024;

    /// zlib's deflate (a static build of zlib's own sources, through `flate2`), for the writer
    /// and for Linux devices. `flate2` gives `memLevel` 8 and the default strategy only, and
    /// level 0 (stored blocks) is cut where zlib's output buffer ends, not where the data
    /// says: other parameters are [`RedeflateError::Unsupported`], and the writer never asks
    /// for them.
    pub struct Zlib {
        z: Option<Box<Compress>>,
        buf: Vec<u8>,
        params: DeflateParams,
    }

    impl Default for Zlib {
        fn default() -> Self {
            Zlib::new()
        }
    }

    impl Zlib {
        /// An encoder; zlib's state (about 256 KiB at `memLevel` 8) is allocated at the first
        /// stream and reused while the parameters stay the same.
        pub fn new() -> Zlib {
            Zlib {
                z: None,
                buf: Vec::new(),
                params: DeflateParams::BEST,
            }
        }

        /// Whether [`Redeflate::start`] accepts `params`.
        pub fn supports(params: DeflateParams) -> bool {
            params.level >= 1 && params.mem_level == 8 && params.strategy == 0
        }

        /// The raw deflate stream of `plain` as a redeflate record's device rebuilds it.
        pub fn deflate_all(
            &mut self,
            params: DeflateParams,
            plain: &[u8],
        ) -> Result<Vec<u8>, RedeflateError> {
            super::deflate_all(self, params, plain)
        }
    }

    impl Redeflate for Zlib {
        fn start(&mut self, params: DeflateParams) -> Result<(), RedeflateError> {
            if !Zlib::supports(params) {
                return Err(RedeflateError::Unsupported);
            }
            match &mut self.z {
                Some(z) if self.params == params => z.reset(),
                z => {
                    *z = Some(Box::new(Compress::new_with_window_bits(
                        Compression::new(params.level.into()),
                        false,
                        params.window_bits,
                    )));
                    self.params = params;
                }
            }
            if self.buf.is_empty() {
                self.buf = vec![0; OUT];
            }
            Ok(())
        }

        fn deflate(
            &mut self,
            mut plain: &[u8],
            finish: bool,
            out: &mut dyn FnMut(&[u8]) -> bool,
        ) -> Result<(), RedeflateError> {
            let Some(z) = self.z.as_mut() else {
                return Err(RedeflateError::Failed);
            };
            let flush = if finish {
                FlushCompress::Finish
            } else {
                FlushCompress::None
            };
            loop {
                let (before_in, before_out) = (z.total_in(), z.total_out());
                let status = z
                    .compress(plain, &mut self.buf, flush)
                    .map_err(|_| RedeflateError::Failed)?;
                let used = (z.total_in() - before_in) as usize;
                let made = (z.total_out() - before_out) as usize;
                plain = plain.get(used..).unwrap_or(&[]);
                if made > 0 && !out(&self.buf[..made]) {
                    return Ok(());
                }
                match status {
                    Status::StreamEnd => return Ok(()),
                    // More input is needed and none is left (without finish), or no progress.
                    _ if plain.is_empty() && !finish && made < self.buf.len() => return Ok(()),
                    Status::BufError if used == 0 && made == 0 => {
                        return Err(RedeflateError::Failed)
                    }
                    _ => {}
                }
            }
        }
    }
}
