//! `code_enum!`: the one shape of the format's one-byte code enums (object kinds, part codecs,
//! BCJ filters, signature algorithms, operation codes), after smoltcp's `enum_with_unknown!`.
//!
//! Each enum lists its known codes and the name each prints as; a code this version does not
//! know is kept in `Unknown(u8)`, so that a newer file is reported precisely rather than as
//! garbage. Every such enum has the same API:
//!
//! - `from_code(u8)` and `code()` (both `const`), and `From<u8>` / `From<Enum> for u8`;
//! - `is_known()`, false for `Unknown`;
//! - `name()`, the known code's name (`None` for `Unknown`);
//! - `Display`: the name, or `unknown <what> <code>` for an unknown code.

/// Defines a one-byte code enum: its known variants with their codes and names, an
/// `Unknown(u8)` variant, and the API the [module docs](self) list. The attributes (docs,
/// derives) are the caller's; `$what` names the enum in `Display` of an unknown code.
macro_rules! code_enum {
    (
        $(#[$attr:meta])*
        $vis:vis enum $name:ident ($what:literal) {
            $(
                $(#[$vattr:meta])*
                $variant:ident = $code:literal => $text:literal,
            )+
        }
    ) => {
        $(#[$attr])*
        $vis enum $name {
            $(
                $(#[$vattr])*
                $variant,
            )+
            /// A code this version does not know.
            Unknown(u8),
        }

        impl $name {
            /// The value of a wire code (an unknown code is kept in `Unknown`).
            pub const fn from_code(code: u8) -> $name {
                match code {
                    $($code => $name::$variant,)+
                    c => $name::Unknown(c),
                }
            }

            /// The wire code.
            pub const fn code(self) -> u8 {
                match self {
                    $($name::$variant => $code,)+
                    $name::Unknown(c) => c,
                }
            }

            /// Whether this version knows the code (false for `Unknown`).
            pub const fn is_known(self) -> bool {
                !matches!(self, $name::Unknown(_))
            }

            /// The name of a known code, as `Display` prints it; `None` for `Unknown`.
            pub const fn name(self) -> Option<&'static str> {
                match self {
                    $($name::$variant => Some($text),)+
                    $name::Unknown(_) => None,
                }
            }
        }

        impl From<u8> for $name {
            fn from(code: u8) -> $name {
                $name::from_code(code)
            }
        }

        impl From<$name> for u8 {
            fn from(value: $name) -> u8 {
                value.code()
            }
        }

        impl core::fmt::Display for $name {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                match self.name() {
                    Some(name) => f.write_str(name),
                    None => write!(f, concat!("unknown ", $what, " {}"), self.code()),
                }
            }
        }
    };
}

#[cfg(test)]
mod test {
    extern crate std;

    use std::string::ToString;

    code_enum! {
        /// A test enum.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Fruit ("fruit") {
            /// Code 1.
            Apple = 1 => "apple",
            /// Code 7.
            Pear = 7 => "pear",
        }
    }

    #[test]
    fn every_code_round_trips_and_unknown_codes_are_kept() {
        for c in 0..=u8::MAX {
            let f = Fruit::from_code(c);
            assert_eq!(f.code(), c);
            assert_eq!(u8::from(Fruit::from(c)), c);
            assert_eq!(f.is_known(), c == 1 || c == 7, "{c}");
            assert_eq!(f.name().is_some(), f.is_known());
        }
        assert_eq!(Fruit::from_code(1), Fruit::Apple);
        assert_eq!(Fruit::from_code(7), Fruit::Pear);
        assert_eq!(Fruit::from_code(2), Fruit::Unknown(2));
        assert_eq!(Fruit::Pear.to_string(), "pear");
        assert_eq!(Fruit::Unknown(9).to_string(), "unknown fruit 9");
    }

    /// The wire codes and names of the format's enums (`docs/FORMAT.md`), unchanged by their
    /// move to `code_enum!`.
    #[test]
    fn the_format_enums_keep_their_codes_and_names() {
        use crate::object::ObjectKind as K;
        use crate::wire::{Codec, Filter, OpCode, SignatureKind as S};
        let kinds = [(K::File, 1, "file"), (K::DirTree, 2, "dirtree")];
        let kinds = kinds
            .into_iter()
            .chain([(K::DirMeta, 3, "dirmeta"), (K::Commit, 4, "commit")]);
        for (k, c, n) in kinds {
            assert_eq!(
                (k.code(), K::from_code(c), k.to_string()),
                (c, k, n.to_string())
            );
            assert_eq!(k.suffix(), n);
        }
        assert_eq!(K::Unknown(9).to_string(), "unknown object kind 9");
        assert_eq!(K::Unknown(9).suffix(), "unknown");
        for (k, c, n) in [
            (Codec::Stored, 0, "stored"),
            (Codec::Deflate, 1, "deflate"),
            (Codec::Xz, 2, "xz"),
        ] {
            assert_eq!(
                (u8::from(k), Codec::from(c), k.to_string()),
                (c, k, n.to_string())
            );
        }
        let filters = [
            (Filter::None, 0, "none"),
            (Filter::X86, 1, "x86"),
            (Filter::Arm, 2, "arm"),
            (Filter::ArmThumb, 3, "arm-thumb"),
            (Filter::Arm64, 4, "arm64"),
        ];
        for (k, c, n) in filters {
            assert_eq!(
                (u8::from(k), Filter::from(c), k.to_string()),
                (c, k, n.to_string())
            );
        }
        for (k, c, n) in [(S::None, 0, "none"), (S::Ed25519, 1, "ed25519")] {
            assert_eq!(
                (k.code(), S::from_code(c), k.to_string()),
                (c, k, n.to_string())
            );
        }
        for (k, c, n) in [
            (OpCode::Write, 1, "write"),
            (OpCode::Reuse, 2, "reuse"),
            (OpCode::Patch, 3, "patch"),
        ] {
            assert_eq!(
                (k.code(), OpCode::from_code(c), k.to_string()),
                (c, k, n.to_string())
            );
        }
        assert_eq!(Codec::from(3), Codec::Unknown(3));
        assert_eq!(Filter::from(5), Filter::Unknown(5));
        assert_eq!(S::from_code(2), S::Unknown(2));
        assert_eq!(OpCode::from_code(0), OpCode::Unknown(0));
        assert_eq!(K::from_code(0), K::Unknown(0));
    }
}
