//! Test firmware: installs `.update` files into a simulated NOR flash with `agent-core`, keeps
//! the boot state in `bootloader-hooks`' raw flash record, and reports its memory use.
//!
//! Runs on `qemu-system-arm -machine mps2-an386 -cpu cortex-m4` with semihosting. Files come
//! from QEMU's working directory (`cargo xtask firmware` prepares them): `params.txt`
//! (`block=N`, the transport's block size), the updates and the expected images. Exits with
//! status 0 only when every scenario passed; prints `RESULT: PASS` or `RESULT: FAIL` last.
#![no_std]
#![no_main]

#[cfg(all(feature = "defmt", feature = "log"))]
compile_error!("the `defmt` and `log` features are mutually exclusive");

#[cfg(feature = "defmt")]
use defmt_semihosting as _;

/// Prints a line for the person or script running QEMU: through defmt with `defmt`, else
/// through semihosting stdout.
macro_rules! say {
    ($($t:tt)*) => {{
        #[cfg(feature = "defmt")]
        {
            defmt::println!($($t)*);
        }
        #[cfg(not(feature = "defmt"))]
        {
            cortex_m_semihosting::hprintln!($($t)*);
        }
    }};
}

#[cfg(not(feature = "no-agent"))]
mod agent;
mod semi;
mod stack;

use cortex_m_rt::{entry, exception, ExceptionFrame};
use cortex_m_semihosting::debug;

/// Largest transport block (a UDS TransferData block of 4093 bytes fits).
pub const MAX_BLOCK: usize = 4096;

#[entry]
fn main() -> ! {
    #[cfg(feature = "log")]
    logger::init();
    let ok = match read_params() {
        Some(block) => {
            say!("block size: {} bytes", block as u32);
            run(block)
        }
        None => {
            say!("FAIL: params.txt missing or without block=1..4096");
            false
        }
    };
    say!("RESULT: {}", if ok { "PASS" } else { "FAIL" });
    exit(ok)
}

#[cfg(not(feature = "no-agent"))]
fn run(block: usize) -> bool {
    agent::run(block)
}

/// The baseline of the size report: the same scaffolding, no agent.
#[cfg(feature = "no-agent")]
fn run(block: usize) -> bool {
    let mut buf = [0u8; 64];
    let mut total = 0usize;
    if let Some(mut f) = semi::File::open("v1.update") {
        let base = stack::paint();
        loop {
            let n = f.read_full(&mut buf[..block.min(64)]);
            if n == 0 {
                break;
            }
            total += n;
        }
        say!(
            "read {} bytes, stack {}",
            total as u32,
            stack::peak(base) as u32
        );
    }
    true
}

/// `block=N` from `params.txt`.
fn read_params() -> Option<usize> {
    let mut f = semi::File::open("params.txt")?;
    let mut b = [0u8; 32];
    let n = f.read_full(&mut b);
    let text = core::str::from_utf8(&b[..n]).ok()?;
    let v = text.trim().strip_prefix("block=")?;
    let block: usize = v.trim().parse().ok()?;
    (1..=MAX_BLOCK).contains(&block).then_some(block)
}

fn exit(ok: bool) -> ! {
    debug::exit(if ok {
        debug::EXIT_SUCCESS
    } else {
        debug::EXIT_FAILURE
    });
    #[allow(clippy::empty_loop)]
    loop {}
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    #[cfg(feature = "defmt")]
    defmt::println!("panic: {}", defmt::Display2Format(info));
    #[cfg(not(feature = "defmt"))]
    cortex_m_semihosting::hprintln!("panic: {}", info);
    exit(false)
}

#[exception]
unsafe fn HardFault(_frame: &ExceptionFrame) -> ! {
    say!("HardFault (stack overflow?)");
    exit(false)
}

#[cfg(feature = "log")]
mod logger {
    //! `log` backend: one line per record through semihosting stdout.
    struct SemihostingLogger;

    impl log::Log for SemihostingLogger {
        fn enabled(&self, m: &log::Metadata) -> bool {
            m.level() <= log::Level::Info
        }
        fn log(&self, r: &log::Record) {
            if self.enabled(r.metadata()) {
                cortex_m_semihosting::hprintln!("{} {}", r.level(), r.args());
            }
        }
        fn flush(&self) {}
    }

    static LOGGER: SemihostingLogger = SemihostingLogger;

    pub fn init() {
        // Single core, before anything logs.
        unsafe {
            let _ = log::set_logger_racy(&LOGGER);
            log::set_max_level_racy(log::LevelFilter::Info);
        }
    }
}
