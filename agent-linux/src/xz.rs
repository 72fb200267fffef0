//! Decoding xz parts on Linux: liblzma behind the installer's codec interface
//! ([`agent_core::install::XzDecode`]).
//!
//! The device core decodes with `xz4rust` (no_std, no alloc, a lent dictionary); a Linux device
//! has liblzma, which decodes the same streams faster ([`Liblzma`]).

use agent_core::install::{XzDecode, XzDecodeError, XzStep};
use liblzma::stream::{Action, Status, Stream};

/// Bytes liblzma may take beyond the dictionary (its decoder state is about 30 KB).
const MEMLIMIT_MARGIN: u64 = 1 << 20;

/// An xz decoder backed by liblzma, accepting dictionaries up to the size it was made with.
pub struct Liblzma {
    stream: Option<Stream>,
    dictionary: u32,
}

impl Liblzma {
    /// A decoder for streams whose dictionary is at most `dictionary` bytes (liblzma allocates
    /// the dictionary a stream declares, and touches only what the stream fills).
    pub fn new(dictionary: u32) -> Liblzma {
        Liblzma {
            stream: None,
            dictionary,
        }
    }
}

impl XzDecode for Liblzma {
    fn dictionary_len(&self) -> usize {
        self.dictionary as usize
    }

    fn reset(&mut self) {
        self.stream = None;
    }

    fn decode(&mut self, input: &[u8], output: &mut [u8]) -> Result<XzStep, XzDecodeError> {
        let stream = match &mut self.stream {
            Some(s) => s,
            None => {
                let limit = u64::from(self.dictionary) + MEMLIMIT_MARGIN;
                self.stream.insert(
                    Stream::new_stream_decoder(limit, 0).map_err(|_| XzDecodeError::Corrupt)?,
                )
            }
        };
        let (in0, out0) = (stream.total_in(), stream.total_out());
        let status = stream.process(input, output, Action::Run);
        let consumed = (stream.total_in() - in0) as usize;
        let produced = (stream.total_out() - out0) as usize;
        match status {
            Ok(Status::StreamEnd) => Ok(XzStep {
                consumed,
                produced,
                end: true,
            }),
            Ok(_) => Ok(XzStep {
                consumed,
                produced,
                end: false,
            }),
            Err(_) => Err(XzDecodeError::Corrupt),
        }
    }
}
