//! Decoding xz parts on Linux: liblzma behind the installer's codec interface
//! ([`agent_core::install::XzDecode`]).
//!
//! The device core decodes with `xz4rust` (no_std, no alloc, a lent dictionary); a Linux device
//! has liblzma, which decodes the same streams faster ([`Liblzma`]).

use agent_core::install::{XzDecode, XzDecodeError, XzStep};
use liblzma::stream::{Action, Status, Stream};

/// The xz decoder an install uses: liblzma on another thread ([`Threaded`]) when there are two
/// cores or more, else on the installer's ([`Liblzma`]), for dictionaries up to `dictionary`.
pub fn decoder(dictionary: u32) -> Box<dyn XzDecode> {
    if std::thread::available_parallelism().map_or(1, |n| n.get()) >= 2 {
        if let Some(t) = Threaded::start(dictionary) {
            return Box::new(t);
        }
    }
    Box::new(Liblzma::new(dictionary))
}

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

/// Bytes of input a [`Threaded`] decoder holds before the installer waits: four of the
/// installer's 16 KiB pieces.
const INPUT_AHEAD: usize = 64 * 1024;

/// Bytes of decoded output a [`Threaded`] decoder holds before its thread waits.
const OUTPUT_AHEAD: usize = 128 * 1024;

/// Bytes the thread decodes into at a time (one chunk of output).
const CHUNK: usize = 16 * 1024;

/// An xz decoder that runs liblzma on another thread, so that decoding a part (most of an
/// apply's CPU time) overlaps with checking and storing the objects of what is already
/// decoded. It holds at most 64 KiB of input (four of the installer's 16 KiB pieces) and
/// 128 KiB of output besides liblzma's dictionary; objects still reach the store in file order, from the
/// installer's thread, each verified as before.
///
/// Its output is cut where the thread's chunks end (each input piece decoded into chunks of
/// 16 KiB), never where the threads happen to meet, so that the store sees the same
/// calls on every run.
pub struct Threaded {
    shared: std::sync::Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// The output chunk being delivered and how much of it was.
    held: Vec<u8>,
    held_at: usize,
    dictionary: u32,
}

struct Shared {
    state: std::sync::Mutex<State>,
    /// The installer's thread waits on this one, the decoding thread on the other; each is
    /// woken only when it waits (a wake-up is a system call).
    to_main: std::sync::Condvar,
    to_worker: std::sync::Condvar,
}

#[derive(Default)]
struct State {
    /// Stream number: [`XzDecode::reset`] starts the next; work of an older one is dropped.
    stream: u64,
    input: std::collections::VecDeque<(u64, Vec<u8>)>,
    input_bytes: usize,
    output: std::collections::VecDeque<Vec<u8>>,
    /// Bytes of the buffers in `output` (their capacity: a chunk cut short by the end of a
    /// piece holds as much memory as a whole one).
    output_bytes: usize,
    /// The thread is decoding a piece.
    busy: bool,
    /// The current stream ended.
    end: bool,
    /// The current stream failed (after the output before the failure).
    error: Option<XzDecodeError>,
    /// Input and output buffers to reuse (each kind allocated by the thread that fills it).
    spare_in: Vec<Vec<u8>>,
    spare_out: Vec<Vec<u8>>,
    quit: bool,
    /// The thread has ended.
    gone: bool,
    /// Which thread waits.
    main_waits: bool,
    worker_waits: bool,
}

impl Threaded {
    /// A decoder for streams whose dictionary is at most `dictionary` bytes, decoding on a
    /// new thread; `None` when the thread cannot be started.
    pub fn start(dictionary: u32) -> Option<Threaded> {
        let shared = std::sync::Arc::new(Shared {
            state: std::sync::Mutex::new(State::default()),
            to_main: std::sync::Condvar::new(),
            to_worker: std::sync::Condvar::new(),
        });
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("ecu-agent-xz".into())
            .spawn(move || decode_thread(&s, dictionary))
            .ok()?;
        Some(Threaded {
            shared,
            thread: Some(thread),
            held: Vec::new(),
            held_at: 0,
            dictionary,
        })
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn wait_main<'a>(
        &self,
        mut g: std::sync::MutexGuard<'a, State>,
    ) -> std::sync::MutexGuard<'a, State> {
        g.main_waits = true;
        let mut g = self
            .to_main
            .wait(g)
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        g.main_waits = false;
        g
    }

    fn wait_worker<'a>(
        &self,
        mut g: std::sync::MutexGuard<'a, State>,
    ) -> std::sync::MutexGuard<'a, State> {
        g.worker_waits = true;
        let mut g = self
            .to_worker
            .wait(g)
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        g.worker_waits = false;
        g
    }

    /// Wakes the installer's thread if it waits and there is enough for it to do: a few
    /// chunks of output, or the decoding thread has finished its piece (input space, the end,
    /// a failure, nothing more to decode). Waking it for every chunk would have the threads
    /// take turns chunk by chunk.
    fn wake_main(&self, st: &State) {
        if st.main_waits && (!st.busy || st.output_bytes >= OUTPUT_AHEAD / 2) {
            self.to_main.notify_one();
        }
    }

    /// Wakes the decoding thread if it waits and can go on: input arrived, or the output held
    /// fell to a quarter of [`OUTPUT_AHEAD`].
    fn wake_worker(&self, st: &State) {
        if st.worker_waits
            && (st.output_bytes <= OUTPUT_AHEAD / 4 || st.quit)
            && (st.busy || !st.input.is_empty() || st.quit)
        {
            self.to_worker.notify_one();
        }
    }
}

impl Drop for Threaded {
    fn drop(&mut self) {
        self.shared.lock().quit = true;
        self.shared.to_worker.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl XzDecode for Threaded {
    fn dictionary_len(&self) -> usize {
        self.dictionary as usize
    }

    fn reset(&mut self) {
        let mut st = self.shared.lock();
        let st = &mut *st;
        st.stream += 1;
        st.spare_in.extend(st.input.drain(..).map(|(_, b)| b));
        st.spare_out.extend(st.output.drain(..));
        st.spare_out.push(std::mem::take(&mut self.held));
        st.input_bytes = 0;
        st.output_bytes = 0;
        st.end = false;
        st.error = None;
        self.held_at = 0;
        self.shared.wake_worker(st);
    }

    fn decode(&mut self, input: &[u8], output: &mut [u8]) -> Result<XzStep, XzDecodeError> {
        let shared = &*self.shared;
        let mut st = shared.lock();
        loop {
            let mut consumed = 0;
            if !input.is_empty() && st.input_bytes < INPUT_AHEAD {
                let mut buf = st.spare_in.pop().unwrap_or_default();
                buf.clear();
                buf.extend_from_slice(input);
                let stream = st.stream;
                st.input.push_back((stream, buf));
                st.input_bytes += input.len();
                consumed = input.len();
                shared.wake_worker(&st);
            }
            if self.held_at == self.held.len() {
                if let Some(next) = st.output.pop_front() {
                    st.output_bytes -= next.capacity();
                    let done = std::mem::replace(&mut self.held, next);
                    st.spare_out.push(done);
                    self.held_at = 0;
                    shared.wake_worker(&st);
                }
            }
            let n = (self.held.len() - self.held_at).min(output.len());
            output[..n].copy_from_slice(&self.held[self.held_at..self.held_at + n]);
            self.held_at += n;
            if consumed > 0 || n > 0 {
                return Ok(XzStep {
                    consumed,
                    produced: n,
                    end: false,
                });
            }
            // Nothing taken, nothing to give: every output before an error or the end was
            // delivered.
            if let Some(e) = st.error {
                return Err(e);
            }
            if st.gone {
                return Err(XzDecodeError::Corrupt);
            }
            if st.end && st.input.is_empty() && !st.busy {
                return Ok(XzStep {
                    consumed: 0,
                    produced: 0,
                    end: true,
                });
            }
            if input.is_empty() && st.input.is_empty() && !st.busy {
                return Ok(XzStep {
                    consumed: 0,
                    produced: 0,
                    end: false,
                });
            }
            st = shared.wait_main(st);
        }
    }
}

/// The decoding thread: takes pieces in order, decodes each into chunks of [`CHUNK`] bytes
/// while the output held is under [`OUTPUT_AHEAD`], until told to quit.
fn decode_thread(shared: &Shared, dictionary: u32) {
    /// However the thread ends (even by a panic, which nothing here should cause), the
    /// installer's thread stops waiting for it.
    struct Gone<'a>(&'a Shared);
    impl Drop for Gone<'_> {
        fn drop(&mut self) {
            let mut st = self.0.lock();
            st.gone = true;
            st.busy = false;
            drop(st);
            self.0.to_main.notify_one();
        }
    }
    let _gone = Gone(shared);
    let lock = || shared.lock();
    let wait = |g| shared.wait_worker(g);
    let mut lz = Liblzma::new(dictionary);
    // The stream `lz` decodes, whether it ended or failed.
    let (mut current, mut ended, mut failed) = (u64::MAX, false, false);
    loop {
        let (stream, piece) = {
            let mut st = lock();
            loop {
                if st.quit {
                    return;
                }
                if let Some(p) = st.input.pop_front() {
                    st.input_bytes -= p.1.len();
                    st.busy = true;
                    break p;
                }
                st = wait(st);
            }
        };
        if stream != current {
            lz.reset();
            (current, ended, failed) = (stream, false, false);
        }
        let mut at = 0;
        let mut outcome: Option<Result<(), XzDecodeError>> = None;
        if ended && !failed {
            // Bytes after the end of the stream.
            outcome = Some(Err(XzDecodeError::Trailing));
        }
        // A failed stream's further pieces are dropped.
        while outcome.is_none() && !failed {
            let mut out = {
                let mut st = lock();
                if st.output_bytes >= OUTPUT_AHEAD {
                    while st.output_bytes > OUTPUT_AHEAD / 4 && st.stream == stream && !st.quit {
                        st = wait(st);
                    }
                }
                if st.stream != stream || st.quit {
                    break;
                }
                st.spare_out.pop().unwrap_or_default()
            };
            out.resize(CHUNK, 0);
            let step = lz.decode(&piece[at..], &mut out);
            let (produced, more) = match step {
                Ok(s) => {
                    at += s.consumed;
                    if s.end {
                        ended = true;
                        outcome = Some(if at < piece.len() {
                            Err(XzDecodeError::Trailing)
                        } else {
                            Ok(())
                        });
                    }
                    // Output space left over: liblzma needs more input.
                    (s.produced, s.produced == CHUNK)
                }
                Err(e) => {
                    failed = true;
                    outcome = Some(Err(e));
                    (0, false)
                }
            };
            out.truncate(produced);
            let mut st = lock();
            if st.stream != stream {
                st.spare_out.push(out);
                break;
            }
            if produced > 0 {
                st.output_bytes += out.capacity();
                st.output.push_back(out);
            } else {
                st.spare_out.push(out);
            }
            shared.wake_main(&st);
            drop(st);
            if !more && at >= piece.len() {
                break;
            }
        }
        let mut st = lock();
        if st.stream == stream {
            match outcome {
                Some(Ok(())) => st.end = true,
                Some(Err(e)) => st.error = Some(e),
                None => {}
            }
        }
        st.busy = false;
        st.spare_in.push(piece);
        shared.wake_main(&st);
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use agent_core::install::XzDecoder;

    /// 1 MiB that compresses (text with numbers) as an `.xz` stream without a check.
    fn stream() -> (Vec<u8>, Vec<u8>) {
        let mut plain = Vec::new();
        let mut i = 0u64;
        while plain.len() < 1 << 20 {
            plain.extend_from_slice(
                format!("line {i} of {} {}\n", i * 7919 % 1013, i ^ 0x5a).as_bytes(),
            );
            i += 1;
        }
        let mut enc =
            Stream::new_easy_encoder(6, liblzma::stream::Check::None).expect("an encoder");
        let mut xz = Vec::with_capacity(plain.len());
        enc.process_vec(&plain, &mut xz, Action::Finish)
            .expect("encodes");
        while enc
            .process_vec(&[], &mut xz, Action::Finish)
            .expect("encodes")
            != Status::StreamEnd
        {
            xz.reserve(1 << 20);
        }
        (plain, xz)
    }

    /// Decodes `xz` as the installer does: 16 KiB pieces into a 16 KiB output, then a drain.
    fn decode_all(
        d: &mut dyn XzDecode,
        xz: &[u8],
    ) -> Result<(Vec<u8>, bool), (Vec<u8>, XzDecodeError)> {
        let mut out = vec![0u8; 16 * 1024];
        let mut got = Vec::new();
        let mut end = false;
        let pieces: Vec<&[u8]> = xz.chunks(16 * 1024).chain([&[][..]]).collect();
        for piece in pieces {
            let drain = piece.is_empty();
            if end {
                if drain {
                    break;
                }
                return Err((got, XzDecodeError::Trailing));
            }
            let mut data = piece;
            while !data.is_empty() || drain {
                let r = match d.decode(data, &mut out) {
                    Ok(r) => r,
                    Err(e) => return Err((got, e)),
                };
                got.extend_from_slice(&out[..r.produced]);
                data = &data[r.consumed..];
                if r.end {
                    // As the installer: bytes after the end are an error.
                    if !data.is_empty() || end {
                        return Err((got, XzDecodeError::Trailing));
                    }
                    end = true;
                    break;
                }
                if r.consumed == 0 && r.produced == 0 {
                    break;
                }
            }
        }
        Ok((got, end))
    }

    #[test]
    fn every_decoder_gives_the_same_bytes_and_the_end() {
        let (plain, xz) = stream();
        let mut dict = vec![0u8; 8 << 20];
        let mut core = XzDecoder::new(&mut dict);
        let mut threaded = Threaded::start(8 << 20).expect("a thread");
        let decoders: [&mut dyn XzDecode; 3] =
            [&mut core, &mut Liblzma::new(8 << 20), &mut threaded];
        for (i, d) in decoders.into_iter().enumerate() {
            // Twice, with a reset between: the second stream decodes as the first did.
            for round in 0..2 {
                d.reset();
                let (got, end) = decode_all(d, &xz).unwrap_or_else(|(got, e)| {
                    panic!(
                        "decoder {i}, round {round}: {e:?} after {} bytes",
                        got.len()
                    )
                });
                assert!(end, "the end of the stream is reported");
                assert_eq!(got.len(), plain.len());
                assert!(got == plain, "decoded bytes differ");
            }
        }
    }

    #[test]
    fn a_reset_in_the_middle_of_a_stream_starts_over() {
        let (plain, xz) = stream();
        let mut d = Threaded::start(8 << 20).expect("a thread");
        let mut out = vec![0u8; 16 * 1024];
        for piece in xz[..xz.len() / 2].chunks(16 * 1024) {
            let _ = d.decode(piece, &mut out).expect("decodes");
        }
        d.reset();
        let (got, end) = decode_all(&mut d, &xz)
            .map_err(|(_, e)| e)
            .expect("decodes");
        assert!(end);
        assert!(got == plain, "decoded bytes differ after a reset");
    }

    #[test]
    fn corrupt_cut_and_trailing_streams_fail_the_same_way_on_both_threads() {
        let (_, xz) = stream();
        let mut bad = xz.clone();
        let at = bad.len() / 2;
        bad[at] ^= 0x40;
        let cut = &xz[..xz.len() - 100];
        let mut trailing = xz.clone();
        trailing.extend_from_slice(&[0; 8]);
        for (name, input) in [
            ("bit flip", &bad[..]),
            ("cut", cut),
            ("trailing", &trailing[..]),
        ] {
            let mut sync = Liblzma::new(8 << 20);
            let mut threaded = Threaded::start(8 << 20).expect("a thread");
            let a = decode_all(&mut sync, input);
            let b = decode_all(&mut threaded, input);
            match (&a, &b) {
                (Err((x, e)), Err((y, f))) => {
                    assert_eq!(e, f, "{name}: the same error");
                    // The thread delivers everything before the failure; liblzma on the
                    // installer's thread drops the failing call's output.
                    assert!(y.len() >= x.len() && y[..x.len()] == x[..], "{name}");
                }
                // A cut stream ends without its end: no error, no end.
                (Ok((x, false)), Ok((y, false))) if name == "cut" => assert!(x == y),
                _ => panic!(
                    "{name}: {:?} vs {:?}",
                    a.map(|r| r.1).map_err(|r| r.1),
                    b.map(|r| r.1).map_err(|r| r.1)
                ),
            }
            if name == "trailing" {
                assert!(matches!(b, Err((_, XzDecodeError::Trailing))));
            }
        }
    }

    #[test]
    fn a_dictionary_over_the_limit_is_refused() {
        let mut enc =
            Stream::new_easy_encoder(9, liblzma::stream::Check::None).expect("an encoder");
        let mut xz = Vec::with_capacity(1 << 16);
        let plain = b"a block declares its dictionary".repeat(100);
        enc.process_vec(&plain, &mut xz, Action::Run)
            .expect("encodes");
        while enc
            .process_vec(&[], &mut xz, Action::Finish)
            .expect("encodes")
            != Status::StreamEnd
        {
            xz.reserve(1 << 16);
        }
        // Preset 9 declares a 64 MiB dictionary.
        let mut d = Threaded::start(8 << 20).expect("a thread");
        let r = decode_all(&mut d, &xz).map(|r| r.1).map_err(|r| r.1);
        assert_eq!(r, Err(XzDecodeError::Corrupt));
        let mut d = Liblzma::new(64 << 20);
        let r = decode_all(&mut d, &xz).map(|r| r.1).map_err(|r| r.1);
        assert_eq!(r, Ok(true));
    }
}
