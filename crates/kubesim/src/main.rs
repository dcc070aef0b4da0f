//! `hasteward-kubesim`: run the Kubernetes API simulator as a standalone
//! process, for scripts and manual testing of the hasteward CLI.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use hasteward_kubesim::{SimConfig, Simulator, StartOptions};

const USAGE: &str = "usage: hasteward-kubesim --fixtures DIR [--listen 127.0.0.1:PORT] \
[--kubeconfig-out FILE] [--namespace NS] [--record FILE]";

struct Args {
    fixtures: PathBuf,
    listen: SocketAddr,
    kubeconfig_out: Option<PathBuf>,
    namespace: Option<String>,
    record: Option<PathBuf>,
}

fn parse_args(mut argv: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut fixtures = None;
    let mut listen: SocketAddr = ([127, 0, 0, 1], 0).into();
    let mut kubeconfig_out = None;
    let mut namespace = None;
    let mut record = None;
    while let Some(arg) = argv.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        if flag == "--help" || flag == "-h" {
            return Err(String::new());
        }
        let mut value = || {
            inline
                .clone()
                .or_else(|| argv.next())
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--fixtures" => fixtures = Some(PathBuf::from(value()?)),
            "--listen" => {
                let v = value()?;
                listen = v
                    .parse()
                    .map_err(|e| format!("--listen {v:?}: {e} (expected e.g. 127.0.0.1:8080)"))?;
            }
            "--kubeconfig-out" => kubeconfig_out = Some(PathBuf::from(value()?)),
            "--namespace" => namespace = Some(value()?),
            "--record" => record = Some(PathBuf::from(value()?)),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if !listen.ip().is_loopback() {
        return Err(format!(
            "refusing to listen on {listen}: only loopback addresses are allowed"
        ));
    }
    Ok(Args {
        fixtures: fixtures.ok_or("--fixtures DIR is required")?,
        listen,
        kubeconfig_out,
        namespace,
        record,
    })
}

fn run(args: Args) -> Result<(), String> {
    let config = SimConfig::from_dir(&args.fixtures).map_err(|e| e.to_string())?;
    let sim = Simulator::start_with(
        config,
        StartOptions {
            listen: args.listen,
            record_file: args.record,
        },
    )
    .map_err(|e| e.to_string())?;
    if let Some(path) = &args.kubeconfig_out {
        sim.write_kubeconfig(path, args.namespace.as_deref())
            .map_err(|e| format!("writing {}: {e}", path.display()))?;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    runtime.block_on(async {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).map_err(|e| format!("SIGTERM: {e}"))?;
        let mut int = signal(SignalKind::interrupt()).map_err(|e| format!("SIGINT: {e}"))?;
        println!("listening on {}", sim.url());
        use std::io::Write;
        let _ = std::io::stdout().flush();
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        Ok::<(), String>(())
    })?;
    drop(sim);
    Ok(())
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(msg) if msg.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(msg) => {
            eprintln!("hasteward-kubesim: {msg}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("hasteward-kubesim: {msg}");
            ExitCode::FAILURE
        }
    }
}
