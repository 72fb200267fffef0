//! The C structs of `ecu_agent.h`, defined for C (`#[repr(C)]`); no Rust type of
//! agent-linux crosses the boundary.

use core::ffi::c_char;

/// Bytes of a commit id in hex with its NUL.
pub const ECU_AGENT_COMMIT_CAP: usize = 65;
/// Bytes of a deployment name with its NUL.
pub const ECU_AGENT_NAME_CAP: usize = 136;
/// Bytes of a version string with its NUL (versions are at most 255 bytes).
pub const ECU_AGENT_VERSION_CAP: usize = 256;
/// Bytes of a short word (`state`, `role`, `action`) with its NUL.
pub const ECU_AGENT_WORD_CAP: usize = 24;

/// How to open a sysroot. All fields may be zero: detect the booted slot, tries from
/// `agent.conf`, do not create, only `agent.conf`'s keys.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct EcuAgentOptions {
    /// `'A'` or `'B'`: the booted slot as the caller knows it; 0: detect it (the kernel
    /// command line, `ECU_AGENT_BOOTED_SLOT`, the run file), as `ecu-agent` does.
    pub booted_slot: c_char,
    /// Boot tries for a staged deployment (1..=3); 0: `agent.conf`'s.
    pub tries: u8,
    /// Create the sysroot (and its repository) when missing.
    pub create: bool,
    /// Non-zero: accept updates nobody signed (`--allow-unsigned`).
    pub allow_unsigned: bool,
    /// `trusted_count` ed25519 public keys (32 bytes each) trusted besides `agent.conf`'s;
    /// copied by `ecu_agent_open`. May be NULL when `trusted_count` is 0.
    pub trusted_keys: *const u8,
    /// Number of extra trusted keys.
    pub trusted_count: usize,
}

/// How far an install has come (the progress callback's argument).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct EcuAgentProgress {
    /// Bytes of the update consumed.
    pub bytes: u64,
    /// Bytes of the whole update (0 until its superblock is verified).
    pub bytes_total: u64,
    /// Objects written or reused.
    pub objects: u32,
    /// Objects the update declares.
    pub objects_total: u32,
    /// Parts verified.
    pub parts: u32,
    /// Parts in the update.
    pub parts_total: u32,
}

/// The progress callback: called on the thread that called the install function, during
/// that call. Return 0 to go on, anything else to cancel the install
/// (`ECU_AGENT_E_CANCELLED`).
pub type EcuAgentProgressFn =
    Option<unsafe extern "C" fn(user: *mut core::ffi::c_void, p: *const EcuAgentProgress) -> i32>;

/// What an install did.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct EcuAgentInstallResult {
    /// The commit installed (hex).
    pub commit: [c_char; ECU_AGENT_COMMIT_CAP],
    /// Its version.
    pub version: [c_char; ECU_AGENT_VERSION_CAP],
    /// The deployment directory created for it.
    pub deployment: [c_char; ECU_AGENT_NAME_CAP],
    /// `provisioned` (first deployment, booted), `staged` (the next boot tries it) or
    /// `unchanged`.
    pub action: [c_char; ECU_AGENT_WORD_CAP],
    /// The commit's security version.
    pub security_version: u64,
    /// `'A'` or `'B'`: the slot it is in.
    pub slot: c_char,
    /// Boot tries it got.
    pub tries: u8,
}

/// One deployment in `struct ecu_agent_status`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct EcuAgentDeployment {
    /// Its directory name under `S/deploy`.
    pub name: [c_char; ECU_AGENT_NAME_CAP],
    /// Its commit (hex).
    pub commit: [c_char; ECU_AGENT_COMMIT_CAP],
    /// The commit's version.
    pub version: [c_char; ECU_AGENT_VERSION_CAP],
    /// `booted`, `trial`, `staged`, `rollback`, `failed` or `rolled-back`.
    pub role: [c_char; ECU_AGENT_WORD_CAP],
    /// The commit's security version.
    pub security_version: u64,
    /// The commit's timestamp (seconds since the epoch).
    pub timestamp: u64,
    /// `'A'` or `'B'`.
    pub slot: c_char,
    /// It is the booted deployment.
    pub booted: bool,
    /// The next boot takes it.
    pub next_boot: bool,
    /// Marked good.
    pub good: bool,
    /// Its directory exists.
    pub present: bool,
    /// Boots left while on trial.
    pub tries_left: u8,
    /// Boot priority.
    pub priority: u8,
}

/// The sysroot's state (`ecu-agent status`).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct EcuAgentStatus {
    /// `empty`, `idle`, `staged`, `trial`, `rolled-back` or `rollback-pending`.
    pub state: [c_char; ECU_AGENT_WORD_CAP],
    /// The deployments, `deployment_count` of them, slot A first.
    pub deployments: [EcuAgentDeployment; 2],
    /// The anti-rollback floor.
    pub security_floor: u64,
    /// Number of valid entries in `deployments` (0..=2).
    pub deployment_count: u32,
    /// `'A'`, `'B'`, or 0 when unknown.
    pub booted_slot: c_char,
    /// `'A'`, `'B'`, or 0 when nothing boots.
    pub next_boot: c_char,
    /// Whether the booted deployment is confirmed good.
    pub booted_good: bool,
    /// Whether a deployment failed its trial or was rolled back.
    pub rolled_back: bool,
}

/// Copies `s` into a C string field, cut to fit (NUL always written).
pub fn put_str<const N: usize>(out: &mut [c_char; N], s: &str) {
    let n = s.len().min(N.saturating_sub(1));
    for (d, b) in out.iter_mut().zip(&s.as_bytes()[..n]) {
        *d = *b as c_char;
    }
    if let Some(end) = out.get_mut(n) {
        *end = 0;
    }
}

/// `'A'`/`'B'` of a slot name, 0 for none.
pub fn slot_char(s: Option<&str>) -> c_char {
    match s {
        Some("A") => b'A' as c_char,
        Some("B") => b'B' as c_char,
        _ => 0,
    }
}
