//! Twin links (protocol.md §7.4): requests (GET, PATCH reported, PUT/DELETE of the desired
//! notifications) arrive on the hub's receiver; responses and desired patches leave on its sender.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use edgemodule_core::amqp::twin::{self, TwinOperation};
use fe2o3_amqp::types::messaging::{Body, MessageId};
use fe2o3_amqp::types::primitives::Value;
use fe2o3_amqp::{Receiver, Sender};
use serde_json::Value as Json;

use super::connection::Conn;

pub(super) async fn serve_requests(conn: Arc<Conn>, mut receiver: Receiver, module: String) {
    loop {
        let delivery = match receiver.recv::<Body<Value>>().await {
            Ok(d) => d,
            Err(e) => return tracing::debug!(peer = conn.peer, module, "twin link ended: {e}"),
        };
        let _ = receiver.accept(&delivery).await;
        let response = match twin::parse_request(delivery.message()) {
            Ok((id, op)) => answer(&conn, &module, id, op).await,
            Err(why) => {
                tracing::warn!(peer = conn.peer, module, "bad twin request: {why}");
                let id = delivery.message().properties.as_ref().and_then(|p| p.correlation_id.clone());
                twin::response(id, 400, b"")
            }
        };
        Conn::send_on(&conn.twin_out, response);
    }
}

pub(super) async fn serve_out(conn: Arc<Conn>, sender: Sender, outbox: super::outbox::Outbox) {
    super::outbox::run(sender, outbox).await;
    conn.desired_subscribed.store(false, Ordering::Release);
}

async fn answer(
    conn: &Conn,
    module: &str,
    id: Option<MessageId>,
    op: TwinOperation,
) -> edgemodule_core::amqp::mapping::Amqp {
    let (status, body) = match op {
        TwinOperation::Get => match conn.hub.twin_document(module).await {
            Some(doc) => (200, serde_json::to_vec(&doc).unwrap_or_default()),
            None => (404, Vec::new()),
        },
        TwinOperation::PatchReported(body) => (patch_reported(conn, module, &body).await, Vec::new()),
        TwinOperation::SubscribeDesired => {
            conn.desired_subscribed.store(true, Ordering::Release);
            (200, Vec::new())
        }
        TwinOperation::UnsubscribeDesired => {
            conn.desired_subscribed.store(false, Ordering::Release);
            (200, Vec::new())
        }
    };
    twin::response(id, status, &body)
}

/// Merges a reported patch as the MQTT path does: 204, 400 for a bad patch, 500 if not stored.
async fn patch_reported(conn: &Conn, module: &str, body: &[u8]) -> i32 {
    let patch = serde_json::from_slice::<Json>(body).map_err(|e| e.to_string()).and_then(|v| {
        edgemodule_core::wire::twin::validate_reported_patch(&v)?;
        Ok(v)
    });
    match patch {
        Ok(Json::Object(p)) => match conn.hub.patch_reported(module, &p).await {
            Ok(_) => 204,
            Err(e) => {
                tracing::error!(module, "reported patch not stored: {e}");
                500
            }
        },
        _ => 400,
    }
}
