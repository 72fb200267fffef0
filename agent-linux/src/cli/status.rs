//! `ecu-agent status`: the sysroot's state, its deployments and the boot environment, as
//! text for people or JSON (with each deployment's date and the last health check).

use agent_linux::deploy::Status;
use anyhow::bail;
use bootloader_hooks::Slot;

use super::deploy::SysrootOpts;
use super::esc;
use super::output::{self, format_utc};

/// Arguments of `ecu-agent status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    s: SysrootOpts,
    /// Print a `fw_env.config` for `fw_printenv -c` / `fw_setenv -c` (U-Boot backends) and
    /// nothing else.
    #[arg(long)]
    show_env_config: bool,
}

fn status_json(st: &Status) -> anyhow::Result<serde_json::Value> {
    let mut v = serde_json::to_value(st)?;
    if let Some(list) = v.get_mut("deployments").and_then(|d| d.as_array_mut()) {
        for d in list {
            let ts = d.get("timestamp").and_then(|t| t.as_u64()).unwrap_or(0);
            d["date"] = serde_json::Value::String(format_utc(ts));
        }
    }
    Ok(v)
}

/// The text `status` prints.
pub fn status_text(st: &Status) -> String {
    let mut s = format!("State: {} ({})\n", st.state, esc(&st.message));
    if st.deployments.is_empty() {
        s.push_str("Deployments: none\n");
    } else {
        s.push_str("Deployments:\n");
    }
    for d in &st.deployments {
        if d.commit.is_empty() {
            // The system the bootloader ran before the agent adopted its environment.
            s.push_str(&format!(
                "{} {}: {} ({})\n",
                if d.booted { "●" } else { " " },
                d.slot,
                d.name,
                esc(&d.subject)
            ));
        } else {
            s.push_str(&format!(
                "{} {}: {}\n",
                if d.booted { "●" } else { " " },
                d.slot,
                esc(d.ref_name.as_deref().unwrap_or("(no ref)"))
            ));
            s.push_str(&format!(
                "       Version: {} ({})\n",
                if d.version.is_empty() {
                    "-".into()
                } else {
                    esc(&d.version)
                },
                format_utc(d.timestamp)
            ));
            s.push_str(&format!("        Commit: {}\n", d.commit));
            s.push_str(&format!("      Security: version {}\n", d.security_version));
        }
        let mut what = vec![d.role.to_string()];
        if d.good {
            what.push("good".into());
        } else {
            what.push("not marked good".into());
        }
        if d.next_boot {
            what.push("next boot".into());
        }
        if d.tries_left > 0 {
            what.push(format!("{} tries left", d.tries_left));
        }
        if !d.present {
            what.push("DIRECTORY MISSING".into());
        }
        s.push_str(&format!("        Status: {}\n", what.join(", ")));
    }
    s.push_str(&format!(
        "Follows: {}; security floor {}\n",
        if st.refs_followed.is_empty() {
            "any ref (none recorded)".to_string()
        } else {
            st.refs_followed
                .iter()
                .map(|r| esc(r).into_owned())
                .collect::<Vec<_>>()
                .join(", ")
        },
        st.security_floor
    ));
    s.push_str(&format!(
        "Boot: slot {} booted{}, next boot {}{}; {} env ({}) rev {}\n",
        st.booted_slot.map_or("?", Slot::as_str),
        match st.booted_good {
            Some(true) => " (good)",
            Some(false) => " (not marked good)",
            None => "",
        },
        st.next_boot.map_or("-", Slot::as_str),
        st.next_boot_kind
            .map(|k| format!(" ({})", k.as_str()))
            .unwrap_or_default(),
        st.env.backend.name(),
        st.env.scheme.name(),
        st.env
            .revision
            .map(|r| r.to_string())
            .unwrap_or_else(|| "-".into())
    ));
    s
}

pub fn status(a: StatusArgs) -> anyhow::Result<()> {
    let d = a.s.open(None)?;
    if a.show_env_config {
        match d.config().fw_env_config() {
            Some(c) => return Ok(output::out(&c)?),
            None => bail!(
                "the environment is a GRUB block; read it with `grub-editenv {} list`",
                d.config().env.0.display()
            ),
        }
    }
    let st = d.status()?;
    let health = agent_linux::health::read_record(d.sysroot().path())?;
    if a.s.json {
        let mut v = status_json(&st)?;
        v["health"] = serde_json::to_value(&health)?;
        return output::json(&v);
    }
    let mut text = status_text(&st);
    if let Some(h) = health {
        text.push_str(&format!(
            "Health: {:?} at {} (slot {}, {} checks, {} failed)\n",
            h.verdict,
            format_utc(h.time),
            h.slot,
            h.checks.len(),
            h.checks.iter().filter(|c| !c.passed()).count()
        ));
    }
    Ok(output::out(&text)?)
}
