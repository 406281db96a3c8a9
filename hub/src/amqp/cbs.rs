//! The `$cbs` node: put-token requests arrive on one link, answers leave on the other. A valid
//! token (the same SAS verification as MQTT) sets or renews the connection's identity; a token
//! for another identity than the one already proven is refused.

use std::sync::Arc;

use edgemodule_core::amqp::cbs::{self, PutToken};
use fe2o3_amqp::types::messaging::Body;
use fe2o3_amqp::types::primitives::Value;
use fe2o3_amqp::{Receiver, Sender};

use super::connection::{Conn, ConnEvent};
use crate::mqtt::auth::{authenticate_token, Authenticated};

pub(super) async fn serve_requests(conn: Arc<Conn>, mut receiver: Receiver) {
    loop {
        let delivery = match receiver.recv::<Body<Value>>().await {
            Ok(d) => d,
            Err(e) => return tracing::debug!(peer = conn.peer, "CBS link ended: {e}"),
        };
        let _ = receiver.accept(&delivery).await;
        let (status, description, id) = match cbs::parse_request(delivery.message()) {
            Ok(req) => {
                let id = req.message_id.clone();
                match put_token(&conn, &req) {
                    Ok(()) => (200, "OK".to_string(), id),
                    Err(why) => {
                        tracing::warn!(peer = conn.peer, "put-token refused: {why}");
                        (401, why, id)
                    }
                }
            }
            Err(why) => (400, why, delivery.message().properties.as_ref().and_then(|p| p.message_id.clone())),
        };
        if !Conn::send_on(&conn.cbs_out, cbs::response(id, status, &description)) {
            tracing::debug!(peer = conn.peer, "put-token answered with no CBS reply link attached");
        }
    }
}

pub(super) async fn serve_replies(sender: Sender, outbox: super::outbox::Outbox) {
    super::outbox::run(sender, outbox).await;
}

/// Verifies the token for the identity its `name` names and records it.
fn put_token(conn: &Conn, req: &PutToken) -> Result<(), String> {
    let (_host, device, module) = cbs::audience_identity(&req.audience)
        .ok_or_else(|| format!("put-token name '{}' is not a module audience", req.audience))?;
    let auth = authenticate_token(&conn.hub, &device, &module, &req.token)?;
    let mut current = conn.auth.lock().unwrap();
    if let Some(Authenticated { device: d, module: m, .. }) = current.as_ref() {
        if *d != auth.device || *m != auth.module {
            return Err(format!("this connection belongs to {d}/{m}, not {device}/{module}"));
        }
    }
    *current = Some(auth);
    drop(current);
    let _ = conn.events.send(ConnEvent::Authenticated);
    Ok(())
}
