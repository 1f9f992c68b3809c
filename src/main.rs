//! The `pynish` executable: a C `main` (`#![no_main]`) that calls `pynish::main`.
//!
//! Why not `fn main`: before it, Rust's runtime sets up a guard for the main thread's stack, which reads and
//! parses `/proc/self/maps` and maps an alternate signal stack. That costs about 0.1 ms at every start, 7 % of
//! `timeout 100 true` on the development machine (README, Benchmark), for a better message on a stack overflow that
//! pynish's bounded recursion never has. What else the runtime does is kept (`pynish::prepare_process`); a panic is
//! still caught here, after its unwinding has run every drop (the kill-on-drop guard ends the tree), and ends
//! pynish with 101 as before.
//!
//! Under `cargo test` the test harness brings its own `main`, so this one is left out.
#![cfg_attr(not(test), no_main)]

#[cfg(not(test))]
use std::ffi::{c_char, c_int};

#[cfg(not(test))]
#[unsafe(no_mangle)]
extern "C" fn main(_argc: c_int, _argv: *const *const c_char) -> c_int {
    #[cfg(unix)]
    pynish::prepare_process();
    let status = std::panic::catch_unwind(pynish::main).unwrap_or(101);
    // Rust's runtime would flush stdout after `fn main`; returning from a C main does not.
    let _ = std::io::Write::flush(&mut std::io::stdout());
    c_int::from(status)
}
