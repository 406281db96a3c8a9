//! Telemetry from a module (its sender on `…/messages/events`): each transfer goes through the
//! same routing and store path as an MQTT PUBLISH and is accepted only after the commit that
//! stored it; refused messages are rejected, ones the store could not take are released.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use edgemodule_core::amqp::mapping;
use fe2o3_amqp::link::delivery::DeliveryInfo;
use fe2o3_amqp::types::definitions::{Error as AmqpErrorBody, LinkError};
use fe2o3_amqp::types::messaging::Body;
use fe2o3_amqp::types::primitives::Value;
use fe2o3_amqp::Receiver;
use futures_util::stream::{FuturesOrdered, StreamExt};

use super::connection::Conn;
use crate::events::{ingest, Ingested, Refused};

/// How a delivery is settled.
enum Outcome {
    Accept,
    Reject(AmqpErrorBody),
    Release,
}

type Settlement = Pin<Box<dyn Future<Output = (DeliveryInfo, Outcome)> + Send>>;

pub(super) async fn serve(conn: Arc<Conn>, mut receiver: Receiver, module: String) {
    let Some(device) = conn.identity().map(|a| a.device) else { return };
    let mut settling: FuturesOrdered<Settlement> = FuturesOrdered::new();
    loop {
        tokio::select! {
            delivery = receiver.recv::<Body<Value>>() => match delivery {
                Ok(d) => {
                    let (info, amqp) = d.into_parts();
                    settling.push_back(settle_after_store(&conn, &device, &module, info, &amqp));
                }
                Err(e) => return tracing::debug!(peer = conn.peer, module, "telemetry link ended: {e}"),
            },
            Some((info, outcome)) = settling.next(), if !settling.is_empty() => {
                let settled = match outcome {
                    Outcome::Accept => receiver.accept(info).await,
                    Outcome::Reject(error) => receiver.reject(info, error).await,
                    Outcome::Release => receiver.release(info).await,
                };
                if let Err(e) = settled {
                    return tracing::debug!(peer = conn.peer, module, "settling telemetry: {e}");
                }
            }
        }
    }
}

/// Routes one message; the returned future gives the delivery's outcome once it is known.
fn settle_after_store(conn: &Conn, device: &str, module: &str, info: DeliveryInfo, amqp: &mapping::Amqp) -> Settlement {
    let msg = mapping::from_amqp(amqp);
    match ingest(&conn.hub, device, module, msg) {
        Ok(Ingested::Unrouted) => Box::pin(std::future::ready((info, Outcome::Accept))),
        Ok(Ingested::Pending(committed)) => Box::pin(async move {
            match committed.await {
                Ok(Ok(())) => (info, Outcome::Accept),
                // Not stored: released, so the sender keeps the message and retries.
                _ => (info, Outcome::Release),
            }
        }),
        Err(Refused::TooLarge(why)) => {
            let error = AmqpErrorBody::new(LinkError::MessageSizeExceeded, Some(why), None);
            Box::pin(std::future::ready((info, Outcome::Reject(error))))
        }
        Err(Refused::WriterStopped) => Box::pin(std::future::ready((info, Outcome::Release))),
    }
}
