//! Boot state for A/B updates (placeholder; see issue 3).
#![no_std]
#![forbid(unsafe_code)]
