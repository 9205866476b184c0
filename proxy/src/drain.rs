//! Graceful shutdown: one [`Signal`] tells every listener and connection to stop, then
//! waits, up to a deadline, until all of them have let go of their [`Watch`].
//!
//! Listeners stop accepting at once; connections finish their in-flight requests (HTTP/1.1
//! closes after the current response, HTTP/2 sends GOAWAY) and then drop their watch.
//! Waiting on dropped watches instead of counting requests means a connection can never
//! be forgotten, whatever path it took to finish.

use std::time::Duration;

use tokio::sync::{mpsc, watch};

/// Creates a linked signal and watch.
pub fn channel() -> (Signal, Watch) {
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let (done_tx, done_rx) = mpsc::channel(1);
    (
        Signal {
            shutdown: shutdown_tx,
            done: done_rx,
        },
        Watch {
            shutdown: shutdown_rx,
            _done: done_tx,
        },
    )
}

/// The side that asks for shutdown and waits for it.
#[derive(Debug)]
pub struct Signal {
    shutdown: watch::Sender<bool>,
    done: mpsc::Receiver<()>,
}

/// In-flight work was still running when the drain deadline passed.
#[derive(Debug, thiserror::Error)]
#[error("connections were still open when the drain deadline of {0:?} passed")]
pub struct DrainTimeout(pub Duration);

impl Signal {
    /// Tells every watch to stop, and waits until all watches are dropped or `deadline`
    /// passes, whichever is first.
    pub async fn drain(mut self, deadline: Duration) -> Result<(), DrainTimeout> {
        self.shutdown.send_replace(true);
        match tokio::time::timeout(deadline, self.done.recv()).await {
            Ok(_) => Ok(()),
            Err(_) => Err(DrainTimeout(deadline)),
        }
    }
}

/// Held by every listener and connection while it is running.
#[derive(Debug, Clone)]
pub struct Watch {
    shutdown: watch::Receiver<bool>,
    _done: mpsc::Sender<()>,
}

impl Watch {
    /// Resolves once shutdown was asked for (at once if it already was).
    pub async fn signaled(&self) {
        let mut shutdown = self.shutdown.clone();
        // An error means the signal was dropped without draining: treat it as shutdown.
        let _ = shutdown.wait_for(|stop| *stop).await;
    }

    pub fn is_signaled(&self) -> bool {
        *self.shutdown.borrow()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn drain_waits_for_watches_and_honours_the_deadline() {
        let (signal, watch) = channel();
        let held = watch.clone();
        drop(watch);
        let task = tokio::spawn(async move {
            held.signaled().await;
            tokio::time::sleep(Duration::from_millis(50)).await;
            drop(held);
        });
        signal.drain(Duration::from_secs(2)).await.unwrap();
        task.await.unwrap();

        let (signal, watch) = channel();
        let result = signal.drain(Duration::from_millis(50)).await;
        assert!(result.is_err());
        assert!(watch.is_signaled());
    }
}
