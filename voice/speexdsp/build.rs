//! Links SpeexDSP (Debian: `libspeexdsp-dev`), found through pkg-config: statically when the
//! archive is there (as Debian ships it), so the desktop app carries the version measured
//! here and needs no extra runtime package; dynamically otherwise.

use std::path::Path;

fn main() {
    let library = match pkg_config::Config::new()
        .atleast_version("1.2")
        .cargo_metadata(false)
        .probe("speexdsp")
    {
        Ok(library) => library,
        Err(e) => panic!(
            "libspeexdsp (>= 1.2) not found through pkg-config: {e}\n\
             install it (Debian: apt-get install libspeexdsp-dev; `cargo xtask test` does)"
        ),
    };
    let libdir = pkg_config::get_variable("speexdsp", "libdir").unwrap_or_default();
    let mut dirs: Vec<&Path> = library.link_paths.iter().map(|p| p.as_path()).collect();
    if !libdir.is_empty() {
        dirs.push(Path::new(&libdir));
    }
    match dirs.iter().find(|d| d.join("libspeexdsp.a").is_file()) {
        Some(dir) => {
            println!("cargo:rustc-link-search=native={}", dir.display());
            println!("cargo:rustc-link-lib=static=speexdsp");
            // The archive's own dependency (its float code uses libm).
            println!("cargo:rustc-link-lib=m");
        }
        None => {
            for dir in &dirs {
                println!("cargo:rustc-link-search=native={}", dir.display());
            }
            println!("cargo:rustc-link-lib=speexdsp");
        }
    }
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");
}
