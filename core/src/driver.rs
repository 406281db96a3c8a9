//! The connection driver: one task that owns the MQTT connection. It connects (TLS, CONNECT,
//! subscriptions), pipelines publishes up to the in-flight window, matches PUBACKs and twin
//! responses to their callers, hands inbound messages, methods and desired patches to their
//! receivers, renews the SAS token by draining and reconnecting, and reconnects with backoff
//! after a loss, resending what was not acknowledged.
//!
//! We drive rumqttc's packet codec ourselves rather than its `EventLoop` because a module needs
//! per-publish acknowledgement (rumqttc's `publish` resolves on enqueue) and deferred PUBACKs
//! tied to a connection epoch.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rumqttc::mqttbytes::v4::{
    Connect, ConnectReturnCode, Login, Packet, PubAck, Publish, Subscribe, SubscribeFilter, SubscribeReasonCode,
    Unsubscribe,
};
use rumqttc::mqttbytes::QoS;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use crate::client::{Counters, Handlers, InputMessage, MethodRequest, Qos, Settlement, TopicMessage};
use crate::connection_task::{ConnectionTask, Ended};
use crate::error::{Error, ErrorKind, Result};
use crate::identity::ModuleIdentity;
use crate::message::Message;
use crate::options::ClientOptions;
use crate::state::{ConnectionState, DisconnectReason};
use crate::wire::{encoding, framing, property_bag, topic};

const MAX_PACKET_BYTES: usize = 512 * 1024;
const RENEWAL_DRAIN_LIMIT: Duration = Duration::from_secs(10);
const API_VERSION: &str = "2020-09-30";

type Stream = crate::transport::Stream;

/// A request from a `ModuleClient` handle to the driver.
pub(crate) enum Command {
    /// QoS 1 resolves on PUBACK; QoS 0 once written to the connection.
    Publish {
        topic: String,
        payload: Bytes,
        qos: QoS,
        retain: bool,
        done: oneshot::Sender<Result<()>>,
    },
    Twin {
        request: TwinOp,
        done: oneshot::Sender<Result<(u16, Bytes)>>,
    },
    MethodResponse {
        rid: String,
        status: i64,
        payload: Bytes,
        done: oneshot::Sender<Result<()>>,
    },
    /// Settles an input message of connection `epoch` (ignored after a reconnect: the hub
    /// delivers the message again anyway).
    Settle {
        pkid: u16,
        epoch: u64,
        how: Settlement,
    },
    SubscribeInputs,
    /// AMQP: the pause after an abandon of input `pkid` (connection `epoch`) is over; release it.
    Release {
        pkid: u16,
        epoch: u64,
    },
    /// A user-topic subscription; resolves on SUBACK (an error if the hub refused it).
    Subscribe {
        filter: String,
        qos: QoS,
        tx: mpsc::UnboundedSender<TopicMessage>,
        done: oneshot::Sender<Result<()>>,
    },
    Unsubscribe {
        filter: String,
        done: oneshot::Sender<Result<()>>,
    },
    Close {
        done: oneshot::Sender<()>,
    },
}

impl Command {
    /// Answers the command's caller with `err` instead of carrying it out (a close is simply
    /// acknowledged; settlements and the inputs subscription have no caller waiting).
    pub(crate) fn fail(self, err: Error) {
        match self {
            Command::Publish { done, .. } | Command::MethodResponse { done, .. } => drop(done.send(Err(err))),
            Command::Twin { done, .. } => drop(done.send(Err(err))),
            Command::Subscribe { done, .. } | Command::Unsubscribe { done, .. } => drop(done.send(Err(err))),
            Command::Close { done } => drop(done.send(())),
            Command::Settle { .. } | Command::Release { .. } | Command::SubscribeInputs => {}
        }
    }
}

#[derive(Clone)]
pub(crate) enum TwinOp {
    Get,
    PatchReported(Bytes),
}

/// A user-topic SUBSCRIBE awaiting its SUBACK. Without `tx` it restores an existing subscription
/// after a reconnect.
struct PendingSub {
    filter: String,
    qos: QoS,
    tx: Option<mpsc::UnboundedSender<TopicMessage>>,
    done: Option<oneshot::Sender<Result<()>>>,
}

struct UserSub {
    filter: String,
    qos: QoS,
    tx: mpsc::UnboundedSender<TopicMessage>,
}

struct PendingTwin {
    request: TwinOp,
    done: Option<oneshot::Sender<Result<(u16, Bytes)>>>,
}

pub(crate) struct Driver {
    p: DriverParts,
    queue: VecDeque<Command>,
    inflight: HashMap<u16, (Publish, oneshot::Sender<Result<()>>)>,
    twins: HashMap<String, PendingTwin>,
    next_pkid: u16,
    epoch: u64,
    inputs_wanted: bool,
    desired_version: Option<i64>,
    out: BytesMut,
    renewing: Option<Instant>,
    /// QoS 0 publishes in `out`, resolved once it is flushed.
    written: Vec<oneshot::Sender<Result<()>>>,
    user_subs: Vec<UserSub>,
    pending_subs: HashMap<u16, PendingSub>,
    pending_unsubs: HashMap<u16, (String, oneshot::Sender<Result<()>>)>,
    /// Subscribe and unsubscribe requests that arrived while disconnected.
    unsent_subs: Vec<PendingSub>,
    unsent_unsubs: Vec<String>,
    /// In-flight user-topic publishes already resent once after a reconnect: a second loss
    /// fails them instead of resending again (the hub closes the connection on a publish the
    /// policy refuses, so resending forever would loop).
    resent_user: HashSet<u16>,
}

/// What `ModuleClient` needs to start a driver.
pub(crate) struct DriverParts {
    pub identity: ModuleIdentity,
    pub options: ClientOptions,
    pub tls: Arc<rustls::ClientConfig>,
    pub commands: mpsc::UnboundedReceiver<Command>,
    pub self_tx: mpsc::UnboundedSender<Command>,
    pub handlers: Arc<std::sync::Mutex<Handlers>>,
    pub state: watch::Sender<ConnectionState>,
    pub counters: Arc<Counters>,
}

impl Driver {
    pub(crate) fn new(p: DriverParts) -> Self {
        Driver {
            p,
            queue: VecDeque::new(),
            inflight: HashMap::new(),
            twins: HashMap::new(),
            next_pkid: 0,
            epoch: 0,
            inputs_wanted: false,
            desired_version: None,
            out: BytesMut::with_capacity(64 * 1024),
            renewing: None,
            written: Vec::new(),
            user_subs: Vec::new(),
            pending_subs: HashMap::new(),
            pending_unsubs: HashMap::new(),
            unsent_subs: Vec::new(),
            unsent_unsubs: Vec::new(),
            resent_user: HashSet::new(),
        }
    }

    /// After a connection ends: unsubscribes in flight are done locally (the filter no longer
    /// delivers) and go out again after the reconnect.
    fn connection_ended(&mut self) {
        for (_, (filter, done)) in self.pending_unsubs.drain() {
            self.unsent_unsubs.push(filter);
            let _ = done.send(Ok(()));
        }
    }

    /// Connects; returns the stream, the token expiry and any bytes read past the CONNACK (the hub
    /// may send a persisted session's deliveries in the same segment).
    async fn connect(&mut self) -> Result<(Stream, u64, BytesMut)> {
        let id = &self.p.identity;
        let token =
            id.credentials.token(&id.hub_host_name, &id.device_id, &id.module_id, self.p.options.sas_ttl).await?;
        let mut tls = crate::transport::connect(id, &self.p.options, &self.p.tls).await?;
        let mut connect = Connect::new(format!("{}/{}", id.device_id, id.module_id));
        connect.keep_alive = self.p.options.keep_alive.as_secs() as u16;
        connect.clean_session = false;
        connect.login = Some(Login::new(self.username(), token.value));
        let mut buf = BytesMut::new();
        framing::encode(&Packet::Connect(connect), &mut buf).map_err(protocol)?;
        tls.write_all(&buf).await.map_err(lost)?;
        tls.flush().await.map_err(lost)?;
        buf.clear();
        loop {
            if let Some(p) = framing::decode(&mut buf, MAX_PACKET_BYTES).map_err(protocol)? {
                return match p {
                    Packet::ConnAck(a) if a.code == ConnectReturnCode::Success => Ok((tls, token.expiry, buf)),
                    Packet::ConnAck(a) => Err(connack_error(a.code)),
                    other => Err(Error::new(ErrorKind::Protocol, format!("expected CONNACK, got {other:?}"))),
                };
            }
            if tls.read_buf(&mut buf).await.map_err(lost)? == 0 {
                return Err(Error::new(ErrorKind::ConnectionRefused, "the hub closed the connection before CONNACK"));
            }
        }
    }

    fn username(&self) -> String {
        let id = &self.p.identity;
        let product = format!(
            "edgemodule/{}{}{}",
            env!("CARGO_PKG_VERSION"),
            if self.p.options.product_info.is_empty() { "" } else { " " },
            self.p.options.product_info
        );
        let mut u = format!(
            "{}/{}/{}/?api-version={API_VERSION}&DeviceClientType={}",
            id.hub_host_name,
            id.device_id,
            id.module_id,
            encoding::encode(&product)
        );
        if let Some(m) = &self.p.options.model_id {
            u.push_str(&format!("&model-id={}", encoding::encode(m)));
        }
        u
    }

    /// Serves one connection until it ends.
    async fn serve_stream(&mut self, stream: Stream, token_expiry: u64, mut rbuf: BytesMut) -> Ended {
        let (mut reader, mut writer) = tokio::io::split(stream);
        rbuf.reserve(64 * 1024);
        self.on_connected();
        loop {
            match framing::decode(&mut rbuf, MAX_PACKET_BYTES) {
                Ok(Some(p)) => self.on_packet(p),
                Ok(None) => break,
                Err(e) => return Ended::Lost(DisconnectReason::CommunicationError, format!("malformed packet: {e}")),
            }
        }
        let renew_at = self.renewal_instant(token_expiry);
        let keepalive = self.p.options.keep_alive;
        let mut last_read = Instant::now();
        let mut ping = tokio::time::interval_at(Instant::now() + keepalive / 2, keepalive / 2);
        let renew = tokio::time::sleep_until(renew_at);
        tokio::pin!(renew);
        self.renewing = None;
        loop {
            self.fill_window();
            if let Some(started) = self.renewing {
                if (self.inflight.is_empty() && self.twins.is_empty()) || started.elapsed() > RENEWAL_DRAIN_LIMIT {
                    self.disconnect(&mut reader, &mut writer).await;
                    return Ended::Renew;
                }
            }
            if let Err(e) = self.flush(&mut writer).await {
                return Ended::Lost(DisconnectReason::CommunicationError, e.to_string());
            }
            tokio::select! {
                read = reader.read_buf(&mut rbuf) => {
                    match read {
                        Ok(0) => return Ended::Lost(DisconnectReason::CommunicationError, "the hub closed the connection".into()),
                        Err(e) => return Ended::Lost(DisconnectReason::CommunicationError, format!("read failed: {e}")),
                        Ok(_) => last_read = Instant::now(),
                    }
                    loop {
                        match framing::decode(&mut rbuf, MAX_PACKET_BYTES) {
                            Ok(Some(p)) => self.on_packet(p),
                            Ok(None) => break,
                            Err(e) => return Ended::Lost(DisconnectReason::CommunicationError, format!("malformed packet: {e}")),
                        }
                    }
                }
                cmd = self.p.commands.recv() => {
                    let Some(cmd) = cmd else { return Ended::Closed(oneshot::channel().0) };
                    if let Some(done) = self.accept(cmd) {
                        self.disconnect(&mut reader, &mut writer).await;
                        return Ended::Closed(done);
                    }
                    while let Ok(cmd) = self.p.commands.try_recv() {
                        if let Some(done) = self.accept(cmd) {
                            self.disconnect(&mut reader, &mut writer).await;
                            return Ended::Closed(done);
                        }
                    }
                }
                _ = ping.tick() => {
                    if last_read.elapsed() > keepalive * 3 / 2 {
                        return Ended::Lost(DisconnectReason::NoNetwork, "no answer from the hub within the keep-alive".into());
                    }
                    let _ = framing::encode(&Packet::PingReq, &mut self.out);
                }
                _ = &mut renew, if self.renewing.is_none() && self.p.identity.credentials.renewable() => {
                    self.renewing = Some(Instant::now());
                }
            }
        }
    }

    /// Ends the connection cleanly: method responses already handed to us go out, then
    /// DISCONNECT, then a TLS close and a short drain until the hub closes too. Dropping the
    /// socket with unread data would make the kernel send a reset, and the hub could lose what
    /// we just wrote (acknowledgements, method responses).
    async fn disconnect(&mut self, reader: &mut ReadHalf<Stream>, writer: &mut WriteHalf<Stream>) {
        let queued = std::mem::take(&mut self.queue);
        for cmd in queued {
            match cmd {
                Command::MethodResponse { rid, status, payload, done } => {
                    let p = Publish::new(topic::method_response_topic(status, &rid), QoS::AtMostOnce, payload.to_vec());
                    self.write(Packet::Publish(p));
                    let _ = done.send(Ok(()));
                }
                other => self.queue.push_back(other),
            }
        }
        let _ = framing::encode(&Packet::Disconnect, &mut self.out);
        let _ = self.flush(writer).await;
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            let _ = writer.shutdown().await;
            let mut sink = [0u8; 4096];
            while matches!(reader.read(&mut sink).await, Ok(n) if n > 0) {}
        })
        .await;
    }

    fn renewal_instant(&self, token_expiry: u64) -> Instant {
        let now = crate::wire::sas::unix_now();
        let left = Duration::from_secs(token_expiry.saturating_sub(now));
        Instant::now() + left.saturating_sub(self.p.options.sas_renewal_margin)
    }

    /// After CONNACK: subscribe, resend what was not acknowledged, and resync the twin.
    fn on_connected(&mut self) {
        let mut filters = vec![
            SubscribeFilter::new(topic::TWIN_RESPONSE_FILTER.into(), QoS::AtLeastOnce),
            SubscribeFilter::new(topic::DESIRED_PATCH_FILTER.into(), QoS::AtLeastOnce),
            SubscribeFilter::new(topic::METHODS_FILTER.into(), QoS::AtLeastOnce),
        ];
        if self.inputs_wanted {
            filters.push(self.inputs_filter());
        }
        let pkid = self.allocate_pkid();
        self.write(Packet::Subscribe(Subscribe { pkid, filters }));
        self.restore_user_subscriptions();
        let mut resend: Vec<_> = self.inflight.values().map(|(p, _)| p.clone()).collect();
        resend.sort_by_key(|p| p.pkid);
        for mut p in resend {
            if crate::validate::is_reserved_topic(&p.topic) {
                // IoT Hub topics: always resent.
            } else if !self.resent_user.insert(p.pkid) {
                if let Some((_, done)) = self.inflight.remove(&p.pkid) {
                    self.resent_user.remove(&p.pkid);
                    let _ = done.send(Err(Error::new(
                        ErrorKind::ConnectionLost,
                        format!(
                            "the hub closed the connection again while publishing to '{}';                              the broker policy may not allow this module to publish there",
                            p.topic
                        ),
                    )));
                }
                continue;
            }
            p.dup = true;
            self.write(Packet::Publish(p));
        }
        let twins: Vec<(String, TwinOp)> = self.twins.iter().map(|(rid, t)| (rid.clone(), t.request.clone())).collect();
        for (rid, op) in twins {
            self.write_twin(&rid, &op);
        }
        self.start_resync();
    }

    /// After a reconnect: subscribe again to every user topic (the hub may have lost the
    /// session), send what was asked while disconnected, and re-send SUBSCRIBEs never answered.
    fn restore_user_subscriptions(&mut self) {
        for filter in std::mem::take(&mut self.unsent_unsubs) {
            let pkid = self.allocate_pkid();
            self.write(Packet::Unsubscribe(Unsubscribe { pkid, topics: vec![filter] }));
        }
        let mut waiting: Vec<(u16, PendingSub)> = self.pending_subs.drain().collect();
        waiting.sort_by_key(|(pkid, _)| *pkid);
        let mut requests: Vec<PendingSub> = waiting.into_iter().map(|(_, p)| p).collect();
        requests.extend(std::mem::take(&mut self.unsent_subs));
        let restores: Vec<PendingSub> = self
            .user_subs
            .iter()
            .filter(|s| !requests.iter().any(|r| r.filter == s.filter))
            .map(|s| PendingSub { filter: s.filter.clone(), qos: s.qos, tx: None, done: None })
            .collect();
        for request in restores.into_iter().chain(requests) {
            self.send_subscribe(request);
        }
    }

    fn send_subscribe(&mut self, request: PendingSub) {
        let pkid = self.allocate_pkid();
        let filter = SubscribeFilter::new(request.filter.clone(), request.qos);
        self.write(Packet::Subscribe(Subscribe { pkid, filters: vec![filter] }));
        self.pending_subs.insert(pkid, request);
    }

    fn on_suback(&mut self, pkid: u16, refused: bool) {
        let Some(request) = self.pending_subs.remove(&pkid) else { return };
        if refused {
            if request.tx.is_none() {
                tracing::error!("the hub no longer allows the subscription to '{}'; dropping it", request.filter);
                self.user_subs.retain(|s| s.filter != request.filter);
            }
            if let Some(done) = request.done {
                let _ = done.send(Err(Error::new(
                    ErrorKind::Rejected,
                    format!("the hub refused the subscription to '{}' (not authorized)", request.filter),
                )));
            }
            return;
        }
        if let Some(tx) = request.tx {
            if !tx.is_closed() {
                self.user_subs.retain(|s| s.filter != request.filter);
                self.user_subs.push(UserSub { filter: request.filter, qos: request.qos, tx });
            }
        }
        if let Some(done) = request.done {
            let _ = done.send(Ok(()));
        }
    }

    /// A message on a user topic: acknowledged at once, then given to every matching receiver.
    fn on_user_message(&mut self, p: Publish) {
        if p.qos == QoS::AtLeastOnce {
            self.write(Packet::PubAck(PubAck::new(p.pkid)));
        }
        self.p.counters.received.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let msg = TopicMessage {
            topic: p.topic,
            payload: p.payload,
            qos: if p.qos == QoS::AtMostOnce { Qos::AtMostOnce } else { Qos::AtLeastOnce },
            retain: p.retain,
        };
        for sub in &self.user_subs {
            if crate::validate::topic_matches(&sub.filter, &msg.topic) {
                let _ = sub.tx.send(msg.clone());
            }
        }
    }

    fn inputs_filter(&self) -> SubscribeFilter {
        SubscribeFilter::new(
            topic::inputs_filter(&self.p.identity.device_id, &self.p.identity.module_id),
            QoS::AtLeastOnce,
        )
    }

    fn start_resync(&mut self) {
        let rid = format!("resync-{}", uuid::Uuid::new_v4());
        self.write_twin(&rid, &TwinOp::Get);
        self.twins.insert(rid, PendingTwin { request: TwinOp::Get, done: None });
    }

    /// Takes a command; returns the close acknowledgement when it is a close.
    fn accept(&mut self, cmd: Command) -> Option<oneshot::Sender<()>> {
        match cmd {
            Command::Close { done } => return Some(done),
            Command::Settle { pkid, epoch, how } => {
                // MQTT has no negative acknowledgement: abandon sends nothing (redelivery after
                // a reconnect), reject acknowledges so the message is not delivered again.
                if epoch == self.epoch && how != Settlement::Abandon {
                    self.write(Packet::PubAck(PubAck::new(pkid)));
                }
            }
            Command::Release { .. } => {} // only the AMQP driver delays releases
            Command::SubscribeInputs => {
                if !self.inputs_wanted {
                    self.inputs_wanted = true;
                    let pkid = self.allocate_pkid();
                    let filter = self.inputs_filter();
                    self.write(Packet::Subscribe(Subscribe { pkid, filters: vec![filter] }));
                }
            }
            Command::Subscribe { filter, qos, tx, done } => {
                self.send_subscribe(PendingSub { filter, qos, tx: Some(tx), done: Some(done) });
            }
            Command::Unsubscribe { filter, done } => {
                self.user_subs.retain(|s| s.filter != filter);
                let pkid = self.allocate_pkid();
                self.write(Packet::Unsubscribe(Unsubscribe { pkid, topics: vec![filter.clone()] }));
                self.pending_unsubs.insert(pkid, (filter, done));
            }
            other => self.enqueue(other),
        }
        None
    }

    fn enqueue(&mut self, cmd: Command) {
        if self.queue.len() >= self.p.options.queue_bound {
            let err = Error::new(ErrorKind::QueueFull, format!("{} operations are already waiting", self.queue.len()));
            return cmd.fail(err);
        }
        self.queue.push_back(cmd);
        self.publish_queue_depth();
    }

    fn publish_queue_depth(&self) {
        self.p.counters.queue_depth.store(self.queue.len() as u64, std::sync::atomic::Ordering::Relaxed);
    }

    /// Moves queued operations onto the wire while the window has room (and no renewal drains).
    fn fill_window(&mut self) {
        self.drain_window();
        self.publish_queue_depth();
    }

    fn drain_window(&mut self) {
        while self.renewing.is_none() && self.inflight.len() < self.p.options.max_in_flight {
            let Some(cmd) = self.queue.pop_front() else { break };
            match cmd {
                Command::Publish { topic, payload, qos, retain, done } => {
                    if done.is_closed() {
                        continue; // the caller gave up before it went out: not sent at all
                    }
                    let mut p = Publish::new(topic, qos, Vec::new());
                    p.payload = payload;
                    p.retain = retain;
                    self.p.counters.sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if qos == QoS::AtMostOnce {
                        self.write(Packet::Publish(p));
                        self.written.push(done);
                        continue;
                    }
                    let pkid = self.allocate_pkid();
                    p.pkid = pkid;
                    self.write(Packet::Publish(p.clone()));
                    self.inflight.insert(pkid, (p, done));
                }
                Command::Twin { request, done } => {
                    let rid = uuid::Uuid::new_v4().to_string();
                    self.write_twin(&rid, &request);
                    self.twins.insert(rid, PendingTwin { request, done: Some(done) });
                }
                Command::MethodResponse { rid, status, payload, done } => {
                    let p = Publish::new(topic::method_response_topic(status, &rid), QoS::AtMostOnce, payload.to_vec());
                    self.write(Packet::Publish(p));
                    let _ = done.send(Ok(()));
                }
                _ => {}
            }
        }
    }

    fn write_twin(&mut self, rid: &str, op: &TwinOp) {
        let (t, body) = match op {
            TwinOp::Get => (topic::twin_get_topic(rid), Vec::new()),
            TwinOp::PatchReported(b) => (topic::twin_patch_reported_topic(rid), b.to_vec()),
        };
        self.write(Packet::Publish(Publish::new(t, QoS::AtMostOnce, body)));
    }

    fn on_packet(&mut self, packet: Packet) {
        match packet {
            Packet::PubAck(a) => {
                self.resent_user.remove(&a.pkid);
                if let Some((_, done)) = self.inflight.remove(&a.pkid) {
                    self.p.counters.acknowledged.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let _ = done.send(Ok(()));
                }
            }
            Packet::Publish(p) => self.on_publish(p),
            Packet::SubAck(s) if self.pending_subs.contains_key(&s.pkid) => {
                let refused = s.return_codes.iter().any(|c| matches!(c, SubscribeReasonCode::Failure));
                self.on_suback(s.pkid, refused);
            }
            Packet::UnsubAck(u) => {
                if let Some((_, done)) = self.pending_unsubs.remove(&u.pkid) {
                    let _ = done.send(Ok(()));
                }
            }
            Packet::SubAck(s) if s.return_codes.iter().any(|c| matches!(c, SubscribeReasonCode::Failure)) => {
                tracing::error!("the hub refused a subscription: {:?}", s.return_codes);
            }
            _ => {}
        }
    }

    fn on_publish(&mut self, p: Publish) {
        if let Some(input) = topic::parse_input_topic(&p.topic) {
            let mut msg = Message::new(p.payload.clone());
            match property_bag::decode_pairs(input.bag) {
                Ok(pairs) => property_bag::apply_pairs(&mut msg, pairs),
                Err(e) => tracing::warn!("input message with a malformed property bag: {e}"),
            }
            msg.set_input_name(encoding::decode(input.input).or(Some(input.input.to_string())));
            self.p.counters.received.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let ack = (p.qos != QoS::AtMostOnce).then_some((p.pkid, self.epoch));
            let inbound = InputMessage::new(msg, ack, self.p.self_tx.clone());
            self.p.handlers.lock().unwrap().dispatch_input(inbound);
        } else if let Some((status, rid)) = topic::parse_twin_response(&p.topic) {
            if let Some(pending) = self.twins.remove(rid) {
                match pending.done {
                    Some(done) => {
                        let _ = done.send(Ok((status, p.payload)));
                    }
                    None => self.finish_resync(status, &p.payload),
                }
            }
        } else if let Some(version) = topic::parse_desired_patch_topic(&p.topic) {
            if self.desired_version.is_none_or(|v| version > v) {
                self.desired_version = Some(version);
                if let Ok(patch) = serde_json::from_slice::<Value>(&p.payload) {
                    self.p.handlers.lock().unwrap().dispatch_desired(patch);
                }
            }
        } else if let Some((name, rid)) = topic::parse_method_request(&p.topic) {
            let request =
                MethodRequest::new(name.to_string(), rid.to_string(), p.payload.clone(), self.p.self_tx.clone());
            self.p.handlers.lock().unwrap().dispatch_method(request);
        } else {
            self.on_user_message(p);
        }
    }

    /// After a reconnect: if desired moved while we were away, deliver the whole desired
    /// document as one patch so no change is lost.
    fn finish_resync(&mut self, status: u16, body: &[u8]) {
        if status != 200 {
            return tracing::warn!("twin resync GET answered {status}");
        }
        let Ok(doc) = serde_json::from_slice::<Value>(body) else { return };
        let desired = doc.get("desired").cloned().unwrap_or(Value::Null);
        let Some(version) = crate::wire::twin::version_of(&desired) else { return };
        match self.desired_version {
            Some(seen) if version > seen => {
                self.desired_version = Some(version);
                self.p.handlers.lock().unwrap().dispatch_desired(desired);
            }
            // Nothing seen yet. On the first connection this is the baseline; after a reconnect
            // the first resync never completed, so a change in between cannot be ruled out:
            // deliver the whole document rather than risk losing it.
            None if self.epoch > 1 => {
                self.desired_version = Some(version);
                self.p.handlers.lock().unwrap().dispatch_desired(desired);
            }
            None => self.desired_version = Some(version),
            _ => {}
        }
    }

    fn allocate_pkid(&mut self) -> u16 {
        loop {
            self.next_pkid = self.next_pkid.wrapping_add(1);
            let id = self.next_pkid;
            if id != 0
                && !self.inflight.contains_key(&id)
                && !self.pending_subs.contains_key(&id)
                && !self.pending_unsubs.contains_key(&id)
            {
                return id;
            }
        }
    }

    fn write(&mut self, p: Packet) {
        if let Err(e) = framing::encode(&p, &mut self.out) {
            tracing::error!("encoding a packet: {e}");
        }
    }

    async fn flush(&mut self, writer: &mut WriteHalf<Stream>) -> Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        let out = self.out.split();
        let write = async {
            writer.write_all(&out).await?;
            writer.flush().await
        };
        let result = match tokio::time::timeout(self.p.options.connect_timeout, write).await {
            Ok(r) => r.map_err(lost),
            Err(_) => Err(Error::new(ErrorKind::ConnectionLost, "the hub stopped reading")),
        };
        for done in self.written.drain(..) {
            let _ = done.send(match &result {
                Ok(()) => Ok(()),
                Err(e) => Err(Error::new(ErrorKind::ConnectionLost, e.to_string())),
            });
        }
        result
    }
}

impl ConnectionTask for Driver {
    type Connection = (Stream, u64, BytesMut);
    const OVER: &'static str = "";

    fn parts(&self) -> &DriverParts {
        &self.p
    }

    async fn open(&mut self) -> Result<Self::Connection> {
        let connection = self.connect().await?;
        self.epoch += 1;
        Ok(connection)
    }

    async fn serve(&mut self, (stream, token_expiry, leftover): Self::Connection) -> Ended {
        let ended = self.serve_stream(stream, token_expiry, leftover).await;
        self.connection_ended();
        ended
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
                    // Settlements belong to the lost connection.
                    Some(Command::Settle { .. } | Command::Release { .. }) => {}
                    Some(Command::SubscribeInputs) => self.inputs_wanted = true,
                    Some(Command::Subscribe { filter, qos, tx, done }) => {
                        self.unsent_subs.push(PendingSub { filter, qos, tx: Some(tx), done: Some(done) });
                    }
                    Some(Command::Unsubscribe { filter, done }) => {
                        self.user_subs.retain(|s| s.filter != filter);
                        self.unsent_subs.retain(|s| s.filter != filter);
                        self.unsent_unsubs.push(filter);
                        let _ = done.send(Ok(()));
                    }
                    Some(cmd) => {
                        if let Some(done) = self.accept(cmd) {
                            return Some(done);
                        }
                    }
                }
            }
        }
    }

    fn fail_all(&mut self, err: impl Fn() -> Error) {
        for (_, (_, done)) in self.inflight.drain() {
            let _ = done.send(Err(err()));
        }
        for (_, t) in self.twins.drain() {
            if let Some(done) = t.done {
                let _ = done.send(Err(err()));
            }
        }
        for done in self.written.drain(..) {
            let _ = done.send(Err(err()));
        }
        let subs: Vec<PendingSub> =
            self.pending_subs.drain().map(|(_, p)| p).chain(self.unsent_subs.drain(..)).collect();
        for done in subs.into_iter().filter_map(|p| p.done) {
            let _ = done.send(Err(err()));
        }
        for (_, (_, done)) in self.pending_unsubs.drain() {
            let _ = done.send(Err(err()));
        }
        self.user_subs.clear();
        self.p.commands.close();
        let leftover: Vec<Command> =
            self.queue.drain(..).chain(std::iter::from_fn(|| self.p.commands.try_recv().ok())).collect();
        for cmd in leftover {
            cmd.fail(err());
        }
    }
}

fn connack_error(code: ConnectReturnCode) -> Error {
    match code {
        ConnectReturnCode::NotAuthorized | ConnectReturnCode::BadUserNamePassword => {
            Error::new(ErrorKind::Unauthorized, format!("the hub refused our credentials ({code:?})"))
        }
        other => Error::new(ErrorKind::ConnectionRefused, format!("the hub refused the connection ({other:?})")),
    }
}

fn protocol(e: rumqttc::mqttbytes::Error) -> Error {
    Error::with_source(ErrorKind::Protocol, "MQTT framing", e)
}

fn lost(e: std::io::Error) -> Error {
    Error::with_source(ErrorKind::ConnectionLost, "connection I/O failed", e)
}
