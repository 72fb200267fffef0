//! Reading an update file the way the tests look into it: its superblock, parsed with the
//! format version its header gives (the lines every test that checks what a file carries
//! wrote out by hand before).

use agent_core::wire::{Header, Superblock, HEADER_LEN};

/// The superblock of the update file `file` (whole file or at least its header and
/// superblock), parsed for the format version in its header, and the offset just past it.
///
/// # Panics
/// When the header or the superblock does not parse: the tests call this on files the writer
/// made.
pub fn superblock_at(file: &[u8]) -> (Superblock<'_>, usize) {
    let h = Header::new_checked(file).expect("an update file's header");
    let end = HEADER_LEN + h.superblock_len() as usize;
    let sb = Superblock::parse_version(&file[HEADER_LEN..end], h.version())
        .expect("the superblock of an update file");
    (sb, end)
}

/// The superblock of the update file `file`; see [`superblock_at`].
///
/// # Panics
/// As [`superblock_at`].
pub fn superblock(file: &[u8]) -> Superblock<'_> {
    superblock_at(file).0
}
