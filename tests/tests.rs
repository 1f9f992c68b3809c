//! pynish's integration tests: one crate, one module per behaviour, all against the built binary and real
//! processes (see `util` for the helpers and `examples/testkit.rs` for the workloads).

mod util;

mod escalation;
mod exit_codes;
mod json;
mod limits;
mod passthrough;
mod tree;
