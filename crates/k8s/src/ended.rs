//! Ends the exec streams when the exec connection ends.
//!
//! kube relays a pod's stdout and stdin through in-memory pipes. When the connection fails
//! (dropped by the API server, the network, or by us), kube's message loop stops without closing
//! those pipes, so a reader would wait forever for more output and a writer would block once the
//! pipe is full. [`Ended`] is set when the exec finishes (a status arrived or the connection is
//! gone); [`UntilEnded`] then turns "nothing buffered" into end-of-file for readers and into a
//! broken pipe for writers. Buffered output is always delivered first.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures::task::AtomicWaker;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// "The exec has finished", shared between the status watcher and the stream wrappers.
#[derive(Debug, Clone, Default)]
pub(crate) struct Ended {
    inner: Arc<EndedInner>,
}

#[derive(Debug, Default)]
struct EndedInner {
    set: AtomicBool,
    /// One waker per stream wrapper.
    wakers: Mutex<Vec<Arc<AtomicWaker>>>,
}

impl Ended {
    /// Marks the exec finished and wakes any waiting reader or writer.
    pub(crate) fn set(&self) {
        self.inner.set.store(true, Ordering::SeqCst);
        for waker in self.inner.wakers.lock().expect("wakers lock").iter() {
            waker.wake();
        }
    }

    fn waker(&self) -> Arc<AtomicWaker> {
        let waker = Arc::new(AtomicWaker::new());
        self.inner
            .wakers
            .lock()
            .expect("wakers lock")
            .push(waker.clone());
        waker
    }

    fn is_set(&self) -> bool {
        self.inner.set.load(Ordering::SeqCst)
    }
}

/// A pipe end that stops waiting once the exec has [`Ended`].
pub(crate) struct UntilEnded<S> {
    inner: S,
    ended: Ended,
    waker: Arc<AtomicWaker>,
}

impl<S> UntilEnded<S> {
    pub(crate) fn new(inner: S, ended: Ended) -> Self {
        let waker = ended.waker();
        Self {
            inner,
            ended,
            waker,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for UntilEnded<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        this.waker.register(cx.waker());
        // Checked before polling the pipe: once set, kube writes nothing more, so whatever the
        // pipe says after this is final.
        let ended = this.ended.is_set();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Pending if ended => Poll::Ready(Ok(())),
            other => other,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for UntilEnded<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        this.waker.register(cx.waker());
        if this.ended.is_set() {
            return Poll::Ready(Err(broken_pipe()));
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.ended.is_set() {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.ended.is_set() {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

fn broken_pipe() -> io::Error {
    io::Error::new(
        io::ErrorKind::BrokenPipe,
        "the exec connection has ended; the process in the pod reads no more input",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn buffered_output_is_read_then_eof_once_ended() {
        // The writer half stays alive, as in kube when its message loop fails.
        let (reader, mut writer) = tokio::io::simplex(64);
        let ended = Ended::default();
        let mut reader = UntilEnded::new(reader, ended.clone());
        writer.write_all(b"partial").await.unwrap();
        let setter = {
            let ended = ended.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                ended.set();
            })
        };
        let mut out = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), reader.read_to_end(&mut out))
            .await
            .expect("EOF after the end, not a hang")
            .unwrap();
        assert_eq!(out, b"partial");
        setter.await.unwrap();
        drop(writer);
    }

    #[tokio::test]
    async fn a_blocked_writer_gets_broken_pipe_once_ended() {
        let (_reader, writer) = tokio::io::simplex(4);
        let ended = Ended::default();
        let mut writer = UntilEnded::new(writer, ended.clone());
        let write = tokio::spawn(async move { writer.write_all(&[0u8; 64]).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        ended.set();
        let result = tokio::time::timeout(Duration::from_secs(5), write)
            .await
            .expect("woken, not hung")
            .unwrap();
        assert_eq!(result.unwrap_err().kind(), io::ErrorKind::BrokenPipe);
    }
}
