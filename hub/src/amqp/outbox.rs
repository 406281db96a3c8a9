//! A hub-side sender link fed by a channel: CBS replies, twin responses and desired patches,
//! method requests. Their outcomes are not waited for (the SDKs settle these links themselves).

use edgemodule_core::amqp::mapping::Amqp;
use fe2o3_amqp::Sender;
use tokio::sync::mpsc;

/// Sends what arrives on `rx` until the link or the channel ends (the session's end aborts it).
pub(super) async fn run(mut sender: Sender, mut rx: mpsc::UnboundedReceiver<Amqp>) {
    while let Some(msg) = rx.recv().await {
        if let Err(e) = sender.send_batchable(msg).await {
            tracing::debug!("AMQP send on {}: {e}", sender.name());
            return;
        }
    }
    let _ = sender.close().await;
}
