//! Writing `agent.conf`: the text of a configuration, and the rewrite of its `ref` lines.

use std::fs;
use std::io;
use std::path::Path;

use bootloader_hooks::Scheme;

use super::{
    BackendKind, BootConfig, ConfigError, EnvDefault, CONFIG_FILE, DEFAULT_HEALTH_DIR,
    DEFAULT_HEALTH_TIMEOUT,
};

/// Rewrites `root/agent.conf` (the defaults when it is missing) with `refs` as its only
/// `ref` lines, every other line kept as it is; atomically (temp, fsync, rename, fsync of the
/// directory, through `crate::fsops`).
pub fn write_refs(root: &Path, refs: &[String]) -> Result<(), ConfigError> {
    let path = root.join(CONFIG_FILE);
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => BootConfig::defaults(root).to_text(root),
        Err(source) => return Err(ConfigError::Io { path, source }),
    };
    let mut out = String::with_capacity(text.len() + 64);
    for line in text.lines() {
        let key = line.split_once('=').map(|(k, _)| k.trim());
        if key == Some("ref") && !line.trim_start().starts_with('#') {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    for r in refs {
        out.push_str(&format!("ref = {r}\n"));
    }
    // What is written must load.
    BootConfig::parse(root, &path, &out)?;
    crate::fsops::write_atomic(&path, out.as_bytes(), 0o644)
        .map_err(|source| ConfigError::Write { path, source })
}

impl BootConfig {
    /// The text of an `agent.conf` holding this configuration (paths as given, absolute).
    pub fn to_text(&self, root: &Path) -> String {
        let rel = |p: &Path| {
            p.strip_prefix(root)
                .map(|r| r.to_string_lossy().into_owned())
                .unwrap_or_else(|_| p.to_string_lossy().into_owned())
        };
        let mut s = String::from(
            "# ecu-agent sysroot configuration (docs/SYSROOT.md)\n\
             # backend: uboot | uboot-redundant | grub; paths relative to the sysroot or absolute\n",
        );
        s.push_str(&format!("backend = {}\n", self.kind.name()));
        s.push_str(&format!("env = {}\n", rel(&self.env.0)));
        if self.env.1 != 0 {
            s.push_str(&format!("env-offset = {:#x}\n", self.env.1));
        }
        if self.kind == BackendKind::UbootRedundant {
            s.push_str(&format!("env-redundant = {}\n", rel(&self.env_redundant.0)));
            if self.env_redundant.1 != 0 {
                s.push_str(&format!(
                    "env-redundant-offset = {:#x}\n",
                    self.env_redundant.1
                ));
            }
        }
        if self.kind != BackendKind::Grub {
            s.push_str(&format!("env-size = {:#x}\n", self.env_size));
        }
        s.push_str(&format!("scheme = {}\n", self.scheme.name()));
        match self.scheme {
            Scheme::Rauc(r) => s.push_str(&format!("rauc-max-tries = {}\n", r.max_tries)),
            Scheme::Mender(m) => s.push_str(&format!(
                "mender-part-a = {}\nmender-part-b = {}\n",
                m.part_a, m.part_b
            )),
            Scheme::Native => {}
        }
        s.push_str(&format!("tries = {}\n", self.tries));
        s.push_str(&format!("kargs = {}\n", self.kargs));
        if let Some([a, b]) = &self.slot_roots {
            s.push_str(&format!("slot-a-root = {a}\nslot-b-root = {b}\n"));
        }
        match &self.env_default {
            EnvDefault::Unset => {}
            EnvDefault::None => s.push_str("env-default = none\n"),
            EnvDefault::File(p) => s.push_str(&format!("env-default = {}\n", rel(p))),
        }
        for (k, v) in &self.key_lines {
            s.push_str(&format!("{k} = {v}\n"));
        }
        for r in &self.refs {
            s.push_str(&format!("ref = {r}\n"));
        }
        if self.health_dir != root.join(DEFAULT_HEALTH_DIR) {
            s.push_str(&format!("health-dir = {}\n", rel(&self.health_dir)));
        }
        if self.health_timeout != DEFAULT_HEALTH_TIMEOUT {
            s.push_str(&format!("health-timeout = {}\n", self.health_timeout));
        }
        s
    }
}
