//! Build script: links the unwinder statically into pynish on Linux with glibc, so that a start of pynish does not
//! load `libgcc_s.so.1`.
//!
//! Why: pynish's cost on a short command is mostly its own start-up, and loading `libgcc_s` is the largest part of
//! it that pynish can avoid: one more object for the dynamic loader to map and relocate, and a constructor
//! (`__cpu_indicator_init`) that runs CPUID, which traps to the hypervisor in a virtual machine. Measured on the
//! development machine (a VM): an empty C program linked with `-lgcc_s` starts 0.10 ms slower (0.13 ms more CPU),
//! about 7 % of `timeout 100 true` (README, Benchmark).
//!
//! How: rustc links the unwinder with `-lgcc_s` (the `unwind` crate of std). A linker script named `libgcc_s.so` in
//! a directory searched first makes that `-lgcc_s` resolve to `libgcc_eh.a`, the same unwinder as a static archive:
//! what `gcc -static-libgcc` and Rust's own `crt-static` builds link. Panics still unwind (pynish keeps
//! `panic = "unwind"`, see Cargo.toml), through pynish's own frames only (no C code in pynish calls back into Rust).
//!
//! Only for a native Linux/glibc build whose C compiler has `libgcc_eh.a`; anything else (macOS, musl, a cross
//! build, a toolchain without libgcc such as `zig cc`) links as before. `PYNISH_SHARED_LIBGCC=1` turns it off.
//!
//! It also builds the Python package's fork helper (`python/native/pynish_fork.c`, a shared object) for pynish to
//! carry and write out on `--fork-helper`: maturin puts one kind of artifact into a wheel, and pynish's is the
//! binary. Linux only. Both use the target's C compiler as the `cc` crate finds it (`CC_<target>`, `TARGET_CC`,
//! `CC`, then `cc`; with its `CFLAGS`): a wheel built with `maturin --zig` for glibc 2.17 gets a helper linked
//! against glibc 2.17 too, so the wheel's tag holds for the helper as well. Where the helper cannot be built,
//! pynish is built without it and the Python package forks its caller twice, as before.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=PYNISH_SHARED_LIBGCC");
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    let out_dir = PathBuf::from(var("OUT_DIR"));
    // The target's C compiler; None where the cc crate finds none (then neither step below applies).
    let cc = cc::Build::new().opt_level(2).debug(false).try_get_compiler().ok();
    if var("CARGO_CFG_TARGET_OS") != "linux" {
        return;
    }
    fork_helper(cc.as_ref(), &out_dir);
    if var("CARGO_CFG_TARGET_ENV") != "gnu"
        || var("TARGET") != var("HOST")
        || var("CARGO_CFG_TARGET_FEATURE").split(',').any(|f| f == "crt-static")
        || var("PYNISH_SHARED_LIBGCC") == "1"
    {
        return;
    }
    let Some(archive) = cc.as_ref().and_then(libgcc_eh) else { return };
    let dir = out_dir.join("static-libgcc");
    if std::fs::create_dir_all(&dir).is_err() {
        return;
    }
    let script =
        format!("/* pynish build.rs: -lgcc_s links the static unwinder */\nINPUT(\"{}\")\n", archive.display());
    if std::fs::write(dir.join("libgcc_s.so"), script).is_ok() {
        println!("cargo:rustc-link-search=native={}", dir.display());
        // For tests/startup.rs, which then expects no libgcc_s among the libraries the binary needs.
        println!("cargo:rustc-env=PYNISH_STATIC_UNWINDER=1");
    }
}

/// Compiles the fork helper into `$OUT_DIR/pynish_fork.so` and sets `cfg(pynish_fork_helper)` if that worked.
fn fork_helper(cc: Option<&cc::Tool>, out_dir: &Path) {
    const SOURCE: &str = "python/native/pynish_fork.c";
    println!("cargo::rustc-check-cfg=cfg(pynish_fork_helper)");
    println!("cargo:rerun-if-changed={SOURCE}");
    let out = out_dir.join("pynish_fork.so");
    // No _FORTIFY_SOURCE: its siglongjmp refuses to jump from A's stack to the caller's (see the source).
    // -lpthread: glibc before 2.34 keeps pthread_sigmask there, and naming it gives the symbol that glibc's
    // version (GLIBC_2.2.5, not the 2.32 of libc's copy); a newer glibc's libpthread is an empty stub.
    let built = cc.map(|cc| {
        command(cc)
            .args(["-shared", "-fPIC", "-s", "-U_FORTIFY_SOURCE", "-D_FORTIFY_SOURCE=0", "-Wall", "-o"])
            .arg(&out)
            .arg(SOURCE)
            .arg("-lpthread")
            .status()
    });
    match built {
        Some(Ok(status)) if status.success() => println!("cargo:rustc-cfg=pynish_fork_helper"),
        _ => println!("cargo:warning=the fork helper ({SOURCE}) was not built: Python fork-context calls fork twice"),
    }
}

/// The compiler with the cc crate's flags for the target, less the `-static` it adds for a `crt-static` pynish:
/// the helper is a shared object for Python, however pynish itself is linked.
fn command(cc: &cc::Tool) -> Command {
    let mut command = Command::new(cc.path());
    command.args(cc.args().iter().filter(|arg| arg.as_os_str() != "-static"));
    command.envs(cc.get_envs());
    command
}

/// Where the C compiler keeps `libgcc_eh.a`, if it has one (it prints the bare name when it has not).
fn libgcc_eh(cc: &cc::Tool) -> Option<PathBuf> {
    let out = command(cc).arg("-print-file-name=libgcc_eh.a").output().ok()?;
    let path = PathBuf::from(String::from_utf8(out.stdout).ok()?.trim());
    (out.status.success() && path.is_absolute() && path.is_file()).then_some(path)
}
