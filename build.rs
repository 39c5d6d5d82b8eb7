//! Build script: links the server's binaries with packed relative relocations (`DT_RELR`),
//! and release builds with their functions in the order `link/symbol-order.txt` gives.
//!
//! A position-independent binary carries one 24-byte relocation for every pointer in its
//! read-only data; the loader reads them all at start-up, and the pages it read stay
//! resident: 1.3 MB of an idle server's memory. Packed, they take a few kilobytes. GNU ld
//! (2.38 and later) packs them only where the C library it links against can read them
//! (glibc 2.36 and later), and otherwise warns and links as before; the binary stays
//! position-independent either way (docs/performance.md, "Idle memory").
//!
//! The symbol order (written by `scripts/symbol-order.sh`) lays out the functions a request
//! runs together, then those only start-up runs, so an idle server maps fewer pages of its
//! text. Only LLD reads it: Rust's default linker on x86_64 Linux since 1.90. A build that
//! names another linker in its flags links without it.

fn main() {
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    if os == "linux" && env == "gnu" {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default();
    let order = std::path::Path::new(&manifest_dir).join("link/symbol-order.txt");
    let release = std::env::var("PROFILE").is_ok_and(|p| p == "release");
    // A linker chosen in the flags may not be LLD.
    let own_linker = std::env::var("CARGO_ENCODED_RUSTFLAGS")
        .is_ok_and(|f| f.contains("linker") || f.contains("link-self-contained"));
    let lld_by_default = rustc_minor().is_some_and(|minor| minor >= 90);
    if os == "linux"
        && env == "gnu"
        && arch == "x86_64"
        && release
        && lld_by_default
        && !own_linker
        && order.exists()
    {
        println!(
            "cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}",
            order.display()
        );
        println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
    }
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=link/symbol-order.txt");
}

/// The minor version of the compiler building us (`1.95.0` → 95).
fn rustc_minor() -> Option<u32> {
    let rustc = std::env::var("RUSTC").ok()?;
    let out = std::process::Command::new(rustc)
        .arg("--version")
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    text.split_whitespace()
        .nth(1)?
        .split('.')
        .nth(1)?
        .parse()
        .ok()
}
