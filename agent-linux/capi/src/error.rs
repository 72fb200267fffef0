//! Error codes of `ecu_agent.h`, their stable texts, and the mapping from agent-linux's
//! errors.

use core::ffi::CStr;

use agent_core::InstallError;
use agent_linux::apply::ApplyError;
use agent_linux::deploy::DeployError;

/// Success.
pub const ECU_AGENT_OK: i32 = 0;
/// A pointer argument is NULL or a value is out of range.
pub const ECU_AGENT_E_ARGUMENT: i32 = -1;
/// The update was refused: malformed, corrupt, not for this device.
pub const ECU_AGENT_E_UPDATE: i32 = -2;
/// The update's security version is below the device's anti-rollback floor.
pub const ECU_AGENT_E_BELOW_FLOOR: i32 = -3;
/// The update's signature is missing, wrong, revoked, or no key is trusted.
pub const ECU_AGENT_E_SIGNATURE: i32 = -4;
/// The install was cancelled (progress callback or `ecu_agent_cancel`).
pub const ECU_AGENT_E_CANCELLED: i32 = -5;
/// Reading the update or the filesystem failed.
pub const ECU_AGENT_E_IO: i32 = -6;
/// The boot state does not allow this now (nothing provisioned, no good fallback, the booted
/// slot unknown or on trial, ...): the message says what to do.
pub const ECU_AGENT_E_STATE: i32 = -7;
/// The bootloader environment could not be read or written.
pub const ECU_AGENT_E_ENV: i32 = -8;
/// `agent.conf` is wrong.
pub const ECU_AGENT_E_CONFIG: i32 = -9;
/// The object repository failed or is not trusted.
pub const ECU_AGENT_E_REPO: i32 = -10;
/// The call does not fit the handle's state (a push without `ecu_agent_install_begin`, a
/// second install while one runs).
pub const ECU_AGENT_E_SEQUENCE: i32 = -11;
/// A deployment does not match its commit.
pub const ECU_AGENT_E_CORRUPT: i32 = -12;
/// A failure this version has no specific code for.
pub const ECU_AGENT_E_OTHER: i32 = -98;
/// The library panicked (a bug); the handle should be closed.
pub const ECU_AGENT_E_PANIC: i32 = -99;

/// The stable text of a code.
pub fn strerror(code: i32) -> &'static CStr {
    match code {
        ECU_AGENT_OK => c"success",
        ECU_AGENT_E_ARGUMENT => c"invalid argument",
        ECU_AGENT_E_UPDATE => c"the update was refused",
        ECU_AGENT_E_BELOW_FLOOR => c"the update is below the anti-rollback floor",
        ECU_AGENT_E_SIGNATURE => c"the update's signature is not trusted",
        ECU_AGENT_E_CANCELLED => c"the install was cancelled",
        ECU_AGENT_E_IO => c"input/output error",
        ECU_AGENT_E_STATE => c"the boot state does not allow this now",
        ECU_AGENT_E_ENV => c"the bootloader environment failed",
        ECU_AGENT_E_CONFIG => c"agent.conf is wrong",
        ECU_AGENT_E_REPO => c"the object repository failed",
        ECU_AGENT_E_SEQUENCE => c"the call does not fit the handle's state",
        ECU_AGENT_E_CORRUPT => c"a deployment does not match its commit",
        ECU_AGENT_E_OTHER => c"the operation failed",
        ECU_AGENT_E_PANIC => c"internal error (panic)",
        _ => c"unknown error code",
    }
}

fn install_code<E>(e: &InstallError<E>) -> i32 {
    match e {
        InstallError::BelowFloor { .. } => ECU_AGENT_E_BELOW_FLOOR,
        InstallError::Unsigned
        | InstallError::BadSignature
        | InstallError::NoTrustedKeys
        | InstallError::RevokedKey { .. }
        | InstallError::BadTrustedKey { .. } => ECU_AGENT_E_SIGNATURE,
        InstallError::Store(_) => ECU_AGENT_E_REPO,
        _ => ECU_AGENT_E_UPDATE,
    }
}

/// The code of a deployment error; `cancelled` when the caller cancelled (a read error is
/// then the cancellation).
pub fn deploy_code(e: &DeployError, cancelled: bool) -> i32 {
    use DeployError as D;
    match e {
        D::Apply(ApplyError::Read(_)) if cancelled => ECU_AGENT_E_CANCELLED,
        D::Apply(ApplyError::Read(_)) => ECU_AGENT_E_IO,
        D::Apply(ApplyError::Install(i)) => install_code(i),
        D::Apply(ApplyError::NoTrustedKeys) => ECU_AGENT_E_SIGNATURE,
        D::Apply(_) => ECU_AGENT_E_UPDATE,
        D::BelowFloor { .. } => ECU_AGENT_E_BELOW_FLOOR,
        D::Repo(_) => ECU_AGENT_E_REPO,
        D::Checkout(_) | D::Io { .. } | D::Floor(_) => ECU_AGENT_E_IO,
        D::Config(_) | D::BoardEnv { .. } => ECU_AGENT_E_CONFIG,
        D::Env(_) | D::NoBoardEnv { .. } => ECU_AGENT_E_ENV,
        D::Corrupt { .. } => ECU_AGENT_E_CORRUPT,
        D::NotProvisioned(_)
        | D::EnvLost(_)
        | D::BootedUnknown
        | D::BootedDoubt(_)
        | D::BootedSlotEmpty(_)
        | D::AdoptUnknown { .. }
        | D::AdoptDisagree { .. }
        | D::AdoptOnTrial { .. }
        | D::NotADeployment(_)
        | D::SourcesDisagree(_)
        | D::CannotRepair(_)
        | D::BootedOnTrial { .. }
        | D::BootedAbandoned { .. }
        | D::NoFallback { .. }
        | D::NoOtherDeployment { .. } => ECU_AGENT_E_STATE,
        _ => ECU_AGENT_E_OTHER,
    }
}

/// The sentence of a deployment error with its causes.
pub fn deploy_message(e: &DeployError) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(c) = src {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        src = c.source();
    }
    s
}
