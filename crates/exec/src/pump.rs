//! The gated pump: the one place where bytes move from a producer into a consumer.
//!
//! restic commits whatever it has read when its stdin reaches EOF, so a truncated dump followed by
//! a clean EOF becomes a "good" snapshot. The pump therefore:
//! - copies producer stdout into consumer stdin with a large buffer, counting bytes, hashing
//!   them (SHA-256) and reporting progress;
//! - at the producer's EOF, waits for its exit status, and closes the consumer's stdin only when
//!   the producer exited 0 (and, if asked, the stream ends with a completion marker);
//! - on producer failure, stall or cancellation, signals the consumer (SIGINT for restic: no
//!   snapshot, no lock) **before** its stdin is closed, then stops the producer;
//! - on consumer failure (it exited, or a write failed), stops the producer at once.
//!
//! # Guarantees
//! The consumer's stdin is never closed while the consumer is running unless the producer exited
//! successfully. Both children have ended when this function returns, on every path.

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use crate::{ExitOutcome, Proc, Signal};

type Reader = Box<dyn AsyncRead + Send + Unpin>;
type Writer = Box<dyn AsyncWrite + Send + Unpin>;

/// Progress of a stream.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// Bytes moved so far.
    pub bytes: u64,
    /// Time since the pump started.
    pub elapsed: Duration,
    /// True for the final report.
    pub done: bool,
}

/// A progress callback.
pub type ProgressFn = Arc<dyn Fn(Progress) + Send + Sync>;

/// How the pump behaves.
#[derive(Clone)]
pub struct PumpOptions {
    /// Copy buffer size.
    pub buffer_size: usize,
    /// Abort when the producer sends nothing for this long.
    pub stall_timeout: Option<Duration>,
    /// Bytes the end of the stream must contain for it to count as complete.
    pub completion_marker: Option<Vec<u8>>,
    /// Called at most every `progress_interval`, and once at the end.
    pub progress: Option<ProgressFn>,
    /// Minimum time between progress calls.
    pub progress_interval: Duration,
    /// Cancels the stream (Ctrl-C, SIGTERM, shutdown).
    pub cancel: CancellationToken,
    /// Signal that aborts the consumer without committing (SIGINT for restic).
    pub consumer_abort: Signal,
    /// How long the consumer gets to clean up after the abort signal before SIGKILL.
    pub abort_grace: Duration,
    /// Signal that stops the producer when the stream fails on the consumer's side (SIGTERM;
    /// SIGINT when the producer is restic, which leaves a stale lock on SIGTERM).
    pub producer_stop: Signal,
    /// How long the producer gets after the stop signal before SIGKILL.
    pub producer_grace: Duration,
    /// The SHA-256 the producer's stream must have (restore: the checksum recorded at backup).
    /// A mismatch aborts the consumer before EOF.
    pub expected_sha256: Option<String>,
}

/// Rewrites the stream on its way to the consumer (restore-time adjustments). The checksum is
/// always computed over the producer's bytes, before any rewriting.
pub trait StreamFilter: Send {
    /// Consumes `input`, appending what the consumer should receive to `out`.
    fn feed(&mut self, input: &[u8], out: &mut Vec<u8>);
    /// Flushes anything held back at the end of a successful stream.
    fn finish(&mut self, out: &mut Vec<u8>);
}

impl Default for PumpOptions {
    fn default() -> Self {
        Self {
            buffer_size: 1 << 20,
            stall_timeout: None,
            completion_marker: None,
            progress: None,
            progress_interval: Duration::from_millis(500),
            cancel: CancellationToken::new(),
            consumer_abort: Signal::Interrupt,
            abort_grace: Duration::from_secs(30),
            producer_stop: Signal::Terminate,
            producer_grace: Duration::from_secs(3),
            expected_sha256: None,
        }
    }
}

/// A stream that was committed.
#[derive(Debug, Clone)]
pub struct PumpReport {
    /// Bytes moved.
    pub bytes: u64,
    /// SHA-256 of the exact byte stream, lowercase hex.
    pub sha256: String,
    /// How the producer ended (successfully).
    pub producer: ExitOutcome,
    /// How the consumer ended (successfully).
    pub consumer: ExitOutcome,
    /// Wall time of the stream.
    pub elapsed: Duration,
}

/// Why a stream was not committed.
#[derive(Debug, thiserror::Error)]
pub enum PumpError {
    /// The producer exited non-zero or was killed.
    #[error("`{producer}` failed after {bytes} bytes ({outcome}); `{consumer}` was aborted before end of stream")]
    ProducerFailed {
        /// Producer name.
        producer: String,
        /// Consumer name.
        consumer: String,
        /// How the producer ended.
        outcome: ExitOutcome,
        /// Bytes moved before the failure.
        bytes: u64,
    },
    /// The producer sent nothing for too long.
    #[error("`{producer}` sent no data for {}s after {bytes} bytes; the stream was aborted", after.as_secs())]
    ProducerStalled {
        /// Producer name.
        producer: String,
        /// The stall timeout.
        after: Duration,
        /// Bytes moved before the stall.
        bytes: u64,
        /// The producer's stderr tail.
        stderr_tail: String,
    },
    /// The stream's checksum differs from the expected one.
    #[error("the stream from `{producer}` has SHA-256 {actual}, expected {expected}; `{consumer}` was aborted before end of stream")]
    ChecksumMismatch {
        /// Producer name.
        producer: String,
        /// Consumer name.
        consumer: String,
        /// Expected checksum.
        expected: String,
        /// Actual checksum.
        actual: String,
    },
    /// The producer exited 0 but its output lacks the completion marker.
    #[error("`{producer}` exited 0 but its output does not end with `{marker}` (truncated?); the stream was aborted")]
    Incomplete {
        /// Producer name.
        producer: String,
        /// The expected marker.
        marker: String,
        /// Bytes moved.
        bytes: u64,
    },
    /// Reading the producer's output failed.
    #[error("reading the output of `{producer}` failed after {bytes} bytes")]
    Read {
        /// Producer name.
        producer: String,
        /// Bytes moved before the error.
        bytes: u64,
        /// The read error.
        #[source]
        source: io::Error,
    },
    /// The consumer exited, failed, or stopped accepting input.
    #[error("`{consumer}` failed ({outcome}); `{producer}` was stopped")]
    ConsumerFailed {
        /// Consumer name.
        consumer: String,
        /// Producer name.
        producer: String,
        /// How the consumer ended.
        outcome: ExitOutcome,
        /// Bytes moved before the failure.
        bytes: u64,
    },
    /// The stream was cancelled.
    #[error("cancelled after {bytes} bytes; `{consumer}` was interrupted before end of stream")]
    Cancelled {
        /// Consumer name.
        consumer: String,
        /// Bytes moved before the cancel.
        bytes: u64,
    },
    /// A pipe the pump needs was not set up.
    #[error("`{0}` was started without the pipe the pump needs")]
    MissingPipe(String),
    /// Controlling a child failed.
    #[error(transparent)]
    Process(#[from] crate::Error),
}

impl PumpError {
    /// True when the stream was cancelled by the user or a shutdown.
    pub fn is_cancelled(&self) -> bool {
        matches!(self, Self::Cancelled { .. })
    }
}

/// How the copy loop ended. Every variant hands the consumer's stdin back, so the caller decides
/// when it is closed.
enum CopyEnd {
    Eof(Writer),
    ReadFailed(io::Error, Writer),
    Stalled(Writer),
    WriteFailed(Writer),
}

struct CopyState {
    bytes: u64,
    hasher: Sha256,
    /// The last bytes of the stream, for the completion marker.
    window: Vec<u8>,
}

const WINDOW: usize = 1024;

/// Streams `producer` stdout into `consumer` stdin under the commit gate (see the module docs).
pub async fn gated(
    producer: &mut Proc,
    consumer: &mut Proc,
    opts: &PumpOptions,
) -> Result<PumpReport, PumpError> {
    gated_filtered(producer, consumer, opts, None).await
}

/// [`gated`], with the consumer receiving the stream through `filter`.
pub async fn gated_filtered(
    producer: &mut Proc,
    consumer: &mut Proc,
    opts: &PumpOptions,
    mut filter: Option<Box<dyn StreamFilter>>,
) -> Result<PumpReport, PumpError> {
    let started = Instant::now();
    let reader = producer
        .stdout
        .take()
        .ok_or_else(|| PumpError::MissingPipe(producer.name.clone()))?;
    let writer = consumer
        .stdin
        .take()
        .ok_or_else(|| PumpError::MissingPipe(consumer.name.clone()))?;
    let mut state = CopyState {
        bytes: 0,
        hasher: Sha256::new(),
        window: Vec::with_capacity(2 * WINDOW),
    };

    let mut copy = Box::pin(copy_loop(
        reader,
        writer,
        &mut state,
        opts,
        started,
        &mut filter,
    ));
    let first = {
        let consumer_exit = consumer.control.wait();
        tokio::select! {
            biased;
            _ = opts.cancel.cancelled() => First::Cancelled,
            end = &mut copy => First::Copied(end),
            out = consumer_exit => First::ConsumerExited(out),
        }
    };
    let end = match first {
        First::Cancelled => {
            // Abort the consumer while its stdin is still open, then stop the producer.
            abort_consumer(consumer, opts).await;
            stop_producer(producer, opts).await;
            drop(copy);
            return Err(PumpError::Cancelled {
                consumer: consumer.name.clone(),
                bytes: state.bytes,
            });
        }
        First::ConsumerExited(out) => {
            stop_producer(producer, opts).await;
            drop(copy);
            let outcome = out?;
            return Err(PumpError::ConsumerFailed {
                consumer: consumer.name.clone(),
                producer: producer.name.clone(),
                outcome,
                bytes: state.bytes,
            });
        }
        First::Copied(end) => end,
    };
    drop(copy);
    let bytes = state.bytes;

    let writer = match end {
        CopyEnd::Eof(writer) => writer,
        CopyEnd::Stalled(writer) => {
            abort_consumer(consumer, opts).await;
            stop_producer(producer, opts).await;
            drop(writer);
            return Err(PumpError::ProducerStalled {
                producer: producer.name.clone(),
                after: opts.stall_timeout.unwrap_or_default(),
                bytes,
                stderr_tail: producer.control.stderr_tail(),
            });
        }
        CopyEnd::ReadFailed(source, writer) => {
            abort_consumer(consumer, opts).await;
            stop_producer(producer, opts).await;
            drop(writer);
            return Err(PumpError::Read {
                producer: producer.name.clone(),
                bytes,
                source,
            });
        }
        CopyEnd::WriteFailed(writer) => {
            stop_producer(producer, opts).await;
            abort_consumer(consumer, opts).await;
            drop(writer);
            let outcome = consumer.wait().await?;
            return Err(PumpError::ConsumerFailed {
                consumer: consumer.name.clone(),
                producer: producer.name.clone(),
                outcome,
                bytes,
            });
        }
    };

    // The producer closed its stdout. The gate: its exit status decides whether the consumer
    // ever sees EOF.
    let produced = tokio::select! {
        biased;
        _ = opts.cancel.cancelled() => None,
        out = producer.wait() => Some(out),
    };
    let Some(produced) = produced else {
        abort_consumer(consumer, opts).await;
        stop_producer(producer, opts).await;
        drop(writer);
        return Err(PumpError::Cancelled {
            consumer: consumer.name.clone(),
            bytes,
        });
    };
    let produced = match produced {
        Ok(p) => p,
        Err(e) => {
            abort_consumer(consumer, opts).await;
            drop(writer);
            return Err(e.into());
        }
    };
    if !produced.success() {
        abort_consumer(consumer, opts).await;
        drop(writer);
        return Err(PumpError::ProducerFailed {
            producer: producer.name.clone(),
            consumer: consumer.name.clone(),
            outcome: produced,
            bytes,
        });
    }
    if let Some(marker) = &opts.completion_marker {
        if !contains(&state.window, marker) {
            abort_consumer(consumer, opts).await;
            drop(writer);
            return Err(PumpError::Incomplete {
                producer: producer.name.clone(),
                marker: describe_marker(marker),
                bytes,
            });
        }
    }

    let digest = hex(&state.hasher.clone().finalize());
    if let Some(expected) = &opts.expected_sha256 {
        if !expected.eq_ignore_ascii_case(&digest) {
            abort_consumer(consumer, opts).await;
            drop(writer);
            return Err(PumpError::ChecksumMismatch {
                producer: producer.name.clone(),
                consumer: consumer.name.clone(),
                expected: expected.clone(),
                actual: digest,
            });
        }
    }

    // Open the gate: flush what the filter held back, then EOF lets the consumer commit.
    let mut writer = writer;
    if let Some(filter) = filter.as_mut() {
        let mut tail = Vec::new();
        filter.finish(&mut tail);
        if !tail.is_empty() && writer.write_all(&tail).await.is_err() {
            abort_consumer(consumer, opts).await;
            drop(writer);
            let outcome = consumer.wait().await?;
            return Err(PumpError::ConsumerFailed {
                consumer: consumer.name.clone(),
                producer: producer.name.clone(),
                outcome,
                bytes,
            });
        }
    }
    let _ = writer.shutdown().await;
    drop(writer);
    let consumed = tokio::select! {
        biased;
        _ = opts.cancel.cancelled() => None,
        out = consumer.wait() => Some(out),
    };
    let consumed = match consumed {
        Some(out) => out?,
        None => {
            abort_consumer(consumer, opts).await;
            return Err(PumpError::Cancelled {
                consumer: consumer.name.clone(),
                bytes,
            });
        }
    };
    if !consumed.success() {
        return Err(PumpError::ConsumerFailed {
            consumer: consumer.name.clone(),
            producer: producer.name.clone(),
            outcome: consumed,
            bytes,
        });
    }
    let elapsed = started.elapsed();
    if let Some(progress) = &opts.progress {
        progress(Progress {
            bytes,
            elapsed,
            done: true,
        });
    }
    Ok(PumpReport {
        bytes,
        sha256: digest,
        producer: produced,
        consumer: consumed,
        elapsed,
    })
}

enum First {
    Cancelled,
    Copied(CopyEnd),
    ConsumerExited(crate::Result<ExitOutcome>),
}

async fn copy_loop(
    mut reader: Reader,
    mut writer: Writer,
    state: &mut CopyState,
    opts: &PumpOptions,
    started: Instant,
    filter: &mut Option<Box<dyn StreamFilter>>,
) -> CopyEnd {
    let mut buf = vec![0u8; opts.buffer_size.max(4096)];
    let mut filtered = Vec::new();
    let mut last_progress = Instant::now();
    loop {
        let read = match opts.stall_timeout {
            Some(limit) => match tokio::time::timeout(limit, reader.read(&mut buf)).await {
                Ok(r) => r,
                Err(_) => return CopyEnd::Stalled(writer),
            },
            None => reader.read(&mut buf).await,
        };
        let n = match read {
            Ok(0) => return CopyEnd::Eof(writer),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return CopyEnd::ReadFailed(e, writer),
        };
        let chunk = &buf[..n];
        state.hasher.update(chunk);
        state.bytes += n as u64;
        remember_tail(&mut state.window, chunk);
        let chunk = match filter.as_mut() {
            Some(f) => {
                filtered.clear();
                f.feed(chunk, &mut filtered);
                &filtered[..]
            }
            None => chunk,
        };
        if writer.write_all(chunk).await.is_err() {
            return CopyEnd::WriteFailed(writer);
        }
        if let Some(progress) = &opts.progress {
            if last_progress.elapsed() >= opts.progress_interval {
                last_progress = Instant::now();
                progress(Progress {
                    bytes: state.bytes,
                    elapsed: started.elapsed(),
                    done: false,
                });
            }
        }
    }
}

/// The marker as text, or what it is when it is binary (tar's zero blocks).
fn describe_marker(marker: &[u8]) -> String {
    match std::str::from_utf8(marker) {
        Ok(text) if !text.chars().any(|c| c.is_control() && c != '\n') => text.to_string(),
        _ => format!("its {}-byte binary end marker", marker.len()),
    }
}

fn remember_tail(window: &mut Vec<u8>, chunk: &[u8]) {
    if chunk.len() >= WINDOW {
        window.clear();
        window.extend_from_slice(&chunk[chunk.len() - WINDOW..]);
    } else {
        window.extend_from_slice(chunk);
        if window.len() > WINDOW {
            let excess = window.len() - WINDOW;
            window.drain(..excess);
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

/// Reads a producer's whole output, discarding it, and returns its size and SHA-256 once the
/// producer exited successfully (verification of a stored stream).
pub async fn hash_output(
    producer: &mut Proc,
    cancel: &CancellationToken,
) -> Result<(u64, String), PumpError> {
    let mut reader = producer
        .stdout
        .take()
        .ok_or_else(|| PumpError::MissingPipe(producer.name.clone()))?;
    let mut hasher = Sha256::new();
    let mut bytes = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = tokio::select! {
            biased;
            _ = cancel.cancelled() => {
                let _ = producer.signal(Signal::Interrupt);
                let _ = producer.wait().await;
                return Err(PumpError::Cancelled { consumer: "verify".into(), bytes });
            }
            r = reader.read(&mut buf) => r,
        };
        match n {
            Ok(0) => break,
            Ok(n) => {
                hasher.update(&buf[..n]);
                bytes += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(source) => {
                let _ = producer.signal(Signal::Kill);
                let _ = producer.wait().await;
                return Err(PumpError::Read {
                    producer: producer.name.clone(),
                    bytes,
                    source,
                });
            }
        }
    }
    let outcome = producer.wait().await?;
    if !outcome.success() {
        return Err(PumpError::ProducerFailed {
            producer: producer.name.clone(),
            consumer: "verify".into(),
            outcome,
            bytes,
        });
    }
    Ok((bytes, hex(&hasher.finalize())))
}

/// Lowercase hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// Sends the consumer its abort signal while its stdin is still open, waits for it to clean up,
/// and kills it if it does not end in time.
async fn abort_consumer(consumer: &mut Proc, opts: &PumpOptions) {
    let _ = consumer.signal(opts.consumer_abort);
    if tokio::time::timeout(opts.abort_grace, consumer.wait())
        .await
        .is_err()
    {
        tracing::warn!(child = %consumer.name, "did not stop after the abort signal; killing it");
        let _ = consumer.signal(Signal::Kill);
        let _ = consumer.wait().await;
    }
}

/// Stops the producer: its stop signal to its group, then SIGKILL after the grace period.
async fn stop_producer(producer: &mut Proc, opts: &PumpOptions) {
    let _ = producer.signal(opts.producer_stop);
    if tokio::time::timeout(opts.producer_grace, producer.wait())
        .await
        .is_err()
    {
        let _ = producer.signal(Signal::Kill);
        let _ = producer.wait().await;
    }
}
