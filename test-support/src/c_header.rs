//! A C API crate's header (feature `c-header`): what cbindgen generates from the crate's
//! source, checked in byte for byte (rewritten when the crate's bless variable is set), and
//! compiling as C99 and as C++17 with every warning an error. The header tests of
//! ecu-update-capi and ecu-agent-capi.

use std::path::Path;
use std::process::Command;

/// The C API crate whose header is checked.
pub struct CHeader<'a> {
    /// The crate's directory (its `CARGO_MANIFEST_DIR`), holding `cbindgen.toml` and
    /// `include/`.
    pub crate_dir: &'a str,
    /// The header's file name in `include/`, e.g. `ecu_update.h`.
    pub file: &'a str,
    /// The variable that rewrites the checked-in header, e.g. `ECU_UPDATE_BLESS`.
    pub bless: &'a str,
    /// The crate's package name, for the advice to regenerate.
    pub package: &'a str,
}

impl CHeader<'_> {
    /// The header cbindgen generates from the crate's source with its `cbindgen.toml`.
    pub fn generate(&self) -> String {
        let dir = Path::new(self.crate_dir);
        let config = cbindgen::Config::from_file(dir.join("cbindgen.toml")).unwrap();
        let mut out = Vec::new();
        cbindgen::Builder::new()
            .with_crate(dir)
            .with_config(config)
            .generate()
            .expect("cbindgen could not generate the header")
            .write(&mut out);
        String::from_utf8(out).unwrap()
    }

    /// Asserts that the checked-in header is the generated one, byte for byte; with the bless
    /// variable set, rewrites it first.
    pub fn assert_checked_in(&self) {
        let path = Path::new(self.crate_dir).join("include").join(self.file);
        let fresh = self.generate();
        if std::env::var_os(self.bless).is_some() {
            std::fs::write(&path, &fresh).unwrap();
        }
        let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            checked_in == fresh,
            "include/{} is out of date with the Rust source; regenerate it with \
             {}=1 cargo test -p {} --test header",
            self.file,
            self.bless,
            self.package
        );
    }

    /// Asserts that `c` compiles with gcc -std=c99 and `cxx` with g++ -std=c++17, both with
    /// `-Wall -Wextra -Werror -Wpedantic` and the crate's `include/` on the path; a missing
    /// compiler follows the tool rule ([`crate::tool::have`], named after `test`).
    pub fn assert_compiles(&self, c: &str, cxx: &str, test: &str) {
        let tmp = tempfile::tempdir().unwrap();
        for (compiler, std_flag, file, src) in [
            ("gcc", "-std=c99", "t.c", c),
            ("g++", "-std=c++17", "t.cpp", cxx),
        ] {
            if !crate::tool::have(compiler, test) {
                continue;
            }
            let path = tmp.path().join(file);
            std::fs::write(&path, src).unwrap();
            let out = Command::new(compiler)
                .args([std_flag, "-Wall", "-Wextra", "-Werror", "-Wpedantic"])
                .args(["-fsyntax-only", "-I"])
                .arg(Path::new(self.crate_dir).join("include"))
                .arg(&path)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{compiler} {std_flag}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}
