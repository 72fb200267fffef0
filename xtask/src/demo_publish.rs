//! The fleet part of `cargo xtask demo`: `generate-deltas` publishes a folder with its signed
//! index, nginx serves it on the loopback address as static files, and vehicles run
//! `ecu-agent upgrade --from http://127.0.0.1:PORT/`: the one that runs 1.1 takes the delta,
//! an empty one the from-scratch file.

use std::fs;
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};

use crate::tools;

/// nginx on 127.0.0.1, stopped when dropped.
struct Nginx {
    child: Child,
    port: u16,
}

impl Nginx {
    /// Serves `root` on a free port, with its configuration, logs and temporary files in
    /// `dir`.
    fn start(root: &Path, dir: &Path) -> Result<Nginx> {
        fs::create_dir_all(dir)?;
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let d = dir.display();
        let conf = format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\n\
             error_log {d}/error.log;\nevents {{ worker_connections 64; }}\nhttp {{\n\
             access_log {d}/access.log;\nclient_body_temp_path {d}/client_body;\n\
             proxy_temp_path {d}/proxy;\nfastcgi_temp_path {d}/fastcgi;\n\
             uwsgi_temp_path {d}/uwsgi;\nscgi_temp_path {d}/scgi;\n\
             default_type application/octet-stream;\n\
             server {{ listen 127.0.0.1:{port}; root {}; }}\n}}\n",
            root.display()
        );
        fs::write(dir.join("nginx.conf"), conf)?;
        let child = Command::new("/usr/sbin/nginx")
            .arg("-p")
            .arg(dir)
            .arg("-e")
            .arg(dir.join("error.log"))
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting nginx")?;
        let mut n = Nginx { child, port };
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = n.child.try_wait()? {
                bail!(
                    "nginx exited ({status}): {}",
                    fs::read_to_string(dir.join("error.log")).unwrap_or_default()
                );
            }
            if start.elapsed() > Duration::from_secs(10) {
                bail!("nginx does not listen on port {port} after 10 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        n.port = port;
        Ok(n)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the story (as `demo_ab::story`): `ok` runs `ecu-agent ARGS` and fails when it fails,
/// `fails` expects a non-zero exit. `ids` are the demo's commits 1.0, 1.1, 1.2; `repo`,
/// `release.key` and `updates/v1.1-full.update` are in `tmp`.
pub fn story(
    ok: &dyn Fn(&[&str]) -> Result<String>,
    fails: &dyn Fn(&[&str]) -> Result<String>,
    tmp: &Path,
    ids: &[String],
) -> Result<()> {
    ensure!(
        ids.len() >= 3,
        "the publishing demo needs the three commits"
    );
    println!("\n## Fleet side: publish a folder (the files and their signed index) and serve it as static files");
    tools::ensure_package("nginx", "/usr/sbin/nginx")?;
    ok(&[
        "generate-deltas",
        "--repo",
        "repo",
        "--out",
        "published",
        "--depth",
        "2",
        "--sign-key",
        "release.key",
        "--index-valid-for",
        "604800",
    ])?;
    ensure!(
        tmp.join("published/updates.index").is_file(),
        "generate-deltas wrote no index"
    );
    let nginx = Nginx::start(&tmp.join("published"), &tmp.join("nginx"))?;
    let url = format!("http://127.0.0.1:{}/", nginx.port);
    println!("# nginx serves {}/published at {url}", tmp.display());

    println!("\n## Vehicle side: an ECU running 1.1 asks what it would take, then upgrades");
    let s = "ecu7";
    fs::create_dir_all(tmp.join(s))?;
    fs::write(
        tmp.join(s).join("agent.conf"),
        "trusted-key = ../release.key.pub\n",
    )?;
    println!("# {s}/agent.conf: trusted-key = ../release.key.pub");
    ok(&["install", "--sysroot", s, "updates/v1.1-full.update"])?;
    let out = ok(&["upgrade", "--sysroot", s, "--from", &url, "--check"])?;
    ensure!(
        out.contains("take:     delta") && out.contains(&ids[1]) && out.contains(&ids[2]),
        "upgrade --check does not offer the 1.1 -> 1.2 delta"
    );
    let out = ok(&["upgrade", "--sysroot", s, "--from", &url])?;
    ensure!(
        out.contains("staged"),
        "the upgrade over HTTP did not stage 1.2"
    );
    let out = ok(&["simulate-boot", "--sysroot", s])?;
    ensure!(out.contains("trial"), "the reboot did not try 1.2");
    ok(&["mark-good", "--sysroot", s])?;
    ok(&["verify", "--sysroot", s])?;
    println!("# Up to date now: --check finds nothing to take (exit code 77)");
    let out = fails(&["upgrade", "--sysroot", s, "--from", &url, "--check"])?;
    ensure!(
        out.contains("already up to date"),
        "upgrade --check does not say up to date"
    );

    println!("\n## A new ECU with nothing on it takes the from-scratch file from the same folder");
    let s = "ecu8";
    fs::create_dir_all(tmp.join(s))?;
    fs::write(
        tmp.join(s).join("agent.conf"),
        "trusted-key = ../release.key.pub\n",
    )?;
    let out = ok(&["upgrade", "--sysroot", s, "--from", &url])?;
    ensure!(
        out.contains("take:     from-scratch") && out.contains("provisioned"),
        "the empty ECU did not provision 1.2 from scratch"
    );
    drop(nginx);
    Ok(())
}
