//! The Linux side of the update agent (placeholder).
