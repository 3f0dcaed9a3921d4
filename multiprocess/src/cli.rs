//! The command line: `launch`, `orchestrator`, `node` and `single`.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use burn_mixed::Precision;
use burn_mixed::data_parallel::CommDtype;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::cluster::{Collective, NodeSpec, check_port_free, check_rank};
use crate::gradients::Transfer;
use crate::training::{Extras, OptimizerKind, RunSpec, train};
use crate::transformer::TransformerSpec;
use crate::{Device, launch};

#[derive(Parser, Debug)]
#[command(about = "Data-parallel training across processes with burn-collective, under any precision")]
pub struct Command {
    #[command(subcommand)]
    what: What,
}

#[derive(Subcommand, Debug)]
enum What {
    /// Starts burn-collective's orchestrator and N node processes on this machine, and waits.
    Launch(LaunchArgs),
    /// Runs burn-collective's global orchestrator (one per run, on any machine).
    Orchestrator(OrchestratorArgs),
    /// Runs one node of a run (one per process).
    Node(NodeArgs),
    /// The reference: one process, no collective, on the whole global batch.
    Single(TrainArgs),
}

/// The dtype gradients travel in.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum CommArg {
    F32,
    F16,
    Bf16,
}

/// What every process of a run must be given alike.
#[derive(Args, Clone, Debug)]
pub struct TrainArgs {
    /// 32-true, 16-mixed, bf16-mixed, 16-true, bf16-true, 64-true, or an alias.
    #[arg(long, default_value = "32-true")]
    precision: String,
    #[arg(long, default_value_t = 100)]
    steps: usize,
    /// Rows per step over all processes; each process takes an equal share.
    #[arg(long, default_value_t = 64)]
    global_batch: usize,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    #[arg(long, value_enum, default_value_t = OptimizerKind::Adam)]
    optimizer: OptimizerKind,
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    #[arg(long, default_value_t = 64)]
    d_model: usize,
    #[arg(long, default_value_t = 4)]
    heads: usize,
    #[arg(long, default_value_t = 2)]
    layers: usize,
    #[arg(long, default_value_t = 128)]
    d_ff: usize,
    /// The loss scaler's initial scale (16-mixed).
    #[arg(long)]
    init_scale: Option<f32>,
    /// The dtype gradients travel in between processes.
    #[arg(long, value_enum, default_value_t = CommArg::F32)]
    comm_dtype: CommArg,
    /// Gradient values per all-reduce (bucket).
    #[arg(long, default_value_t = 65536)]
    bucket_elements: usize,
    /// Directory for burn-train checkpoints (each process its own).
    #[arg(long)]
    checkpoint_dir: Option<PathBuf>,
    #[arg(long, default_value_t = 10)]
    checkpoint_every: usize,
    /// Continue from the checkpoint saved after this many steps.
    #[arg(long)]
    resume_from: Option<usize>,
    /// Write the initial and final parameters into this directory (f32, little-endian).
    #[arg(long)]
    dump_params: Option<PathBuf>,
    /// Test hook: `RANK:STEP` makes that process's gradients overflow at that step.
    #[arg(long, value_parser = parse_rank_step)]
    force_overflow: Option<(u32, usize)>,
}

fn parse_rank_step(s: &str) -> Result<(u32, usize), String> {
    let (rank, step) = s.split_once(':').ok_or_else(|| format!("{s:?} is not RANK:STEP"))?;
    Ok((rank.parse().map_err(|e| format!("rank {rank:?}: {e}"))?, step.parse().map_err(|e| format!("step {step:?}: {e}"))?))
}

/// How a node reaches the others and how long it waits for them.
#[derive(Args, Clone, Debug)]
pub struct LinkArgs {
    /// Seconds any wait for the other processes may take (registration, each all-reduce).
    #[arg(long, default_value_t = 30.0)]
    timeout_secs: f64,
    /// Seconds to keep trying to reach the orchestrator at start.
    #[arg(long, default_value_t = 10.0)]
    connect_timeout_secs: f64,
}

#[derive(Args, Debug)]
pub struct LaunchArgs {
    #[arg(long)]
    nodes: u32,
    #[arg(long, default_value_t = 3777)]
    orchestrator_port: u16,
    /// Node R's data service listens on this port plus R.
    #[arg(long, default_value_t = 3800)]
    base_port: u16,
    #[command(flatten)]
    link: LinkArgs,
    #[command(flatten)]
    train: TrainArgs,
}

#[derive(Args, Debug)]
pub struct OrchestratorArgs {
    #[arg(long, default_value_t = 3777)]
    port: u16,
    /// The interface to listen on: loopback by default, 0.0.0.0 for every interface.
    #[arg(long, default_value = "127.0.0.1")]
    listen: IpAddr,
}

#[derive(Args, Debug)]
pub struct NodeArgs {
    #[arg(long)]
    nodes: u32,
    #[arg(long)]
    node_rank: u32,
    /// The orchestrator's address.
    #[arg(long, default_value = "ws://127.0.0.1:3777")]
    orchestrator: String,
    /// This node's data-service port (default 3800 + rank).
    #[arg(long)]
    port: Option<u16>,
    /// The address the other nodes reach this one at (default ws://127.0.0.1:PORT).
    #[arg(long)]
    address: Option<String>,
    /// The interface to listen on: loopback by default, 0.0.0.0 for every interface.
    #[arg(long, default_value = "127.0.0.1")]
    listen: IpAddr,
    #[command(flatten)]
    link: LinkArgs,
    #[command(flatten)]
    train: TrainArgs,
}

impl TrainArgs {
    fn spec(&self) -> Result<RunSpec, String> {
        let precision: Precision = self.precision.parse().map_err(|e| format!("--precision: {e}"))?;
        if self.d_model == 0 || self.heads == 0 || !self.d_model.is_multiple_of(self.heads) {
            return Err(format!("--d-model {} must be a positive multiple of --heads {}", self.d_model, self.heads));
        }
        Ok(RunSpec {
            precision,
            steps: self.steps,
            global_batch: self.global_batch,
            seed: self.seed,
            optimizer: self.optimizer,
            lr: self.lr,
            model: TransformerSpec {
                vocab: crate::sequence::VOCAB,
                seq_len: crate::sequence::SEQ_LEN,
                d_model: self.d_model,
                heads: self.heads,
                layers: self.layers,
                d_ff: self.d_ff,
            },
            init_scale: self.init_scale,
            transfer: Transfer {
                dtype: match self.comm_dtype {
                    CommArg::F32 => CommDtype::Native,
                    CommArg::F16 => CommDtype::F16,
                    CommArg::Bf16 => CommDtype::BF16,
                },
                bucket_elements: self.bucket_elements,
            },
            forces_overflow: self.force_overflow.is_some(),
        })
    }

    fn extras(&self, rank: u32) -> Extras {
        Extras {
            checkpoints: self.checkpoint_dir.clone().map(|dir| (dir, self.checkpoint_every.max(1))),
            resume_from: self.resume_from,
            dump: self.dump_params.clone(),
            overflow_at: self.force_overflow.filter(|(r, _)| *r == rank).map(|(_, step)| step),
        }
    }

    /// The same settings as arguments, for the processes `launch` starts.
    pub fn to_args(&self) -> Vec<String> {
        let mut args = vec![
            format!("--precision={}", self.precision),
            format!("--steps={}", self.steps),
            format!("--global-batch={}", self.global_batch),
            format!("--seed={}", self.seed),
            format!("--optimizer={}", self.optimizer.to_possible_value().expect("a value").get_name()),
            format!("--lr={}", self.lr),
            format!("--d-model={}", self.d_model),
            format!("--heads={}", self.heads),
            format!("--layers={}", self.layers),
            format!("--d-ff={}", self.d_ff),
            format!("--comm-dtype={}", self.comm_dtype.to_possible_value().expect("a value").get_name()),
            format!("--bucket-elements={}", self.bucket_elements),
            format!("--checkpoint-every={}", self.checkpoint_every),
        ];
        let optional = [
            ("--init-scale", self.init_scale.map(|v| v.to_string())),
            ("--checkpoint-dir", self.checkpoint_dir.as_ref().map(|d| d.display().to_string())),
            ("--resume-from", self.resume_from.map(|v| v.to_string())),
            ("--dump-params", self.dump_params.as_ref().map(|d| d.display().to_string())),
            ("--force-overflow", self.force_overflow.map(|(r, s)| format!("{r}:{s}"))),
        ];
        args.extend(optional.into_iter().filter_map(|(flag, value)| value.map(|v| format!("{flag}={v}"))));
        args
    }
}

impl LinkArgs {
    fn timeout(&self) -> Result<Duration, String> {
        Duration::try_from_secs_f64(self.timeout_secs).map_err(|e| format!("--timeout-secs {}: {e}", self.timeout_secs))
    }

    fn to_args(&self) -> Vec<String> {
        vec![format!("--timeout-secs={}", self.timeout_secs), format!("--connect-timeout-secs={}", self.connect_timeout_secs)]
    }
}

impl Command {
    pub fn run(self) -> Result<(), String> {
        let device = Device::default();
        // Never held locked: burn-collective's log goes to stdout from its own threads, and a
        // lock held across a collective would block them.
        let stdout = std::io::stdout;
        match self.what {
            What::Single(args) => train(&args.spec()?, &args.extras(0), None, &device, &mut stdout()),
            What::Orchestrator(args) => {
                burn_communication::websocket::set_listen_ip(args.listen);
                check_port_free(args.listen, args.port, "the orchestrator")?;
                eprintln!("orchestrator listening on {}:{}", args.listen, args.port);
                tokio::runtime::Runtime::new()
                    .map_err(|e| format!("cannot start a tokio runtime: {e}"))?
                    .block_on(burn_collective::start_global_orchestrator(args.port));
                Ok(())
            }
            What::Node(args) => {
                check_rank(args.nodes, args.node_rank)?;
                let spec = args.train.spec()?;
                spec.check(args.nodes)?;
                let port = match args.port {
                    Some(port) => port,
                    None => (3800u32.checked_add(args.node_rank).and_then(|port| u16::try_from(port).ok()))
                        .ok_or_else(|| format!("--node-rank {}: 3800 + rank is past the last port; give --port", args.node_rank))?,
                };
                let node = NodeSpec {
                    nodes: args.nodes,
                    rank: args.node_rank,
                    orchestrator: args.orchestrator,
                    address: args.address.unwrap_or_else(|| format!("ws://127.0.0.1:{port}")),
                    port,
                    listen: args.listen,
                    timeout: args.link.timeout()?,
                    connect_timeout: Duration::try_from_secs_f64(args.link.connect_timeout_secs)
                        .map_err(|e| format!("--connect-timeout-secs: {e}"))?,
                };
                let collective = Collective::join(&node, &device)?;
                train(&spec, &args.train.extras(args.node_rank), Some(&collective), &device, &mut stdout())?;
                collective.finish()
            }
            What::Launch(args) => {
                check_rank(args.nodes, 0)?;
                args.train.spec()?.check(args.nodes)?;
                args.link.timeout()?;
                launch::launch(args.nodes, args.orchestrator_port, args.base_port, &args.link.to_args(), &args.train.to_args())
            }
        }
    }
}
