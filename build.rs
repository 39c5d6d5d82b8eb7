//! Build script: links the server's binaries with packed relative relocations (`DT_RELR`).
//!
//! A position-independent binary carries one 24-byte relocation for every pointer in its
//! read-only data; the loader reads them all at start-up, and the pages it read stay
//! resident: 1.3 MB of an idle server's memory. Packed, they take a few kilobytes. GNU ld
//! (2.38 and later) packs them only where the C library it links against can read them
//! (glibc 2.36 and later), and otherwise warns and links as before; the binary stays
//! position-independent either way (docs/performance.md, "Idle memory").

fn main() {
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os == "linux" && env == "gnu" {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
