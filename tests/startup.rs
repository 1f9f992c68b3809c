//! What every start of pynish costs the dynamic loader: on Linux with glibc the binary needs libc alone (no
//! `libgcc_s`, see build.rs; no `libm`, see src/mathlib.rs). Each extra library is about 0.1 ms per start, which
//! the default path's budget (1.1× `timeout`, bench/ section 0) has no room for.

use std::process::Command;

#[test]
fn the_binary_needs_no_shared_library_but_libc() {
    if !cfg!(all(target_os = "linux", target_env = "gnu")) {
        eprintln!("SKIP: the library list is only pinned for Linux with glibc");
        return;
    }
    let out = Command::new("readelf")
        .args(["--dynamic", "--wide", env!("CARGO_BIN_EXE_pynish")])
        .output()
        .expect("readelf (binutils, which gcc brings) runs");
    assert!(out.status.success(), "readelf failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let needed: Vec<&str> = text
        .lines()
        .filter(|line| line.contains("(NEEDED)"))
        .filter_map(|line| line.split('[').nth(1)?.split(']').next())
        .collect();
    // build.rs links the static unwinder where the C compiler has one; elsewhere libgcc_s stays, as before.
    let allowed: &[&str] = match option_env!("PYNISH_STATIC_UNWINDER") {
        Some(_) => &["libc.so.6"],
        None => &["libc.so.6", "libgcc_s.so.1"],
    };
    // The dynamic loader itself (`_dl_find_object`, which the static unwinder calls) is mapped at every start anyway.
    let extra: Vec<&&str> =
        needed.iter().filter(|lib| !allowed.contains(lib) && !lib.starts_with("ld-linux")).collect();
    assert!(extra.is_empty() && needed.contains(&"libc.so.6"), "pynish needs {extra:?} beyond {allowed:?}:\n{text}");
}
