//! Waiting for a state instead of sleeping and hoping it was reached.

use std::future::Future;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Upper bound for anything a test waits for, so a bug fails the test instead of hanging it.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// Spawns `fut` and returns once it is blocked waiting (its first `Pending`), with its handle.
///
/// For the broker's readers (poll, fetch, a subscription's next batch), whose only await before
/// they wait for new records is that wait, the first `Pending` means "now waiting": whatever the
/// test does next happens to a waiting reader, not to one that has not started yet.
pub async fn spawn_waiting<F>(fut: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let (tx, rx) = oneshot::channel();
    let handle = tokio::spawn(async move {
        let mut fut = std::pin::pin!(fut);
        let mut tx = Some(tx);
        std::future::poll_fn(|cx| {
            let poll = fut.as_mut().poll(cx);
            if poll.is_pending()
                && let Some(tx) = tx.take()
            {
                let _ = tx.send(());
            }
            poll
        })
        .await
    });
    // The sender is dropped unsent when the future finished without ever waiting.
    let waited = tokio::time::timeout(PATIENCE, rx)
        .await
        .expect("starts in time");
    assert!(waited.is_ok(), "the future finished without waiting");
    handle
}

/// Waits until `condition` holds, checking again every millisecond, for at most [`PATIENCE`];
/// for states with no notification to await (a count kept by the server).
pub async fn until(what: &str, mut condition: impl FnMut() -> bool) {
    let check = async {
        while !condition() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    };
    tokio::time::timeout(PATIENCE, check)
        .await
        .unwrap_or_else(|_| panic!("still not {what} after {PATIENCE:?}"));
}
