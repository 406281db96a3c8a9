//! The AMQP connection task: the same `Command`s, handlers, counters and connection state as the
//! MQTT driver, over AMQP 1.0 links. Sends are pipelined up to `max_in_flight` and resolved by the
//! hub's disposition (accepted = stored); input messages are accepted when completed; the token is
//! renewed in place with a new CBS put-token before it expires; after a loss it reconnects with
//! backoff, resending unacknowledged sends and twin requests and resyncing the desired twin.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use bytes::Bytes;
use fe2o3_amqp::link::delivery::DeliveryInfo;
use fe2o3_amqp::link::SendError;
use fe2o3_amqp::types::messaging::{Body, Outcome};
use fe2o3_amqp::types::primitives::Value;
use fe2o3_amqp::{Delivery, Receiver};
use futures_util::stream::{FuturesUnordered, StreamExt};
use serde_json::Value as Json;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::connect::{self, Links};
use super::mapping::{self, Amqp};
use super::twin::{self, TwinInbound, TwinOperation};
use crate::client::{InputMessage, MethodRequest, Settlement};
use crate::connection_task::{supervise, ConnectionTask, Ended};
use crate::driver::{Command, DriverParts, TwinOp};
use crate::error::{Error, ErrorKind, Result};
use crate::message::Message;
use crate::state::DisconnectReason;
use crate::wire::{property_bag, topic};

/// How long an abandoned input waits before its `released` disposition goes out, doubling with
/// every abandon in a row up to [`ABANDON_PAUSE_MAX`] (a complete or reject starts over). The
/// hub delivers a released message again at once, so without the pause a handler that keeps
/// failing on a message, or code that drops messages unsettled, would spin through it.
const ABANDON_PAUSE: Duration = Duration::from_millis(100);
const ABANDON_PAUSE_MAX: Duration = Duration::from_secs(5);

type SendResult = (u64, std::result::Result<Outcome, SendError>);
type InFlight = Pin<Box<dyn Future<Output = SendResult> + Send>>;

/// Work that needs a connection.
enum Work {
    Send { amqp: Box<Amqp>, done: oneshot::Sender<Result<()>> },
    Twin { op: TwinOp, done: oneshot::Sender<Result<(u16, Bytes)>> },
    MethodResponse { rid: String, status: i64, payload: Bytes, done: oneshot::Sender<Result<()>> },
}

struct PendingTwin {
    op: TwinOp,
    done: Option<oneshot::Sender<Result<(u16, Bytes)>>>,
}

struct AmqpDriver {
    p: DriverParts,
    queue: VecDeque<Work>,
    /// Sends on the wire awaiting their disposition, by local id.
    sends: HashMap<u64, (Amqp, oneshot::Sender<Result<()>>)>,
    next_send: u64,
    twins: HashMap<String, PendingTwin>,
    /// Input deliveries handed to module code, by the id their `InputMessage` carries.
    inputs: HashMap<u16, DeliveryInfo>,
    next_input: u16,
    epoch: u64,
    inputs_wanted: bool,
    desired_version: Option<i64>,
    abandoned_in_a_row: u32,
}

/// Runs until closed. `first` reports the outcome of the first connection attempt.
pub(crate) async fn run(parts: DriverParts, first: oneshot::Sender<Result<()>>) {
    let driver = AmqpDriver {
        p: parts,
        queue: VecDeque::new(),
        sends: HashMap::new(),
        next_send: 0,
        twins: HashMap::new(),
        inputs: HashMap::new(),
        next_input: 0,
        epoch: 0,
        inputs_wanted: false,
        desired_version: None,
        abandoned_in_a_row: 0,
    };
    supervise(driver, first).await
}

impl AmqpDriver {
    /// Serves one connection until it ends.
    async fn serve_links(&mut self, mut links: Links) -> Ended {
        let mut inflight: FuturesUnordered<InFlight> = FuturesUnordered::new();
        if let Err(e) = self.on_connected(&mut links, &mut inflight).await {
            return lost(e);
        }
        let renew = tokio::time::sleep_until(self.renewal_instant(links.token_expiry));
        tokio::pin!(renew);
        let renewable = self.p.identity.credentials.renewable();
        let ended = loop {
            if let Err(e) = self.fill_window(&mut links, &mut inflight).await {
                break lost(e);
            }
            tokio::select! {
                cmd = self.p.commands.recv() => match cmd {
                    None => break Ended::Closed(oneshot::channel().0),
                    Some(Command::Close { done }) => break Ended::Closed(done),
                    Some(cmd) => if let Err(e) = self.accept(cmd, &mut links).await { break lost(e) },
                },
                Some((id, outcome)) = inflight.next(), if !inflight.is_empty() => self.on_send_settled(id, outcome),
                d = recv_optional(&mut links.inputs) => match d {
                    Ok(d) => self.on_input(d),
                    Err(e) => break lost(e),
                },
                d = links.twin_rx.recv::<Body<Value>>() => match d {
                    Ok(d) => { let _ = links.twin_rx.accept(&d).await; self.on_twin(d.message()) }
                    Err(e) => break lost(link_lost("twin", e)),
                },
                d = links.methods_rx.recv::<Body<Value>>() => match d {
                    Ok(d) => { let _ = links.methods_rx.accept(&d).await; self.on_method(d.message()) }
                    Err(e) => break lost(link_lost("methods", e)),
                },
                _ = &mut renew, if renewable => match self.renew(&mut links).await {
                    Ok(expiry) => renew.as_mut().reset(self.renewal_instant(expiry)),
                    Err(e) if e.kind() == ErrorKind::Unauthorized => break Ended::Lost(DisconnectReason::BadCredential, e.to_string()),
                    Err(e) => break lost(e),
                },
            }
        };
        self.connection_ended(links, &ended).await;
        ended
    }

    /// After the links are up: resend what was not acknowledged, subscribe to desired patches,
    /// resync the twin.
    async fn on_connected(&mut self, links: &mut Links, inflight: &mut FuturesUnordered<InFlight>) -> Result<()> {
        let mut resend: Vec<u64> = self.sends.keys().copied().collect();
        resend.sort_unstable();
        for id in resend {
            let amqp = self.sends[&id].0.clone();
            let sent = send_on(&mut links.events, id, amqp).await?;
            inflight.push(sent);
        }
        let pending: Vec<(String, TwinOp)> = self.twins.iter().map(|(k, t)| (k.clone(), t.op.clone())).collect();
        for (rid, op) in pending {
            send_twin(links, &rid, &twin_operation(&op)).await?;
        }
        send_twin(links, &uuid::Uuid::new_v4().to_string(), &TwinOperation::SubscribeDesired).await?;
        let rid = format!("resync-{}", uuid::Uuid::new_v4());
        send_twin(links, &rid, &TwinOperation::Get).await?;
        self.twins.insert(rid, PendingTwin { op: TwinOp::Get, done: None });
        Ok(())
    }

    /// Puts queued work on the wire while the send window has room.
    async fn fill_window(&mut self, links: &mut Links, inflight: &mut FuturesUnordered<InFlight>) -> Result<()> {
        while self.sends.len() < self.p.options.max_in_flight {
            let Some(work) = self.queue.pop_front() else { break };
            match work {
                Work::Send { amqp, done } => {
                    if done.is_closed() {
                        continue; // the caller gave up before it went out: not sent at all
                    }
                    self.next_send += 1;
                    let id = self.next_send;
                    self.p.counters.sent.fetch_add(1, Relaxed);
                    self.sends.insert(id, (*amqp.clone(), done));
                    let sent = send_on(&mut links.events, id, *amqp).await?;
                    inflight.push(sent);
                }
                Work::Twin { op, done } => {
                    let rid = uuid::Uuid::new_v4().to_string();
                    self.twins.insert(rid.clone(), PendingTwin { op: op.clone(), done: Some(done) });
                    send_twin(links, &rid, &twin_operation(&op)).await?;
                }
                Work::MethodResponse { rid, status, payload, done } => {
                    let msg = twin::method_response(&rid, status, &payload);
                    let sent = links.methods_tx.send_batchable(msg).await.map_err(|e| link_lost("methods", e));
                    let _ = done.send(sent.as_ref().map(|_| ()).map_err(|e| Error::new(e.kind(), e.to_string())));
                    sent?;
                }
            }
        }
        self.p.counters.queue_depth.store(self.queue.len() as u64, Relaxed);
        Ok(())
    }

    /// Takes a command while connected.
    async fn accept(&mut self, cmd: Command, links: &mut Links) -> Result<()> {
        match cmd {
            Command::Settle { pkid, epoch, how: Settlement::Abandon } => self.release_later(pkid, epoch),
            Command::Settle { pkid, epoch, how } => {
                self.abandoned_in_a_row = 0;
                self.settle(links, pkid, epoch, how).await?;
            }
            Command::Release { pkid, epoch } => self.settle(links, pkid, epoch, Settlement::Abandon).await?,
            Command::SubscribeInputs if !self.inputs_wanted => {
                self.inputs_wanted = true;
                links.inputs = Some(connect::attach_inputs(&mut links.session, &self.p.identity).await?);
            }
            other => self.enqueue(other),
        }
        Ok(())
    }

    /// Sends the disposition for input `pkid` of connection `epoch` (none after a reconnect: the
    /// hub delivers the message again anyway).
    async fn settle(&mut self, links: &mut Links, pkid: u16, epoch: u64, how: Settlement) -> Result<()> {
        let Some(info) = self.inputs.remove(&pkid).filter(|_| epoch == self.epoch) else { return Ok(()) };
        let Some(rx) = links.inputs.as_mut() else { return Ok(()) };
        let settled = match how {
            Settlement::Complete => rx.accept(info).await,
            Settlement::Abandon => rx.release(info).await,
            Settlement::Reject => rx.reject(info, None).await,
        };
        settled.map_err(|e| link_lost("inputs", e))
    }

    /// Releases an abandoned input after a pause (see [`ABANDON_PAUSE`]).
    fn release_later(&mut self, pkid: u16, epoch: u64) {
        let pause = ABANDON_PAUSE.saturating_mul(1 << self.abandoned_in_a_row.min(8)).min(ABANDON_PAUSE_MAX);
        self.abandoned_in_a_row = self.abandoned_in_a_row.saturating_add(1);
        let driver = self.p.self_tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(pause).await;
            let _ = driver.send(Command::Release { pkid, epoch });
        });
    }

    /// Queues work (bounded), answering commands AMQP cannot carry.
    fn enqueue(&mut self, cmd: Command) {
        let work = match cmd {
            Command::Publish { topic, payload, done, .. } => match self.events_message(&topic, payload) {
                Ok(amqp) => Work::Send { amqp: Box::new(amqp), done },
                Err(e) => return drop(done.send(Err(e))),
            },
            Command::Twin { request, done } => Work::Twin { op: request, done },
            Command::MethodResponse { rid, status, payload, done } => {
                Work::MethodResponse { rid, status, payload, done }
            }
            Command::Subscribe { done, .. } | Command::Unsubscribe { done, .. } => {
                return drop(done.send(Err(user_topics_unsupported())));
            }
            Command::SubscribeInputs => return self.inputs_wanted = true,
            Command::Settle { .. } | Command::Release { .. } | Command::Close { .. } => return,
        };
        if self.queue.len() >= self.p.options.queue_bound {
            let err = Error::new(ErrorKind::QueueFull, format!("{} operations are already waiting", self.queue.len()));
            return fail_work(work, err);
        }
        self.queue.push_back(work);
        self.p.counters.queue_depth.store(self.queue.len() as u64, Relaxed);
    }

    /// The client encodes outputs as MQTT topics with a property bag; AMQP carries the same
    /// message as properties. Other topics are broker user topics, which AMQP does not have.
    fn events_message(&self, t: &str, payload: Bytes) -> Result<Amqp> {
        let events = topic::parse_events_topic(t).ok_or_else(user_topics_unsupported)?;
        let mut msg = Message::new(payload);
        let pairs = property_bag::decode_pairs(events.bag).map_err(|e| Error::invalid(e.to_string()))?;
        property_bag::apply_pairs(&mut msg, pairs);
        Ok(mapping::to_amqp(&msg, &[]))
    }

    fn on_send_settled(&mut self, id: u64, outcome: std::result::Result<Outcome, SendError>) {
        let result = match outcome {
            Ok(Outcome::Accepted(_)) => Ok(()),
            Ok(Outcome::Rejected(r)) => {
                let why = r.error.map(|e| e.to_string()).unwrap_or_else(|| "no reason given".into());
                let kind = if why.contains("message-size-exceeded") {
                    ErrorKind::MessageTooLarge
                } else {
                    ErrorKind::Rejected
                };
                Err(Error::new(kind, format!("the hub rejected the message: {why}")))
            }
            // Released, modified, or the link broke: it goes out again on the next connection.
            _ => return,
        };
        if let Some((_, done)) = self.sends.remove(&id) {
            if result.is_ok() {
                self.p.counters.acknowledged.fetch_add(1, Relaxed);
            }
            let _ = done.send(result);
        }
    }

    fn on_input(&mut self, delivery: Delivery<Body<Value>>) {
        let (info, amqp) = delivery.into_parts();
        let msg = mapping::from_amqp(&amqp);
        let id = self.allocate_input_id();
        self.inputs.insert(id, info);
        self.p.counters.received.fetch_add(1, Relaxed);
        let inbound = InputMessage::new(msg, Some((id, self.epoch)), self.p.self_tx.clone());
        self.p.handlers.lock().unwrap().dispatch_input(inbound);
    }

    fn allocate_input_id(&mut self) -> u16 {
        loop {
            self.next_input = self.next_input.wrapping_add(1);
            if !self.inputs.contains_key(&self.next_input) {
                return self.next_input;
            }
        }
    }

    fn on_twin(&mut self, amqp: &Amqp) {
        match twin::parse_inbound(amqp) {
            TwinInbound::Response { correlation_id, status, body } => {
                let Some(pending) = self.twins.remove(&correlation_id) else { return };
                let status = u16::try_from(status).unwrap_or(500);
                match pending.done {
                    Some(done) => drop(done.send(Ok((status, body)))),
                    None => self.finish_resync(status, &body),
                }
            }
            TwinInbound::DesiredPatch(body) => {
                let Ok(patch) = serde_json::from_slice::<Json>(&body) else { return };
                let version = crate::wire::twin::version_of(&patch);
                if version.is_none_or(|v| self.desired_version.is_none_or(|seen| v > seen)) {
                    self.desired_version = version.or(self.desired_version);
                    self.p.handlers.lock().unwrap().dispatch_desired(patch);
                }
            }
        }
    }

    /// After a (re)connect: if desired moved while we were away, deliver the whole document.
    fn finish_resync(&mut self, status: u16, body: &[u8]) {
        if status != 200 {
            return tracing::warn!("twin resync GET answered {status}");
        }
        let Ok(doc) = serde_json::from_slice::<Json>(body) else { return };
        let desired = doc.get("desired").cloned().unwrap_or(Json::Null);
        let Some(version) = crate::wire::twin::version_of(&desired) else { return };
        let deliver = match self.desired_version {
            Some(seen) => version > seen,
            None => self.epoch > 1,
        };
        self.desired_version = Some(self.desired_version.map_or(version, |v| v.max(version)));
        if deliver {
            self.p.handlers.lock().unwrap().dispatch_desired(desired);
        }
    }

    fn on_method(&mut self, amqp: &Amqp) {
        match twin::parse_method_request(amqp) {
            Ok(call) => {
                let request = MethodRequest::new(call.name, call.rid, call.payload, self.p.self_tx.clone());
                self.p.handlers.lock().unwrap().dispatch_method(request);
            }
            Err(why) => tracing::warn!("malformed method request: {why}"),
        }
    }

    /// Renews the token in place with a new put-token; returns its expiry.
    async fn renew(&mut self, links: &mut Links) -> Result<u64> {
        let id = &self.p.identity;
        let token =
            id.credentials.token(&id.hub_host_name, &id.device_id, &id.module_id, self.p.options.sas_ttl).await?;
        links.cbs.put_token(id, &token.value, self.p.options.connect_timeout).await?;
        self.p.counters.token_renewals.fetch_add(1, Relaxed);
        tracing::debug!("AMQP token renewed in place until {}", token.expiry);
        Ok(token.expiry)
    }

    fn renewal_instant(&self, token_expiry: u64) -> Instant {
        let left = Duration::from_secs(token_expiry.saturating_sub(crate::wire::sas::unix_now()));
        Instant::now() + left.saturating_sub(self.p.options.sas_renewal_margin)
    }

    /// Input deliveries of a lost connection can no longer be settled (the hub redelivers them);
    /// a closed one ends politely.
    async fn connection_ended(&mut self, mut links: Links, ended: &Ended) {
        self.inputs.clear();
        if let Ended::Closed(_) = ended {
            // Dispositions go out through the session's task, the close through the connection's:
            // closing the connection straight away can overtake input settlements made just before
            // `close()`, and the hub delivers those messages again. Detaching the inputs link first
            // orders them (the detach follows the dispositions on the link) and waits for the hub.
            if let Some(rx) = links.inputs.take() {
                let _ = tokio::time::timeout(Duration::from_secs(1), rx.close()).await;
            }
            let _ = tokio::time::timeout(Duration::from_secs(1), links.connection.close()).await;
        }
    }
}

impl ConnectionTask for AmqpDriver {
    type Connection = Links;
    const OVER: &'static str = " over AMQP";

    fn parts(&self) -> &DriverParts {
        &self.p
    }

    async fn open(&mut self) -> Result<Links> {
        let links = connect::open(&self.p.identity, &self.p.options, &self.p.tls, self.inputs_wanted).await?;
        self.epoch += 1;
        Ok(links)
    }

    async fn serve(&mut self, links: Links) -> Ended {
        self.serve_links(links).await
    }

    /// Waits out a backoff while still taking commands; returns a close request if one came.
    async fn wait_disconnected(&mut self, wait: Duration) -> Option<oneshot::Sender<()>> {
        let until = tokio::time::sleep(wait);
        tokio::pin!(until);
        loop {
            tokio::select! {
                _ = &mut until => return None,
                cmd = self.p.commands.recv() => match cmd {
                    None => return Some(oneshot::channel().0),
                    Some(Command::Close { done }) => return Some(done),
                    Some(cmd) => self.enqueue(cmd),
                }
            }
        }
    }

    fn fail_all(&mut self, err: impl Fn() -> Error) {
        for (_, (_, done)) in self.sends.drain() {
            let _ = done.send(Err(err()));
        }
        for (_, t) in self.twins.drain() {
            if let Some(done) = t.done {
                let _ = done.send(Err(err()));
            }
        }
        for work in self.queue.drain(..) {
            fail_work(work, err());
        }
        self.p.commands.close();
        while let Ok(cmd) = self.p.commands.try_recv() {
            cmd.fail(err());
        }
    }
}

fn fail_work(work: Work, err: Error) {
    match work {
        Work::Send { done, .. } | Work::MethodResponse { done, .. } => drop(done.send(Err(err))),
        Work::Twin { done, .. } => drop(done.send(Err(err))),
    }
}

/// Puts one message on the events link; the returned future resolves with its disposition.
async fn send_on(events: &mut fe2o3_amqp::Sender, id: u64, amqp: Amqp) -> Result<InFlight> {
    let fut = events.send_batchable(amqp).await.map_err(|e| link_lost("events", e))?;
    Ok(Box::pin(async move { (id, fut.await) }))
}

async fn send_twin(links: &mut Links, rid: &str, op: &TwinOperation) -> Result<()> {
    let sent = links.twin_tx.send_batchable(twin::request(rid, op)).await.map_err(|e| link_lost("twin", e))?;
    drop(sent);
    Ok(())
}

fn twin_operation(op: &TwinOp) -> TwinOperation {
    match op {
        TwinOp::Get => TwinOperation::Get,
        TwinOp::PatchReported(b) => TwinOperation::PatchReported(b.clone()),
    }
}

/// The next input delivery, or never while the inputs link is not attached.
async fn recv_optional(rx: &mut Option<Receiver>) -> Result<Delivery<Body<Value>>> {
    match rx {
        Some(rx) => rx.recv::<Body<Value>>().await.map_err(|e| link_lost("inputs", e)),
        None => std::future::pending().await,
    }
}

fn user_topics_unsupported() -> Error {
    Error::new(
        ErrorKind::Unsupported,
        "user topics (publish/subscribe) need the MQTT transport; AMQP carries outputs only",
    )
}

fn link_lost(link: &str, e: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::with_source(ErrorKind::ConnectionLost, format!("the AMQP '{link}' link failed"), e)
}

fn lost(e: Error) -> Ended {
    Ended::Lost(DisconnectReason::CommunicationError, e.display_chain())
}
