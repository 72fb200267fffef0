//! Finishing a file: the checks of what was written, the format version and dictionaries it
//! needs, and [`UpdateWriter::finish`], which lays out and compresses the parts, fills in and
//! signs the superblock and writes the file.

use std::io::{self, Seek, SeekFrom, Write};
use std::vec;

use ed25519_dalek::{Signer, SigningKey};

use super::compress::{compress_parts, Settings};
use super::{parts, UpdateWriter, WriteError, WriteSummary};
use crate::object::{MAX_SUBJECT_LEN, MAX_VERSION_LEN};
use crate::wire::{
    dictionary_at_most, Codec, Header, HeaderRepr, PartEntry, SignatureKind, Superblock,
    TargetMeta, DEFLATE_DICTIONARY, FORMAT_VERSION, HEADER_LEN, MAX_PARTS, MAX_REF_LEN,
    MAX_SUPERBLOCK_LEN, MIN_DICTIONARY, MIN_FORMAT_VERSION, PATCH_FORMAT_VERSION,
    REDEFLATE_FORMAT_VERSION, REUSE_ENTRIES_FORMAT_VERSION, SIGNATURE_LEN,
};

impl UpdateWriter {
    /// The codec the parts get.
    pub(super) fn effective_codec(&self) -> Codec {
        match (self.codec, self.format_version) {
            (Some(c), _) => c,
            (None, Some(v)) if v < PATCH_FORMAT_VERSION => Codec::Deflate,
            (None, _) => Codec::Xz,
        }
    }

    /// The format version written: the one asked for, else the lowest that carries the
    /// update (5 with reuse-entries records, 4 with redeflate records, 3 with patch records
    /// or xz parts, else 2), so that
    /// an agent that predates a record still reads every file without it.
    pub(super) fn version(&self) -> u16 {
        let needs_v3 = self.patches
            || self.effective_codec() == Codec::Xz
            || self.deflate_dictionary().ok() != Some(DEFLATE_DICTIONARY);
        match self.format_version {
            Some(v) => v,
            None if self.reuse_entries => REUSE_ENTRIES_FORMAT_VERSION,
            None if self.redeflated > 0 => REDEFLATE_FORMAT_VERSION,
            None if needs_v3 => PATCH_FORMAT_VERSION,
            None => PATCH_FORMAT_VERSION - 1,
        }
    }

    fn check(&self) -> Result<(), WriteError> {
        if self.ref_name.is_empty() || self.ref_name.len() > MAX_REF_LEN {
            return Err(WriteError::BadRef);
        }
        if self.version.len() > MAX_VERSION_LEN || self.subject.len() > MAX_SUBJECT_LEN {
            return Err(WriteError::BadMeta);
        }
        let Some((id, ts, sv)) = self.commit else {
            return Err(WriteError::NoCommit);
        };
        if self.after_commit {
            return Err(WriteError::CommitNotLast);
        }
        if id != self.to {
            return Err(WriteError::CommitNotTarget {
                expected: self.to,
                found: id,
            });
        }
        if ts != self.timestamp {
            return Err(WriteError::MetaMismatch {
                writer: self.timestamp,
                commit: ts,
            });
        }
        if u32::try_from(self.records.len()).is_err() {
            return Err(WriteError::TooManyObjects);
        }
        let v = self.version();
        if self.patches && v < PATCH_FORMAT_VERSION {
            return Err(WriteError::PatchNeedsV3 { version: v });
        }
        if self.reuse_entries && v < REUSE_ENTRIES_FORMAT_VERSION {
            return Err(WriteError::ReuseEntriesNeedsV5 { version: v });
        }
        let old = v < PATCH_FORMAT_VERSION
            && (self.effective_codec() == Codec::Xz
                || self.deflate_dictionary()? != DEFLATE_DICTIONARY);
        if !(MIN_FORMAT_VERSION..=FORMAT_VERSION).contains(&v) || (v == 1 && sv != 0) || old {
            return Err(WriteError::FormatVersion {
                version: v,
                security_version: sv,
            });
        }
        Ok(())
    }

    /// Deflate's window: the largest power of two within the dictionary, at most 32 KiB.
    fn deflate_dictionary(&self) -> Result<u32, WriteError> {
        let d = dictionary_at_most(self.max_dictionary)
            .ok_or(WriteError::DictionaryTooSmall(self.max_dictionary))?;
        Ok(1 << d.min(DEFLATE_DICTIONARY).ilog2())
    }

    /// Groups, compresses, signs (with the ed25519 secret seed `signing_key`, or unsigned) and
    /// writes the file to `out`.
    pub fn finish(
        mut self,
        signing_key: Option<&[u8; 32]>,
        out: &mut dyn Write,
    ) -> Result<WriteSummary, WriteError> {
        if let Some(e) = self.deferred.take() {
            return Err(WriteError::Io(e));
        }
        self.check()?;
        let Some(spool) = self.spool.take() else {
            return Err(WriteError::NoCommit);
        };
        let spool = spool
            .into_inner()
            .map_err(|e| WriteError::Io(e.into_error()))?;
        let max_dictionary = dictionary_at_most(self.max_dictionary)
            .ok_or(WriteError::DictionaryTooSmall(self.max_dictionary))?;
        let deflate_dictionary = self.deflate_dictionary()?;
        let codec = self.effective_codec();
        let xz = codec == Codec::Xz;

        let jobs = parts::lay_out(
            &self.records,
            xz,
            self.locality,
            self.part_size,
            max_dictionary,
        )?;
        let settings = Settings {
            codec,
            level: self.level,
            max_dictionary,
            deflate_dictionary,
        };
        let done = compress_parts(&spool, &jobs, &settings)?;

        let mut parts: heapless::Vec<PartEntry, MAX_PARTS> = heapless::Vec::new();
        let mut dictionary = if xz {
            MIN_DICTIONARY
        } else {
            deflate_dictionary
        };
        for d in &done {
            if d.entry.codec == Codec::Xz {
                dictionary = dictionary.max(d.dictionary);
            }
            parts.push(d.entry).map_err(|_| WriteError::TooLarge)?;
        }
        if self.version() < PATCH_FORMAT_VERSION {
            dictionary = DEFLATE_DICTIONARY;
        }

        let sb = Superblock {
            ref_name: &self.ref_name,
            from: self.from,
            to: self.to,
            meta: TargetMeta {
                timestamp: self.timestamp,
                version: &self.version,
                subject: &self.subject,
            },
            objects: self.records.len() as u32,
            parts,
            security_version: self.commit.map_or(0, |(_, _, sv)| sv),
            dictionary,
        };
        let mut head = vec![0u8; HEADER_LEN + MAX_SUPERBLOCK_LEN];
        let sb_len = sb
            .emit_version(&mut head[HEADER_LEN..], self.version())
            .map_err(|_| WriteError::SuperblockTooLarge)?
            .len();
        HeaderRepr {
            version: self.version(),
            superblock_len: sb_len as u32,
        }
        .emit(&mut Header::new_unchecked(&mut head[..HEADER_LEN]));
        head.truncate(HEADER_LEN + sb_len);
        match signing_key {
            Some(seed) => {
                let signature = SigningKey::from_bytes(seed).sign(&head);
                head.push(SignatureKind::Ed25519.code());
                head.extend_from_slice(&signature.to_bytes());
            }
            None => head.push(SignatureKind::None.code()),
        }
        out.write_all(&head)?;
        let mut parts_len = 0u64;
        for d in done {
            let mut f = d.file;
            f.seek(SeekFrom::Start(0))?;
            parts_len += io::copy(&mut f, out)?;
        }
        out.flush()?;
        let bytes = head.len() as u64 + parts_len;
        debug_assert_eq!(
            head.len(),
            HEADER_LEN + sb_len + 1 + signing_key.map_or(0, |_| SIGNATURE_LEN)
        );
        Ok(WriteSummary {
            bytes,
            parts: jobs.len() as u32,
            objects: self.records.len() as u32,
            redeflated: self.redeflated,
        })
    }
}
