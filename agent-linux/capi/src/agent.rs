//! The handle of `ecu_agent.h` (`struct ecu_agent`): an open sysroot, the last failure, and
//! an install being pushed. All safe code; the C boundary is in [`crate::ffi`].
//!
//! Every operation opens the sysroot afresh ([`Deployer::open`]), as each `ecu-agent`
//! command does, so the booted slot and the configuration are always read as they are now.

use std::io::{self, Read};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use agent_core::install::Progress;
use agent_linux::deploy::{
    BootReport, DeployError, Deployer, InstallOptions, Options, StageReport, Status,
};

use crate::error::*;

/// The progress a caller sees; `false` cancels the install.
pub type ProgressSink<'a> = &'a mut dyn FnMut(&Progress) -> bool;

/// A failure: its code and its sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The `ECU_AGENT_E_*` code.
    pub code: i32,
    /// What happened and what to do.
    pub message: String,
}

impl Failure {
    /// A failure with a fixed sentence.
    pub fn new(code: i32, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
        }
    }
}

/// An install fed by `ecu_agent_install_push`: the agent's install runs on a worker thread
/// reading the pushed chunks from a bounded queue (two chunks: no temporary file, no more
/// than two pushes in memory); its progress comes back to the pushing thread.
struct Push {
    chunks: Option<SyncSender<Vec<u8>>>,
    progress: Receiver<Progress>,
    worker: Option<JoinHandle<Result<StageReport, DeployError>>>,
}

/// The handle's mutable part.
pub struct Inner {
    path: PathBuf,
    opts: Options,
    install: InstallOptions,
    /// The last call's failure (`None` after a success).
    pub last: Option<Failure>,
    push: Option<Push>,
}

/// `struct ecu_agent`.
pub struct Agent {
    inner: Mutex<Inner>,
    cancel: Arc<AtomicBool>,
}

/// Reads `inner` until the caller cancels.
struct Cancellable<'a> {
    inner: &'a mut dyn Read,
    cancel: &'a AtomicBool,
}

fn cancelled() -> io::Error {
    io::Error::other("the install was cancelled by the caller")
}

impl Read for Cancellable<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.cancel.load(Ordering::SeqCst) {
            return Err(cancelled());
        }
        let n = self.inner.read(buf)?;
        // A read that was blocked when the caller cancelled (and closed its end) wakes with
        // the end of the input: the cancellation, not a truncated update.
        if n == 0 && self.cancel.load(Ordering::SeqCst) {
            return Err(cancelled());
        }
        Ok(n)
    }
}

/// The pushed chunks as a `Read`: an empty chunk or a closed queue is the end of the update.
struct Chunks {
    rx: Receiver<Vec<u8>>,
    buf: Vec<u8>,
    pos: usize,
    cancel: Arc<AtomicBool>,
}

impl Read for Chunks {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.cancel.load(Ordering::SeqCst) {
            return Err(cancelled());
        }
        while self.pos == self.buf.len() {
            match self.rx.recv() {
                Ok(chunk) if chunk.is_empty() => return Ok(0),
                Ok(chunk) => {
                    self.buf = chunk;
                    self.pos = 0;
                }
                Err(_) => {
                    if self.cancel.load(Ordering::SeqCst) {
                        return Err(cancelled());
                    }
                    return Ok(0);
                }
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

impl Agent {
    /// Opens (with `create`, creates) the sysroot at `path`.
    pub fn open(
        path: PathBuf,
        opts: Options,
        install: InstallOptions,
        create: bool,
    ) -> Result<Agent, Failure> {
        let r = if create {
            Deployer::open_or_create(&path, &opts)
        } else {
            Deployer::open(&path, &opts)
        };
        r.map_err(|e| Failure::new(deploy_code(&e, false), deploy_message(&e)))?;
        Ok(Agent {
            inner: Mutex::new(Inner {
                path,
                opts,
                install,
                last: None,
                push: None,
            }),
            cancel: Arc::new(AtomicBool::new(false)),
        })
    }

    /// The mutable part (a panic in an earlier call does not lock the handle for good).
    pub fn inner(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Asks the install in progress (on any thread) to stop at its next read.
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::SeqCst);
    }

    fn was_cancelled(&self) -> bool {
        self.cancel.load(Ordering::SeqCst)
    }

    fn fail(&self, e: &DeployError) -> Failure {
        Failure::new(deploy_code(e, self.was_cancelled()), deploy_message(e))
    }

    /// An install's failure: once the caller cancelled, whatever stopped the install is
    /// reported as the cancellation.
    fn install_fail(&self, e: &DeployError) -> Failure {
        if self.was_cancelled() {
            return Failure::new(
                ECU_AGENT_E_CANCELLED,
                format!(
                    "the install was cancelled by the caller ({})",
                    deploy_message(e)
                ),
            );
        }
        self.fail(e)
    }

    fn deployer(&self, inner: &Inner) -> Result<Deployer, Failure> {
        Deployer::open(&inner.path, &inner.opts).map_err(|e| self.fail(&e))
    }

    /// Installs an update read from `input` (a file descriptor's file) and stages it.
    pub fn install_read(
        &self,
        input: &mut dyn Read,
        sink: ProgressSink<'_>,
    ) -> Result<StageReport, Failure> {
        let inner = self.inner();
        if inner.push.is_some() {
            return Err(Failure::new(
                ECU_AGENT_E_SEQUENCE,
                "an install by ecu_agent_install_push is in progress; end it first",
            ));
        }
        self.cancel.store(false, Ordering::SeqCst);
        let d = self.deployer(&inner)?;
        let mut input = Cancellable {
            inner: input,
            cancel: &self.cancel,
        };
        let cancel = &self.cancel;
        let mut progress = |p: &Progress| {
            if !sink(p) {
                cancel.store(true, Ordering::SeqCst);
            }
        };
        d.install(&mut input, &inner.install, &mut progress)
            .map_err(|e| self.install_fail(&e))
    }

    /// Starts an install whose bytes come through [`Agent::push`].
    pub fn push_begin(&self) -> Result<(), Failure> {
        let mut inner = self.inner();
        if inner.push.is_some() {
            return Err(Failure::new(
                ECU_AGENT_E_SEQUENCE,
                "an install by ecu_agent_install_push is already in progress",
            ));
        }
        self.cancel.store(false, Ordering::SeqCst);
        // Checked here, on the caller's thread, so that a wrong sysroot fails at once.
        self.deployer(&inner)?;
        let (tx, rx) = mpsc::sync_channel::<Vec<u8>>(2);
        let (ptx, prx) = mpsc::channel::<Progress>();
        let (path, opts, install) = (
            inner.path.clone(),
            inner.opts.clone(),
            inner.install.clone(),
        );
        let cancel = Arc::clone(&self.cancel);
        let worker = std::thread::Builder::new()
            .name("ecu-agent-install".into())
            .spawn(move || {
                let d = Deployer::open(&path, &opts)?;
                let mut input = Chunks {
                    rx,
                    buf: Vec::new(),
                    pos: 0,
                    cancel,
                };
                d.install(&mut input, &install, &mut |p| {
                    let _ = ptx.send(*p);
                })
            })
            .map_err(|e| {
                Failure::new(
                    ECU_AGENT_E_IO,
                    format!("could not start the install thread: {e}"),
                )
            })?;
        inner.push = Some(Push {
            chunks: Some(tx),
            progress: prx,
            worker: Some(worker),
        });
        Ok(())
    }

    /// Hands the progress the worker reported to `sink` on this thread; `false` when the
    /// caller cancelled.
    fn drain(&self, push: &Push, sink: ProgressSink<'_>) -> bool {
        while let Ok(p) = push.progress.try_recv() {
            if !sink(&p) {
                self.cancel();
            }
        }
        !self.was_cancelled()
    }

    /// Ends the pushed install (`eof`: the update is complete; else it is abandoned) and
    /// returns the worker's result.
    fn push_finish(
        &self,
        inner: &mut Inner,
        sink: ProgressSink<'_>,
    ) -> Result<StageReport, Failure> {
        let Some(mut push) = inner.push.take() else {
            return Err(Failure::new(
                ECU_AGENT_E_SEQUENCE,
                "no install by push is in progress; call ecu_agent_install_begin first",
            ));
        };
        drop(push.chunks.take());
        let result = match push.worker.take().map(|w| w.join()) {
            Some(Ok(r)) => r,
            _ => {
                return Err(Failure::new(
                    ECU_AGENT_E_PANIC,
                    "the install thread panicked (a bug)",
                ))
            }
        };
        self.drain(&push, sink);
        result.map_err(|e| self.install_fail(&e))
    }

    /// The next bytes of the pushed update (copied into the bounded queue).
    pub fn push(&self, data: &[u8], sink: ProgressSink<'_>) -> Result<(), Failure> {
        let mut inner = self.inner();
        let Some(push) = inner.push.as_ref() else {
            return Err(Failure::new(
                ECU_AGENT_E_SEQUENCE,
                "no install by push is in progress; call ecu_agent_install_begin first",
            ));
        };
        let sent = match &push.chunks {
            Some(tx) if !data.is_empty() && !self.was_cancelled() => tx.send(data.to_vec()).is_ok(),
            _ => true,
        };
        if sent && self.drain(push, sink) {
            return Ok(());
        }
        // The worker stopped (a refusal) or the caller cancelled: its result says why.
        match self.push_finish(&mut inner, &mut |_| true) {
            Ok(_) if self.was_cancelled() => Err(Failure::new(
                ECU_AGENT_E_CANCELLED,
                "the install was cancelled by the caller",
            )),
            Ok(_) => Err(Failure::new(
                ECU_AGENT_E_SEQUENCE,
                "the install ended before all bytes were pushed",
            )),
            Err(f) => Err(f),
        }
    }

    /// The end of the pushed update: waits for the install to complete and stage.
    pub fn push_end(&self, sink: ProgressSink<'_>) -> Result<StageReport, Failure> {
        let mut inner = self.inner();
        self.push_finish(&mut inner, sink)
    }

    /// Abandons a pushed install, if any (on close).
    pub fn push_abandon(&self) {
        let mut inner = self.inner();
        if inner.push.is_some() {
            self.cancel();
            let _ = self.push_finish(&mut inner, &mut |_| true);
        }
    }

    /// `ecu-agent status`.
    pub fn status(&self) -> Result<Status, Failure> {
        let inner = self.inner();
        let d = self.deployer(&inner)?;
        d.status().map_err(|e| self.fail(&e))
    }

    /// `ecu-agent mark-good`.
    pub fn mark_good(&self) -> Result<BootReport, Failure> {
        let inner = self.inner();
        let d = self.deployer(&inner)?;
        d.mark_good().map_err(|e| self.fail(&e))
    }

    /// `ecu-agent rollback`.
    pub fn rollback(&self) -> Result<BootReport, Failure> {
        let inner = self.inner();
        let d = self.deployer(&inner)?;
        d.rollback().map_err(|e| self.fail(&e))
    }

    /// `ecu-agent simulate-boot`: what the bootloader would do at the next boot.
    pub fn simulate_boot(&self) -> Result<BootReport, Failure> {
        let inner = self.inner();
        let d = self.deployer(&inner)?;
        d.simulate_boot().map_err(|e| self.fail(&e))
    }

    /// Changes the booted slot the handle assumes (`None`: detect it).
    pub fn set_booted(&self, slot: Option<bootloader_hooks::Slot>) {
        self.inner().opts.booted = slot;
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.push_abandon();
    }
}
