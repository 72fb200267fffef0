//! Gzip files for the redeflate tests: made in-process by zlib (the encoder the writer and the
//! Linux agent use), or by the real `gzip -9n` as a package build makes them.

use agent_core::install::Zlib;
use agent_core::wire::DeflateParams;

/// A gzip member of `plain` as `gzip -n` lays it out (no time, OS Unix): the header (with an
/// FNAME field when `name` is given), zlib's raw deflate at `level` (memory level 8, window
/// bits 15), the CRC-32 and the length.
///
/// # Panics
/// When zlib refuses `level` (1..=9 are taken).
pub fn member(plain: &[u8], level: u8, name: Option<&str>) -> Vec<u8> {
    let flags = if name.is_some() { 8 } else { 0 };
    let mut out = vec![0x1f, 0x8b, 8, flags, 0, 0, 0, 0, 2, 3];
    if let Some(n) = name {
        out.extend_from_slice(n.as_bytes());
        out.push(0);
    }
    let params = DeflateParams {
        level,
        ..DeflateParams::BEST
    };
    out.extend(
        Zlib::new()
            .deflate_all(params, plain)
            .expect("zlib deflates"),
    );
    let mut crc = flate2::Crc::new();
    crc.update(plain);
    out.extend_from_slice(&crc.sum().to_le_bytes());
    out.extend_from_slice(&(plain.len() as u32).to_le_bytes());
    out
}

/// `content` compressed by the real `gzip -9n` (Debian's essential package `gzip`: what a
/// package build runs on manuals and changelogs).
///
/// # Panics
/// When `gzip` does not run or fails.
pub fn gzip_n(content: &[u8]) -> Vec<u8> {
    gzip_level(content, 9)
}

/// `content` compressed by the real `gzip -<level>n` (`level` 1 to 9).
///
/// # Panics
/// When `gzip` does not run or fails.
pub fn gzip_level(content: &[u8], level: u8) -> Vec<u8> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new("gzip")
        .arg(format!("-{level}nc"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("gzip (Debian's essential package gzip) runs");
    let mut stdin = child.stdin.take().expect("gzip's stdin");
    let input = content.to_vec();
    // Fed from another thread: gzip's output pipe fills before its input is all read.
    let feeder = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().expect("gzip ends");
    feeder
        .join()
        .expect("the feeder")
        .expect("gzip reads its input");
    assert!(out.status.success(), "gzip -{level}n failed");
    out.stdout
}
