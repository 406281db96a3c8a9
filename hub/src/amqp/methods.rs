//! Direct-method links (protocol.md §7.5): calls leave on the hub's sender (attaching it is the
//! module's "subscription" to methods); answers arrive on its receiver and complete the call.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use edgemodule_core::amqp::twin;
use fe2o3_amqp::types::messaging::Body;
use fe2o3_amqp::types::primitives::Value;
use fe2o3_amqp::{Receiver, Sender};

use super::connection::Conn;
use crate::hub::MethodOutcome;

pub(super) async fn serve_requests(conn: Arc<Conn>, sender: Sender, outbox: super::outbox::Outbox) {
    conn.methods_subscribed.store(true, Ordering::Release);
    conn.hub.connection_changed();
    super::outbox::run(sender, outbox).await;
    conn.methods_subscribed.store(false, Ordering::Release);
    conn.hub.connection_changed();
}

pub(super) async fn serve_responses(conn: Arc<Conn>, mut receiver: Receiver) {
    loop {
        let delivery = match receiver.recv::<Body<Value>>().await {
            Ok(d) => d,
            Err(e) => return tracing::debug!(peer = conn.peer, "method link ended: {e}"),
        };
        let _ = receiver.accept(&delivery).await;
        match twin::parse_method_response(delivery.message()) {
            Ok((rid, status, payload)) => {
                let payload = (!payload.is_empty()).then(|| String::from_utf8_lossy(&payload).into_owned());
                if !conn.hub.complete_method(&rid, MethodOutcome { status, payload }) {
                    tracing::debug!(peer = conn.peer, rid, "method response for an unknown or expired request");
                }
            }
            Err(why) => tracing::warn!(peer = conn.peer, "bad method response: {why}"),
        }
    }
}
