//! `launch`: one run on this machine. Starts burn-collective's orchestrator on a thread of
//! this process and N node processes on loopback, prefixes each node's output lines with
//! its rank, and stops the others as soon as one fails.

use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::cluster::check_port_free;

pub fn launch(nodes: u32, orchestrator_port: u16, base_port: u16, link: &[String], train: &[String]) -> Result<(), String> {
    let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
    check_port_free(loopback, orchestrator_port, "the orchestrator")?;
    let ports: Vec<u16> = (0..nodes)
        .map(|r| base_port.checked_add(r as u16).ok_or_else(|| format!("--base-port {base_port} + {r} is past the last port")))
        .collect::<Result<_, _>>()?;
    for (rank, port) in ports.iter().enumerate() {
        check_port_free(loopback, *port, &format!("node {rank}'s data service"))?;
    }
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime for the orchestrator");
        runtime.block_on(burn_collective::start_global_orchestrator(orchestrator_port));
    });

    let exe = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
    let mut children: Vec<(u32, Child)> = Vec::new();
    let mut pumps = Vec::new();
    for (rank, port) in (0..nodes).zip(ports) {
        let spawned = Command::new(&exe)
            .arg("node")
            .args([format!("--nodes={nodes}"), format!("--node-rank={rank}"), format!("--port={port}")])
            .arg(format!("--orchestrator=ws://127.0.0.1:{orchestrator_port}"))
            .args(link)
            .args(train)
            .stdout(Stdio::piped())
            .spawn();
        let mut child = match spawned {
            Ok(child) => child,
            Err(e) => {
                stop(&mut children);
                return Err(format!("cannot start node {rank}: {e}"));
            }
        };
        let stdout = child.stdout.take().expect("a piped stdout");
        pumps.push(std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "rank {rank}: {line}");
                let _ = out.flush();
            }
        }));
        children.push((rank, child));
    }

    // Done when every node exited with success; failed as soon as one did not.
    loop {
        let mut running = false;
        for i in 0..children.len() {
            let (rank, child) = &mut children[i];
            match child.try_wait() {
                Ok(Some(status)) if !status.success() => {
                    let rank = *rank;
                    stop(&mut children);
                    pumps.into_iter().for_each(|pump| drop(pump.join()));
                    return Err(format!("node {rank} failed ({status}): stopped the other nodes"));
                }
                Ok(Some(_)) => {}
                Ok(None) => running = true,
                Err(e) => return Err(format!("cannot watch node {rank}: {e}")),
            }
        }
        if !running {
            // Every line the nodes wrote is printed before this process ends.
            pumps.into_iter().for_each(|pump| drop(pump.join()));
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Kills every node still running.
fn stop(children: &mut [(u32, Child)]) {
    for (_, child) in children.iter_mut() {
        let _ = child.kill();
        let _ = child.wait();
    }
}
