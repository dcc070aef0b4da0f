//! Throughput of the gated pump against a plain pipe: `cat FILE | cat >/dev/null` versus the
//! same two processes joined by the pump. Prints wall time and the pump process's own CPU time.
//!
//! `cargo run --release -p hasteward-exec --example pump_throughput -- FILE [ROUNDS]`

use std::time::Instant;

use hasteward_exec::{gated, CommandSpec, LocalRunner, PumpOptions, Runner};

fn self_cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let file = args
        .get(1)
        .expect("usage: pump_throughput FILE [ROUNDS]")
        .clone();
    let rounds: usize = args.get(2).and_then(|r| r.parse().ok()).unwrap_or(3);
    let size = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0) as f64;
    for round in 0..rounds {
        let t = Instant::now();
        let status = std::process::Command::new("sh")
            .arg("-c")
            .arg("cat \"$1\" | cat >/dev/null")
            .arg("sh")
            .arg(&file)
            .status()
            .unwrap();
        assert!(status.success());
        let raw = t.elapsed().as_secs_f64();

        let cpu0 = self_cpu_secs();
        let t = Instant::now();
        let mut consumer = LocalRunner
            .spawn(
                &CommandSpec::new("sh")
                    .arg("-c")
                    .arg("cat >/dev/null")
                    .stdin_piped(),
            )
            .await
            .unwrap();
        let mut producer = LocalRunner
            .spawn(&CommandSpec::new("cat").arg(&file))
            .await
            .unwrap();
        let report = gated(&mut producer, &mut consumer, &PumpOptions::default())
            .await
            .unwrap();
        let pumped = t.elapsed().as_secs_f64();
        let cpu = self_cpu_secs() - cpu0;
        println!(
            "round {round}: raw {raw:.3}s ({:.0} MiB/s), pump {pumped:.3}s ({:.0} MiB/s), ratio {:.3}, pump cpu {cpu:.2}s, {} bytes",
            size / raw / 1048576.0,
            size / pumped / 1048576.0,
            pumped / raw,
            report.bytes
        );
    }
}
