//! Progress of a long command, for people and for programs: one [`Reporter`] per command.
//! The commands that feed an update's bytes (`install`, `apply-offline`, `delta show`,
//! `upgrade`) report bytes, parts and phases as below; the others (`commit`, `fsck`,
//! `import-ostree`, `generate`, `generate-deltas`) tell a line of text ([`Reporter::text`],
//! [`Reporter::message`]), shown on a terminal only.
//!
//! - On a terminal (stderr is one): a progress bar on stderr (indicatif) with the phase, the
//!   bytes done and the total, the rate and the time left; cleared when the command ends.
//! - With `--json-progress` ([`Mode::Json`]): one JSON object per line on **stderr** (stdout
//!   keeps the command's result: the commit id, or the `--json` document). Every line is an
//!   [`Event`]: `start` first, `progress` lines, then exactly one `done` or `error` last. The
//!   other lines a command writes on stderr (warnings, the final `error: ...` for people) never
//!   start with `{`.
//! - Otherwise ([`Mode::Off`]): nothing at all.
//!
//! Updates are rate-limited to one every [`MIN_INTERVAL`] (a phase change, the end and a
//! failure are always shown), so a caller may report after every chunk it feeds: a call that
//! shows nothing reads the clock and returns.
//!
//! The schema of the JSON lines (fields in this order; `null` where not known yet):
//!
//! ```text
//! {"event":"start","command":"install","file":"os.update"}
//! {"event":"progress","phase":"installing","bytes":65536,"total":1048576,"parts_done":0,"parts_total":3,"objects_done":12,"objects_total":40,"elapsed_ms":31}
//! {"event":"done","bytes":1048576,"total":1048576,"elapsed_ms":250,"commit":"<64 hex>"}
//! {"event":"error","phase":"installing","bytes":524288,"total":1048576,"elapsed_ms":120,"message":"cannot install os.update: ...","resume_at":262144}
//! ```
//!
//! `bytes` is the offset in the update file reached so far: it never decreases (a resumed
//! install jumps over the parts an earlier attempt verified) and is the file's size at `done`.
//! `phase` is one of [`Phase`]'s names. `message` holds the whole error chain, each message once,
//! joined by `: `; `resume_at` is where an interrupted install resumes (`--resume-from-offset`),
//! or `null` when there is nothing to resume.

use std::error::Error;
use std::io::{self, IsTerminal, Read, Write};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

use crate::apply::ApplyError;
use crate::deploy::DeployError;
use crate::upgrade::UpgradeError;

/// The shortest time between two updates shown (10 a second).
pub const MIN_INTERVAL: Duration = Duration::from_millis(100);

/// Where progress goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Nothing is shown.
    Off,
    /// A progress bar on stderr, a terminal.
    Bar,
    /// JSON lines ([`Event`]) on stderr.
    Json,
}

impl Mode {
    /// [`Mode::Json`] when `json_progress` (`--json-progress`), else [`Mode::Bar`] when stderr
    /// is a terminal, else [`Mode::Off`].
    pub fn detect(json_progress: bool) -> Mode {
        if json_progress {
            Mode::Json
        } else if io::stderr().is_terminal() {
            Mode::Bar
        } else {
            Mode::Off
        }
    }
}

/// What a command is doing. A command with a step of its own adds a variant here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Phase {
    /// Nothing read yet.
    Starting,
    /// Reading the header, the superblock and the signature, and checking them.
    Header,
    /// Skipping the parts an interrupted attempt verified (`bytes` jumps to where it resumes).
    Resuming,
    /// Decoding parts, writing objects and verifying each one's SHA-256.
    Installing,
    /// Everything is verified: the commit and the ref are recorded.
    Committing,
    /// The commit is checked out as a deployment and staged for the next boot (`install`).
    Deploying,
    /// Reading a file through and checking its parts' hashes (`delta show`).
    Verifying,
}

impl Phase {
    /// The phase's name, as in the JSON lines.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Starting => "starting",
            Phase::Header => "header",
            Phase::Resuming => "resuming",
            Phase::Installing => "installing",
            Phase::Committing => "committing",
            Phase::Deploying => "deploying",
            Phase::Verifying => "verifying",
        }
    }

    /// The phase of an install, from what the installer reports.
    pub fn of_install(p: &agent_core::install::Progress) -> Phase {
        if p.done {
            Phase::Committing
        } else if p.resume_offset.is_some_and(|o| o > p.bytes) {
            Phase::Resuming
        } else if p.bytes_total.is_none() {
            Phase::Header
        } else {
            Phase::Installing
        }
    }
}

/// One JSON line of `--json-progress` (see the module's documentation for examples).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "lowercase")]
#[non_exhaustive]
pub enum Event<'a> {
    /// The first line.
    Start {
        /// The command (`install`, `apply-offline`, ...).
        command: &'a str,
        /// The update file as given (`-` for standard input, a URL for `upgrade`).
        file: &'a str,
    },
    /// Where the command is; at most one every [`MIN_INTERVAL`], and at each phase change.
    Progress {
        /// What it is doing.
        phase: Phase,
        /// Bytes of the update file done (its offset): never decreases.
        bytes: u64,
        /// Bytes of the whole file, once known.
        total: Option<u64>,
        /// Parts verified, once the superblock is.
        parts_done: Option<u32>,
        /// Parts in the file, once the superblock is verified.
        parts_total: Option<u32>,
        /// Objects written (or reused) and verified, once the superblock is.
        objects_done: Option<u32>,
        /// Objects in the file, once the superblock is verified.
        objects_total: Option<u32>,
        /// Milliseconds since the start.
        elapsed_ms: u64,
    },
    /// The last line of a command that succeeded.
    Done {
        /// Bytes of the update file done: its size.
        bytes: u64,
        /// Bytes of the whole file.
        total: Option<u64>,
        /// Milliseconds since the start.
        elapsed_ms: u64,
        /// The commit installed, for a command that installs one.
        commit: Option<&'a str>,
    },
    /// The last line of a command that failed (it exits non-zero).
    Error {
        /// What it was doing.
        phase: Phase,
        /// Bytes of the update file done when it failed.
        bytes: u64,
        /// Bytes of the whole file, if known.
        total: Option<u64>,
        /// Milliseconds since the start.
        elapsed_ms: u64,
        /// The error and its causes, each once, joined by `: `.
        message: String,
        /// Where the install resumes if the same file is sent again (`--resume-from-offset`
        /// for a stream), when the parts before it were verified and kept.
        resume_at: Option<u64>,
    },
}

/// Where the events go.
enum Sink {
    Off,
    Bar(ProgressBar),
    Json(Box<dyn Write>),
}

/// The progress of one command: created at its start, driven with [`Reporter::advance`] or
/// [`Reporter::install`] as bytes are fed, ended with [`Reporter::done`] or
/// [`Reporter::error`].
pub struct Reporter {
    sink: Sink,
    started: Instant,
    last_shown: Option<Instant>,
    /// Whether something changed since the last update shown.
    pending: bool,
    phase: Phase,
    bytes: u64,
    total: Option<u64>,
    parts: Option<(u32, u32)>,
    objects: Option<(u32, u32)>,
    ended: bool,
}

impl Reporter {
    /// Progress of `command` feeding `file`, shown as `mode` says on stderr. With
    /// [`Mode::Json`] the `start` line is written now.
    pub fn new(mode: Mode, command: &str, file: &str) -> Reporter {
        let sink = match mode {
            Mode::Off => Sink::Off,
            Mode::Json => Sink::Json(Box::new(io::stderr())),
            Mode::Bar => {
                let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
                bar.set_style(spinner_style());
                bar.set_message(Phase::Starting.as_str());
                Sink::Bar(bar)
            }
        };
        Reporter::with_sink(sink, command, file)
    }

    /// As [`Reporter::new`] with [`Mode::Json`], the lines written to `out`.
    pub fn json_to(out: Box<dyn Write>, command: &str, file: &str) -> Reporter {
        Reporter::with_sink(Sink::Json(out), command, file)
    }

    fn with_sink(sink: Sink, command: &str, file: &str) -> Reporter {
        let mut r = Reporter::text_with(sink);
        r.emit(&Event::Start { command, file });
        r
    }

    /// Progress told as a line of text, for a command that feeds no update file (`commit`,
    /// `fsck`, `import-ostree`, `generate`): the line on stderr when it is a terminal
    /// ([`Reporter::message`]), cleared when the command ends; nothing otherwise. No JSON lines.
    pub fn text() -> Reporter {
        let sink = match Mode::detect(false) {
            Mode::Bar => {
                let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
                bar.set_style(text_style());
                Sink::Bar(bar)
            }
            _ => Sink::Off,
        };
        Reporter::text_with(sink)
    }

    fn text_with(sink: Sink) -> Reporter {
        Reporter {
            sink,
            started: Instant::now(),
            last_shown: None,
            pending: false,
            phase: Phase::Starting,
            bytes: 0,
            total: None,
            parts: None,
            objects: None,
            ended: false,
        }
    }

    /// Replaces the line of a [`Reporter::text`] with `msg`, at most once every
    /// [`MIN_INTERVAL`]: `msg` is called only when the line is shown.
    pub fn message(&mut self, msg: impl FnOnce() -> String) {
        if self.too_soon() {
            return;
        }
        if let Sink::Bar(bar) = &self.sink {
            self.last_shown = Some(Instant::now());
            bar.set_message(msg());
        }
    }

    /// Runs `f` (which writes to stderr) with the bar or line hidden, so that the two do not
    /// mix.
    pub fn suspend<T>(&self, f: impl FnOnce() -> T) -> T {
        match &self.sink {
            Sink::Bar(bar) => bar.suspend(f),
            _ => f(),
        }
    }

    /// Clears the bar or line (as the end of the command does); nothing more is shown.
    pub fn clear(&mut self) {
        self.close();
        self.sink = Sink::Off;
    }

    /// The file's size, when known before its header says it (a file's length).
    pub fn set_total(&mut self, total: u64) {
        if self.total != Some(total) {
            self.total = Some(total);
            self.pending = true;
            if let Sink::Bar(bar) = &self.sink {
                bar.set_length(total);
                bar.set_style(bar_style());
            }
        }
    }

    /// The command moves on to `phase`: shown at once.
    pub fn set_phase(&mut self, phase: Phase) {
        if self.phase != phase {
            self.phase = phase;
            self.pending = true;
            self.show();
            if let (Sink::Bar(bar), Phase::Installing) = (&self.sink, phase) {
                // Not counting the bytes jumped over when resuming.
                bar.reset_eta();
            }
        }
    }

    /// The command reached byte `bytes` of the file (an offset below one reported earlier is
    /// ignored). Shown at most once every [`MIN_INTERVAL`].
    pub fn advance(&mut self, bytes: u64) {
        if bytes > self.bytes {
            self.bytes = bytes;
            self.pending = true;
        }
        self.maybe_show();
    }

    /// What the installer reports after a chunk it was fed: bytes, total, parts and objects,
    /// and the phase ([`Phase::of_install`]).
    pub fn install(&mut self, p: &agent_core::install::Progress) {
        if let Some(t) = p.bytes_total {
            self.set_total(t);
            let (parts, objects) = (
                Some((p.parts, p.parts_total)),
                Some((p.objects, p.objects_total)),
            );
            if self.parts != parts || self.objects != objects {
                self.parts = parts;
                self.objects = objects;
                self.pending = true;
            }
        }
        if p.bytes > self.bytes {
            self.bytes = p.bytes;
            self.pending = true;
        }
        self.set_phase(Phase::of_install(p));
        self.maybe_show();
    }

    /// A reader that reports the bytes read through it, counting from the offset already
    /// reached (for a command that reads a file through itself, as `delta show` does).
    pub fn reader<'a, R: Read>(&'a mut self, inner: R) -> ProgressRead<'a, R> {
        ProgressRead { inner, rep: self }
    }

    /// The command succeeded (having installed `commit`, if it installs one): the last state
    /// and the `done` line are written, the bar is cleared.
    pub fn done(mut self, commit: Option<&str>) {
        if self.pending {
            self.show();
        }
        let done = Event::Done {
            bytes: self.bytes,
            total: self.total,
            elapsed_ms: self.elapsed_ms(),
            commit,
        };
        self.emit(&done);
        self.close();
    }

    /// The command failed with `err`: the `error` line is written, the bar is cleared (the
    /// command then prints the error for people as usual).
    pub fn error(mut self, err: &(dyn Error + 'static)) {
        let mut message = String::new();
        let mut resume_at = None;
        let mut cause = Some(err);
        while let Some(e) = cause {
            if !message.is_empty() {
                message.push_str(": ");
            }
            message.push_str(&e.to_string());
            resume_at = resume_at.or_else(|| resume_point(e));
            cause = e.source();
        }
        let ev = Event::Error {
            phase: self.phase,
            bytes: self.bytes,
            total: self.total,
            elapsed_ms: self.elapsed_ms(),
            message,
            resume_at,
        };
        self.emit(&ev);
        self.close();
    }

    /// As [`Reporter::done`] or [`Reporter::error`], by `res`; returns `res`.
    pub fn end<T, E: AsRef<dyn Error + Send + Sync + 'static>>(
        self,
        res: Result<T, E>,
        commit: impl FnOnce(&T) -> Option<String>,
    ) -> Result<T, E> {
        match &res {
            Ok(v) => self.done(commit(v).as_deref()),
            Err(e) => self.error(e.as_ref()),
        }
        res
    }

    fn elapsed_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    fn maybe_show(&mut self) {
        if !self.pending || matches!(self.sink, Sink::Off) || self.too_soon() {
            return;
        }
        self.show();
    }

    /// Whether the last update shown is less than [`MIN_INTERVAL`] ago.
    fn too_soon(&self) -> bool {
        self.last_shown.is_some_and(|l| l.elapsed() < MIN_INTERVAL)
    }

    fn show(&mut self) {
        self.last_shown = Some(Instant::now());
        self.pending = false;
        match &self.sink {
            Sink::Off => {}
            Sink::Bar(bar) => {
                bar.set_position(self.bytes);
                bar.set_message(self.phase.as_str());
            }
            Sink::Json(_) => {
                let ev = Event::Progress {
                    phase: self.phase,
                    bytes: self.bytes,
                    total: self.total,
                    parts_done: self.parts.map(|p| p.0),
                    parts_total: self.parts.map(|p| p.1),
                    objects_done: self.objects.map(|o| o.0),
                    objects_total: self.objects.map(|o| o.1),
                    elapsed_ms: self.elapsed_ms(),
                };
                self.emit(&ev);
            }
        }
    }

    /// Writes one JSON line (a failing stderr is ignored: progress never fails a command).
    fn emit(&mut self, ev: &Event<'_>) {
        if let Sink::Json(out) = &mut self.sink {
            if let Ok(mut line) = serde_json::to_string(ev) {
                line.push('\n');
                let _ = out.write_all(line.as_bytes());
                let _ = out.flush();
            }
        }
    }

    fn close(&mut self) {
        self.ended = true;
        if let Sink::Bar(bar) = &self.sink {
            bar.finish_and_clear();
        }
    }
}

impl Drop for Reporter {
    fn drop(&mut self) {
        if !self.ended {
            if let Sink::Bar(bar) = &self.sink {
                bar.finish_and_clear();
            }
        }
    }
}

/// Where an install that failed with `e` resumes, when `e` is an interrupted read (itself, or
/// wrapped by the deployment or the upgrade, which are transparent to it).
fn resume_point(e: &(dyn Error + 'static)) -> Option<u64> {
    let apply = e
        .downcast_ref::<ApplyError>()
        .or_else(|| match e.downcast_ref::<DeployError>() {
            Some(DeployError::Apply(a)) => Some(a),
            _ => None,
        })
        .or_else(|| match e.downcast_ref::<UpgradeError>() {
            Some(UpgradeError::Deploy(DeployError::Apply(a))) => Some(a),
            _ => None,
        });
    match apply {
        Some(ApplyError::Interrupted { resume_at, .. }) => Some(*resume_at),
        _ => None,
    }
}

/// A reader that reports the bytes read through it to a [`Reporter`]
/// ([`Reporter::reader`]).
pub struct ProgressRead<'a, R> {
    inner: R,
    rep: &'a mut Reporter,
}

impl<R: Read> Read for ProgressRead<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let at = self.rep.bytes + n as u64;
        self.rep.advance(at);
        Ok(n)
    }
}

/// A line of text ([`Reporter::text`]).
fn text_style() -> ProgressStyle {
    ProgressStyle::with_template("{msg}").expect("a valid template")
}

/// Before the total is known: the phase, the bytes and the rate.
fn spinner_style() -> ProgressStyle {
    ProgressStyle::with_template("{spinner} {msg}: {binary_bytes} ({binary_bytes_per_sec})")
        .expect("a valid template")
}

/// With the total: the phase, a bar, bytes of total, the rate and the time left.
fn bar_style() -> ProgressStyle {
    ProgressStyle::with_template(
        "{msg}: [{wide_bar}] {binary_bytes}/{binary_total_bytes} ({binary_bytes_per_sec}, {eta} left)",
    )
    .expect("a valid template")
    .progress_chars("=> ")
}

#[cfg(test)]
mod test {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn lines(s: &Shared) -> Vec<serde_json::Value> {
        let v = s.0.lock().unwrap().clone();
        String::from_utf8(v)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn text_lines_rate_limited_built_only_when_shown() {
        let mut built = 0;
        let mut r = Reporter::text_with(Sink::Bar(ProgressBar::hidden()));
        for i in 0..1000 {
            r.message(|| {
                built += 1;
                format!("reading tree: {i} files")
            });
        }
        // The first at once, then at most one every MIN_INTERVAL (a few on a loaded machine).
        assert!((1..=3).contains(&built), "{built}");
        r.clear();
        r.message(|| panic!("a cleared line is not shown again"));
        let mut off = Reporter::text_with(Sink::Off);
        off.message(|| panic!("nothing is built when nothing is shown"));
        assert_eq!(off.suspend(|| 7), 7);
    }

    #[test]
    fn rate_limited_phase_changes_and_end_always_shown() {
        let out = Shared::default();
        let mut r = Reporter::json_to(Box::new(out.clone()), "apply-offline", "f.update");
        r.set_total(1_000_000);
        r.set_phase(Phase::Installing);
        for b in 1..=1000u64 {
            r.advance(b * 1000);
        }
        r.done(Some("ab"));
        let l = lines(&out);
        assert_eq!(l[0]["event"], "start");
        assert_eq!(l[0]["command"], "apply-offline");
        // start, the phase change, at most a few more in well under a second, the last state,
        // done.
        assert!(l.len() <= 6, "{l:?}");
        let last = &l[l.len() - 2];
        assert_eq!(last["event"], "progress");
        assert_eq!(last["bytes"], 1_000_000);
        assert_eq!(last["phase"], "installing");
        assert_eq!(l[l.len() - 1]["event"], "done");
        assert_eq!(l[l.len() - 1]["bytes"], 1_000_000);
        assert_eq!(l[l.len() - 1]["commit"], "ab");
    }

    #[test]
    fn error_line_names_each_cause_once_and_where_to_resume() {
        let out = Shared::default();
        let mut r = Reporter::json_to(Box::new(out.clone()), "install", "-");
        r.advance(10);
        r.advance(5);
        let e = ApplyError::Interrupted {
            error: io::Error::other("cut"),
            resume_at: 7,
        };
        r.error(&e);
        let l = lines(&out);
        let err = &l[l.len() - 1];
        assert_eq!(err["event"], "error");
        assert_eq!(err["bytes"], 10);
        assert_eq!(err["resume_at"], 7);
        let msg = err["message"].as_str().unwrap();
        assert!(msg.starts_with("reading the update failed: cut"), "{msg}");
        assert_eq!(msg.matches("cut").count(), 1, "{msg}");
        // Wrapped by a deployment, as `install` reports it.
        let out = Shared::default();
        let r = Reporter::json_to(Box::new(out.clone()), "install", "-");
        r.error(&DeployError::Apply(ApplyError::Interrupted {
            error: io::Error::other("cut"),
            resume_at: 9,
        }));
        assert_eq!(lines(&out).last().unwrap()["resume_at"], 9);
    }

    #[test]
    fn install_phases() {
        let mut p = agent_core::install::Progress {
            bytes: 0,
            bytes_total: None,
            objects: 0,
            objects_total: 0,
            parts: 0,
            parts_total: 0,
            done: false,
            resume_offset: None,
        };
        assert_eq!(Phase::of_install(&p), Phase::Header);
        p.bytes_total = Some(100);
        assert_eq!(Phase::of_install(&p), Phase::Installing);
        p.resume_offset = Some(50);
        assert_eq!(Phase::of_install(&p), Phase::Resuming);
        p.bytes = 50;
        assert_eq!(Phase::of_install(&p), Phase::Installing);
        p.done = true;
        assert_eq!(Phase::of_install(&p), Phase::Committing);
    }
}
