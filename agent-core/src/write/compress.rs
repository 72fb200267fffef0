//! Compressing parts on every core: xz (a raw LZMA2 stream behind a BCJ filter) or deflate,
//! stored when that does not make them smaller.

use std::boxed::Box;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::string::ToString;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::vec;
use std::vec::Vec;

use miniz_oxide::deflate::core::{
    compress, create_comp_flags_from_zip_params, CompressorOxide, TDEFLFlush, TDEFLStatus,
};
use sha2::{Digest, Sha256};

use super::parts::Job;
use super::{WriteError, STEP};
use crate::wire::{
    dictionary_at_most, Codec, Filter, PartEntry, DEFLATE_DICTIONARY, MIN_DICTIONARY,
};

/// How parts are compressed.
pub(super) struct Settings {
    pub(super) codec: Codec,
    pub(super) level: u8,
    pub(super) max_dictionary: u32,
    pub(super) deflate_dictionary: u32,
}

/// A compressed part: its entry, its bytes (in a temporary file), and for xz the dictionary it
/// was compressed with.
pub(super) struct Done {
    pub(super) entry: PartEntry,
    pub(super) file: File,
    pub(super) dictionary: u32,
}

/// Compresses every part on every core (a worker per core takes the next part), in the file's
/// order.
pub(super) fn compress_parts(
    spool: &File,
    jobs: &[Job],
    settings: &Settings,
) -> Result<Vec<Done>, WriteError> {
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(jobs.len())
        .max(1);
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Result<Done, WriteError>>>> =
        Mutex::new((0..jobs.len()).map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(job) = jobs.get(i) else { break };
                let r = compress_part(spool, job, settings);
                let failed = r.is_err();
                if let Ok(mut all) = results.lock() {
                    all[i] = Some(r);
                }
                if failed {
                    // Let the other workers stop too.
                    next.store(jobs.len(), Ordering::Relaxed);
                    break;
                }
            });
        }
    });
    let results = results
        .into_inner()
        .map_err(|_| WriteError::Io(io::Error::other("a compression worker panicked")))?;
    let mut done = Vec::with_capacity(jobs.len());
    for r in results {
        match r {
            Some(r) => done.push(r?),
            None => {
                return Err(WriteError::Io(io::Error::other(
                    "a part was not compressed",
                )))
            }
        }
    }
    Ok(done)
}

/// Reads a part's records from the spool in [`STEP`]-byte pieces.
fn for_each_piece(
    spool: &File,
    job: &Job,
    mut f: impl FnMut(&[u8]) -> io::Result<()>,
) -> io::Result<u64> {
    let mut buf = vec![0u8; STEP];
    let mut total = 0u64;
    for &(offset, len) in &job.ranges {
        let mut done = 0u64;
        while done < len {
            let n = usize::try_from(len - done).unwrap_or(STEP).min(STEP);
            spool.read_exact_at(&mut buf[..n], offset + done)?;
            f(&buf[..n])?;
            done += n as u64;
        }
        total += len;
    }
    Ok(total)
}

/// A writer that hashes and counts what it passes on.
struct Hashing<W: Write> {
    inner: W,
    hash: Sha256,
    size: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(b)?;
        self.hash.update(&b[..n]);
        self.size += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The dictionary of xz's presets 0 to 9 (`xz --help`): 256 KiB to 64 MiB.
const XZ_PRESET_DICTIONARY: [u32; 10] = [
    256 << 10,
    1 << 20,
    2 << 20,
    4 << 20,
    4 << 20,
    8 << 20,
    8 << 20,
    16 << 20,
    32 << 20,
    64 << 20,
];

/// Compresses one part into a temporary file; stores it instead when that is not smaller.
fn compress_part(spool: &File, job: &Job, settings: &Settings) -> Result<Done, WriteError> {
    let uncompressed: u64 = job.ranges.iter().map(|r| r.1).sum();
    let uncompressed32 = u32::try_from(uncompressed).map_err(|_| WriteError::TooLarge)?;
    let mut out = Hashing {
        inner: BufWriter::with_capacity(STEP, tempfile::tempfile()?),
        hash: Sha256::new(),
        size: 0,
    };
    let mut dictionary = 0;
    if settings.codec == Codec::Xz {
        // A dictionary no larger than the part needs, than the level's (`xz -1` uses 1 MiB:
        // the encoder's memory is about ten times its dictionary), nor than allowed.
        dictionary = dictionary_at_most(uncompressed.next_power_of_two())
            .unwrap_or(MIN_DICTIONARY)
            .min(XZ_PRESET_DICTIONARY[usize::from(settings.level.min(9))])
            .min(settings.max_dictionary);
        xz_compress(spool, job, settings.level, job.filter, dictionary, &mut out)?;
    } else {
        deflate(spool, job, settings, &mut out)?;
    }
    let (codec, filter) = if out.size < uncompressed {
        (settings.codec, job.filter)
    } else {
        // Not worth it: store the records as they are.
        out = Hashing {
            inner: BufWriter::with_capacity(STEP, tempfile::tempfile()?),
            hash: Sha256::new(),
            size: 0,
        };
        for_each_piece(spool, job, |b| out.write_all(b))?;
        (Codec::Stored, Filter::None)
    };
    let filter = if codec == Codec::Xz {
        filter
    } else {
        Filter::None
    };
    let size = u32::try_from(out.size).map_err(|_| WriteError::TooLarge)?;
    let sha256 = out.hash.finalize().into();
    let file = out.inner.into_inner().map_err(|e| e.into_error())?;
    Ok(Done {
        entry: PartEntry {
            codec,
            filter,
            size,
            uncompressed_size: uncompressed32,
            ops: job.ops,
            sha256,
        },
        file,
        dictionary,
    })
}

/// A raw LZMA2 stream (liblzma's raw encoder: the BCJ filter, then LZMA2 with `dictionary`,
/// xz's preset `level`) of the part's records.
fn xz_compress(
    spool: &File,
    job: &Job,
    level: u8,
    filter: Filter,
    dictionary: u32,
    out: &mut dyn Write,
) -> Result<(), WriteError> {
    use liblzma::stream::{Filters, LzmaOptions, Stream};
    let lzma = |e: liblzma::stream::Error| WriteError::Io(io::Error::other(e));
    let mut opts = LzmaOptions::new_preset(u32::from(level.min(9))).map_err(lzma)?;
    opts.dict_size(dictionary);
    let mut filters = Filters::new();
    match filter {
        Filter::X86 => {
            filters.x86();
        }
        Filter::Arm => {
            filters.arm();
        }
        Filter::ArmThumb => {
            filters.arm_thumb();
        }
        Filter::Arm64 => {
            filters.arm64();
        }
        Filter::None | Filter::Unknown(_) => {}
    }
    filters.lzma2(&opts);
    let stream = Stream::new_raw_encoder(&filters).map_err(lzma)?;
    let mut enc = liblzma::write::XzEncoder::new_stream(out, stream);
    for_each_piece(spool, job, |b| enc.write_all(b))?;
    enc.finish()?;
    Ok(())
}

/// `records` as an xz part holds them (a raw LZMA2 stream through `filter`, with an LZMA2
/// dictionary of `dictionary` bytes, xz's preset `level`): for tests and tools that build files
/// by hand.
pub fn xz_raw(records: &[u8], filter: Filter, dictionary: u32, level: u8) -> io::Result<Vec<u8>> {
    let mut spool = tempfile::tempfile()?;
    spool.write_all(records)?;
    let job = Job {
        ranges: vec![(0, records.len() as u64)],
        filter,
        ops: 0,
    };
    let mut out = Vec::new();
    xz_compress(&spool, &job, level, filter, dictionary, &mut out).map_err(|e| match e {
        WriteError::Io(e) => e,
        e => io::Error::other(e.to_string()),
    })?;
    Ok(out)
}

/// One raw deflate stream of the part's records; below a 32 KiB dictionary, a full flush every
/// `deflate_dictionary` bytes keeps back-references within it.
fn deflate(
    spool: &File,
    job: &Job,
    settings: &Settings,
    out: &mut dyn Write,
) -> Result<(), WriteError> {
    let mut compressor = Box::new(CompressorOxide::new(create_comp_flags_from_zip_params(
        i32::from(settings.level),
        -15,
        0,
    )));
    let reset_every = if settings.deflate_dictionary < DEFLATE_DICTIONARY {
        settings.deflate_dictionary as u64
    } else {
        u64::MAX
    };
    let total: u64 = job.ranges.iter().map(|r| r.1).sum();
    let mut deflated = vec![0u8; STEP];
    let mut fed = 0u64;
    let mut since_reset = 0u64;
    let mut run = |input: &[u8], flush: TDEFLFlush| -> io::Result<()> {
        let mut input = input;
        loop {
            let (status, used, written) = compress(&mut compressor, input, &mut deflated, flush);
            input = &input[used..];
            out.write_all(&deflated[..written])?;
            match status {
                TDEFLStatus::Done => return Ok(()),
                TDEFLStatus::Okay if input.is_empty() && flush == TDEFLFlush::None => return Ok(()),
                // A flush is complete when it wrote less than the buffer.
                TDEFLStatus::Okay
                    if input.is_empty()
                        && flush == TDEFLFlush::Full
                        && written < deflated.len() =>
                {
                    return Ok(())
                }
                TDEFLStatus::Okay => {}
                _ => return Err(io::Error::other("deflate failed")),
            }
        }
    };
    for_each_piece(spool, job, |mut b| {
        while !b.is_empty() {
            let n = (b.len() as u64).min(reset_every - since_reset) as usize;
            fed += n as u64;
            since_reset += n as u64;
            let flush = if fed == total {
                TDEFLFlush::Finish
            } else if since_reset == reset_every {
                since_reset = 0;
                TDEFLFlush::Full
            } else {
                TDEFLFlush::None
            };
            run(&b[..n], flush)?;
            b = &b[n..];
        }
        Ok(())
    })?;
    if total == 0 {
        run(&[], TDEFLFlush::Finish)?;
    }
    Ok(())
}
