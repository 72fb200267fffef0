//! [`SchemeError`]: the environment is valid but does not describe a boot state.

use core::fmt;

use crate::state::StateError;
use crate::vars::VarSetFull;

/// Scheme errors: the environment is valid but its variables do not describe a boot state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum SchemeError {
    /// None of the scheme's variables is set.
    NotThisScheme {
        /// The scheme's name.
        scheme: &'static str,
    },
    /// A required variable is missing.
    Missing {
        /// Its name.
        var: &'static str,
    },
    /// A variable does not hold a number of the expected base.
    NotANumber {
        /// Its name.
        var: &'static str,
    },
    /// A variable holds a number out of range.
    OutOfRange {
        /// Its name.
        var: &'static str,
        /// The number.
        value: u32,
        /// The largest allowed.
        max: u32,
    },
    /// A slot order names something other than A and B, or a slot twice.
    BadOrder {
        /// The variable.
        var: &'static str,
    },
    /// `mender_boot_part` is neither slot's partition.
    UnknownPartition {
        /// The partition number.
        part: u32,
    },
    /// A name variable holds an invalid name.
    BadName {
        /// The variable.
        var: &'static str,
        /// Why.
        error: StateError,
    },
    /// Too many variables for one update (a bug).
    TooManyVars,
}

impl fmt::Display for SchemeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            SchemeError::NotThisScheme { scheme } => write!(
                f,
                "the environment holds none of the {scheme} scheme's variables; pick another --scheme or initialise the boot state"
            ),
            SchemeError::Missing { var } => write!(
                f,
                "variable {var} is missing; the boot state in this environment is incomplete"
            ),
            SchemeError::NotANumber { var } => {
                write!(f, "variable {var} does not hold a number")
            }
            SchemeError::OutOfRange { var, value, max } => {
                write!(f, "variable {var} is {value}, above the maximum {max}")
            }
            SchemeError::BadOrder { var } => write!(
                f,
                "variable {var} must list the slots A and B (each at most once, space-separated)"
            ),
            SchemeError::UnknownPartition { part } => write!(
                f,
                "mender_boot_part is {part}, which is neither slot A's nor slot B's partition; check the Mender partition numbers"
            ),
            SchemeError::BadName { var, error } => write!(f, "variable {var}: {error}"),
            SchemeError::TooManyVars => {
                f.write_str("internal error: too many variables for one update")
            }
        }
    }
}

impl core::error::Error for SchemeError {}

impl From<VarSetFull> for SchemeError {
    fn from(_: VarSetFull) -> Self {
        SchemeError::TooManyVars
    }
}
