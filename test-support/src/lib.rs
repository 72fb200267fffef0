//! What the workspace's tests share (never a dependency of a shipped crate; `publish = false`).
//!
//! - [`tree`]: a directory tree turned into objects, bottom-up, and the operations of an
//!   update to it (from scratch, or reusing what a source commit has): the one builder the
//!   agent-core tests, the flash tests, xtask's firmware data and the fuzz seeds use.
//! - [`rng`]: the seeded generators (xorshift64 and xorshift64*) test data comes from.
//! - [`image`]: firmware-like images and their next build, for patch tests.
//! - [`tool`]: the rule for tests that need a real tool (QEMU, fw_printenv, grub-editenv, a C
//!   compiler, root): under CI (`CI=true`) a missing tool fails the test; elsewhere the test
//!   skips with a visible `SKIP` line.
//! - [`wire`]: an update file's superblock, parsed for the version its header gives.
//! - [`MemStore`]: an in-memory [`agent_core::store::Store`] that checks the store protocol.
//!
//! agent-core's own unit tests (in `src/`) cannot use this crate: it links agent-core as a
//! separate crate instance there. Its integration tests (`agent-core/tests/`) can.

pub mod image;
pub mod mem;
pub mod rng;
pub mod tool;
pub mod tree;
pub mod wire;

pub use mem::MemStore;
