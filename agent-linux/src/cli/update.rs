//! Update files: delta generate, generate-deltas (build side), apply-offline (device side).

use std::path::PathBuf;

use agent_core::write::RedeflateMode;
use agent_linux::bootcfg::BootConfig;
use agent_linux::generate::{self, GenerateOptions};
use agent_linux::repo::{self, Repo};
use agent_linux::sysroot::Sysroot;
use agent_linux::{apply, deploy, inspect, keys};
use anyhow::{bail, Context};

use super::output::{self, human_bytes};
use super::{esc, open_source, warn_unsigned, ProgressArgs, RepoArg, TrustArgs};
use agent_linux::progress::{Phase, Reporter};

/// `ecu-agent delta ...`.
#[derive(Debug, clap::Subcommand)]
pub enum DeltaCommand {
    /// Write one `.update` file: from scratch (`--empty`) or a delta from `--from` to `--to`.
    Generate(DeltaGenerateArgs),
    /// Describe an `.update` file without installing it or touching any store: ref, from,
    /// to, version, subject, timestamp, security version, format version, every part (codec,
    /// size, operations), objects, signature algorithm and whether it verifies under the
    /// trusted keys (and which key). A damaged file (bad header or superblock, a part whose
    /// SHA-256 differs, truncation, trailing bytes) is an error.
    Show(DeltaShowArgs),
}

/// Arguments of `ecu-agent delta show`.
#[derive(Debug, clap::Args)]
pub struct DeltaShowArgs {
    /// The `.update` file, or `-` for standard input.
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// Check the signature against the `trusted-key` (and `revoked-key`) lines of this
    /// sysroot's agent.conf.
    #[arg(long, value_name = "S")]
    sysroot: Option<PathBuf>,
    /// Check the signature against this ed25519 public key file (`K.pub` from
    /// `ecu-agent keygen`); repeat for several; adds to --sysroot's keys.
    #[arg(long = "trusted-key", value_name = "K.pub")]
    trusted_keys: Vec<PathBuf>,
    /// Print the description as JSON on stdout (fields `ref`, `from`, `to`, `version`,
    /// `subject`, `timestamp`, `security_version`, `format_version`, `objects`, `size`,
    /// `parts[]` with `codec`, `codec_code`, `size`, `uncompressed_size`, `ops`, `sha256`,
    /// and `signature` with `algorithm`, `verified`, `key`, `revoked`, `keys_checked`).
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    progress: ProgressArgs,
}

/// Options shared by the generating commands.
#[derive(Debug, clap::Args)]
pub struct WriterArgs {
    /// Sign the file with this ed25519 secret key (from `ecu-agent keygen`); unsigned without.
    #[arg(long, value_name = "K")]
    sign_key: Option<PathBuf>,
    /// Target decoded size of a part in bytes (default: 512 KiB for deflate; for xz, 4 parts
    /// of equal size once each holds at least the dictionary, else 2 from 512 KiB of
    /// records, else 1); with
    /// this flag, records are packed up to it and larger objects get a part of their own.
    #[arg(long, value_name = "BYTES")]
    part_size: Option<usize>,
    /// Compression level: deflate's 0 (fastest) to 10 (smallest), or xz's preset 0 to 9;
    /// default 6.
    #[arg(long, value_name = "LEVEL", value_parser = clap::value_parser!(u8).range(0..=10))]
    compression: Option<u8>,
    /// Write every changed file whole. By default a delta writes a changed file as a binary
    /// patch (bsdiff) of the source commit's file at the same path, or of a renamed sibling
    /// (`libfoo.so.1.2` for `libfoo.so.1.3`), when the patch is smaller; such a file needs an
    /// agent that reads format version 3.
    #[arg(long)]
    no_patches: bool,
    /// Reuse each unchanged object by a record of its own (34 bytes, which xz cannot shrink).
    /// By default a delta reuses the unchanged entries of a changed directory by one record
    /// that names the source commit's directory and sets a bit for each entry: on a small
    /// delta a quarter of the file. Such a file needs an agent that reads format version 5.
    #[arg(long)]
    no_reuse_entries: bool,
    /// Write gzip files (manuals, changelogs) as they are: the same as `--redeflate none`.
    #[arg(long, conflicts_with = "redeflate")]
    no_redeflate: bool,
    /// Which gzip files (manuals, changelogs) are carried as the text they inflate to, which xz
    /// compresses better; the device deflates the text again and checks the result against
    /// the file's id. Such a file needs an agent that reads format version 4 with a deflate
    /// encoder (`ecu-agent` has zlib's and GNU gzip's; MCU firmware has none). Only with
    /// `--codec xz`.
    #[arg(long, value_enum, value_name = "WHICH", default_value_t = RedeflateArg::Zlib)]
    redeflate: RedeflateArg,
    /// Codec of the parts: xz (LZMA2, with a BCJ filter for parts of x86, ARM, ARM-Thumb and
    /// ARM64 executables; the smallest files) or deflate (for devices whose agent is built
    /// without xz, such as MCU firmware). Parts that do not shrink are stored either way.
    #[arg(long, value_enum, default_value_t = CodecArg::Xz)]
    codec: CodecArg,
    /// The largest window a device must lend to install the file, in bytes (at least 4096):
    /// xz's LZMA2 dictionary is at most this, and deflate's back-references reach at most this
    /// far (deflate never exceeds 32 KiB). The default, 8388608 (8 MiB), is what
    /// `ecu-agent apply` lends; an MCU that lends 8 KiB needs `--codec deflate
    /// --max-dictionary 8192`.
    #[arg(long, value_name = "BYTES", default_value_t = u64::from(agent_core::write::DEFAULT_MAX_DICTIONARY))]
    max_dictionary: u64,
}

/// `--redeflate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RedeflateArg {
    /// Those whose deflate stream zlib's encoder rebuilds byte for byte: on Debian, most gzip
    /// files under 64 KiB of text (the default).
    Zlib,
    /// Those zlib's or GNU gzip's encoder (`gzip -6`, `gzip -9`) rebuilds: on Debian, every
    /// one. The smallest files, for a fleet that pays per byte: on a Debian system 3% fewer
    /// bytes for a delta and 6% for a file from scratch, but the device deflates the large
    /// manuals and changelogs again (about 16 MB of text per second of CPU: a second more to
    /// install a whole system) and generating takes longer (xz compresses their text).
    All,
    /// None.
    None,
}

/// `--codec`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CodecArg {
    /// LZMA2 (format version 3).
    Xz,
    /// Raw deflate.
    Deflate,
}

impl WriterArgs {
    fn options(&self) -> anyhow::Result<GenerateOptions> {
        let sign_key = self.sign_key.as_deref().map(keys::read_key).transpose()?;
        if self.max_dictionary < u64::from(agent_core::wire::MIN_DICTIONARY) {
            bail!(
                "--max-dictionary {} is too small: every codec needs at least {} bytes",
                self.max_dictionary,
                agent_core::wire::MIN_DICTIONARY
            );
        }
        Ok(GenerateOptions {
            sign_key,
            part_size: self.part_size,
            compression: self.compression,
            no_patches: self.no_patches,
            no_reuse_entries: self.no_reuse_entries,
            redeflate: match (self.no_redeflate, self.redeflate) {
                (true, _) | (_, RedeflateArg::None) => RedeflateMode::Off,
                (_, RedeflateArg::All) => RedeflateMode::All,
                (_, RedeflateArg::Zlib) => RedeflateMode::Zlib,
            },
            codec: match self.codec {
                CodecArg::Xz => agent_core::wire::Codec::Xz,
                CodecArg::Deflate => agent_core::wire::Codec::Deflate,
            },
            max_dictionary: Some(self.max_dictionary),
        })
    }
}

/// Arguments of `ecu-agent delta generate`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["from", "empty"])))]
pub struct DeltaGenerateArgs {
    #[command(flatten)]
    repo: RepoArg,
    /// The source commit the device has (a ref, a full id or a unique prefix).
    #[arg(long, value_name = "C")]
    from: Option<String>,
    /// Write a from-scratch file holding every object of the target.
    #[arg(long)]
    empty: bool,
    /// The target commit (a ref, a full id or a unique prefix).
    #[arg(long, value_name = "C")]
    to: String,
    /// The ref the update moves (default: `--to` when it is a ref, else the first ref whose
    /// history holds the target).
    #[arg(long = "ref", value_name = "REF")]
    ref_name: Option<String>,
    /// Where to write the file (written to a temporary name, then renamed).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    #[command(flatten)]
    writer: WriterArgs,
    /// Print what was written as JSON on stdout.
    #[arg(long)]
    json: bool,
}

pub fn delta(cmd: DeltaCommand) -> anyhow::Result<()> {
    match cmd {
        DeltaCommand::Generate(a) => delta_generate(a),
        DeltaCommand::Show(a) => delta_show(a),
    }
}

fn delta_show(a: DeltaShowArgs) -> anyhow::Result<()> {
    let (mut trusted, mut revoked) = (Vec::new(), Vec::new());
    if let Some(s) = &a.sysroot {
        let cfg = BootConfig::load(s)?;
        trusted = cfg.trusted_keys;
        revoked = cfg.revoked_keys;
    }
    for k in &a.trusted_keys {
        let k = keys::read_key(k)?;
        if !trusted.contains(&k) {
            trusted.push(k);
        }
    }
    let mut rep = a.progress.reporter("delta show", &a.file);
    let res = (|| {
        let mut source = open_source(&a.file)?;
        if let Some(n) = source.len() {
            rep.set_total(n);
        }
        rep.set_phase(Phase::Verifying);
        let read: &mut dyn std::io::Read = match &mut source {
            super::UpdateSource::File(f) => f,
            super::UpdateSource::Stdin(s) => s,
        };
        inspect::inspect(&mut rep.reader(read), &trusted, &revoked)
            .with_context(|| format!("cannot show {}", a.file.display()))
    })();
    let s = rep.end(res, |_| None)?;
    if a.json {
        return output::json(&s);
    }
    let mut t = String::new();
    t.push_str(&format!("ref:              {}\n", esc(&s.ref_name)));
    t.push_str(&format!(
        "from:             {}\n",
        s.from.as_deref().unwrap_or("(none: from scratch)")
    ));
    t.push_str(&format!("to:               {}\n", s.to));
    t.push_str(&format!("version:          {}\n", esc(&s.version)));
    t.push_str(&format!("subject:          {}\n", esc(&s.subject)));
    t.push_str(&format!(
        "timestamp:        {} ({})\n",
        output::format_utc(s.timestamp),
        s.timestamp
    ));
    t.push_str(&format!("security version: {}\n", s.security_version));
    t.push_str(&format!("format version:   {}\n", s.format_version));
    t.push_str(&format!("objects:          {}\n", s.objects));
    t.push_str(&format!(
        "size:             {} ({} bytes)\n",
        human_bytes(s.size),
        s.size
    ));
    t.push_str(&format!(
        "dictionary:       {} ({} bytes)\n",
        human_bytes(u64::from(s.dictionary)),
        s.dictionary
    ));
    t.push_str(&format!("parts:            {}\n", s.parts.len()));
    for (i, p) in s.parts.iter().enumerate() {
        let codec = match p.filter.as_str() {
            "none" => p.codec.clone(),
            f => format!("{}+{f}", p.codec),
        };
        t.push_str(&format!(
            "  {i:>3} {codec:<10} {:>10} bytes, {:>10} decoded, {} ops\n",
            p.size, p.uncompressed_size, p.ops
        ));
    }
    let sig = &s.signature;
    let verdict = match (sig.algorithm.as_str(), &sig.key) {
        ("none", _) => "unsigned".to_string(),
        (_, Some(k)) if sig.revoked => format!("signed by REVOKED key {k}"),
        (_, Some(k)) => format!("verified by key {k}"),
        _ if sig.keys_checked == 0 => {
            "not checked: no trusted key given (--sysroot or --trusted-key)".to_string()
        }
        _ => format!(
            "DOES NOT VERIFY under any of {} trusted keys",
            sig.keys_checked
        ),
    };
    t.push_str(&format!(
        "signature:        {} ({verdict})\n",
        sig.algorithm
    ));
    output::out(&t)?;
    Ok(())
}

fn delta_generate(a: DeltaGenerateArgs) -> anyhow::Result<()> {
    if let Some(r) = &a.ref_name {
        repo::validate_ref(r)?;
    }
    let opts = a.writer.options()?;
    let repo = Repo::open(&a.repo.repo)?;
    let to = repo.resolve(&a.to).with_context(|| "cannot resolve --to")?;
    let from = a
        .from
        .as_deref()
        .map(|f| repo.resolve(f))
        .transpose()
        .with_context(|| "cannot resolve --from")?;
    let ref_name = match a.ref_name {
        Some(r) => r,
        None => repo
            .infer_ref(Some(&a.to), &to, repo::RefSearch::History)?
            .ok_or(generate::GenerateError::NoRef(to))?,
    };
    let mut progress = Reporter::text();
    let s = generate::generate_file(&repo, &ref_name, from, &to, &opts, &a.out, &mut |n, b| {
        progress.message(|| format!("generating: {n} objects, {}", human_bytes(b)))
    })
    .with_context(|| format!("cannot write {}", a.out.display()))?;
    progress.clear();
    if a.json {
        return output::json(&serde_json::json!({"path": a.out, "update": s}));
    }
    eprintln!(
        "{}: {} ({} objects written, {} of them as patches and {} as inflated gzip files, {} reused, {} parts)",
        a.out.display(),
        human_bytes(s.bytes),
        s.written,
        s.patched,
        s.redeflated,
        s.reused,
        s.parts
    );
    Ok(())
}

/// Arguments of `ecu-agent generate-deltas`.
#[derive(Debug, clap::Args)]
pub struct GenerateDeltasArgs {
    #[command(flatten)]
    repo: RepoArg,
    /// Directory to write the files into (created if missing). Names:
    /// `<ref with / as ->-<to>.update` from scratch, `<ref with / as ->-<from>-<to>.update`
    /// for deltas, ids in full hex.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// How many previous commits of each ref get a delta to its newest commit.
    #[arg(long, value_name = "N", default_value_t = 3)]
    depth: usize,
    #[command(flatten)]
    writer: WriterArgs,
    /// The serial of the index written beside the files (`updates.index`, signed with
    /// --sign-key; docs/PUBLISH.md). A device refuses an index whose serial is below one it
    /// accepted before. Default: the current time in seconds since 1970, or one more than
    /// the serial of the index already in --out when that is larger.
    #[arg(long, value_name = "N")]
    index_serial: Option<u64>,
    /// Devices refuse the index this many seconds after it was written (a mirror that
    /// stopped updating, "freezing" devices on old software, is then noticed). Default:
    /// it never expires. Publish again before it runs out.
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
    index_valid_for: Option<u64>,
    /// Print the files as JSON on stdout.
    #[arg(long)]
    json: bool,
}

pub fn generate_deltas(a: GenerateDeltasArgs) -> anyhow::Result<()> {
    let opts = a.writer.options()?;
    let repo = Repo::open(&a.repo.repo)?;
    let mut progress = Reporter::text();
    let mut count = 0;
    let files = generate::generate_deltas(&repo, &a.out, a.depth, &opts, &mut |f| {
        count += 1;
        progress.message(|| format!("generated {count} files, last {}", f.path.display()));
    })
    .with_context(|| format!("cannot generate updates into {}", a.out.display()))?;
    progress.clear();
    let index = agent_linux::index::publish(
        &repo,
        &a.out,
        &files,
        opts.sign_key.as_ref(),
        a.index_serial,
        a.index_valid_for,
    )
    .with_context(|| format!("cannot write the index of {}", a.out.display()))?;
    if a.json {
        return output::json(&files);
    }
    let mut s = String::new();
    for f in &files {
        s.push_str(&format!("{} {}\n", f.path.display(), f.summary.bytes));
    }
    output::out(&s)?;
    eprintln!(
        "{} files; index {} (serial {}, {})",
        files.len(),
        a.out.join(agent_linux::index::INDEX_FILE).display(),
        index.serial,
        if opts.sign_key.is_some() {
            "signed"
        } else {
            "UNSIGNED: devices that require signatures refuse it"
        }
    );
    Ok(())
}

/// Arguments of `ecu-agent apply-offline`.
#[derive(Debug, clap::Args)]
pub struct ApplyArgs {
    /// The sysroot to install into; its repository (`S/repo`) is created when missing. Its
    /// agent.conf (if any) says which keys are trusted or revoked and which refs are
    /// followed; its security-floor file the lowest security version accepted.
    #[arg(long, value_name = "S")]
    sysroot: PathBuf,
    #[command(flatten)]
    trust: TrustArgs,
    /// The `.update` file, or `-` for standard input. An install interrupted earlier (a read
    /// error, a kill, a power cut) resumes after its last verified part: a file seeks there,
    /// standard input sent again from byte 0 has those bytes skipped.
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// Standard input holds the update from this byte on (the rest of an interrupted
    /// transfer): the install resumes from its checkpoint, which must be at or after this
    /// byte (an interrupted install prints where).
    #[arg(long, value_name = "BYTE")]
    resume_from_offset: Option<u64>,
    /// Print what was installed as JSON on stdout (`resumed_from`: where it resumed, or null).
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    progress: ProgressArgs,
}

pub fn apply_offline(a: ApplyArgs) -> anyhow::Result<()> {
    let opts = a.trust.install_options()?;
    let cfg = BootConfig::load(&a.sysroot)?;
    let trust = deploy::trust_for(&a.sysroot, &cfg, &opts)?;
    if trust.trusted_keys.is_empty() && !trust.allow_unsigned {
        // Before anything is created or read.
        return Err(apply::ApplyError::NoTrustedKeys)
            .with_context(|| format!("cannot install {}", a.file.display()));
    }
    let mut rep = a.progress.reporter("apply-offline", &a.file);
    let res = (|| {
        let mut source = open_source(&a.file)?;
        if let Some(n) = source.len() {
            rep.set_total(n);
        }
        let input = source.input(a.resume_from_offset)?;
        let sysroot = Sysroot::open_or_create(&a.sysroot)?;
        // As `install` says it: the file, then the installer's reason as its cause.
        apply::apply_from(sysroot.repo(), input, &trust, &mut |p| rep.install(p))
            .with_context(|| format!("cannot install {}", a.file.display()))
    })();
    let applied = rep.end(res, |ap| Some(ap.commit.clone()))?;
    warn_unsigned(&applied);
    if a.json {
        return output::json(&applied);
    }
    if let Some(at) = applied.resumed_from {
        eprintln!("resumed at byte {at}: the parts before it were verified by an earlier attempt");
    }
    eprintln!(
        "installed {} on {}{}{}",
        applied.commit,
        esc(&applied.ref_name),
        if applied.version.is_empty() {
            String::new()
        } else {
            format!(" (version {})", esc(&applied.version))
        },
        applied
            .from
            .as_ref()
            .map(|f| format!(", delta from {f}"))
            .unwrap_or_default()
    );
    Ok(output::out(&format!("{}\n", applied.commit))?)
}
