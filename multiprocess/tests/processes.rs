//! Training across processes on this machine (loopback), end to end: the `multiprocess`
//! binary's `launch`, `orchestrator`, `node` and `single` commands, started as separate
//! processes. Each test has its own ports, so the tests may run at the same time.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_multiprocess");

/// A small transformer and batch, so that a step takes milliseconds.
const SMALL: [&str; 4] = ["--d-model=32", "--layers=1", "--d-ff=64", "--global-batch=24"];

/// One step as a process printed it.
#[derive(Clone, Debug, PartialEq)]
struct Step {
    step: usize,
    loss: String,
    scale: f32,
    skipped: bool,
    all_reduces: usize,
    params: String,
}

/// Parses a node's `step ...` line (after the `rank R: ` prefix, if any).
fn parse_step(line: &str) -> Option<Step> {
    let words: Vec<&str> = line.split_whitespace().collect();
    if words.len() != 12 || words[0] != "step" {
        return None;
    }
    Some(Step {
        step: words[1].parse().ok()?,
        loss: words[3].to_string(),
        scale: words[5].parse().ok()?,
        skipped: words[7].parse().ok()?,
        all_reduces: words[9].parse().ok()?,
        params: words[11].to_string(),
    })
}

/// Runs the binary to its end, failing the test after `limit`.
fn run(args: &[String], limit: Duration) -> Output {
    let child = Command::new(BIN).args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("the binary starts");
    wait_for(child, limit)
}

/// Waits for `child`, reading its output meanwhile (a full pipe would block it), and fails
/// the test after `limit`.
fn wait_for(mut child: Child, limit: Duration) -> Output {
    fn drain(pipe: Option<impl std::io::Read + Send + 'static>) -> std::thread::JoinHandle<Vec<u8>> {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            bytes
        })
    }
    let (stdout, stderr) = (drain(child.stdout.take()), drain(child.stderr.take()));
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("a child") {
            break status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("still running after {limit:?}; stderr:\n{}", String::from_utf8_lossy(&stderr.join().unwrap()));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output { status, stdout: stdout.join().unwrap(), stderr: stderr.join().unwrap() }
}

fn args(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| w.to_string()).collect()
}

/// `launch` with `nodes` processes: every rank's steps, in order. Panics unless it succeeded.
fn launch(nodes: usize, ports: u16, extra: &[&str]) -> Vec<Vec<Step>> {
    let mut all =
        args(&["launch", &format!("--nodes={nodes}"), &format!("--orchestrator-port={ports}"), &format!("--base-port={}", ports + 1)]);
    all.extend(args(&SMALL));
    all.extend(args(extra));
    let out = run(&all, Duration::from_secs(240));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "launch failed: {}\nstderr:\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    (0..nodes).map(|r| stdout.lines().filter_map(|l| l.strip_prefix(&format!("rank {r}: "))).filter_map(parse_step).collect()).collect()
}

/// `single` (one process on the global batch): its steps.
fn single(extra: &[&str]) -> Vec<Step> {
    let mut all = args(&["single"]);
    all.extend(args(&SMALL));
    all.extend(args(extra));
    let out = run(&all, Duration::from_secs(240));
    assert!(out.status.success(), "single failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().filter_map(parse_step).collect()
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("multiprocess-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn floats(path: &Path) -> Vec<f32> {
    std::fs::read(path).expect("a dump").chunks(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect()
}

/// Every rank printed the same parameters after every step; `steps` steps each.
fn assert_identical_across_ranks(runs: &[Vec<Step>], steps: usize, what: &str) {
    for (r, run) in runs.iter().enumerate() {
        assert_eq!(run.len(), steps, "{what}: rank {r} printed {} steps", run.len());
        for (a, b) in runs[0].iter().zip(run) {
            assert_eq!(
                (a.step, &a.params, a.scale, a.skipped),
                (b.step, &b.params, b.scale, b.skipped),
                "{what}: rank {r} differs from rank 0"
            );
        }
    }
}

#[test]
fn two_processes_hold_identical_parameters_and_match_one_process_on_the_global_batch() {
    for (k, precision) in ["32-true", "16-mixed"].into_iter().enumerate() {
        let (dist, one) = (temp_dir(&format!("two-{precision}")), temp_dir(&format!("one-{precision}")));
        let common = |dir: &Path| {
            vec![
                format!("--precision={precision}"),
                "--steps=20".into(),
                "--optimizer=sgd".into(),
                "--lr=0.05".into(),
                format!("--dump-params={}", dir.display()),
            ]
        };
        let dist_args = common(&dist);
        let runs = launch(2, 4100 + 10 * k as u16, &dist_args.iter().map(String::as_str).collect::<Vec<_>>());
        assert_identical_across_ranks(&runs, 20, precision);
        assert!(runs[0].iter().all(|s| s.all_reduces >= 1 && !s.skipped), "{precision}: every step all-reduced and stepped");
        assert!(runs[0].windows(2).all(|w| w[0].params != w[1].params), "{precision}: every step moved the parameters");
        assert_eq!(floats(&dist.join("rank-0-final.f32")), floats(&dist.join("rank-1-final.f32")), "{precision}: final parameters");

        let one_args = common(&one);
        single(&one_args.iter().map(String::as_str).collect::<Vec<_>>());
        let initial = floats(&one.join("rank-0-initial.f32"));
        assert_eq!(initial, floats(&dist.join("rank-0-initial.f32")), "{precision}: the same initial parameters");
        // As the two-device tests: on what training changed, relative to the largest change.
        let moved = |p: Vec<f32>| -> Vec<f32> { p.iter().zip(&initial).map(|(a, b)| a - b).collect() };
        let (a, b) = (moved(floats(&dist.join("rank-0-final.f32"))), moved(floats(&one.join("rank-0-final.f32"))));
        let largest = b.iter().fold(0f32, |m, v| m.max(v.abs()));
        let diff = a.iter().zip(&b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / largest;
        let tolerance = if precision == "32-true" { 1e-5 } else { 2e-3 };
        eprintln!("{precision}: two processes vs one on the global batch, max difference {diff:e} of the largest update");
        assert!(largest > 0.0 && diff <= tolerance, "{precision}: {diff:e} > {tolerance:e}");
    }
}

#[test]
fn three_processes_train_as_one_with_several_all_reduces_per_step() {
    let runs = launch(3, 4200, &["--precision=16-mixed", "--steps=10", "--bucket-elements=4000"]);
    assert_identical_across_ranks(&runs, 10, "3 processes");
    assert!(runs[0].iter().all(|s| s.all_reduces >= 3), "buckets of 4000 values: {:?}", runs[0][0]);
    // Each process trains on its own rows: their losses differ, their parameters do not.
    assert_ne!(runs[0][0].loss, runs[1][0].loss);
}

#[test]
fn the_order_in_which_processes_join_does_not_change_the_sums() {
    // Started rank 2 first and rank 0 last, against `launch` (rank 0 first): the ring
    // follows the ranks either way, so three processes form every sum in the same order.
    let reference = launch(3, 4250, &["--precision=32-true", "--steps=4"]);
    let _orchestrator = Orchestrator::start(4260);
    let mut children = Vec::new();
    for rank in [2, 1, 0] {
        children.push((rank, node(3, rank, 4260, 4261 + rank as u16, &["--precision=32-true", "--steps=4"]).spawn().unwrap()));
        std::thread::sleep(Duration::from_millis(300));
    }
    for (rank, child) in children {
        let out = wait_for(child, Duration::from_secs(120));
        assert!(out.status.success(), "rank {rank}: {}", String::from_utf8_lossy(&out.stderr));
        let steps: Vec<Step> = String::from_utf8_lossy(&out.stdout).lines().filter_map(parse_step).collect();
        let params = |run: &[Step]| run.iter().map(|s| s.params.clone()).collect::<Vec<_>>();
        assert_eq!(params(&steps), params(&reference[rank as usize]), "rank {rank}, joined in reverse order");
    }
}

#[test]
fn an_overflow_on_one_process_skips_the_step_on_every_process() {
    let runs = launch(2, 4300, &["--precision=16-mixed", "--steps=6", "--init-scale=1024", "--force-overflow=1:3"]);
    assert_identical_across_ranks(&runs, 6, "forced overflow");
    for (r, run) in runs.iter().enumerate() {
        let skipped: Vec<usize> = run.iter().filter(|s| s.skipped).map(|s| s.step).collect();
        assert_eq!(skipped, vec![3], "rank {r}: only the poisoned step skips");
        assert_eq!(run[3].params, run[2].params, "rank {r}: the skipped step left the parameters");
        assert_ne!(run[4].params, run[3].params, "rank {r}: training goes on");
        let scales: Vec<f32> = run.iter().map(|s| s.scale).collect();
        assert_eq!(scales, vec![1024.0, 1024.0, 1024.0, 512.0, 512.0, 512.0], "rank {r}: one backoff");
    }
}

#[test]
fn resuming_from_checkpoints_continues_bit_for_bit() {
    let dir = temp_dir("checkpoints");
    let checkpoints = format!("--checkpoint-dir={}", dir.display());
    // 2^20 overflows f16 here: the steps before the checkpoint skip and back off, so the
    // restored scale (in the optimizer's record) is not the initial one.
    let common = ["--precision=16-mixed", "--steps=10", "--init-scale=1048576", "--checkpoint-every=5", &checkpoints];
    let straight = launch(2, 4400, &common);
    assert!(straight[0][..5].iter().any(|s| s.skipped), "a skip before the checkpoint: {:?}", straight[0]);
    let resumed = launch(2, 4410, &[&common[..], &["--resume-from=5"]].concat());
    assert_identical_across_ranks(&resumed, 5, "resumed");
    for r in 0..2 {
        assert_eq!(resumed[r], straight[r][5..], "rank {r}: steps 5-9 after resuming, bit for bit (loss, scale, verdict, parameters)");
    }
}

#[test]
fn gradients_can_travel_in_half_precision() {
    let (native, half) = (temp_dir("comm-native"), temp_dir("comm-half"));
    let run = |dir: &Path, ports: u16, comm: &str| {
        let dump = format!("--dump-params={}", dir.display());
        launch(2, ports, &["--precision=16-mixed", "--steps=5", "--optimizer=sgd", "--lr=0.05", comm, &dump])
    };
    let exact = run(&native, 4900, "--comm-dtype=f32");
    for (k, comm) in ["--comm-dtype=f16", "--comm-dtype=bf16"].into_iter().enumerate() {
        let runs = run(&half, 4910 + 10 * k as u16, comm);
        assert_identical_across_ranks(&runs, 5, comm);
        assert_eq!(runs[0][0].loss, exact[0][0].loss, "{comm}: the same first forward pass");
        assert_ne!(runs[0][0].params, exact[0][0].params, "{comm}: the narrowed transfer changed the update");
        let initial = floats(&native.join("rank-0-initial.f32"));
        let moved = |dir: &Path| -> Vec<f32> { floats(&dir.join("rank-0-final.f32")).iter().zip(&initial).map(|(a, b)| a - b).collect() };
        let (a, b) = (moved(&half), moved(&native));
        let largest = b.iter().fold(0f32, |m, v| m.max(v.abs()));
        let diff = a.iter().zip(&b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / largest;
        eprintln!("{comm}: max difference {diff:e} of the largest update against f32 transfers");
        // A bf16 transfer keeps 8 significant bits: each averaged gradient is off by at most
        // 2^-9 of itself; 5 SGD steps of such errors stay well under 1% of the largest update.
        assert!(diff < 1e-2, "{comm}: {diff:e}");
    }
}

/// Starts `orchestrator` on `port`; killed when dropped.
struct Orchestrator(Child);

impl Orchestrator {
    fn start(port: u16) -> Self {
        let child = Command::new(BIN)
            .args(["orchestrator", &format!("--port={port}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Self(child)
    }
}

impl Drop for Orchestrator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A `node` process of a run whose orchestrator listens on `orchestrator`.
fn node(nodes: u32, rank: u32, orchestrator: u16, port: u16, extra: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    command
        .args(["node", &format!("--nodes={nodes}"), &format!("--node-rank={rank}"), &format!("--port={port}")])
        .arg(format!("--orchestrator=ws://127.0.0.1:{orchestrator}"))
        .args(SMALL)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// Runs the nodes to their ends: each one's exit status and stderr.
fn run_nodes(commands: Vec<Command>, limit: Duration) -> Vec<(Option<i32>, String)> {
    let children: Vec<Child> = commands.into_iter().map(|mut c| c.spawn().unwrap()).collect();
    children
        .into_iter()
        .map(|c| {
            let out = wait_for(c, limit);
            (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
        })
        .collect()
}

#[test]
fn a_killed_process_makes_the_others_exit_with_a_message_within_60_s() {
    let _orchestrator = Orchestrator::start(4500);
    let long = ["--steps=100000", "--timeout-secs=20"];
    let survivor = node(2, 0, 4500, 4501, &long).spawn().unwrap();
    let mut victim = node(2, 1, 4500, 4502, &long).spawn().unwrap();
    // Kill the victim once it has trained a few steps (so the collective is in use).
    let lines = BufReader::new(victim.stdout.take().unwrap()).lines().map_while(Result::ok);
    let trained = lines.filter_map(|l| parse_step(&l)).any(|s| s.step == 3);
    assert!(trained, "the victim trained");
    victim.kill().unwrap();
    victim.wait().unwrap();
    let killed_at = Instant::now();
    let out = wait_for(survivor, Duration::from_secs(60));
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("the survivor exited {:?} after {:?}: {}", out.status.code(), killed_at.elapsed(), stderr.lines().last().unwrap_or(""));
    // Either burn-collective notices the closed connection (an error, exit 1) or the
    // watchdog ends the wait (exit 3); both name the all-reduce and the likely cause.
    assert!(matches!(out.status.code(), Some(1 | 3)), "the survivor exits non-zero; stderr:\n{stderr}");
    assert!(stderr.contains("node 0: the all-reduce of step"), "{stderr}");
    assert!(stderr.contains("a peer process has exited"), "{stderr}");
}

#[test]
fn a_process_that_stops_answering_makes_the_others_exit_at_their_limit() {
    let _orchestrator = Orchestrator::start(4510);
    let long = ["--steps=100000", "--timeout-secs=5"];
    let survivor = node(2, 0, 4510, 4511, &long).spawn().unwrap();
    let mut stopped = node(2, 1, 4510, 4512, &long).spawn().unwrap();
    // Its output is read to the end on another thread: a closed pipe would make its next
    // line fail and end it, which is a dead peer, not a silent one.
    let (steps, trained) = std::sync::mpsc::channel();
    let stdout = stopped.stdout.take().unwrap();
    std::thread::spawn(move || {
        for step in BufReader::new(stdout).lines().map_while(Result::ok).filter_map(|l| parse_step(&l)) {
            let _ = steps.send(step.step);
        }
    });
    assert!(trained.iter().any(|step| step == 3), "the stopped node trained");
    // SIGSTOP: the process stays, its connections stay open, it answers nothing.
    let pid = stopped.id().to_string();
    assert!(Command::new("kill").args(["-STOP", &pid]).status().unwrap().success());
    let stopped_at = Instant::now();
    let out = wait_for(survivor, Duration::from_secs(60));
    let _ = stopped.kill();
    let _ = stopped.wait();
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("the survivor exited {:?} after {:?}", out.status.code(), stopped_at.elapsed());
    assert_eq!(out.status.code(), Some(3), "the watchdog's status; stderr:\n{stderr}");
    assert!(stderr.contains("node 0: the all-reduce of step") && stderr.contains("did not finish within 5 s"), "{stderr}");
}

#[test]
fn launch_stops_every_node_when_one_fails() {
    // Node 1 is refused at start (its port is taken); launch must not wait for node 0.
    let taken = TcpListener::bind("127.0.0.1:4602").unwrap();
    let out =
        run(&args(&["launch", "--nodes=2", "--orchestrator-port=4600", "--base-port=4601", "--steps=100000"]), Duration::from_secs(60));
    drop(taken);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("port 4602 on 127.0.0.1 is not free for node 1's data service"), "{stderr}");
}

#[test]
fn bad_arguments_are_refused_before_training() {
    let refused = |words: &[&str], expected: &str| {
        let out = run(&args(words), Duration::from_secs(60));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{words:?}: {stderr}");
        assert!(stderr.contains(expected), "{words:?}: expected {expected:?} in:\n{stderr}");
    };
    refused(&["node", "--nodes=0", "--node-rank=0"], "--nodes 0: a run needs at least 1 node");
    refused(&["node", "--nodes=2", "--node-rank=2"], "--node-rank 2 is out of range for --nodes 2: the ranks are 0 to 1");
    refused(&["launch", "--nodes=0"], "--nodes 0");
    refused(&["launch", "--nodes=3", "--global-batch=64"], "--global-batch 64 must be a positive multiple of --nodes 3");
    refused(&["node", "--nodes=1", "--node-rank=0", "--precision=fp8"], "--precision: ");
    refused(
        &["single", "--precision=bf16-mixed", "--force-overflow=0:1"],
        "--force-overflow tests the loss scaler, which only 16-mixed has",
    );
    refused(
        &["node", "--nodes=1", "--node-rank=0", "--port=4701", "--orchestrator=ws://127.0.0.1:4700", "--connect-timeout-secs=1"],
        "cannot reach the orchestrator at ws://127.0.0.1:4700 within 1 s",
    );
    let taken = TcpListener::bind("127.0.0.1:4702").unwrap();
    refused(&["node", "--nodes=1", "--node-rank=0", "--port=4702"], "port 4702 on 127.0.0.1 is not free for node 0's data service");
    let taken_too = TcpListener::bind("127.0.0.1:4703").unwrap();
    refused(&["orchestrator", "--port=4703"], "port 4703 on 127.0.0.1 is not free for the orchestrator");
    drop((taken, taken_too));
}

/// Two nodes that disagree: both are refused (exit 1), each naming the disagreement.
fn assert_both_refused(results: &[(Option<i32>, String)], expected: &str) {
    for (rank, (code, stderr)) in results.iter().enumerate() {
        assert_eq!(*code, Some(1), "node {rank}: {stderr}");
        assert!(stderr.contains(expected), "node {rank}: expected {expected:?} in:\n{stderr}");
    }
}

#[test]
fn processes_that_disagree_are_refused_before_training() {
    let limit = Duration::from_secs(60);
    let short = ["--steps=3", "--timeout-secs=10"];
    {
        let _orchestrator = Orchestrator::start(4800);
        let results = run_nodes(vec![node(2, 0, 4800, 4801, &short), node(2, 0, 4800, 4802, &short)], limit);
        assert_both_refused(&results, "every rank must be taken by exactly one process; taken: rank 0 by 2, rank 1 by 0");
    }
    {
        let _orchestrator = Orchestrator::start(4810);
        let seeds = |seed: &str| [short[0], short[1], seed].map(str::to_string);
        let (a, b) = (seeds("--seed=1"), seeds("--seed=2"));
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        let b: Vec<&str> = b.iter().map(String::as_str).collect();
        let results = run_nodes(vec![node(2, 0, 4810, 4811, &a), node(2, 1, 4810, 4812, &b)], limit);
        assert_both_refused(&results, "the processes do not have the same settings");
    }
    {
        // The same settings, different parameters: each resumes from a checkpoint of a run
        // that differed (in its learning rate).
        let dirs = [temp_dir("disagree-a"), temp_dir("disagree-b")];
        for (dir, lr) in dirs.iter().zip(["--lr=0.001", "--lr=0.002"]) {
            single(&["--steps=2", "--checkpoint-every=1", lr, &format!("--checkpoint-dir={}", dir.display())]);
        }
        // `single` saved under rank-0; node 1 reads rank-1.
        std::fs::rename(dirs[1].join("rank-0"), dirs[1].join("rank-1")).unwrap();
        let _orchestrator = Orchestrator::start(4820);
        let resume = |dir: &PathBuf| {
            ["--steps=2", "--timeout-secs=10", "--resume-from=1", "--lr=0.001"]
                .map(str::to_string)
                .into_iter()
                .chain([format!("--checkpoint-dir={}", dir.display())])
                .collect::<Vec<_>>()
        };
        let (a, b) = (resume(&dirs[0]), resume(&dirs[1]));
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        let b: Vec<&str> = b.iter().map(String::as_str).collect();
        let results = run_nodes(vec![node(2, 0, 4820, 4821, &a), node(2, 1, 4820, 4822, &b)], limit);
        assert_both_refused(&results, "the processes do not have the same initial parameters");
    }
    {
        // Different --nodes: the orchestrator refuses the second; the first waits for a
        // second node of its own run until its limit.
        let _orchestrator = Orchestrator::start(4830);
        let first = node(2, 0, 4830, 4831, &short).spawn().unwrap();
        std::thread::sleep(Duration::from_millis(500));
        let second = wait_for(node(3, 1, 4830, 4832, &short).spawn().unwrap(), limit);
        let stderr = String::from_utf8_lossy(&second.stderr);
        assert_eq!(second.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains("another node registered with a different --nodes"), "{stderr}");
        let first = wait_for(first, limit);
        let stderr = String::from_utf8_lossy(&first.stderr);
        assert_eq!(first.status.code(), Some(3), "{stderr}");
        assert!(stderr.contains("registration (waiting for all 2 nodes") && stderr.contains("did not finish within 10 s"), "{stderr}");
    }
}
