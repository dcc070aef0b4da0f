//! Human, JSON and JSONL output of one run. Every run ends in exactly one envelope in the
//! machine formats, also when it fails before doing any work.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use hasteward_exec::{Progress, ProgressFn};
use hasteward_model::{Envelope, ErrorEntry, Event, ExitCode, SCHEMA_VERSION};

use crate::cli::OutputFormat;

/// Reports one run.
pub struct Reporter {
    format: OutputFormat,
    command: String,
    run_id: String,
    started: Instant,
    started_at: DateTime<Utc>,
    warnings: Vec<String>,
}

impl Reporter {
    /// Starts reporting `command` (emits `run.started` in JSONL).
    pub fn new(format: OutputFormat, command: &str) -> Self {
        let nanos = Utc::now().timestamp_nanos_opt().unwrap_or_default() as u64;
        let run_id = format!("{:016x}", nanos ^ (u64::from(std::process::id()) << 40));
        let r = Self {
            format,
            command: command.to_string(),
            run_id,
            started: Instant::now(),
            started_at: Utc::now(),
            warnings: Vec::new(),
        };
        r.event("run.started", None, None, None);
        r
    }

    fn event(
        &self,
        kind: &str,
        step: Option<&str>,
        message: Option<String>,
        details: Option<serde_json::Value>,
    ) {
        if self.format != OutputFormat::Jsonl {
            return;
        }
        let ev = Event {
            kind: kind.to_string(),
            command: self.command.clone(),
            run_id: self.run_id.clone(),
            timestamp: Utc::now(),
            step: step.map(str::to_string),
            message,
            details,
        };
        println_json(&ev, false);
    }

    /// A step began.
    pub(crate) fn step_started(&self, step: &str) {
        self.event("step.started", Some(step), None, None);
        if self.format == OutputFormat::Human {
            tracing::info!("{step}…");
        }
    }

    /// A step ended well.
    pub(crate) fn step_completed(&self, step: &str, details: Option<serde_json::Value>) {
        self.event("step.completed", Some(step), None, details);
    }

    /// A step failed.
    pub(crate) fn step_failed(&self, step: &str, message: &str) {
        self.event("step.failed", Some(step), Some(message.to_string()), None);
    }

    /// Runs one step between `step.started` and `step.completed`/`step.failed` events.
    pub async fn step<T, E: std::fmt::Display>(
        &self,
        name: &str,
        work: impl std::future::Future<Output = Result<T, E>>,
    ) -> Result<T, E> {
        self.step_started(name);
        match work.await {
            Ok(v) => {
                self.step_completed(name, None);
                Ok(v)
            }
            Err(e) => {
                self.step_failed(name, &e.to_string());
                Err(e)
            }
        }
    }

    /// Adds a warning (shown on stderr for people, in the envelope for machines).
    pub fn warn(&mut self, message: String) {
        if self.format == OutputFormat::Human {
            eprintln!("warning: {message}");
        }
        self.warnings.push(message);
    }

    /// Text for people; nothing in the machine formats.
    pub fn human(&self, text: &str) {
        if self.format == OutputFormat::Human {
            println!("{text}");
        }
    }

    /// A note for people while something waits (stderr); logged otherwise.
    pub fn notifier(&self) -> Box<dyn Fn(&str) + Send + Sync> {
        let human = self.format == OutputFormat::Human;
        Box::new(move |message: &str| {
            if human {
                eprintln!("{message}");
            } else {
                tracing::info!("{message}");
            }
        })
    }

    /// A progress callback drawing one line on stderr, when a person is watching.
    pub fn progress(&self) -> Option<ProgressFn> {
        if self.format != OutputFormat::Human || !std::io::stderr().is_terminal() {
            return None;
        }
        Some(Arc::new(|p: Progress| {
            let secs = p.elapsed.as_secs_f64().max(0.001);
            let line = format!(
                "\r  {}  {}/s  {:02}:{:02}{}",
                human_bytes(p.bytes),
                human_bytes((p.bytes as f64 / secs) as u64),
                p.elapsed.as_secs() / 60,
                p.elapsed.as_secs() % 60,
                if p.done { "\n" } else { "   " }
            );
            let mut err = std::io::stderr().lock();
            let _ = err.write_all(line.as_bytes());
            let _ = err.flush();
        }))
    }

    fn envelope(
        &self,
        exit: ExitCode,
        errors: Vec<ErrorEntry>,
        data: serde_json::Value,
    ) -> Envelope {
        Envelope {
            schema_version: SCHEMA_VERSION,
            command: self.command.clone(),
            run_id: self.run_id.clone(),
            success: exit == ExitCode::Success,
            exit_code: exit.code(),
            started_at: self.started_at,
            duration_ms: self.started.elapsed().as_millis() as u64,
            warnings: self.warnings.clone(),
            errors,
            data,
        }
    }

    /// Ends a successful run; `text` is what people see.
    pub fn succeed(&self, data: serde_json::Value, text: &str) -> ExitCode {
        self.finish(ExitCode::Success, Vec::new(), data, Some(text))
    }

    /// Ends a failed run.
    pub fn fail(
        &self,
        exit: ExitCode,
        code: &str,
        message: &str,
        retryable: bool,
        data: serde_json::Value,
    ) -> ExitCode {
        let errors = vec![ErrorEntry {
            code: code.to_string(),
            message: message.to_string(),
            retryable,
        }];
        if self.format == OutputFormat::Human {
            eprintln!("error: {message}");
        }
        self.finish(exit, errors, data, None)
    }

    fn finish(
        &self,
        exit: ExitCode,
        errors: Vec<ErrorEntry>,
        data: serde_json::Value,
        text: Option<&str>,
    ) -> ExitCode {
        match self.format {
            OutputFormat::Human => {
                if let Some(t) = text {
                    println!("{t}");
                }
            }
            OutputFormat::Json => println_json(&self.envelope(exit, errors, data), true),
            OutputFormat::Jsonl => {
                println_json(&self.envelope(exit, errors, data), false);
                self.event(
                    "run.completed",
                    None,
                    None,
                    Some(serde_json::json!({ "exitCode": exit.code(), "success": exit == ExitCode::Success })),
                );
            }
        }
        exit
    }
}

fn println_json<T: serde::Serialize>(value: &T, pretty: bool) {
    let text = if pretty {
        serde_json::to_string_pretty(value)
    } else {
        serde_json::to_string(value)
    };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", text.unwrap_or_default());
    let _ = out.flush();
}

/// Bytes in binary units.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}
