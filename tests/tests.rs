//! pynish's integration tests: one crate, one module per behaviour, all against the built binary and real
//! processes (see `util` for the helpers and `examples/testkit.rs` for the workloads).

mod harness;
mod util;

mod adversarial;
mod artifacts;
mod backend_choice;
mod cgroup;
mod escalation;
mod exit_codes;
mod flags;
mod input;
mod json;
mod limits;
mod output;
mod passthrough;
mod recipes;
mod resources;
mod signals;
mod terminal;
mod tree;
