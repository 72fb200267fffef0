//! Developer tasks for the ECU update agent, run as `cargo xtask <task>`.
//!
//! | task | what it does |
//! | --- | --- |
//! | `demo` | the offline-update story end to end in a temporary directory |
//! | `test` | everything CI runs: fmt, clippy, tests, `no_std` builds, firmware under QEMU, size report |
//! | `bench` | commit, generate and apply a 100+ MiB tree and print times, sizes and peak RSS; with `--vs-ostree`, side by side with OSTree on three real Debian trees |
//! | `firmware` | only the firmware scenarios under QEMU |
//! | `c-firmware` | the C firmware (`tests/c-firmware`, linking `libecu_update.a`) under QEMU |
//! | `size` | the firmware's flash, RAM and stack budget, the C firmware's beside it |
//! | `fuzz` | each cargo-fuzz target for a few seconds (needs the nightly toolchain) |
//! | `uboot` | build (once per machine, cached) U-Boot from Debian's source with the environment boot counter, for the Mender tests |

use std::process::ExitCode;

mod bench;
mod c_firmware;
mod corpus;
mod demo;
mod demo_ab;
mod demo_publish;
mod firmware;
mod fuzz;
mod test;
mod tools;
mod uboot;
mod uboot_key;
mod vs_ostree;

const USAGE: &str = "\
usage: cargo xtask <task> [options]

tasks:
  demo        run the offline-update story end to end and print it
  test        run the whole suite as CI does (fmt, clippy, tests, no_std builds, firmware, size)
              options: --quick  skip the firmware and the size report
  bench       benchmark commit, generate and apply on a generated tree
              options: --size-mib N  (default 128)
              --vs-ostree [--trees V1 V2 V3] [--runs N] [--keep] [--fresh-fs]
                  side by side with OSTree (installed when missing; as root): sizes of the
                  from-scratch file of V3 and of the deltas V2->V3 and V1->V3, generation and
                  apply times (medians of N runs, default 3, interleaved) and peak RSS, and
                  whether each checkout equals V3. Without --trees: three Debian bookworm
                  minbase trees (+ curl, + curl + less) built once with debootstrap and cached
                  in ~/.cache/ecu-agent/bench-corpus-v1. --keep keeps the work directory.
                  --fresh-fs applies into a freshly made journaled ext4 (loop-mounted) each
                  run, as a device's slot is, instead of the work directory's filesystem.
  firmware    build the Cortex-M firmware and run its scenarios under QEMU
  c-firmware  build the C firmware (tests/c-firmware, linking libecu_update.a) and run its
              scenarios under QEMU
  size        print the firmware's flash, RAM and stack budget, and the C firmware's
  fuzz        run each cargo-fuzz target (nightly) for a while
              options: --seconds N  (default 20)
  uboot       build U-Boot from Debian's source package (u-boot 2023.01+dfsg-2+deb12u3, vexpress-a9)
              with CONFIG_BOOTCOUNT_LIMIT/BOOTCOUNT_ENV, once per machine (cached under
              ~/.cache/ecu-agent, or $ECU_AGENT_CACHE); prints the path of u-boot.bin

Environment: CI=true makes a missing real tool an error instead of a skip.";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(task) = args.first() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let rest = &args[1..];
    // `cargo xtask bench --help` must explain, not start a benchmark.
    if rest.iter().any(|a| a == "-h" || a == "--help") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let result = match task.as_str() {
        "demo" => demo::run(rest),
        "test" => test::run(rest),
        "bench" => bench::run(rest),
        "firmware" => firmware::firmware(),
        "c-firmware" => c_firmware::c_firmware(),
        "size" => firmware::size(),
        "fuzz" => fuzz::run(rest),
        "uboot" => uboot::run_task(rest),
        "-h" | "--help" | "help" => {
            println!("{USAGE}");
            Ok(())
        }
        other => {
            eprintln!("xtask: unknown task `{other}`\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask {task}: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
