//! Logging shim: forwards to `defmt` or `log` by feature, or to nothing.
//!
//! Format strings must be literals in the subset both backends accept (`{}`, `{:?}`, `{:x}`).
#![allow(unused_macros)]

#[cfg(all(feature = "defmt", feature = "log"))]
compile_error!("the `defmt` and `log` features are mutually exclusive");

macro_rules! trace {
    ($s:literal $(, $x:expr)* $(,)?) => {{
        #[cfg(feature = "defmt")] ::defmt::trace!($s $(, $x)*);
        #[cfg(feature = "log")] ::log::trace!($s $(, $x)*);
        #[cfg(not(any(feature = "defmt", feature = "log")))] { let _ = ($( & $x ),*); }
    }};
}
macro_rules! debug {
    ($s:literal $(, $x:expr)* $(,)?) => {{
        #[cfg(feature = "defmt")] ::defmt::debug!($s $(, $x)*);
        #[cfg(feature = "log")] ::log::debug!($s $(, $x)*);
        #[cfg(not(any(feature = "defmt", feature = "log")))] { let _ = ($( & $x ),*); }
    }};
}
macro_rules! info {
    ($s:literal $(, $x:expr)* $(,)?) => {{
        #[cfg(feature = "defmt")] ::defmt::info!($s $(, $x)*);
        #[cfg(feature = "log")] ::log::info!($s $(, $x)*);
        #[cfg(not(any(feature = "defmt", feature = "log")))] { let _ = ($( & $x ),*); }
    }};
}
macro_rules! warn {
    ($s:literal $(, $x:expr)* $(,)?) => {{
        #[cfg(feature = "defmt")] ::defmt::warn!($s $(, $x)*);
        #[cfg(feature = "log")] ::log::warn!($s $(, $x)*);
        #[cfg(not(any(feature = "defmt", feature = "log")))] { let _ = ($( & $x ),*); }
    }};
}
macro_rules! error {
    ($s:literal $(, $x:expr)* $(,)?) => {{
        #[cfg(feature = "defmt")] ::defmt::error!($s $(, $x)*);
        #[cfg(feature = "log")] ::log::error!($s $(, $x)*);
        #[cfg(not(any(feature = "defmt", feature = "log")))] { let _ = ($( & $x ),*); }
    }};
}
