//! A module's telemetry, whatever transport it came over (MQTT PUBLISH, AMQP transfer): stamp
//! the connection identity, enforce the size limit, run the routes and queue the durable write.
//! The sender is acknowledged only when the returned commit resolves.

use edgemodule_core::message::{Message, SystemProperty};
use edgemodule_core::validate::MAX_MESSAGE_BYTES;
use edgemodule_core::wire::property_bag;
use tokio::sync::oneshot;

use crate::hub::Hub;
use crate::routes::{self, MessageSource, Sink};
use crate::store::NewDelivery;
use crate::writer::WriteRequest;

/// What became of an accepted message.
#[derive(Debug)]
pub enum Ingested {
    /// No route matched: nothing to store, acknowledge at once.
    Unrouted,
    /// Stored once this resolves with `Ok(Ok(()))`; anything else means not stored.
    Pending(oneshot::Receiver<Result<(), String>>),
}

/// Why a message was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// Over the 256 KB limit (the text says by how much).
    TooLarge(String),
    /// The store writer is gone (the hub is stopping).
    WriterStopped,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::TooLarge(why) => f.write_str(why),
            Refused::WriterStopped => f.write_str("store writer stopped"),
        }
    }
}

/// Routes `msg`, sent by `device/module`, and queues its deliveries for the store.
pub fn ingest(hub: &Hub, device: &str, module: &str, mut msg: Message) -> Result<Ingested, Refused> {
    msg.set_system(SystemProperty::ConnectionDeviceId, Some(device.to_string()));
    msg.set_system(SystemProperty::ConnectionModuleId, Some(module.to_string()));
    if msg.wire_size() > MAX_MESSAGE_BYTES {
        return Err(Refused::TooLarge(format!("message of {} bytes exceeds {MAX_MESSAGE_BYTES}", msg.wire_size())));
    }
    let source = MessageSource::Module { module: module.to_string(), output: msg.output_name().map(str::to_string) };
    let (deliveries, upstream) = route_message(hub, &source, &msg);
    if deliveries.is_empty() && upstream.is_empty() {
        return Ok(Ingested::Unrouted);
    }
    let (done, committed) = oneshot::channel();
    hub.writer().send(WriteRequest::Route { deliveries, upstream, done }).map_err(|_| Refused::WriterStopped)?;
    Ok(Ingested::Pending(committed))
}

/// Runs the routes for one message: deliveries for module inputs, JSON lines for `$upstream`,
/// and one monitor line per matched route.
fn route_message(hub: &Hub, source: &MessageSource, msg: &Message) -> (Vec<NewDelivery>, Vec<String>) {
    let mut deliveries = Vec::new();
    let mut upstream = Vec::new();
    let matched = routes::select(&hub.routes, source, msg);
    if matched.is_empty() {
        return (deliveries, upstream);
    }
    let bag = property_bag::encode_delivery(msg);
    let now = now_ms();
    for route in matched {
        let ttl = route.ttl_secs.map(|t| t as i64).unwrap_or(hub.default_ttl_secs);
        let expires_at_ms = (ttl >= 0).then(|| now + ttl as u64 * 1000);
        let target = match &route.sink {
            Sink::ModuleInput { module, input } => {
                deliveries.push(NewDelivery {
                    module: module.clone(),
                    input: input.clone(),
                    bag: bag.clone(),
                    body: msg.body().to_vec(),
                    expires_at_ms,
                    route: route.name.clone(),
                });
                format!("{module}/{input}")
            }
            Sink::Upstream => {
                upstream.push(crate::monitor::message_line(source, &route.name, "$upstream", msg).to_string());
                "$upstream".to_string()
            }
        };
        if hub.monitor_active() {
            hub.publish_monitor(crate::monitor::message_line(source, &route.name, &target, msg).to_string());
        }
    }
    (deliveries, upstream)
}

/// Waits (bounded) until acknowledgements queued by an earlier connection of a module are
/// committed, so a reconnecting module is not sent what it already acknowledged.
pub async fn ack_barrier(hub: &Hub) {
    let (done, committed) = oneshot::channel();
    if hub.writer().send(WriteRequest::Barrier { done }).is_ok() {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(30), committed).await;
    }
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}
