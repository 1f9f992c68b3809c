//! The C math functions pynish's own code and its crates call (`log`, `log10`, `pow`, `hypotf`: plotters' axes
//! and curves in `pynish plot`; `log10` only in unoptimised builds), defined here from the `libm` crate (a Rust
//! port of musl's libm).
//!
//! Why: every start of pynish would otherwise load `libm.so.6`, one more shared object for the dynamic loader to
//! map and relocate, for a subcommand that is not the run. That is about 0.1 ms per start, measured with the
//! default-path benchmark (bench/ section 0), where pynish must cost no more than 1.1× `timeout`. With these
//! symbols defined in the executable the linker (`--as-needed`) drops libm. If a crate starts calling another libm
//! function, libm is linked again and only the start-up cost returns: `tests/startup.rs` fails then.
//!
//! Linux with glibc only: elsewhere the platform's libm is part of libc or the system library anyway.

/// `log(3)`.
#[unsafe(no_mangle)]
pub extern "C" fn log(x: f64) -> f64 {
    libm::log(x)
}

/// `log10(3)`.
#[unsafe(no_mangle)]
pub extern "C" fn log10(x: f64) -> f64 {
    libm::log10(x)
}

/// `pow(3)`.
#[unsafe(no_mangle)]
pub extern "C" fn pow(x: f64, y: f64) -> f64 {
    libm::pow(x, y)
}

/// `hypotf(3)`.
#[unsafe(no_mangle)]
pub extern "C" fn hypotf(x: f32, y: f32) -> f32 {
    libm::hypotf(x, y)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_definitions_agree_with_std() {
        assert!((f64::ln(10.0) - std::f64::consts::LN_10).abs() < 1e-15);
        assert_eq!(2f64.powf(10.0), 1024.0);
        assert!((1000f64.log10() - 3.0).abs() < 1e-15);
        assert_eq!(3f32.hypot(4.0), 5.0);
    }
}
