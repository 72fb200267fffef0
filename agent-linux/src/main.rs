//! `ecu-agent` (placeholder).
fn main() {}
