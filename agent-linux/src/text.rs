//! Showing text that came from an update or a repository (versions, subjects, refs, names)
//! on a terminal: control characters and invalid UTF-8 are escaped, so that such text can
//! neither move the cursor, recolour or retitle the terminal, nor forge lines of output.
//! JSON output needs none of this: `serde_json` escapes control characters itself.

use std::borrow::Cow;
use std::fmt::Write;

/// Whether `c` must be escaped: C0 and C1 control characters, DEL, and the Unicode format
/// characters that reorder text (bidirectional overrides and isolates, "Trojan Source").
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        )
}

fn push_escaped(out: &mut String, c: char) {
    let _ = match c {
        '\n' => write!(out, "\\n"),
        '\r' => write!(out, "\\r"),
        '\t' => write!(out, "\\t"),
        c if (c as u32) < 0x100 => write!(out, "\\x{:02x}", c as u32),
        c => write!(out, "\\u{{{:04x}}}", c as u32),
    };
}

/// `s` with every control or reordering character replaced by a visible escape (`\x1b`,
/// `\n`, `\u{202e}`). Borrowed when there is nothing to escape.
pub fn escape(s: &str) -> Cow<'_, str> {
    if !s.chars().any(needs_escape) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if needs_escape(c) {
            push_escaped(&mut out, c);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Bytes (a tree entry's name, a symlink target) as text: valid UTF-8 as [`escape`] shows it,
/// every invalid byte as `\xNN`.
pub fn escape_bytes(b: &[u8]) -> String {
    let mut out = String::with_capacity(b.len());
    for chunk in b.utf8_chunks() {
        out.push_str(&escape(chunk.valid()));
        for x in chunk.invalid() {
            let _ = write!(out, "\\x{x:02x}");
        }
    }
    out
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn escapes_controls_reordering_and_invalid_utf8() {
        assert!(matches!(escape("9.1 (été)"), Cow::Borrowed(_)));
        assert_eq!(escape("a\x1b[2Jb"), "a\\x1b[2Jb");
        assert_eq!(escape("x\ny\r\t\x7f\u{9b}"), "x\\ny\\r\\t\\x7f\\x9b");
        assert_eq!(escape("abc\u{202e}fed"), "abc\\u{202e}fed");
        assert_eq!(escape_bytes(b"ok\xff\x1b"), "ok\\xff\\x1b");
        assert_eq!(escape_bytes("é".as_bytes()), "é");
    }
}
