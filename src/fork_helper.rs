//! `pynish --fork-helper`: writes out the Python package's fork helper, which build.rs compiled into this binary.
//!
//! Recognised only as the one argument, before clap: every flag clap knows costs every run of pynish a little
//! (about 8,000 instructions for this one), and this one is for the package alone. With anything else beside it,
//! clap refuses it as an unknown flag (125).
//!
//! Why pynish carries it: the helper is a shared object that the package loads with ctypes, and maturin puts one
//! kind of artifact into a wheel, the binary here. Carried in the binary, it is always the build that matches the
//! binary the package runs. Why the package needs it: see `python/native/pynish_fork.c`.

use crate::{exit_code, say};
use std::io::Write;

/// The helper, where build.rs could compile it (Linux, a native build, a C compiler).
#[cfg(pynish_fork_helper)]
const HELPER: Option<&[u8]> = Some(include_bytes!(concat!(env!("OUT_DIR"), "/pynish_fork.so")));
#[cfg(not(pynish_fork_helper))]
const HELPER: Option<&[u8]> = None;

/// Whether pynish was run as `pynish --fork-helper`, and nothing else.
pub fn asked() -> bool {
    let mut args = std::env::args_os().skip(1);
    args.next().is_some_and(|arg| arg == "--fork-helper") && args.next().is_none()
}

/// Writes the helper to stdout; 125 with one line if this build has none or stdout refuses it.
pub fn write() -> u8 {
    let Some(helper) = HELPER else {
        say(format_args!("pynish: this build of pynish carries no fork helper"));
        return exit_code::ERROR;
    };
    let mut out = std::io::stdout().lock();
    match out.write_all(helper).and_then(|()| out.flush()) {
        Ok(()) => 0,
        Err(error) => {
            say(format_args!("pynish: cannot write the fork helper: {error}"));
            exit_code::ERROR
        }
    }
}
