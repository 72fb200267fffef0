//! `ecu-agent`: the command-line tool of the ECU update agent (a thin layer over the
//! `agent_linux` library).
#![forbid(unsafe_code)]

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
