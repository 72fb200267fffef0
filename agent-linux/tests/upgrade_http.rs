//! `ecu-agent upgrade --from http://…` against a real nginx (Debian's), started by each test
//! on 127.0.0.1 with a free port and its own configuration and prefix in a temporary
//! directory. Faults are injected by a small TCP proxy in front of nginx (a connection cut
//! after N bytes, a rewritten `Content-Length`, bytes appended, every transfer truncated);
//! what the agent asked for is read from nginx's own access log.

mod deploy_common;

use deploy_common::*;

use std::fs;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bootloader_hooks::Slot;
use test_support::rng::{XorShift64, GOLDEN};

const S: &str = "sysroot";

/// Parts of the test's delta: small, so that a cut in the middle of the file falls after
/// several verified parts (and past the 256 KiB hash granule a resume restarts at).
const PART_SIZE: &str = "200000";

/// nginx, or `None` (SKIP) when it is not installed; under `CI=true` a missing nginx fails.
fn nginx_bin() -> Option<PathBuf> {
    for p in ["/usr/sbin/nginx", "/usr/bin/nginx"] {
        if Path::new(p).is_file() {
            return Some(PathBuf::from(p));
        }
    }
    test_support::tool::skip(
        "upgrade_http",
        "nginx is not installed (Debian package nginx; `cargo xtask test` installs it)",
    );
    None
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for(port: u16) {
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "nothing listens on port {port}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A running nginx serving `root` at `/`, and at `/slow/` at `limit_rate` 300k.
struct Nginx {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Nginx {
    fn start(bin: &Path, root: &Path) -> Nginx {
        Nginx::start_tls(bin, root, None)
    }

    /// With `tls` (certificate chain and key files), HTTPS only.
    fn start_tls(bin: &Path, root: &Path, tls: Option<(&Path, &Path)>) -> Nginx {
        let dir = tempfile::tempdir().unwrap();
        let t = dir.path();
        let port = free_port();
        let (ssl, ssl_files) = match tls {
            Some((cert, key)) => (
                " ssl",
                format!(
                    "ssl_certificate {};\n        ssl_certificate_key {};",
                    cert.display(),
                    key.display()
                ),
            ),
            None => ("", String::new()),
        };
        let conf = format!(
            r#"daemon off;
master_process off;
worker_processes 1;
pid {t}/nginx.pid;
error_log {t}/error.log info;
events {{ worker_connections 64; }}
http {{
    log_format ecu '$request_method $uri range="$http_range" $status $body_bytes_sent';
    access_log {t}/access.log ecu;
    client_body_temp_path {t}/client_body;
    proxy_temp_path {t}/proxy;
    fastcgi_temp_path {t}/fastcgi;
    uwsgi_temp_path {t}/uwsgi;
    scgi_temp_path {t}/scgi;
    default_type application/octet-stream;
    server {{
        listen 127.0.0.1:{port}{ssl};
        {ssl_files}
        root {root};
        location /slow/ {{
            alias {root}/;
            limit_rate 300k;
        }}
    }}
}}
"#,
            t = t.display(),
            root = root.display()
        );
        fs::write(t.join("nginx.conf"), conf).unwrap();
        let child = Command::new(bin)
            .arg("-p")
            .arg(t)
            .arg("-e")
            .arg(t.join("error.log"))
            .arg("-c")
            .arg(t.join("nginx.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting nginx");
        let n = Nginx { child, port, dir };
        wait_for(port);
        n
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    /// The access log's lines for `uri`: `METHOD URI range="…" STATUS BYTES`.
    fn requests(&self, uri: &str) -> Vec<String> {
        // nginx writes the line when the request ends; give it a moment.
        std::thread::sleep(Duration::from_millis(100));
        fs::read_to_string(self.dir.path().join("access.log"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.split(' ').nth(1) == Some(uri))
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the proxy does to the answers to requests for `.update` files (the index passes
/// unchanged).
#[derive(Clone, Copy)]
enum Fault {
    /// The first such answer is cut after this many bytes of its body; later ones pass.
    CutOnce(usize),
    /// Every such answer is cut after this many bytes of its body.
    CutAlways(usize),
    /// The first answer cut after this many bytes of its body; the `Range` header of the
    /// request that follows is removed (a server without range requests answers 200).
    CutOnceNoRange(usize),
    /// `Content-Length` says this many bytes more (or fewer) than nginx sent.
    Length(i64),
    /// The first answer cut after this many bytes of its body; the answer to the range
    /// request that follows claims to start 1000 bytes earlier than asked.
    BadRange(usize),
    /// `Content-Length` removed and this many bytes appended to the body (the end of the
    /// body is the closing of the connection).
    Extra(usize),
}

/// A fault-injecting TCP proxy in front of nginx: one request per connection (the answer
/// says `Connection: close`), the request forwarded as it is, the answer changed by the
/// fault.
struct Proxy {
    port: u16,
    stop: Arc<AtomicBool>,
    updates: Arc<AtomicUsize>,
}

fn read_head(s: &mut TcpStream) -> Option<(Vec<u8>, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut b = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buf.split_off(end + 4);
            return Some((buf, rest));
        }
        let n = s.read(&mut b).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&b[..n]);
    }
}

impl Proxy {
    fn start(upstream: u16, fault: Fault) -> Proxy {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        l.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let updates = Arc::new(AtomicUsize::new(0));
        let (st, up) = (stop.clone(), updates.clone());
        std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((c, _)) => {
                        let up = up.clone();
                        std::thread::spawn(move || serve(c, upstream, fault, &up));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Proxy {
            port,
            stop,
            updates,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve(mut c: TcpStream, upstream: u16, fault: Fault, updates: &AtomicUsize) {
    c.set_nonblocking(false).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let Some((req, _)) = read_head(&mut c) else {
        return;
    };
    let is_update = String::from_utf8_lossy(&req)
        .lines()
        .next()
        .is_some_and(|l| l.contains(".update "));
    let nth = if is_update {
        updates.fetch_add(1, Ordering::SeqCst)
    } else {
        usize::MAX
    };
    let req = match fault {
        Fault::CutOnceNoRange(_) if nth == 1 => {
            let text = String::from_utf8_lossy(&req).into_owned();
            let kept: Vec<&str> = text
                .split("\r\n")
                .filter(|l| !l.to_ascii_lowercase().starts_with("range:"))
                .collect();
            kept.join("\r\n").into_bytes()
        }
        _ => req,
    };
    let mut u = TcpStream::connect(("127.0.0.1", upstream)).unwrap();
    u.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    u.write_all(&req).unwrap();
    let Some((head, mut body)) = read_head(&mut u) else {
        return;
    };
    let head = String::from_utf8_lossy(&head).into_owned();
    let mut length = 0usize;
    let mut lines: Vec<String> = Vec::new();
    for l in head.trim_end().split("\r\n") {
        let lower = l.to_ascii_lowercase();
        if let (Some(v), Fault::BadRange(_), 1) =
            (lower.strip_prefix("content-range: bytes "), fault, nth)
        {
            let (start, rest) = v.split_once('-').unwrap();
            let start: u64 = start.parse().unwrap();
            lines.push(format!("Content-Range: bytes {}-{rest}", start - 1000));
            continue;
        }
        if let Some(v) = lower.strip_prefix("content-length:") {
            length = v.trim().parse().unwrap();
            continue;
        }
        if lower.starts_with("connection:") {
            continue;
        }
        lines.push(l.to_string());
    }
    // The whole body from nginx.
    let mut b = [0u8; 65536];
    while body.len() < length {
        let n = u.read(&mut b).unwrap_or(0);
        if n == 0 {
            break;
        }
        body.extend_from_slice(&b[..n]);
    }
    body.truncate(length);
    let (announce, send): (Option<i64>, Vec<u8>) = match fault {
        _ if !is_update => (Some(length as i64), body),
        Fault::CutOnce(n) | Fault::BadRange(n) | Fault::CutOnceNoRange(n) if nth == 0 => {
            (Some(length as i64), body[..n.min(length)].to_vec())
        }
        Fault::CutOnce(_) | Fault::BadRange(_) | Fault::CutOnceNoRange(_) => {
            (Some(length as i64), body)
        }
        Fault::CutAlways(n) => (Some(length as i64), body[..n.min(length)].to_vec()),
        Fault::Length(d) => (Some(length as i64 + d), body),
        Fault::Extra(k) => {
            let mut b = body;
            b.extend(std::iter::repeat_n(0x5a, k));
            (None, b)
        }
    };
    let mut out = lines.join("\r\n");
    if let Some(a) = announce {
        out.push_str(&format!("\r\nContent-Length: {a}"));
    }
    out.push_str("\r\nConnection: close\r\n\r\n");
    let _ = c.write_all(out.as_bytes());
    let _ = c.write_all(&send);
    let _ = c.flush();
    let _ = c.shutdown(Shutdown::Both);
}

/// [`published`], served by nginx from its `pub` directory; `None` (after a visible SKIP)
/// when nginx is missing and CI is not set.
fn served() -> Option<(Lab, Nginx)> {
    let bin = nginx_bin()?;
    let lab = published();
    let n = Nginx::start(&bin, &lab.path().join("pub"));
    Some((lab, n))
}

/// A lab whose device runs 1 (slot A) and whose folder `pub` holds 2 (from scratch, and the
/// delta from 1, of about 1.2 MB: 2 adds six files of 200 kB that do not compress, a part
/// each).
fn published() -> Lab {
    let lab = Lab::new(&["1"]);
    let d = lab.path();
    lab.trust(S);
    ok(d, &["install", "--sysroot", S, &lab.update(None, "1")], &[]);
    let t2 = d.join("tree-2");
    assert!(Command::new("cp")
        .arg("-a")
        .arg(lab.tree("1"))
        .arg(&t2)
        .status()
        .unwrap()
        .success());
    let blob = XorShift64::from_state(GOLDEN).bytes(1_200_000);
    // Six files: an object is never split over parts, so each gets a part of its own.
    for (i, b) in blob.chunks(200_000).enumerate() {
        fs::write(t2.join(format!("usr/bin/blob{i}")), b).unwrap();
    }
    let out = ok(d, &lab_commit("tree-2", "2", "image 2"), &[]);
    assert!(out.split_whitespace().any(|w| w.len() == 64), "{out}");
    ok(
        d,
        &[
            "generate-deltas",
            "--repo",
            "build",
            "--out",
            "pub",
            "--sign-key",
            LAB_KEY,
            "--part-size",
            PART_SIZE,
        ],
        &[],
    );
    lab
}

/// The target of `pub` (the newest commit of os/main in the build repository).
fn target(d: &Path) -> String {
    let out = ok(d, &["refs", "--repo", "build"], &[]);
    out.split_whitespace()
        .find(|w| w.len() == 64)
        .unwrap()
        .to_string()
}

fn delta_name(lab: &Lab) -> String {
    format!("os-main-{}-{}.update", lab.commit("1"), target(lab.path()))
}

fn upgrade(d: &Path, args: &[&str]) -> (i32, String, String) {
    upgrade_in(d, S, args, Slot::A)
}

fn has_commit(d: &Path, id: &str) -> bool {
    sysroot_has_commit(&d.join(S), id)
}

/// After a refusal: nothing of 2 committed, deployments and boot environment as before.
fn untouched(lab: &Lab, before: &serde_json::Value) {
    let d = lab.path();
    assert!(!has_commit(d, &target(d)), "the target was committed");
    assert_eq!(&status(d, S, Slot::A), before);
    assert_eq!(boot(&d.join(S)).0, Slot::A);
}

/// The upgrade went through: 2 staged in B, booted, checked against its commit.
fn staged(lab: &Lab, r: &serde_json::Value) {
    let d = lab.path();
    assert_eq!(r["staged"]["action"], "staged", "{r}");
    assert_eq!(r["staged"]["commit"], target(d).as_str());
    assert_eq!(boot(&d.join(S)).0, Slot::B);
    ok(d, &["verify", "--sysroot", S], &booted(Slot::B));
}

#[test]
fn upgrade_from_nginx() {
    let Some((lab, n)) = served() else { return };
    let d = lab.path();
    let size = fs::metadata(d.join("pub").join(delta_name(&lab)))
        .unwrap()
        .len();
    assert!(size > 1_000_000, "{size}");

    let (code, out, err) = upgrade(d, &["--from", &n.url(), "--check", "--json"]);
    assert_eq!(code, 0, "{err}");
    let plan = json(&out);
    assert_eq!(plan["kind"], "delta");
    assert_eq!(
        plan["location"],
        format!("{}{}", n.url(), delta_name(&lab)).as_str()
    );
    // --check fetched the index only.
    let uri = format!("/{}", delta_name(&lab));
    assert!(n.requests(&uri).is_empty());
    assert_eq!(n.requests("/updates.index").len(), 1);

    let (code, out, err) = upgrade(d, &["--from", &n.url(), "--json"]);
    assert_eq!(code, 0, "{err}");
    let r = json(&out);
    assert_eq!(r["transfer"]["attempts"], 1);
    assert_eq!(r["transfer"]["received"], size);
    assert_eq!(
        n.requests(&uri),
        vec![format!("GET {uri} range=\"-\" 200 {size}")]
    );
    staged(&lab, &r);
}

#[test]
fn a_connection_cut_mid_transfer_resumes_with_a_range_request() {
    let Some((lab, n)) = served() else { return };
    let d = lab.path();
    let cut = 900_000;
    let p = Proxy::start(n.port, Fault::CutOnce(cut));
    let (code, out, err) = upgrade(d, &["--from", &p.url(), "--json", "--json-progress"]);
    assert_eq!(code, 0, "{err}");
    // Progress for programs on stderr, through the resume: start, progress lines whose
    // offset never goes back, done with the commit.
    let events: Vec<serde_json::Value> = err.lines().map(json).collect();
    assert_eq!(events[0]["event"], "start", "{err}");
    assert_eq!(
        events[0]["file"],
        format!("{}{}", p.url(), delta_name(&lab)).as_str()
    );
    let last = events.last().unwrap();
    assert_eq!(last["event"], "done", "{err}");
    assert_eq!(last["commit"], target(d).as_str());
    let offsets: Vec<u64> = events[1..events.len() - 1]
        .iter()
        .map(|e| e["bytes"].as_u64().unwrap())
        .collect();
    assert!(offsets.windows(2).all(|w| w[0] <= w[1]), "{offsets:?}");
    let r = json(&out);
    let uri = format!("/{}", delta_name(&lab));
    let size = fs::metadata(d.join("pub").join(delta_name(&lab)))
        .unwrap()
        .len();
    assert_eq!(r["transfer"]["attempts"], 2, "{r}");
    let at = r["transfer"]["resumed_at"][0].as_u64().unwrap();
    // At a hash granule at or before the last verified part, after the first granule.
    assert!(
        at > 0 && at.is_multiple_of(262_144) && at <= cut as u64,
        "resumed at {at}"
    );
    assert_eq!(
        r["transfer"]["received"].as_u64().unwrap(),
        cut as u64 + size - at
    );
    assert_eq!(p.updates.load(Ordering::SeqCst), 2);
    // nginx saw the whole file asked for, then the rest with a Range header.
    assert_eq!(
        n.requests(&uri),
        vec![
            format!("GET {uri} range=\"-\" 200 {size}"),
            format!("GET {uri} range=\"bytes={at}-\" 206 {}", size - at),
        ]
    );
    staged(&lab, &r);
}

#[test]
fn a_server_that_lies_about_the_length_is_refused() {
    let Some((lab, n)) = served() else { return };
    let d = lab.path();
    let before = status(d, S, Slot::A);
    let size = fs::metadata(d.join("pub").join(delta_name(&lab)))
        .unwrap()
        .len();
    for (fault, says) in [
        (
            Fault::Length(1000),
            format!("the file is {} bytes, the index says {size}", size + 1000),
        ),
        (
            Fault::Length(-1000),
            format!("the file is {} bytes, the index says {size}", size - 1000),
        ),
        (
            Fault::Extra(100),
            format!("more than the {size} bytes the index says arrived"),
        ),
    ] {
        let p = Proxy::start(n.port, fault);
        let (code, _, err) = upgrade(d, &["--from", &p.url()]);
        assert_eq!(code, 1, "{err}");
        assert!(
            err.contains(&says) && err.contains("nothing was installed"),
            "{says}: {err}"
        );
        // Refused at once, never retried.
        assert_eq!(p.updates.load(Ordering::SeqCst), 1, "{says}");
        untouched(&lab, &before);
    }
    // A range request answered with another range: refused, never retried.
    let p = Proxy::start(n.port, Fault::BadRange(900_000));
    let (code, _, err) = upgrade(d, &["--from", &p.url()]);
    assert_eq!(code, 1);
    assert!(
        err.contains(&format!(
            "the server answered the range request with Content-Range bytes {}-{}/{size}, expected bytes {}-",
            786_432 - 1000,
            size - 1,
            786_432
        )),
        "{err}"
    );
    assert_eq!(p.updates.load(Ordering::SeqCst), 2);
    untouched(&lab, &before);
    // A server that always stops early: retried a bounded number of times, then refused.
    let p = Proxy::start(n.port, Fault::CutAlways(100_000));
    let (code, _, err) = upgrade(d, &["--from", &p.url(), "--retries", "2"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("the transfer failed 3 times")
            && err.contains(&format!("broke off after 100000 of {size} bytes")),
        "{err}"
    );
    assert_eq!(p.updates.load(Ordering::SeqCst), 3);
    untouched(&lab, &before);
}

#[test]
fn a_slow_server_still_completes() {
    let Some((lab, n)) = served() else { return };
    let d = lab.path();
    // About 4 s at 300 kB/s: longer than the timeout, which bounds each read, not the whole.
    let url = format!("{}slow/", n.url());
    let start = Instant::now();
    let (code, out, err) = upgrade(d, &["--from", &url, "--json", "--timeout", "2"]);
    let took = start.elapsed();
    assert_eq!(code, 0, "{err}");
    assert!(took > Duration::from_secs(3), "took {took:?}");
    let r = json(&out);
    assert_eq!(r["transfer"]["attempts"], 1);
    staged(&lab, &r);
}

#[test]
fn a_tampered_file_or_index_on_the_server_is_refused() {
    let Some((lab, n)) = served() else { return };
    let d = lab.path();
    let before = status(d, S, Slot::A);
    let delta = d.join("pub").join(delta_name(&lab));
    let good = fs::read(&delta).unwrap();
    // A byte changed far into the file: the parts before it are verified and kept, the
    // tampered one is refused, nothing is committed.
    let mut bad = good.clone();
    bad[1_000_000] ^= 0x01;
    fs::write(&delta, &bad).unwrap();
    let (code, _, err) = upgrade(d, &["--from", &n.url()]);
    assert_eq!(code, 1);
    // Reported as damage, with the part that holds the changed byte.
    assert!(err.contains("the file is damaged: part "), "{err}");
    let range = err
        .split_once("(bytes ")
        .and_then(|(_, r)| r.split_once(')'))
        .map(|(r, _)| r.to_string())
        .unwrap_or_default();
    let (start, end) = range.split_once(" to ").expect("a byte range");
    let (start, end): (usize, usize) = (start.parse().unwrap(), end.parse().unwrap());
    assert!((start..end).contains(&1_000_000), "{err}");
    untouched(&lab, &before);
    fs::write(&delta, &good).unwrap();

    // The index altered on the server.
    let idx = d.join("pub/updates.index");
    let original = fs::read(&idx).unwrap();
    let mut bad = original.clone();
    bad[30] ^= 1;
    fs::write(&idx, &bad).unwrap();
    let (code, _, err) = upgrade(d, &["--from", &n.url()]);
    assert_eq!(code, 1);
    assert!(err.contains("verifies under none"), "{err}");
    // Gone from the server.
    fs::remove_file(&idx).unwrap();
    let (code, _, err) = upgrade(d, &["--from", &n.url()]);
    assert_eq!(code, 1);
    assert!(
        err.contains(&format!(
            "the server answered 404 for {}updates.index",
            n.url()
        )),
        "{err}"
    );
    untouched(&lab, &before);

    // Restored: the upgrade resumes after the parts verified by the refused attempt.
    fs::write(&idx, &original).unwrap();
    let (code, out, err) = upgrade(d, &["--from", &n.url(), "--json"]);
    assert_eq!(code, 0, "{err}");
    let r = json(&out);
    assert!(
        r["staged"]["applied"]["resumed_from"].as_u64().unwrap() > 0,
        "{r}"
    );
    staged(&lab, &r);
}

#[test]
fn a_server_without_range_requests_is_read_again_from_byte_0() {
    let Some((lab, n)) = served() else { return };
    let d = lab.path();
    let cut = 900_000;
    let p = Proxy::start(n.port, Fault::CutOnceNoRange(cut));
    let (code, out, err) = upgrade(d, &["--from", &p.url(), "--json"]);
    assert_eq!(code, 0, "{err}");
    let r = json(&out);
    let size = fs::metadata(d.join("pub").join(delta_name(&lab)))
        .unwrap()
        .len();
    // The range asked for was answered with the whole file (200): read from byte 0, the
    // verified parts skipped by the installer, the whole file hashed again.
    assert_eq!(r["transfer"]["attempts"], 2, "{r}");
    assert_eq!(r["transfer"]["received"], cut as u64 + size);
    let uri = format!("/{}", delta_name(&lab));
    assert_eq!(
        n.requests(&uri),
        vec![format!("GET {uri} range=\"-\" 200 {size}"); 2]
    );
    assert!(
        r["staged"]["applied"]["resumed_from"].as_u64().unwrap() > 0,
        "{r}"
    );
    staged(&lab, &r);
}

/// A certificate authority and a certificate for 127.0.0.1 it signed, made with openssl in
/// `dir`: (ca.pem, server.pem, server.key).
fn fleet_ca(dir: &Path) -> Option<(PathBuf, PathBuf, PathBuf)> {
    if Command::new("openssl").arg("version").output().is_err() {
        test_support::tool::skip(
            "upgrade_http",
            "openssl is not installed (Debian package openssl)",
        );
        return None;
    }
    let run = |args: &[&str]| {
        let o = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut a = vec!["req", "-x509"];
    a.extend(ec);
    a.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=fleet test CA",
    ]);
    run(&a);
    let mut a = vec!["req"];
    a.extend(ec);
    a.extend([
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    run(&a);
    fs::write(dir.join("ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "ext",
    ]);
    Some((
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server.key"),
    ))
}

#[test]
fn upgrade_over_https_checks_the_server_against_the_fleet_ca() {
    let Some(bin) = nginx_bin() else { return };
    let lab = published();
    let d = lab.path();
    let before = status(d, S, Slot::A);
    let Some((ca, cert, key)) = fleet_ca(d) else {
        return;
    };
    let n = Nginx::start_tls(&bin, &d.join("pub"), Some((&cert, &key)));
    let url = format!("https://127.0.0.1:{}/", n.port);
    // Not under the Mozilla roots: refused before anything is read.
    let (code, _, err) = upgrade(d, &["--from", &url]);
    assert_eq!(code, 1);
    assert!(
        err.contains("cannot read the index") && err.contains("UnknownIssuer"),
        "{err}"
    );
    untouched(&lab, &before);
    // A PEM file that is no certificate.
    let (code, _, err) = upgrade(d, &["--from", &url, "--ca-cert", key.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("holds no PEM certificate"), "{err}");
    // With the fleet's CA: over TLS.
    let (code, out, err) = upgrade(
        d,
        &["--from", &url, "--ca-cert", ca.to_str().unwrap(), "--json"],
    );
    assert_eq!(code, 0, "{err}");
    let r = json(&out);
    assert_eq!(r["plan"]["kind"], "delta");
    let uri = format!("/{}", delta_name(&lab));
    assert_eq!(n.requests(&uri).len(), 1);
    staged(&lab, &r);
}
