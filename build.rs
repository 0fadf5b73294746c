//! Links the `muster` binary with packed relative relocations (`DT_RELR`)
//! on Linux with glibc: the dynamic loader then applies its 20,000 or so
//! relative relocations from a bitmap of a few kilobytes instead of a
//! table of 470 KB, which took 0.5 ms of every start (a one-shot `muster
//! scrape`, every `muster push`; `docs/benchmarks-by-hand.md`). glibc reads
//! them since 2.36 and GNU ld writes them since 2.38; an older ld warns
//! and ignores the option.

fn main() {
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os == "linux" && env == "gnu" {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
