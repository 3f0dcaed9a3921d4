//! Data parallelism across two processes on loopback with burn-collective's global level.
//!
//! The parent runs the global orchestrator (a websocket server) and starts two node
//! processes. Each node prepares the same model (same weights, from the same numbers) with
//! `MixedPrecision::setup`, trains 3 SGD steps on its own rows, and all-reduces the
//! gradients between `backward` and the step with `GradientsParams::all_reduce` (burn-optim's
//! `collective` feature, on `Mixed<NdArray>`, the inner backend). Each node prints its
//! parameters' bits after every step; the parent checks that the two nodes printed the same
//! lines and that training moved the parameters. Exit code 0 on success.
//!
//! Status with Burn 0.21 (2026-11-29, this machine): it FAILS. Both nodes register and
//! reach the first all-reduce, which never completes; the parent kills them after 120 s
//! and exits 1. A smaller probe (plain NdArray, no burn-mixed) showed where: one global
//! all-reduce between the two processes completes with the right sum, the second one in
//! the same session hangs (Sum and Mean alike), and this program's first step already
//! makes two (the weight's and the bias's gradients). Kept as the reproducer for when
//! Burn fixes it; see README, "Multi-process status".
//!
//! What this does not cover: several machines, GPUs, 16-mixed (NdArray has no f16).
//! burn-collective's servers listen on 0.0.0.0 (all interfaces), not only loopback.

use std::process::{Command, Stdio};
use std::time::Duration;

use burn::backend::{Autodiff, NdArray};
use burn::module::{Param, ParamId};
use burn::nn::Linear;
use burn::optim::{GradientsParams, Optimizer, SgdConfig};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use burn_collective::{CollectiveConfig, PeerId, ReduceOperation, finish_collective, register};
use burn_mixed::{MixedPrecision, Precision};

type Train = Mixed<Autodiff<NdArray>>;
type Inner = <Train as AutodiffBackend>::InnerBackend;
use burn_mixed::Mixed;

const ORCHESTRATOR: u16 = 3777;
const STEPS: usize = 3;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("node") {
        return node(args[2].parse().expect("a rank"));
    }
    std::thread::spawn(|| {
        tokio::runtime::Runtime::new()
            .expect("a tokio runtime")
            .block_on(burn_collective::start_global_orchestrator(ORCHESTRATOR))
    });
    std::thread::sleep(Duration::from_millis(500));
    let exe = std::env::current_exe().expect("this executable");
    let children: Vec<_> = (0..2)
        .map(|r| Command::new(&exe).args(["node", &r.to_string()]).stdout(Stdio::piped()).spawn().expect("spawn"))
        .collect();
    // A collective that never completes would hang the nodes: give up after two minutes.
    let start = std::time::Instant::now();
    let mut children = children;
    while children.iter_mut().any(|c| c.try_wait().expect("a node").is_none()) {
        if start.elapsed() > Duration::from_secs(120) {
            children.iter_mut().for_each(|c| drop(c.kill()));
            eprintln!("the nodes did not finish within 120 s: killed");
            std::process::exit(1);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let outputs: Vec<String> = children
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().expect("a node");
            assert!(out.status.success(), "a node failed: {}", out.status);
            String::from_utf8(out.stdout).expect("utf-8")
        })
        .collect();
    print!("node 0:\n{}node 1:\n{}", outputs[0], outputs[1]);
    let lines: Vec<Vec<&str>> = outputs.iter().map(|o| o.lines().collect()).collect();
    assert_eq!(lines[0].len(), STEPS + 1, "initial parameters and one line per step");
    assert_eq!(lines[0], lines[1], "both processes hold the same parameters after every step");
    assert!(lines[0].windows(2).all(|w| w[0] != w[1]), "every step moved the parameters");
    println!("ok: {STEPS} data-parallel steps, identical parameters in both processes");
}

fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

fn node(rank: u32) {
    let device = Default::default();
    let port = 3800 + rank as u16;
    let config = CollectiveConfig::default()
        .with_num_devices(1)
        .with_num_nodes(2)
        .with_global_address(format!("ws://localhost:{ORCHESTRATOR}").parse().expect("an address"))
        .with_node_address(format!("ws://localhost:{port}").parse().expect("an address"))
        .with_data_service_port(port);
    let peer = PeerId::from(rank);
    register::<Inner>(peer, device, config).expect("registered with the orchestrator");
    eprintln!("node {rank}: registered");

    let tensor = |rows: usize, cols: usize, seed: u64| {
        Tensor::<Train, 2>::from_data(TensorData::new(values(rows * cols, seed), [rows, cols]), &device)
    };
    // Fixed parameter ids: burn-optim's all-reduce goes through the parameters in id order,
    // which must be the same in every process (`Param::from_tensor` draws a random id).
    let param = |id: u64, value: Tensor<Train, 2>| Param::initialized(ParamId::from(id), value.require_grad());
    let model = Linear { weight: param(1, tensor(8, 2, 1)), bias: Some(Param::initialized(ParamId::from(2), tensor(1, 2, 2).reshape([2]).require_grad())) };
    let prepared = MixedPrecision::new(Precision::True32)
        .setup::<Train, _, _>(&device, model, SgdConfig::new().init())
        .expect("32-true runs on NdArray");
    let (mut model, mut optimizer) = (prepared.model, prepared.optimizer);
    print_params(&model.module().weight.val());
    for step in 0..STEPS {
        let seed = 100 + 10 * step as u64 + rank as u64;
        let (x, y) = (tensor(4, 8, seed), tensor(4, 2, seed + 1000));
        let grads = model
            .run(|net| GradientsParams::from_grads((net.forward(x) - y).powi_scalar(2).mean().backward(), net))
            .expect("no other region");
        eprintln!("node {rank}: step {step}, all-reducing {} gradients", grads.len());
        let grads = grads.all_reduce::<Inner>(peer, ReduceOperation::Mean).expect("all-reduced across processes");
        eprintln!("node {rank}: step {step}, all-reduced");
        model = optimizer.step(0.1, model, grads);
        print_params(&model.module().weight.val());
    }
    finish_collective::<Inner>(peer).expect("left the collective");
}

fn print_params(weight: &Tensor<Train, 2>) {
    let bits: Vec<String> = weight.to_data().to_vec::<f32>().expect("f32").iter().map(|v| format!("{:08x}", v.to_bits())).collect();
    println!("{}", bits.join(" "));
}
