//! The board's default U-Boot environment (`env-default` in `agent.conf`): the base of a U-Boot
//! environment the agent writes where there was none (missing, erased, no valid CRC).
//!
//! U-Boot runs on its built-in default environment (`bootcmd`, load addresses, ...) while the
//! stored one is blank, and prefers any stored environment with a valid CRC to it: writing one
//! that holds only the agent's variables would leave the board without `bootcmd`, stopped at
//! its prompt. So a blank environment is written from the board's default environment, or not
//! at all: [`base_for_blank`] refuses, saying how to provide it. The sysroot's own environment
//! files (inside the sysroot, the defaults `S/boot/uboot*.env`) are the agent's: no board reads
//! them unless pointed at them, and they start empty.
//!
//! The file is what `fw_printenv` prints on a booted board of the type (`name=value` lines),
//! U-Boot's default environment as text (`make u-boot-initial-env`), or an environment image
//! (`mkenvimage`, or a dump of the board's environment partition: one copy, single or
//! redundant layout, its CRC valid). Text follows `mkenvimage`: empty lines and lines starting
//! with `#` are skipped, a line ending in `\` continues the value on the next line (an embedded
//! newline).

use std::fs::File;
use std::io::Read;
use std::path::Path;

use bootloader_hooks::uboot_env::{Env, Layout};

use super::env::{EnvImage, Loaded};
use super::DeployError;
use crate::bootcfg::{BackendKind, BootConfig, EnvDefault, MAX_ENV_SIZE};

/// Variables as stored: `(name, value)` bytes, in order.
pub type Vars = Vec<(Vec<u8>, Vec<u8>)>;

/// The variables of a board default environment file's content, in order.
pub fn parse(bytes: &[u8]) -> Result<Vars, String> {
    if bytes.contains(&0) {
        for layout in [Layout::Single, Layout::Redundant] {
            if let Ok(env) = Env::parse(bytes, layout) {
                return Ok(env.vars().map(|(k, v)| (k.to_vec(), v.to_vec())).collect());
            }
        }
        return Err(format!(
            "holds NUL bytes but is not a U-Boot environment image of {} bytes with a valid CRC (single or redundant layout, as mkenvimage writes it)",
            bytes.len()
        ));
    }
    let mut out: Vars = Vec::new();
    let mut entry: Vec<u8> = Vec::new();
    let mut first_line = 0;
    let lines: Vec<&[u8]> = bytes.split(|&b| b == b'\n').collect();
    for (i, line) in lines.iter().enumerate() {
        if entry.is_empty() {
            if line.is_empty() || line.starts_with(b"#") {
                continue;
            }
            first_line = i + 1;
        }
        match line.strip_suffix(b"\\") {
            // A value going on: the backslash becomes a newline, as mkenvimage makes it.
            Some(part) if i + 1 < lines.len() => {
                entry.extend_from_slice(part);
                entry.push(b'\n');
                continue;
            }
            _ => entry.extend_from_slice(line),
        }
        let e = std::mem::take(&mut entry);
        let Some(eq) = e.iter().position(|&b| b == b'=') else {
            return Err(format!(
                "line {first_line} is not `name=value` ({:?})",
                String::from_utf8_lossy(&e[..e.len().min(60)])
            ));
        };
        if eq == 0 {
            return Err(format!("line {first_line} has an empty variable name"));
        }
        let (k, v) = (e[..eq].to_vec(), e[eq + 1..].to_vec());
        // A name set twice: the last one wins, in the first one's place.
        match out.iter_mut().find(|(ok, _)| *ok == k) {
            Some(slot) => slot.1 = v,
            None => out.push((k, v)),
        }
    }
    if out.is_empty() {
        return Err("holds no variable".into());
    }
    Ok(out)
}

/// Reads and parses the board default environment file `path` (at most 16 MiB).
pub fn load(path: &Path) -> Result<EnvImage, DeployError> {
    let bad = |reason: String| DeployError::BoardEnv {
        path: path.to_path_buf(),
        reason,
    };
    let f = File::open(path).map_err(|e| bad(format!("cannot be read: {e}")))?;
    let mut bytes = Vec::new();
    f.take(MAX_ENV_SIZE as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| bad(format!("cannot be read: {e}")))?;
    if bytes.len() > MAX_ENV_SIZE {
        return Err(bad(format!("is longer than {MAX_ENV_SIZE} bytes")));
    }
    let raw_vars = parse(&bytes).map_err(bad)?;
    let vars = raw_vars
        .iter()
        .map(|(k, v)| {
            (
                String::from_utf8_lossy(k).into_owned(),
                String::from_utf8_lossy(v).into_owned(),
            )
        })
        .collect();
    Ok(EnvImage {
        raw_vars,
        loaded: Loaded {
            vars,
            current_copy: None,
        },
        grub_size: 0,
    })
}

/// What a U-Boot environment written from blank starts from, for the sysroot at `root`: the
/// board's default environment (`env-default = FILE`), nothing (`env-default = none`, GRUB, or
/// the sysroot's own files), or a refusal naming how to provide it.
pub fn base_for_blank(cfg: &BootConfig, root: &Path) -> Result<Option<EnvImage>, DeployError> {
    if cfg.kind == BackendKind::Grub {
        return Ok(None);
    }
    match &cfg.env_default {
        EnvDefault::File(p) => load(p).map(Some),
        EnvDefault::None => Ok(None),
        EnvDefault::Unset if cfg.env_inside(root) => Ok(None),
        EnvDefault::Unset => Err(DeployError::NoBoardEnv {
            env: cfg.env.0.clone(),
        }),
    }
}

/// The message of [`DeployError::NoBoardEnv`].
pub(super) fn no_board_env(env: &Path) -> String {
    format!(
        "refused: the U-Boot environment {} is blank (missing, erased or without a valid CRC), so U-Boot runs on its built-in default environment, and one holding only the agent's variables would replace it (no bootcmd: U-Boot would stop at its prompt); nothing was written: name the board's default environment in agent.conf with `env-default = FILE`: what `fw_printenv` prints on a booted board of this type, U-Boot's default environment as text (`make u-boot-initial-env`, the CONFIG_ENV defaults), or an environment image (mkenvimage); or set `env-default = none` if U-Boot keeps the board's variables elsewhere",
        env.display()
    )
}

#[cfg(test)]
mod test {
    use super::*;
    use bootloader_hooks::VarSet;

    #[test]
    fn text_as_fw_printenv_prints_it_and_images() {
        let text = b"# board defaults\n\nbootcmd=run distro_bootcmd\nbootdelay=2\nmulti=a\\\nb\nempty=\nbootdelay=0\n";
        let vars = parse(text).unwrap();
        let want: Vec<(Vec<u8>, Vec<u8>)> = [
            ("bootcmd", "run distro_bootcmd"),
            ("bootdelay", "0"),
            ("multi", "a\nb"),
            ("empty", ""),
        ]
        .iter()
        .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
        .collect();
        assert_eq!(vars, want);
        for (bad, what) in [
            (
                &b"bootcmd=x\nEnvironment size: 2397/262140 bytes\n"[..],
                "line 2 is not",
            ),
            (b"=x\n", "empty variable name"),
            (b"# nothing\n\n", "no variable"),
            (b"\0\0\0\0junk", "not a U-Boot environment image of 8 bytes"),
        ] {
            let e = parse(bad).unwrap_err();
            assert!(e.contains(what), "{e}");
        }
        // Images: single and redundant.
        for layout in [Layout::Single, Layout::Redundant] {
            let mut img = vec![0u8; 0x200];
            let v = [(&b"bootcmd"[..], &b"boot"[..]), (b"a", b"1")];
            bootloader_hooks::uboot_env::write(
                &mut img,
                layout,
                1,
                v.iter().copied(),
                &VarSet::new(),
            )
            .unwrap();
            assert_eq!(
                parse(&img).unwrap(),
                vec![
                    (b"bootcmd".to_vec(), b"boot".to_vec()),
                    (b"a".to_vec(), b"1".to_vec())
                ]
            );
            img[10] ^= 1;
            assert!(parse(&img).is_err());
        }
    }

    #[test]
    fn blank_environments_need_the_board_defaults_outside_the_sysroot() {
        let root = Path::new("/s");
        let cfg = |t: &str| BootConfig::parse(root, Path::new("c"), t).unwrap();
        assert!(base_for_blank(&cfg(""), root).unwrap().is_none());
        assert!(
            base_for_blank(&cfg("backend = grub\nenv = /boot/grub/grubenv\n"), root)
                .unwrap()
                .is_none()
        );
        let dev = "backend = uboot\nenv = /dev/mtd1\n";
        let e = base_for_blank(&cfg(dev), root).unwrap_err();
        let m = e.to_string();
        assert!(m.contains("/dev/mtd1 is blank"), "{m}");
        assert!(m.contains("env-default = FILE"), "{m}");
        assert!(m.contains("fw_printenv"), "{m}");
        assert!(m.contains("nothing was written"), "{m}");
        assert!(
            base_for_blank(&cfg(&format!("{dev}env-default = none\n")), root)
                .unwrap()
                .is_none()
        );
        let e = base_for_blank(
            &cfg(&format!("{dev}env-default = /nonexistent/board.env\n")),
            root,
        )
        .unwrap_err();
        assert!(e.to_string().contains("/nonexistent/board.env"), "{e}");
    }
}
