//! Data-parallel training across processes, and machines, with burn-collective's global
//! all-reduce, under any precision burn-mixed offers.
//!
//! ```sh
//! multiprocess launch --nodes 2 --precision 16-mixed --steps 100        # N processes on this machine
//! multiprocess orchestrator --port 3777 --listen 0.0.0.0                 # several machines: one orchestrator,
//! multiprocess node --nodes 2 --node-rank 0 --orchestrator ws://10.0.0.1:3777 \
//!     --address ws://10.0.0.1:3800 --listen 0.0.0.0 --precision 16-mixed # and one node per process
//! multiprocess single --global-batch 64 --steps 100                      # the one-process reference
//! ```
//!
//! Every node prints one line per step; `launch` prefixes each with `rank R: `. Exit
//! status: 0 done, 1 refused (bad arguments, disagreeing processes, unreachable
//! orchestrator, port in use), 3 a wait for the other processes passed its limit (a peer
//! died or hangs), and `launch` exits 1 when any node failed. Reference: docs/multi-process.md.

#[allow(dead_code)]
#[path = "../../examples/common/data.rs"]
mod data;
#[allow(dead_code)]
#[path = "../../examples/common/sequence.rs"]
mod sequence;
#[allow(dead_code)]
#[path = "../../examples/common/transformer.rs"]
mod transformer;

mod cli;
mod cluster;
mod gradients;
mod launch;
mod training;
mod watchdog;

use std::process::ExitCode;

use burn::backend::{Autodiff, Flex};
use burn::tensor::backend::AutodiffBackend;
use burn_mixed::Mixed;
use clap::Parser;

/// The training backend: Flex (CPU), every precision, with autodiff under `Mixed`.
pub type Train = Mixed<Autodiff<Flex>>;
/// The backend gradients and collectives live on.
pub type Inner = <Train as AutodiffBackend>::InnerBackend;
pub type Device = burn::backend::flex::FlexDevice;

fn main() -> ExitCode {
    // burn-collective logs every transfer at INFO to stdout unless a logger is already
    // installed: this one keeps warnings and errors (RUST_LOG overrides), on stderr.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let command = cli::Command::parse();
    match command.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}
