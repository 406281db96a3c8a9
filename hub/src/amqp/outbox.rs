//! A hub-side sender link fed by a channel: CBS replies, twin responses and desired patches,
//! method requests. Their outcomes are not waited for (the SDKs settle these links themselves).

use std::sync::Mutex;

use edgemodule_core::amqp::mapping::Amqp;
use fe2o3_amqp::Sender;
use tokio::sync::mpsc;

/// What a hub-side sender link sends, in order.
pub(super) type Outbox = mpsc::UnboundedReceiver<Amqp>;
/// Where the connection's other tasks put what that link sends; empty while it is not attached.
pub(super) type OutboxSlot = Mutex<Option<mpsc::UnboundedSender<Amqp>>>;

/// Opens the channel behind `slot` (replacing any earlier one); messages queue until `run` sends
/// them. Opened before the link's attach is answered, so a request the peer sends the moment it
/// sees the attach always finds its answer's way out.
pub(super) fn open(slot: &OutboxSlot) -> Outbox {
    let (tx, rx) = mpsc::unbounded_channel();
    *slot.lock().unwrap() = Some(tx);
    rx
}

/// Sends what arrives on `rx` until the link or the channel ends (the session's end aborts it).
pub(super) async fn run(mut sender: Sender, mut rx: Outbox) {
    while let Some(msg) = rx.recv().await {
        if let Err(e) = sender.send_batchable(msg).await {
            tracing::debug!("AMQP send on {}: {e}", sender.name());
            return;
        }
    }
    let _ = sender.close().await;
}
