//! Reading `agent.conf`: each line checked and named in the error, paths resolved against the
//! sysroot, keys read from hex or key files.

use std::path::Path;

use bootloader_hooks::uboot_env::Layout;
use bootloader_hooks::{MenderConfig, RaucConfig, Scheme, MAX_TRIES};

use super::roots::check_root;
use super::*;

/// A `trusted-key`/`revoked-key` value: 64 hex characters, or the path of a key file
/// (`K.pub` from `ecu-agent keygen`; relative to the sysroot) holding them.
fn parse_key(root: &Path, v: &str) -> Result<[u8; 32], String> {
    if v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()) {
        return agent_core::object::ObjectId::from_hex(v)
            .map(|id| id.0)
            .map_err(|_| format!("{v:?} is not a key in hex"));
    }
    if v.is_empty() {
        return Err("a key must be 64 hex characters or the path of a key file".into());
    }
    crate::keys::read_key(&root.join(v))
        .map_err(|e| format!("{e} (a key is 64 hex characters or the path of a `K.pub` file)"))
}

fn parse_num(s: &str) -> Option<u64> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

impl BootConfig {
    /// Parses the text of `agent.conf` (`path` is for messages).
    pub fn parse(root: &Path, path: &Path, text: &str) -> Result<BootConfig, ConfigError> {
        let mut kind = BackendKind::UbootRedundant;
        let mut env: Option<String> = None;
        let mut env2: Option<String> = None;
        let (mut off, mut off2) = (0u64, 0u64);
        let mut size = DEFAULT_ENV_SIZE;
        let mut size_line = 0;
        let mut scheme_name = "native".to_string();
        let mut rauc = RaucConfig::default();
        let mut mender = MenderConfig::default();
        let mut tries = DEFAULT_TRIES;
        let mut kargs = DEFAULT_KARGS.to_string();
        let mut roots: [Option<String>; 2] = [None, None];
        let mut roots_line = 0;
        let mut env_default = EnvDefault::Unset;
        let (mut trusted, mut revoked, mut refs) = (Vec::new(), Vec::new(), Vec::<String>::new());
        let mut key_lines = Vec::new();
        let mut health_dir = root.join(DEFAULT_HEALTH_DIR);
        let mut health_timeout = DEFAULT_HEALTH_TIMEOUT;
        for (i, raw) in text.lines().enumerate() {
            let bad = |reason: String| ConfigError::Line {
                path: path.to_path_buf(),
                line: i + 1,
                reason,
            };
            // `#` starts a comment except inside the kargs value, which may need it rarely;
            // a comment there must follow whitespace.
            let line = match raw.find(" #").or_else(|| raw.starts_with('#').then_some(0)) {
                Some(p) => &raw[..p],
                None => raw,
            }
            .trim();
            if line.is_empty() {
                continue;
            }
            let Some((k, v)) = line.split_once('=') else {
                return Err(bad(format!("expected `key = value`, found {line:?}")));
            };
            let (k, v) = (k.trim(), v.trim());
            let num = |max: u64| {
                parse_num(v)
                    .filter(|n| *n <= max)
                    .ok_or_else(|| bad(format!("{k} must be a number up to {max}, found {v:?}")))
            };
            match k {
                "backend" => {
                    kind = match v {
                        "uboot" => BackendKind::Uboot,
                        "uboot-redundant" => BackendKind::UbootRedundant,
                        "grub" => BackendKind::Grub,
                        _ => {
                            return Err(bad(format!(
                                "backend must be uboot, uboot-redundant or grub, found {v:?}"
                            )))
                        }
                    }
                }
                "env" => env = Some(v.to_string()),
                "env-redundant" => env2 = Some(v.to_string()),
                "env-offset" => off = num(u64::MAX)?,
                "env-redundant-offset" => off2 = num(u64::MAX)?,
                "env-size" => {
                    size = num(MAX_ENV_SIZE as u64)? as usize;
                    size_line = i + 1;
                }
                "scheme" => {
                    if !matches!(v, "native" | "rauc" | "mender") {
                        return Err(bad(format!(
                            "scheme must be native, rauc or mender, found {v:?}"
                        )));
                    }
                    scheme_name = v.to_string();
                }
                "rauc-max-tries" => rauc.max_tries = num(MAX_TRIES.into())? as u8,
                "mender-part-a" => mender.part_a = num(255)? as u8,
                "mender-part-b" => mender.part_b = num(255)? as u8,
                "tries" => {
                    let n = num(MAX_TRIES.into())?;
                    if n == 0 {
                        return Err(bad(format!("tries must be 1 to {MAX_TRIES}")));
                    }
                    tries = n as u8;
                }
                "kargs" => {
                    if v.len() > MAX_KARGS_LEN || v.contains('\0') {
                        return Err(bad(format!(
                            "kargs must be at most {MAX_KARGS_LEN} bytes without NUL"
                        )));
                    }
                    kargs = v.to_string();
                }
                "slot-a-root" | "slot-b-root" => {
                    check_root(v).map_err(bad)?;
                    roots[usize::from(k == "slot-b-root")] = Some(v.to_string());
                    roots_line = i + 1;
                }
                "env-default" => {
                    env_default = match v {
                        "" => {
                            return Err(bad(
                                "env-default must name a file (the board's default environment) or be `none`".into(),
                            ))
                        }
                        "none" => EnvDefault::None,
                        p => EnvDefault::File(root.join(p)),
                    }
                }
                "trusted-key" | "revoked-key" => {
                    let list = if k == "trusted-key" {
                        &mut trusted
                    } else {
                        &mut revoked
                    };
                    if list.len() == MAX_KEYS {
                        return Err(bad(format!("more than {MAX_KEYS} {k} lines")));
                    }
                    let key = parse_key(root, v).map_err(bad)?;
                    if !list.contains(&key) {
                        list.push(key);
                    }
                    key_lines.push((
                        if k == "trusted-key" {
                            "trusted-key"
                        } else {
                            "revoked-key"
                        },
                        v.to_string(),
                    ));
                }
                "ref" => {
                    if let Err(e) = crate::repo::validate_ref(v) {
                        return Err(bad(e.to_string()));
                    }
                    if refs.len() == MAX_REFS {
                        return Err(bad(format!("more than {MAX_REFS} ref lines")));
                    }
                    if !refs.iter().any(|r| r == v) {
                        refs.push(v.to_string());
                    }
                }
                "health-dir" => {
                    if v.is_empty() || v.contains('\0') {
                        return Err(bad("health-dir must name a directory".into()));
                    }
                    health_dir = root.join(v);
                }
                "health-timeout" => {
                    health_timeout = num(MAX_HEALTH_TIMEOUT)?;
                    if health_timeout == 0 {
                        return Err(bad(format!(
                            "health-timeout must be 1 to {MAX_HEALTH_TIMEOUT} seconds"
                        )));
                    }
                }
                _ => return Err(bad(format!("unknown key {k:?}"))),
            }
        }
        let layout = match kind {
            BackendKind::Uboot => Some(Layout::Single),
            BackendKind::UbootRedundant => Some(Layout::Redundant),
            BackendKind::Grub => None,
        };
        if let Some(l) = layout.filter(|l| size < l.min_size()) {
            return Err(ConfigError::Line {
                path: path.to_path_buf(),
                line: size_line,
                reason: format!(
                    "env-size is {size} but a {} environment needs at least {} bytes (its header and an empty list); give CONFIG_ENV_SIZE",
                    kind.name(),
                    l.min_size()
                ),
            });
        }
        let scheme = match scheme_name.as_str() {
            "rauc" => Scheme::Rauc(rauc),
            "mender" => Scheme::Mender(mender),
            _ => Scheme::Native,
        };
        let (da, db) = default_paths(kind);
        let resolve = |p: Option<String>, d: &str| root.join(p.as_deref().unwrap_or(d));
        if kind == BackendKind::UbootRedundant && env.is_some() != env2.is_some() {
            return Err(ConfigError::Line {
                path: path.to_path_buf(),
                line: 0,
                reason: "a redundant environment needs both env and env-redundant (or neither)"
                    .into(),
            });
        }
        let slot_roots = match roots {
            [None, None] => None,
            [Some(a), Some(b)] if a == b => {
                return Err(ConfigError::Line {
                    path: path.to_path_buf(),
                    line: roots_line,
                    reason: format!(
                    "slot-a-root and slot-b-root are both {a:?}; each slot has its own root device"
                ),
                })
            }
            [Some(a), Some(b)] => Some([a, b]),
            _ => {
                return Err(ConfigError::Line {
                    path: path.to_path_buf(),
                    line: roots_line,
                    reason: "give both slot-a-root and slot-b-root (or neither)".into(),
                })
            }
        };
        Ok(BootConfig {
            kind,
            env: (resolve(env, da), off),
            env_redundant: (resolve(env2, db), off2),
            env_size: size,
            scheme,
            tries,
            kargs,
            slot_roots,
            env_default,
            trusted_keys: trusted,
            revoked_keys: revoked,
            refs,
            key_lines,
            health_dir,
            health_timeout,
            from_file: true,
        })
    }
}
