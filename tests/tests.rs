//! pynish's integration tests: one crate, one module per behaviour, all against the built binary and real
//! processes (see `util` for the helpers and `examples/testkit.rs` for the workloads).

mod util;

mod artifacts;
mod cgroup;
mod escalation;
mod exit_codes;
mod flags;
mod json;
mod limits;
mod passthrough;
mod recipes;
mod tree;
