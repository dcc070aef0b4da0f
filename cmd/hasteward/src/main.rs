//! The `hasteward` binary: parse, build the run's context, dispatch, map errors to exit codes.

mod cli;
mod commands;
mod demo;
mod output;
mod repair;
mod repository;
mod serve;
mod targets;
mod triage;
mod vmbackup;

use std::ffi::OsString;

use clap::error::ErrorKind;
use clap::Parser;

use crate::cli::{Cli, OutputFormat};
use crate::output::Reporter;

fn main() -> std::process::ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(e) => return usage_error(&args, e),
    };
    let level = match cli.verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("HASTEWARD_LOG").unwrap_or_else(|_| {
            tracing_subscriber::EnvFilter::new(format!("hasteward={level},{level}"))
        });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    let code = runtime.block_on(commands::run(cli));
    std::process::ExitCode::from(code.code() as u8)
}

/// Bad usage: clap's message, wrapped in an envelope when a machine format was asked for.
fn usage_error(args: &[OsString], e: clap::Error) -> std::process::ExitCode {
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        let _ = e.print();
        let code = if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
            2
        } else {
            0
        };
        return std::process::ExitCode::from(code);
    }
    let format = sniff_output(args);
    if format == OutputFormat::Human {
        let _ = e.print();
    } else {
        let command = args
            .iter()
            .skip(1)
            .map(|a| a.to_string_lossy())
            .find(|a| !a.starts_with('-'))
            .unwrap_or_default();
        let message = e.render().to_string();
        let message = message.trim().trim_start_matches("error: ");
        Reporter::new(format, &command).fail(
            hasteward_model::ExitCode::Usage,
            "usage",
            message,
            false,
            serde_json::Value::Null,
        );
    }
    std::process::ExitCode::from(2)
}

/// The output format from raw arguments (or `HASTEWARD_OUTPUT`), when parsing failed.
fn sniff_output(args: &[OsString]) -> OutputFormat {
    let args: Vec<String> = args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let mut value = std::env::var("HASTEWARD_OUTPUT").ok();
    for (i, a) in args.iter().enumerate() {
        if a == "-o" || a == "--output" {
            value = args.get(i + 1).cloned();
        } else if let Some(v) = a.strip_prefix("--output=").or_else(|| a.strip_prefix("-o")) {
            if !v.is_empty() {
                value = Some(v.trim_start_matches('=').to_string());
            }
        }
    }
    match value.as_deref() {
        Some("json") => OutputFormat::Json,
        Some("jsonl") => OutputFormat::Jsonl,
        _ => OutputFormat::Human,
    }
}
