//! Joining the run: checks of the command line and the network before anything waits on
//! another process, registration with burn-collective's orchestrator, and the handshake
//! that refuses to train when the processes disagree.

use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use burn::tensor::{Tensor, TensorData, TensorPrimitive};
use burn_collective::{CollectiveConfig, PeerId, ReduceOperation};

use crate::watchdog::Watchdog;
use crate::{Device, Inner};

/// This process's place in the run and the way to reach the others.
pub struct Collective {
    pub rank: u32,
    pub nodes: u32,
    peer: PeerId,
    watchdog: Watchdog,
    timeout: Duration,
}

/// Where this node is and how long it waits.
pub struct NodeSpec {
    pub nodes: u32,
    pub rank: u32,
    /// `ws://host:port` of the orchestrator.
    pub orchestrator: String,
    /// `ws://host:port` under which the other nodes reach this one.
    pub address: String,
    /// The port this node's data service listens on.
    pub port: u16,
    /// The interface it listens on.
    pub listen: IpAddr,
    /// Limit on each wait for the other processes (registration, every all-reduce).
    pub timeout: Duration,
    /// Limit on reaching the orchestrator at start.
    pub connect_timeout: Duration,
}

/// `--nodes` and `--node-rank` that make a run.
pub fn check_rank(nodes: u32, rank: u32) -> Result<(), String> {
    if nodes == 0 {
        return Err("--nodes 0: a run needs at least 1 node".into());
    }
    if rank >= nodes {
        return Err(format!("--node-rank {rank} is out of range for --nodes {nodes}: the ranks are 0 to {}", nodes - 1));
    }
    Ok(())
}

/// Fails with a message naming the port when something already listens on it.
pub fn check_port_free(listen: IpAddr, port: u16, what: &str) -> Result<(), String> {
    TcpListener::bind((listen, port)).map(drop).map_err(|e| {
        format!(
            "port {port} on {listen} is not free for {what} ({e}): another node of this run (a --node-rank given twice?) \
             or another program holds it; choose another port"
        )
    })
}

/// `ws://host:port` to a socket address.
pub fn socket_address(url: &str) -> Result<SocketAddr, String> {
    let host_port = url.strip_prefix("ws://").ok_or_else(|| format!("{url:?} is not a ws://host:port address"))?;
    host_port
        .to_socket_addrs()
        .map_err(|e| format!("{url:?} is not a ws://host:port address: {e}"))?
        .next()
        .ok_or_else(|| format!("{url:?} resolves to no address"))
}

/// Waits until the orchestrator accepts connections, or fails naming it after `limit`
/// (burn-collective itself retries forever).
pub fn wait_for_orchestrator(url: &str, limit: Duration) -> Result<(), String> {
    let address = socket_address(url)?;
    let start = Instant::now();
    loop {
        if TcpStream::connect_timeout(&address, Duration::from_millis(500)).is_ok() {
            return Ok(());
        }
        if start.elapsed() >= limit {
            return Err(format!(
                "cannot reach the orchestrator at {url} within {} s: start it first (`multiprocess orchestrator`, or use \
                 `multiprocess launch`) and check the address and port",
                limit.as_secs_f64()
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

impl Collective {
    /// Registers this node with the orchestrator and waits for every other node.
    pub fn join(spec: &NodeSpec, device: &Device) -> Result<Self, String> {
        check_rank(spec.nodes, spec.rank)?;
        // The patched burn-communication listens on this interface (loopback by default).
        burn_communication::websocket::set_listen_ip(spec.listen);
        check_port_free(spec.listen, spec.port, &format!("node {}'s data service", spec.rank))?;
        wait_for_orchestrator(&spec.orchestrator, spec.connect_timeout)?;
        let parse = |url: &str| url.parse().map_err(|e| format!("{url:?} is not a ws://host:port address: {e:?}"));
        let config = CollectiveConfig::default()
            .with_num_devices(1)
            .with_num_nodes(spec.nodes)
            .with_global_address(parse(&spec.orchestrator)?)
            .with_node_address(parse(&spec.address)?)
            .with_data_service_port(spec.port);
        let watchdog = Watchdog::start(format!("node {}", spec.rank));
        let peer = PeerId::from(spec.rank);
        let what = format!(
            "registration (waiting for all {} nodes: each started with --nodes {} and its own --node-rank)",
            spec.nodes, spec.nodes
        );
        watchdog.guard(what, spec.timeout, || burn_collective::register::<Inner>(peer, *device, config)).map_err(|e| {
            format!(
                "the orchestrator refused node {} ({e:?}){}",
                spec.rank,
                if format!("{e:?}").contains("ParamsMismatch") { ": another node registered with a different --nodes" } else { "" }
            )
        })?;
        Ok(Self { rank: spec.rank, nodes: spec.nodes, peer, watchdog, timeout: spec.timeout })
    }

    /// The element-wise sum of `tensor` over every process, under the watchdog.
    pub fn sum(&self, what: impl Into<String>, tensor: Tensor<Inner, 1>) -> Result<Tensor<Inner, 1>, String> {
        let what = what.into();
        let summed = self
            .watchdog
            .guard(format!("the all-reduce of {what}"), self.timeout, || {
                burn_collective::all_reduce::<Inner>(self.peer, tensor.into_primitive().tensor(), ReduceOperation::Sum)
            })
            .map_err(|e| {
                format!("node {}: the all-reduce of {what} failed ({e:?}): a peer process has exited or closed its connection", self.rank)
            })?;
        Ok(Tensor::from_primitive(TensorPrimitive::Float(summed)))
    }

    /// Refuses to train unless every rank is taken exactly once and every process has the
    /// same settings and the same parameters: one all-reduce of each rank's one-hot entry
    /// and of the two checksums' bytes and their squares. For bytes `b_i` over `n`
    /// processes, `n * sum(b_i^2) == sum(b_i)^2` holds exactly when all are equal, and every
    /// sum is an integer below 2^24, exact in f32.
    pub fn handshake(&self, settings: u64, parameters: u64, device: &Device) -> Result<(), String> {
        let n = self.nodes as usize;
        let mut values = vec![0f32; n + 32];
        values[self.rank as usize] = 1.0;
        for (k, checksum) in [settings, parameters].into_iter().enumerate() {
            for (i, byte) in checksum.to_le_bytes().into_iter().enumerate() {
                values[n + 16 * k + i] = byte as f32;
                values[n + 16 * k + 8 + i] = (byte as f32) * (byte as f32);
            }
        }
        let tensor = Tensor::<Inner, 1>::from_data(TensorData::new(values, [n + 32]), device);
        let sums: Vec<f32> = self.sum("the start-up handshake", tensor)?.into_data().to_vec().map_err(|e| format!("{e:?}"))?;
        let counts: Vec<u32> = sums[..n].iter().map(|c| *c as u32).collect();
        if counts.iter().any(|c| *c != 1) {
            let claimed: Vec<String> =
                counts.iter().enumerate().filter(|(_, c)| **c != 1).map(|(r, c)| format!("rank {r} by {c}")).collect();
            return Err(format!("every rank must be taken by exactly one process; taken: {}", claimed.join(", ")));
        }
        for (k, name) in ["settings (precision, seed, model, batch, optimizer, all-reduce)", "initial parameters"].iter().enumerate() {
            let agree = (0..8).all(|i| {
                let (sum, squares) = (sums[n + 16 * k + i] as f64, sums[n + 16 * k + 8 + i] as f64);
                sum * sum == n as f64 * squares
            });
            if !agree {
                return Err(format!(
                    "the processes do not have the same {name}: every process must be started with the same arguments \
                     (and resume from the same checkpoint)"
                ));
            }
        }
        Ok(())
    }

    /// Leaves the collective (the orchestrator forgets this node).
    pub fn finish(self) -> Result<(), String> {
        self.watchdog
            .guard("leaving the collective", self.timeout, || burn_collective::finish_collective::<Inner>(self.peer))
            .map_err(|e| format!("leaving the collective failed: {e:?}"))
    }
}
