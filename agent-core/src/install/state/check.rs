//! The object check: each object's bytes checked as they stream, whatever the chunking (its
//! fixed header, symlink target, xattr block, dirtree entries and their order, commit fields
//! and their UTF-8), and what it references looked up in the store.

use super::{fill, le_u16, to_usize, Ops, Res};
use crate::install::InstallError;
use crate::object::{
    commit_roots, dir_entry_len, parse_dir_entry, DirEntry, FileHeader, ObjectError, ObjectId,
    ObjectKind, COMMIT_HEADER_LEN, COMMIT_TRAILER_LEN, DIRMETA_HEADER_LEN, DIRTREE_HEADER_LEN,
    FILE_HEADER_LEN, MAX_BODY_LEN, MAX_DIR_ENTRY_LEN, MAX_NAME_LEN, MAX_SUBJECT_LEN,
    MAX_TREE_DEPTH, MAX_XATTRS, MAX_XATTR_BYTES, S_IFDIR, S_IFMT, S_IPERM,
};
use crate::store::Store;

/// Where the object check is inside the current object.
#[derive(Clone, Copy)]
pub(super) enum Check {
    /// File: the fixed header is being gathered.
    FileHeader,
    /// File: inside the symlink target (no NUL allowed).
    FileTarget { left: u16 },
    /// DirMeta: the fixed header is being gathered.
    DirMetaHeader,
    /// DirTree: the entry count is being gathered.
    TreeCount,
    /// DirTree: an entry's type and name length are being gathered.
    TreeEntryHead { left: u32 },
    /// DirTree: the rest of an entry of `need` bytes is being gathered.
    TreeEntry { left: u32, need: usize },
    /// Commit: the fixed 105 bytes are being gathered.
    CommitHeader,
    /// Commit: the length field of text `field` (0 version, 1 subject, 2 body).
    CommitLen { field: u8 },
    /// Commit: inside text `field`.
    CommitText { field: u8, left: u16 },
    /// Commit: after the body, its optional security-version trailer (`Ops::have` bytes of
    /// it held).
    CommitTrailer,
    /// Inside an xattr block (of a file or a dirmeta) with `left` bytes to come; `count`
    /// entries begun so far; then `Rest` (file content follows) or `End` (dirmeta).
    Xattrs {
        left: u16,
        stage: XStage,
        count: u8,
        then_end: bool,
    },
    /// Everything that needs checking is checked; the remaining bytes are free-form
    /// (file content).
    Rest,
    /// The object is complete: any further byte is too many.
    End,
}

/// Where an xattr block check is inside an entry.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum XStage {
    NameLen,
    Name { need: usize },
    ValueLen,
    Value { left: u16 },
}

/// The check for an xattr block of `len` bytes, then `Rest` or `End`.
pub(super) fn xattrs_then(len: u16, then_end: bool) -> Check {
    match (len, then_end) {
        (0, true) => Check::End,
        (0, false) => Check::Rest,
        (left, then_end) => Check::Xattrs {
            left,
            stage: XStage::NameLen,
            count: 0,
            then_end,
        },
    }
}

/// A UTF-8 check over text that arrives in pieces: holds the first bytes of a character split
/// between two pieces.
#[derive(Clone, Copy, Default)]
pub(super) struct Utf8 {
    pub(super) carry: [u8; 4],
    pub(super) len: u8,
}

impl Utf8 {
    /// Takes the next bytes; false once the text cannot be UTF-8.
    fn feed(&mut self, mut text: &[u8]) -> bool {
        // Complete a character begun in an earlier piece, one byte at a time.
        while self.len > 0 {
            let Some((&b, rest)) = text.split_first() else {
                return true;
            };
            text = rest;
            let n = usize::from(self.len);
            if n >= self.carry.len() {
                return false;
            }
            self.carry[n] = b;
            self.len += 1;
            match core::str::from_utf8(&self.carry[..=n]) {
                Ok(_) => self.len = 0,
                Err(e) if e.error_len().is_none() => {}
                Err(_) => return false,
            }
        }
        match core::str::from_utf8(text) {
            Ok(_) => true,
            Err(e) if e.error_len().is_none() => {
                let tail = text.get(e.valid_up_to()..).unwrap_or(&[]);
                let n = tail.len().min(self.carry.len());
                self.carry[..n].copy_from_slice(&tail[..n]);
                self.len = n as u8;
                true
            }
            Err(_) => false,
        }
    }

    /// True when no character is left half-way.
    fn at_boundary(&self) -> bool {
        self.len == 0
    }
}

impl Ops<'_> {
    /// Runs the per-kind structure check over the object's next bytes, which start at offset
    /// `pos` of an object of `len` bytes.
    pub(super) fn check_bytes<S: Store>(
        &mut self,
        store: &mut S,
        kind: ObjectKind,
        id: ObjectId,
        len: u64,
        mut pos: u64,
        mut data: &[u8],
    ) -> Res<S::Error> {
        let obj_err = |error| InstallError::Object { kind, id, error };
        while !data.is_empty() {
            let before = data.len();
            match self.check {
                Check::Rest => data = &[],
                Check::End => {
                    return Err(obj_err(ObjectError::TrailingBytes(to_usize(
                        len.saturating_sub(pos),
                    ))));
                }
                Check::FileHeader => {
                    if fill(&mut self.buf[..FILE_HEADER_LEN], &mut self.have, &mut data) {
                        let h = FileHeader::parse(&self.buf[..FILE_HEADER_LEN]).map_err(obj_err)?;
                        length_agrees(h.object_len(), len).map_err(obj_err)?;
                        self.have = 0;
                        self.file_xattrs = h.xattrs_len;
                        self.check = if h.target_len > 0 {
                            Check::FileTarget { left: h.target_len }
                        } else {
                            xattrs_then(h.xattrs_len, false)
                        };
                    }
                }
                Check::FileTarget { left } => {
                    let n = usize::from(left).min(data.len());
                    let (t, rest) = data.split_at(n);
                    if t.contains(&0) {
                        return Err(obj_err(ObjectError::BadSymlinkTarget));
                    }
                    data = rest;
                    let left = left - n as u16;
                    self.check = if left == 0 {
                        xattrs_then(self.file_xattrs, false)
                    } else {
                        Check::FileTarget { left }
                    };
                }
                Check::Xattrs {
                    left,
                    stage,
                    count,
                    then_end,
                } => {
                    let avail = usize::from(left).min(data.len());
                    let mut block = &data[..avail];
                    let (stage, count) = self
                        .xattr_bytes(stage, count, &mut block)
                        .map_err(obj_err)?;
                    let used = avail - block.len();
                    data = &data[used..];
                    let left = left - used as u16;
                    self.check = if left > 0 {
                        Check::Xattrs {
                            left,
                            stage,
                            count,
                            then_end,
                        }
                    } else if stage != XStage::NameLen {
                        return Err(obj_err(ObjectError::BadXattrs));
                    } else if then_end {
                        Check::End
                    } else {
                        Check::Rest
                    };
                }
                Check::DirMetaHeader => {
                    if fill(
                        &mut self.buf[..DIRMETA_HEADER_LEN],
                        &mut self.have,
                        &mut data,
                    ) {
                        let b = &self.buf[..DIRMETA_HEADER_LEN];
                        let mode = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                        if mode & S_IFMT != S_IFDIR || mode & !(S_IFMT | S_IPERM) != 0 {
                            return Err(obj_err(ObjectError::BadMode(mode)));
                        }
                        let xlen = usize::from(le_u16(&b[12..14]));
                        if xlen > MAX_XATTR_BYTES {
                            let error = ObjectError::TooLong {
                                field: "xattr block",
                                len: xlen,
                                max: MAX_XATTR_BYTES,
                            };
                            return Err(obj_err(error));
                        }
                        length_agrees((DIRMETA_HEADER_LEN + xlen) as u64, len).map_err(obj_err)?;
                        self.have = 0;
                        self.check = xattrs_then(xlen as u16, true);
                    }
                }
                Check::TreeCount => {
                    if fill(
                        &mut self.buf[..DIRTREE_HEADER_LEN],
                        &mut self.have,
                        &mut data,
                    ) {
                        let b = &self.buf;
                        let count = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                        self.have = 0;
                        self.check = if count == 0 {
                            Check::End
                        } else {
                            Check::TreeEntryHead { left: count }
                        };
                    }
                }
                Check::TreeEntryHead { left } => {
                    if fill(&mut self.buf[..2], &mut self.have, &mut data) {
                        let Some(need) = dir_entry_len(self.buf[0], self.buf[1]) else {
                            return Err(obj_err(ObjectError::BadEntryType(self.buf[0])));
                        };
                        self.check = Check::TreeEntry { left, need };
                    }
                }
                Check::TreeEntry { left, need } => {
                    let need = need.min(MAX_DIR_ENTRY_LEN);
                    if fill(&mut self.buf[..need], &mut self.have, &mut data) {
                        self.have = 0;
                        self.tree_entry(store, need)
                            .map_err(|e| e.for_object(kind, id))?;
                        let left = left - 1;
                        self.check = if left == 0 {
                            Check::End
                        } else {
                            Check::TreeEntryHead { left }
                        };
                    }
                }
                Check::CommitHeader => {
                    if fill(
                        &mut self.buf[..COMMIT_HEADER_LEN],
                        &mut self.have,
                        &mut data,
                    ) {
                        self.have = 0;
                        self.commit_header(store)
                            .map_err(|e| e.for_object(kind, id))?;
                        self.check = Check::CommitLen { field: 0 };
                    }
                }
                Check::CommitLen { field } => {
                    let width = if field == 0 { 1 } else { 2 };
                    if fill(&mut self.buf[..width], &mut self.have, &mut data) {
                        self.have = 0;
                        let (n, max, name) = match field {
                            0 => (u16::from(self.buf[0]), usize::MAX, "version"),
                            1 => (le_u16(&self.buf[..2]), MAX_SUBJECT_LEN, "subject"),
                            _ => (le_u16(&self.buf[..2]), MAX_BODY_LEN, "body"),
                        };
                        if usize::from(n) > max {
                            return Err(obj_err(ObjectError::TooLong {
                                field: name,
                                len: n.into(),
                                max,
                            }));
                        }
                        self.check = next_commit_field(field, n);
                    }
                }
                Check::CommitText { field, left } => {
                    let n = usize::from(left).min(data.len());
                    let (text, rest) = data.split_at(n);
                    data = rest;
                    let left = left - n as u16;
                    let name = match field {
                        0 => "version",
                        1 => "subject",
                        _ => "body",
                    };
                    if !self.utf8.feed(text) || (left == 0 && !self.utf8.at_boundary()) {
                        return Err(obj_err(ObjectError::NotUtf8(name)));
                    }
                    self.check = next_commit_field(field, left);
                }
                Check::CommitTrailer => {
                    if fill(
                        &mut self.buf[..COMMIT_TRAILER_LEN],
                        &mut self.have,
                        &mut data,
                    ) {
                        self.have = 0;
                        let mut v = [0u8; COMMIT_TRAILER_LEN];
                        v.copy_from_slice(&self.buf[..COMMIT_TRAILER_LEN]);
                        let commit = u64::from_le_bytes(v);
                        if commit == 0 {
                            return Err(obj_err(ObjectError::ZeroSecurityVersion));
                        }
                        if commit != self.security_version {
                            return Err(InstallError::SecurityVersionMismatch {
                                superblock: self.security_version,
                                commit,
                            });
                        }
                        self.check = Check::End;
                    }
                }
            }
            pos += (before - data.len()) as u64;
        }
        Ok(())
    }

    /// Checks the next bytes of an xattr block (at least one, none past the block's end): each
    /// name non-empty, without NUL, strictly after the previous one, at most [`MAX_XATTRS`]
    /// entries. Returns where the entry stands after them.
    pub(super) fn xattr_bytes(
        &mut self,
        stage: XStage,
        count: u8,
        input: &mut &[u8],
    ) -> Result<(XStage, u8), ObjectError> {
        Ok(match stage {
            XStage::NameLen => {
                let Some((&n, rest)) = input.split_first() else {
                    return Ok((stage, count));
                };
                *input = rest;
                if n == 0 || usize::from(count) >= MAX_XATTRS {
                    return Err(ObjectError::BadXattrs);
                }
                self.have = 0;
                (
                    XStage::Name {
                        need: usize::from(n),
                    },
                    count + 1,
                )
            }
            XStage::Name { need } => {
                let need = need.min(MAX_NAME_LEN);
                if !fill(&mut self.buf[..need], &mut self.have, input) {
                    return Ok((stage, count));
                }
                self.have = 0;
                let name = &self.buf[..need];
                let after_prev = match self.prev_len {
                    Some(p) => self.prev_name.get(..usize::from(p)).unwrap_or(&[]) < name,
                    None => true,
                };
                if name.contains(&0) || !after_prev {
                    return Err(ObjectError::BadXattrs);
                }
                self.prev_name[..need].copy_from_slice(name);
                self.prev_len = Some(need as u8);
                (XStage::ValueLen, count)
            }
            XStage::ValueLen => {
                if !fill(&mut self.buf[..2], &mut self.have, input) {
                    return Ok((stage, count));
                }
                self.have = 0;
                match le_u16(&self.buf[..2]) {
                    0 => (XStage::NameLen, count),
                    left => (XStage::Value { left }, count),
                }
            }
            XStage::Value { left } => {
                let n = usize::from(left).min(input.len());
                *input = &input[n..];
                match left - n as u16 {
                    0 => (XStage::NameLen, count),
                    left => (XStage::Value { left }, count),
                }
            }
        })
    }

    /// Checks the dirtree entry held in `buf[..need]`: its name, its order and that what it
    /// names is in place.
    pub(super) fn tree_entry<S: Store>(
        &mut self,
        store: &mut S,
        need: usize,
    ) -> Result<(), EntryError<S::Error>> {
        let (entry, _) =
            parse_dir_entry(self.buf.get(..need).unwrap_or(&[])).map_err(EntryError::Object)?;
        let name = entry.name();
        if let Some(prev_len) = self.prev_len {
            if self.prev_name.get(..usize::from(prev_len)).unwrap_or(&[]) >= name {
                return Err(EntryError::Object(ObjectError::Unsorted));
            }
        }
        let n = name.len().min(MAX_NAME_LEN);
        self.prev_name[..n].copy_from_slice(&name[..n]);
        self.prev_len = Some(n as u8);
        let present = |store: &mut S, kind, id| match store.has_object(kind, id) {
            Ok(true) => Ok(()),
            Ok(false) => Err(EntryError::Missing(kind, *id)),
            Err(e) => Err(EntryError::Store(e)),
        };
        match entry {
            DirEntry::File { id, .. } => present(store, ObjectKind::File, &id),
            DirEntry::Dir { tree, meta, .. } => {
                present(store, ObjectKind::DirTree, &tree)?;
                present(store, ObjectKind::DirMeta, &meta)?;
                // The depth limit, in fixed memory: the store knows the depth of every dirtree
                // in place (they arrive bottom-up), so a dirtree's depth is one more than its
                // deepest entry's, checked entry by entry.
                match store.tree_depth(&tree) {
                    Ok(Some(d)) if d < MAX_TREE_DEPTH => Ok(()),
                    Ok(Some(d)) => Err(EntryError::TooDeep(d.saturating_add(1))),
                    Ok(None) => Err(EntryError::DepthUnknown(tree)),
                    Err(e) => Err(EntryError::Store(e)),
                }
            }
        }
    }

    /// Checks the fixed part of a commit held in `buf[..COMMIT_HEADER_LEN]`.
    pub(super) fn commit_header<S: Store>(
        &mut self,
        store: &mut S,
    ) -> Result<(), EntryError<S::Error>> {
        let mut header = [0u8; COMMIT_HEADER_LEN];
        header.copy_from_slice(&self.buf[..COMMIT_HEADER_LEN]);
        if header[0] > 1 {
            return Err(EntryError::Object(ObjectError::BadFlag(header[0])));
        }
        let mut ts = [0u8; 8];
        ts.copy_from_slice(&header[33..41]);
        let ts = u64::from_le_bytes(ts);
        if ts != self.timestamp {
            return Err(EntryError::Timestamp {
                superblock: self.timestamp,
                commit: ts,
            });
        }
        let (tree, meta) = commit_roots(&header);
        for (kind, id) in [(ObjectKind::DirTree, tree), (ObjectKind::DirMeta, meta)] {
            match store.has_object(kind, &id) {
                Ok(true) => {}
                Ok(false) => return Err(EntryError::Missing(kind, id)),
                Err(e) => return Err(EntryError::Store(e)),
            }
        }
        Ok(())
    }
}

/// After text `field` with `left` bytes still to come, what the commit check expects next.
pub(super) fn next_commit_field(field: u8, left: u16) -> Check {
    match (field, left) {
        (f, l) if l > 0 => Check::CommitText { field: f, left: l },
        (0, _) => Check::CommitLen { field: 1 },
        (1, _) => Check::CommitLen { field: 2 },
        _ => Check::CommitTrailer,
    }
}

/// The object's own header says `expected` bytes; the record said `len`.
pub(super) fn length_agrees(expected: u64, len: u64) -> Result<(), ObjectError> {
    if expected > len {
        Err(ObjectError::Truncated {
            needed: to_usize(expected),
            have: to_usize(len),
        })
    } else if expected < len {
        Err(ObjectError::TrailingBytes(to_usize(len - expected)))
    } else {
        Ok(())
    }
}

/// Failures of the checks that look beyond the object's own bytes.
pub(super) enum EntryError<E> {
    Object(ObjectError),
    Missing(ObjectKind, ObjectId),
    Timestamp { superblock: u64, commit: u64 },
    TooDeep(u16),
    DepthUnknown(ObjectId),
    Store(E),
}

impl<E> EntryError<E> {
    fn for_object(self, kind: ObjectKind, id: ObjectId) -> InstallError<E> {
        match self {
            EntryError::Object(error) => InstallError::Object { kind, id, error },
            EntryError::Missing(kind, id) => InstallError::MissingObject { kind, id },
            EntryError::Timestamp { superblock, commit } => {
                InstallError::MetaMismatch { superblock, commit }
            }
            EntryError::TooDeep(depth) => InstallError::TreeTooDeep {
                id,
                depth,
                max: MAX_TREE_DEPTH,
            },
            EntryError::DepthUnknown(id) => InstallError::TreeDepthUnknown { id },
            EntryError::Store(e) => InstallError::Store(e),
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;

    fn check_split(text: &[u8], at: usize, at2: usize) -> bool {
        let mut u = Utf8::default();
        let (a, rest) = text.split_at(at.min(text.len()));
        let (b, c) = rest.split_at(at2.min(rest.len()));
        u.feed(a) && u.feed(b) && u.feed(c) && u.at_boundary()
    }

    #[test]
    fn utf8_across_any_split() {
        let good = "héllo wörld ✓ 𝄞 end".as_bytes();
        let mut bad = good.to_vec();
        bad[2] = 0xff; // inside "é"
        let cut_char = &"𝄞".as_bytes()[..3];
        for i in 0..=good.len() {
            for j in 0..=good.len() - i {
                assert!(check_split(good, i, j), "{i} {j}");
                assert!(!check_split(&bad, i, j), "{i} {j}");
            }
        }
        assert!(
            !check_split(&good[..good.len() - 5], 3, 3),
            "ends inside the last character"
        );
        for i in 0..=3 {
            assert!(!check_split(cut_char, i, 1));
        }
        // An overlong encoding and a lone continuation byte.
        assert!(!check_split(&[0xc0, 0x80], 1, 0));
        assert!(!check_split(&[0x80], 0, 0));
    }
}
