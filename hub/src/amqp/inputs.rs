//! Input messages to a module (its receiver on `…/messages/events`): stored deliveries are sent
//! up to the hub's delivery window, each with its input in `x-opt-input-name`, and settled by the
//! module's disposition: accepted or rejected removes it from the store, released or modified
//! sends it again. What is unsettled when the link ends stays stored for the next connection.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use edgemodule_core::amqp::mapping::{self, INPUT_NAME};
use edgemodule_core::message::Message;
use edgemodule_core::wire::property_bag;
use fe2o3_amqp::link::SendError;
use fe2o3_amqp::types::messaging::Outcome;
use fe2o3_amqp::types::primitives::Value;
use fe2o3_amqp::Sender;
use futures_util::stream::{FuturesUnordered, StreamExt};

use super::connection::Conn;
use crate::events::{ack_barrier, now_ms};
use crate::store::StoredDelivery;
use crate::writer::WriteRequest;

type InFlight = Pin<Box<dyn Future<Output = (StoredDelivery, Result<Outcome, SendError>)> + Send>>;

struct Pump {
    conn: Arc<Conn>,
    module: String,
    sender: Sender,
    last_sent: Option<u64>,
    /// Released deliveries, sent again before newer ones.
    again: VecDeque<StoredDelivery>,
    inflight: FuturesUnordered<InFlight>,
    acked: Vec<u64>,
}

pub(super) async fn serve(conn: Arc<Conn>, sender: Sender, module: String) {
    ack_barrier(&conn.hub).await;
    let waker = conn.hub.waker(&module);
    let mut pump = Pump {
        conn,
        module,
        sender,
        last_sent: None,
        again: VecDeque::new(),
        inflight: FuturesUnordered::new(),
        acked: Vec::new(),
    };
    if let Err(why) = pump.run(&waker).await {
        tracing::debug!(peer = pump.conn.peer, module = pump.module, "inputs link ended: {why}");
    }
    pump.flush_acks();
}

impl Pump {
    async fn run(&mut self, waker: &tokio::sync::Notify) -> Result<(), String> {
        loop {
            self.fill().await?;
            self.flush_acks();
            tokio::select! {
                Some((delivery, outcome)) = self.inflight.next(), if !self.inflight.is_empty() => {
                    self.settled(delivery, outcome)?;
                    while let Some(Some((d, o))) = futures_util::FutureExt::now_or_never(self.inflight.next()) {
                        self.settled(d, o)?;
                    }
                }
                _ = waker.notified() => {}
            }
        }
    }

    /// Sends released and stored deliveries while the window has room.
    async fn fill(&mut self) -> Result<(), String> {
        let window = self.conn.hub.delivery_window;
        while self.inflight.len() < window {
            let batch: Vec<StoredDelivery> = if self.again.is_empty() {
                let room = window - self.inflight.len();
                let batch = self.conn.hub.store.pending(&self.module, self.last_sent, room, now_ms());
                batch.map_err(|e| format!("reading the store: {e}"))?
            } else {
                self.again.drain(..).collect()
            };
            if batch.is_empty() {
                return Ok(());
            }
            for d in batch {
                self.last_sent = self.last_sent.max(Some(d.seq));
                self.send(d).await?;
            }
        }
        Ok(())
    }

    async fn send(&mut self, d: StoredDelivery) -> Result<(), String> {
        let amqp = delivery_message(&d);
        let fut = self.sender.send_batchable(amqp).await.map_err(|e| format!("sending: {e}"))?;
        self.inflight.push(Box::pin(async move { (d, fut.await) }));
        Ok(())
    }

    fn settled(&mut self, d: StoredDelivery, outcome: Result<Outcome, SendError>) -> Result<(), String> {
        match outcome {
            Ok(Outcome::Accepted(_)) => self.acked.push(d.seq),
            Ok(Outcome::Rejected(r)) => {
                tracing::info!(module = self.module, seq = d.seq, error = ?r.error, "input message rejected: dropped");
                self.acked.push(d.seq);
            }
            Ok(Outcome::Released(_) | Outcome::Modified(_)) => self.again.push_back(d),
            #[allow(unreachable_patterns)]
            Ok(other) => return Err(format!("unexpected outcome {other:?}")),
            Err(e) => return Err(format!("delivery {}: {e}", d.seq)),
        }
        Ok(())
    }

    fn flush_acks(&mut self) {
        if !self.acked.is_empty() {
            let seqs = std::mem::take(&mut self.acked);
            let _ = self.conn.hub.writer().send(WriteRequest::Ack { module: self.module.clone(), seqs });
        }
    }
}

/// The AMQP form of a stored delivery: its properties from the stored bag, and the input name
/// and sequence number as annotations.
fn delivery_message(d: &StoredDelivery) -> mapping::Amqp {
    let mut msg = Message::new(d.body.clone());
    match property_bag::decode_pairs(&d.bag) {
        Ok(pairs) => property_bag::apply_pairs(&mut msg, pairs),
        Err(e) => tracing::warn!(module = d.module, seq = d.seq, "stored property bag is malformed: {e}"),
    }
    let annotations =
        [(INPUT_NAME, Value::String(d.input.clone())), ("x-opt-sequence-number", Value::Long(d.seq as i64))];
    mapping::to_amqp(&msg, &annotations)
}
