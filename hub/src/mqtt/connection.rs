//! One module's MQTT connection: CONNECT and authentication, then a single task that reads
//! packets, answers them in order, pumps stored deliveries to the module's inputs, and obeys
//! commands from the rest of the hub. Owning everything in one task keeps ordering simple: the
//! PUBACK for a routed message goes out only after the commit that stored it, and in the order
//! the PUBLISHes came in.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use edgemodule_core::message::Message;
use edgemodule_core::validate::MAX_MESSAGE_BYTES;
use edgemodule_core::wire::{framing, property_bag, topic};
use futures_util::stream::{FuturesOrdered, StreamExt};
use rumqttc::mqttbytes::v4::{
    ConnAck, ConnectReturnCode, Packet, PubAck, Publish, SubAck, SubscribeReasonCode, UnsubAck,
};
use rumqttc::mqttbytes::QoS;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::mpsc;

use super::auth::{authenticate, Authenticated};
use super::permissions;
use crate::broker::{topics, Operation};
use crate::events::{ack_barrier, ingest, now_ms, Ingested};
use crate::hub::{ConnCommand, Hub, MethodOutcome};
use crate::store::SessionRecord;
use crate::writer::WriteRequest;

/// Room for a 256 KB message plus its topic and property bag.
const MAX_PACKET_BYTES: usize = MAX_MESSAGE_BYTES + 64 * 1024;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(60);
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
const MAX_KEEPALIVE: Duration = Duration::from_secs(600);
/// Unacknowledged user-topic deliveries a subscriber may hold before it is disconnected (it
/// leaves room in the 16-bit packet-id space for stored deliveries).
const MAX_USER_INFLIGHT: usize = 32_768;

type Reply = Pin<Box<dyn Future<Output = Vec<Packet>> + Send>>;

/// Why a connection ends; logged, never sent (MQTT 3.1.1 has no reason codes after CONNACK).
#[derive(Debug)]
struct Close(String);

/// Serves one accepted (already TLS-wrapped) stream until it closes.
pub async fn serve<S>(hub: Arc<Hub>, stream: S, peer: String)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut reader, mut writer) = tokio::io::split(stream);
    let mut rbuf = BytesMut::with_capacity(16 * 1024);
    let connect = match tokio::time::timeout(CONNECT_TIMEOUT, read_packet(&mut reader, &mut rbuf)).await {
        Ok(Ok(Packet::Connect(c))) => c,
        Ok(Ok(other)) => return tracing::debug!(peer, "first packet was not CONNECT: {other:?}"),
        Ok(Err(e)) => return tracing::debug!(peer, "before CONNECT: {e}"),
        Err(_) => return tracing::debug!(peer, "no CONNECT within {CONNECT_TIMEOUT:?}"),
    };
    let (username, password) =
        connect.login.as_ref().map(|l| (l.username.as_str(), l.password.as_str())).unwrap_or(("", ""));
    let auth = authenticate(&hub, &connect.client_id, username, password).and_then(|auth| {
        // With a broker policy, connecting needs an explicit `mqtt:connect` allow.
        match hub.broker.authorize(&auth.module, Operation::Connect, None) {
            d if d.is_allowed() => Ok(auth),
            d => Err(format!("mqtt:connect {d}")),
        }
    });
    let auth = match auth {
        Ok(a) => a,
        Err(why) => {
            tracing::warn!(peer, client_id = connect.client_id, "connection refused: {why}");
            let mut out = BytesMut::new();
            let _ = framing::encode(&Packet::ConnAck(ConnAck::new(ConnectReturnCode::NotAuthorized, false)), &mut out);
            let _ = tokio::time::timeout(WRITE_TIMEOUT, async {
                writer.write_all(&out).await?;
                writer.shutdown().await
            })
            .await;
            return;
        }
    };
    let keepalive = match connect.keep_alive {
        0 => MAX_KEEPALIVE,
        k => (Duration::from_secs(k as u64) * 3 / 2).min(MAX_KEEPALIVE),
    };
    let mut conn = Connection::new(hub, auth, connect.client_id.clone(), connect.clean_session, writer, rbuf);
    tracing::info!(peer, client_id = conn.client_id, "module connected");
    let result = conn.run(reader, keepalive).await;
    conn.finish();
    // A TLS close and FIN rather than a bare drop, so nothing we wrote is lost to a reset.
    let _ = tokio::time::timeout(Duration::from_secs(1), conn.writer.shutdown()).await;
    match result {
        Ok(()) => tracing::info!(client_id = conn.client_id, "module disconnected"),
        Err(Close(why)) => tracing::info!(client_id = conn.client_id, "connection closed: {why}"),
    }
}

async fn read_packet<R: AsyncRead + Unpin>(reader: &mut R, buf: &mut BytesMut) -> Result<Packet, String> {
    loop {
        if let Some(p) = framing::decode(buf, MAX_PACKET_BYTES).map_err(|e| e.to_string())? {
            return Ok(p);
        }
        if reader.read_buf(buf).await.map_err(|e| e.to_string())? == 0 {
            return Err("closed".into());
        }
    }
}

struct Connection<S> {
    hub: Arc<Hub>,
    device: String,
    module: String,
    client_id: String,
    clean_session: bool,
    valid_until: u64,
    writer: WriteHalf<S>,
    rbuf: BytesMut,
    out: BytesMut,
    subscriptions: Vec<(String, u8)>,
    inputs_subscribed: bool,
    desired_subscribed: bool,
    methods_subscribed: Arc<AtomicBool>,
    inflight: HashMap<u16, u64>,
    /// Packet ids of QoS 1 user-topic deliveries awaiting PUBACK.
    user_inflight: HashSet<u16>,
    last_sent: Option<u64>,
    next_pkid: u16,
    replies: FuturesOrdered<Reply>,
    acked: Vec<u64>,
    commands: mpsc::UnboundedReceiver<ConnCommand>,
    /// Our own command sender, handed to the broker for user-topic fan-out.
    command_tx: mpsc::UnboundedSender<ConnCommand>,
    conn_id: u64,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> Connection<S> {
    fn new(
        hub: Arc<Hub>,
        auth: Authenticated,
        client_id: String,
        clean_session: bool,
        writer: WriteHalf<S>,
        rbuf: BytesMut,
    ) -> Self {
        let (tx, commands) = mpsc::unbounded_channel();
        let methods_subscribed = Arc::new(AtomicBool::new(false));
        let conn_id = hub.register(&client_id, tx.clone(), methods_subscribed.clone());
        Connection {
            hub,
            device: auth.device,
            module: auth.module,
            client_id,
            clean_session,
            valid_until: auth.valid_until,
            writer,
            rbuf,
            out: BytesMut::with_capacity(16 * 1024),
            subscriptions: Vec::new(),
            inputs_subscribed: false,
            desired_subscribed: false,
            methods_subscribed,
            inflight: HashMap::new(),
            user_inflight: HashSet::new(),
            last_sent: None,
            next_pkid: 0,
            replies: FuturesOrdered::new(),
            acked: Vec::new(),
            commands,
            command_tx: tx,
            conn_id,
        }
    }

    async fn run(&mut self, mut reader: ReadHalf<S>, keepalive: Duration) -> Result<(), Close> {
        let session_present = self.restore_session();
        self.write(Packet::ConnAck(ConnAck::new(ConnectReturnCode::Success, session_present)));
        ack_barrier(&self.hub).await;
        self.flush().await?;
        // Packets sent right behind CONNECT may already be buffered; no later read would wake us for them.
        if self.handle_buffered()? {
            return Ok(());
        }
        self.flush_acks();
        self.pump()?;
        self.flush().await?;
        let waker = self.hub.waker(&self.module);
        let expiry = tokio::time::sleep(secs_until(self.valid_until));
        tokio::pin!(expiry);
        let idle = tokio::time::sleep(keepalive);
        tokio::pin!(idle);
        loop {
            tokio::select! {
                read = reader.read_buf(&mut self.rbuf) => {
                    match read {
                        Ok(0) => return Err(Close("peer closed the connection".into())),
                        Ok(_) => {}
                        Err(e) => return Err(Close(format!("read failed: {e}"))),
                    }
                    idle.as_mut().reset(tokio::time::Instant::now() + keepalive);
                    if self.handle_buffered()? {
                        return Ok(());
                    }
                    self.flush_acks();
                    self.pump()?;
                }
                Some(packets) = self.replies.next(), if !self.replies.is_empty() => {
                    for p in packets {
                        self.write(p);
                    }
                }
                Some(cmd) = self.commands.recv() => self.on_command(cmd)?,
                _ = waker.notified() => self.pump()?,
                _ = &mut idle => return Err(Close("keep-alive expired".into())),
                _ = &mut expiry => return Err(Close("SAS token expired".into())),
            }
            self.flush().await?;
        }
    }

    /// Handles every complete packet in the read buffer; true when the client said DISCONNECT.
    fn handle_buffered(&mut self) -> Result<bool, Close> {
        while let Some(packet) =
            framing::decode(&mut self.rbuf, MAX_PACKET_BYTES).map_err(|e| Close(format!("malformed packet: {e}")))?
        {
            match packet {
                Packet::Publish(p) => self.on_publish(p)?,
                Packet::PubAck(a) => {
                    if let Some(seq) = self.inflight.remove(&a.pkid) {
                        self.acked.push(seq);
                    } else {
                        self.user_inflight.remove(&a.pkid);
                    }
                }
                Packet::Subscribe(s) => self.on_subscribe(s)?,
                Packet::Unsubscribe(u) => {
                    self.subscriptions.retain(|(f, _)| !u.topics.contains(f));
                    self.refresh_flags();
                    self.sync_broker();
                    self.save_session();
                    self.reply_now(vec![Packet::UnsubAck(UnsubAck { pkid: u.pkid })]);
                }
                Packet::PingReq => self.reply_now(vec![Packet::PingResp]),
                Packet::Disconnect => return Ok(true),
                Packet::Connect(_) => return Err(Close("second CONNECT".into())),
                other => return Err(Close(format!("unsupported packet {other:?}"))),
            }
        }
        Ok(false)
    }

    fn on_publish(&mut self, p: Publish) -> Result<(), Close> {
        if p.qos == QoS::ExactlyOnce {
            return Err(Close("QoS 2 is not supported".into()));
        }
        let ack = (p.qos == QoS::AtLeastOnce).then_some(p.pkid);
        if let Some(events) = topic::parse_events_topic(&p.topic) {
            if events.device != self.device || events.module != Some(self.module.as_str()) {
                return Err(Close(format!("publish to another identity's topic '{}'", p.topic)));
            }
            let bag = events.bag.to_string();
            return self.on_event(&bag, p.payload, ack);
        }
        if let Some(req) = topic::parse_twin_request(&p.topic) {
            self.on_twin_request(req, &p.payload, ack);
            return Ok(());
        }
        if let Some((status, rid)) = topic::parse_method_response(&p.topic) {
            // edgeHub turns a non-integer status into 400000 (GenericBadRequest).
            let status = status.parse::<i64>().unwrap_or(400_000);
            let payload = (!p.payload.is_empty()).then(|| String::from_utf8_lossy(&p.payload).into_owned());
            if !self.hub.complete_method(rid, MethodOutcome { status, payload }) {
                tracing::debug!(client_id = self.client_id, rid, "method response for an unknown or expired request");
            }
            self.reply_now(ack.map(puback).into_iter().collect());
            return Ok(());
        }
        if let Some((device, module, bag)) = topics::parse_short_events_topic(&p.topic) {
            // The IoT Edge 1.2 broker docs' short telemetry topic, treated like the long one.
            if device != self.device || module != self.module {
                return Err(Close(format!("publish to another identity's topic '{}'", p.topic)));
            }
            let bag = bag.to_string();
            return self.on_event(&bag, p.payload, ack);
        }
        if topics::is_user_topic(&p.topic) {
            return self.on_user_publish(p, ack);
        }
        Err(Close(format!("publish to a topic this module may not use: '{}'", p.topic)))
    }

    /// A publish on a user topic: allowed by the policy or the connection is closed (MQTT 3.1.1
    /// has no negative PUBACK; edgeHub's broker disconnected too), never delivered when refused.
    fn on_user_publish(&mut self, p: Publish, ack: Option<u16>) -> Result<(), Close> {
        topics::topic_name_syntax(&p.topic).map_err(|e| Close(format!("invalid topic name: {}", e.message())))?;
        let decision = self.hub.broker.authorize(&self.module, Operation::Publish, Some(&p.topic));
        if !decision.is_allowed() {
            tracing::warn!(client_id = self.client_id, topic = p.topic, "publish refused: {decision}");
            return Err(Close(format!("mqtt:publish to '{}' {decision}", p.topic)));
        }
        if p.payload.len() > MAX_MESSAGE_BYTES {
            return Err(Close(format!("message of {} bytes exceeds {MAX_MESSAGE_BYTES}", p.payload.len())));
        }
        let qos = if p.qos == QoS::AtLeastOnce { 1 } else { 0 };
        self.hub
            .broker
            .publish(&p.topic, p.payload, qos, p.retain)
            .map_err(|e| Close(format!("storing a retained message: {e}")))?;
        self.reply_now(ack.map(puback).into_iter().collect());
        Ok(())
    }

    /// Whether a subscription to `filter` is allowed: IoT Hub filters by the module's own
    /// topics, user filters by the broker policy.
    fn may_subscribe(&self, filter: &str) -> bool {
        if !topics::is_user_topic(filter) {
            return permissions::may_subscribe(&self.device, &self.module, filter);
        }
        if topics::topic_filter_syntax(filter).is_err() {
            return false;
        }
        let decision = self.hub.broker.authorize(&self.module, Operation::Subscribe, Some(filter));
        if !decision.is_allowed() {
            tracing::warn!(client_id = self.client_id, filter, "mqtt:subscribe {decision}");
        }
        decision.is_allowed()
    }

    /// Tells the broker this connection's current user-topic subscriptions.
    fn sync_broker(&self) {
        let user: Vec<(String, u8)> =
            self.subscriptions.iter().filter(|(f, _)| topics::is_user_topic(f)).cloned().collect();
        self.hub.broker.set_subscriptions(&self.client_id, &self.module, self.conn_id, &self.command_tx, user);
    }

    /// A user-topic PUBLISH to this module, QoS 1 ones tracked until their PUBACK.
    fn user_publish(&mut self, topic: String, payload: bytes::Bytes, qos: u8, retain: bool) -> Result<Packet, Close> {
        let mut p = Publish::new(topic, if qos == 0 { QoS::AtMostOnce } else { QoS::AtLeastOnce }, Vec::new());
        p.payload = payload;
        p.retain = retain;
        if qos > 0 {
            if self.user_inflight.len() >= MAX_USER_INFLIGHT {
                return Err(Close(format!("{MAX_USER_INFLIGHT} user-topic messages left unacknowledged")));
            }
            p.pkid = self.allocate_pkid();
            self.user_inflight.insert(p.pkid);
        }
        Ok(Packet::Publish(p))
    }

    fn on_event(&mut self, bag: &str, body: bytes::Bytes, ack: Option<u16>) -> Result<(), Close> {
        let pairs = property_bag::decode_pairs(bag).map_err(|e| Close(format!("bad property bag: {e}")))?;
        let mut msg = Message::new(body);
        property_bag::apply_pairs(&mut msg, pairs);
        let committed = match ingest(&self.hub, &self.device, &self.module, msg).map_err(|e| Close(e.to_string()))? {
            Ingested::Unrouted => {
                self.reply_now(ack.map(puback).into_iter().collect());
                return Ok(());
            }
            Ingested::Pending(committed) => committed,
        };
        self.replies.push_back(Box::pin(async move {
            match (committed.await, ack) {
                (Ok(Ok(())), Some(pkid)) => vec![puback(pkid)],
                // Not stored: withhold the PUBACK so the sender keeps the message and retries.
                _ => Vec::new(),
            }
        }));
        Ok(())
    }

    fn on_twin_request(&mut self, req: topic::TwinRequest<'_>, body: &[u8], ack: Option<u16>) {
        let hub = self.hub.clone();
        let module = self.module.clone();
        let mut packets: Vec<Packet> = ack.map(puback).into_iter().collect();
        match req {
            topic::TwinRequest::Get { rid } => {
                let rid = rid.to_string();
                self.replies.push_back(Box::pin(async move {
                    let (status, body) = match hub.twin_document(&module).await {
                        Some(doc) => (200, serde_json::to_vec(&doc).unwrap_or_default()),
                        None => (404, Vec::new()),
                    };
                    packets.push(publish0(topic::twin_response_topic(status, &rid), body));
                    packets
                }));
            }
            topic::TwinRequest::PatchReported { rid } => {
                let rid = rid.to_string();
                let patch = serde_json::from_slice::<Value>(body).map_err(|e| e.to_string()).and_then(|v| {
                    edgemodule_core::wire::twin::validate_reported_patch(&v)?;
                    Ok(v)
                });
                self.replies.push_back(Box::pin(async move {
                    let status = match patch {
                        Ok(Value::Object(p)) => match hub.patch_reported(&module, &p).await {
                            Ok(_) => 204,
                            Err(e) => {
                                tracing::error!(module, "reported patch not stored: {e}");
                                500
                            }
                        },
                        _ => 400,
                    };
                    packets.push(publish0(topic::twin_response_topic(status, &rid), Vec::new()));
                    packets
                }));
            }
        }
    }

    fn on_subscribe(&mut self, s: rumqttc::mqttbytes::v4::Subscribe) -> Result<(), Close> {
        let mut codes = Vec::with_capacity(s.filters.len());
        let mut retained = Vec::new();
        for f in s.filters {
            if !self.may_subscribe(&f.path) {
                tracing::warn!(client_id = self.client_id, filter = f.path, "subscription refused");
                codes.push(SubscribeReasonCode::Failure);
                continue;
            }
            let granted = if f.qos == QoS::AtMostOnce { 0 } else { 1 };
            if topics::is_user_topic(&f.path) {
                retained.extend(
                    self.hub.broker.retained_for(&f.path).into_iter().map(|(t, q, body)| (t, q.min(granted), body)),
                );
            }
            self.subscriptions.retain(|(existing, _)| *existing != f.path);
            self.subscriptions.push((f.path, granted));
            codes.push(SubscribeReasonCode::Success(if granted == 0 { QoS::AtMostOnce } else { QoS::AtLeastOnce }));
        }
        self.refresh_flags();
        self.sync_broker();
        self.save_session();
        // Retained messages follow the SUBACK, with RETAIN set (MQTT 3.1.1 §3.3.1.3).
        let mut packets = vec![Packet::SubAck(SubAck::new(s.pkid, codes))];
        for (topic, qos, body) in retained {
            packets.push(self.user_publish(topic, body, qos, true)?);
        }
        self.reply_now(packets);
        Ok(())
    }

    fn refresh_flags(&mut self) {
        let (d, m) = (&self.device, &self.module);
        self.inputs_subscribed = self.subscriptions.iter().any(|(f, _)| permissions::is_inputs_filter(d, m, f));
        self.desired_subscribed = self.subscriptions.iter().any(|(f, _)| permissions::is_desired_filter(f));
        let methods = self.subscriptions.iter().any(|(f, _)| permissions::is_methods_filter(f));
        if methods != self.methods_subscribed.swap(methods, Ordering::AcqRel) {
            self.hub.connection_changed();
        }
    }

    fn on_command(&mut self, cmd: ConnCommand) -> Result<(), Close> {
        match cmd {
            ConnCommand::DesiredPatch { version, body } => {
                if self.desired_subscribed {
                    self.write(publish0(topic::desired_patch_topic(version), body));
                }
            }
            ConnCommand::MethodRequest { name, rid, payload } => {
                self.write(publish0(topic::method_request_topic(&name, &rid), payload));
            }
            ConnCommand::UserPublish { topic, payload, qos, retain } => {
                let p = self.user_publish(topic, payload, qos, retain)?;
                self.write(p);
            }
            ConnCommand::Close { reason } => return Err(Close(reason.into())),
        }
        Ok(())
    }

    /// Sends stored deliveries while the in-flight window has room.
    fn pump(&mut self) -> Result<(), Close> {
        if !self.inputs_subscribed {
            return Ok(());
        }
        while self.inflight.len() < self.hub.delivery_window {
            let room = self.hub.delivery_window - self.inflight.len();
            let batch = self
                .hub
                .store
                .pending(&self.module, self.last_sent, room, now_ms())
                .map_err(|e| Close(format!("reading the store: {e}")))?;
            tracing::debug!(client_id = self.client_id, after = ?self.last_sent, n = batch.len(), "pump");
            if batch.is_empty() {
                break;
            }
            for d in batch {
                let pkid = self.allocate_pkid();
                let mut p = Publish::new(
                    topic::input_topic(&self.device, &self.module, &d.input, &d.bag),
                    QoS::AtLeastOnce,
                    Vec::new(),
                );
                p.payload = d.body.into();
                p.pkid = pkid;
                self.write(Packet::Publish(p));
                self.inflight.insert(pkid, d.seq);
                self.last_sent = Some(d.seq);
            }
        }
        Ok(())
    }

    fn allocate_pkid(&mut self) -> u16 {
        loop {
            self.next_pkid = self.next_pkid.wrapping_add(1);
            let id = self.next_pkid;
            if id != 0 && !self.inflight.contains_key(&id) && !self.user_inflight.contains(&id) {
                return self.next_pkid;
            }
        }
    }

    fn flush_acks(&mut self) {
        if !self.acked.is_empty() {
            let seqs = std::mem::take(&mut self.acked);
            let _ = self.hub.writer().send(WriteRequest::Ack { module: self.module.clone(), seqs });
        }
    }

    fn reply_now(&mut self, packets: Vec<Packet>) {
        if self.replies.is_empty() {
            for p in packets {
                self.write(p);
            }
        } else {
            // Keep acknowledgements in the order the requests arrived.
            self.replies.push_back(Box::pin(std::future::ready(packets)));
        }
    }

    fn write(&mut self, packet: Packet) {
        if let Err(e) = framing::encode(&packet, &mut self.out) {
            tracing::error!(client_id = self.client_id, "encoding {packet:?}: {e}");
        }
    }

    async fn flush(&mut self) -> Result<(), Close> {
        if self.out.is_empty() {
            return Ok(());
        }
        let out = self.out.split();
        let write = async {
            self.writer.write_all(&out).await?;
            self.writer.flush().await
        };
        match tokio::time::timeout(WRITE_TIMEOUT, write).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Close(format!("write failed: {e}"))),
            Err(_) => Err(Close("peer stopped reading".into())),
        }
    }

    fn restore_session(&mut self) -> bool {
        if self.clean_session {
            let _ = self.hub.store.delete_session(&self.client_id);
            return false;
        }
        match self.hub.store.load_session(&self.client_id) {
            Ok(Some(s)) => {
                // The policy may have changed since the session was saved: keep only what is
                // still allowed.
                let (kept, dropped): (Vec<_>, Vec<_>) =
                    s.subscriptions.into_iter().partition(|(f, _)| self.may_subscribe(f));
                if !dropped.is_empty() {
                    tracing::warn!(client_id = self.client_id, ?dropped, "restored subscriptions no longer allowed");
                }
                self.subscriptions = kept;
                self.refresh_flags();
                self.sync_broker();
                true
            }
            _ => false,
        }
    }

    fn save_session(&self) {
        if self.clean_session {
            return;
        }
        let record = SessionRecord { subscriptions: self.subscriptions.clone() };
        if let Err(e) = self.hub.store.save_session(&self.client_id, &record) {
            tracing::error!(client_id = self.client_id, "saving session: {e}");
        }
    }

    fn finish(&mut self) {
        self.flush_acks();
        self.methods_subscribed.store(false, Ordering::Release);
        self.hub.broker.remove(&self.client_id, self.conn_id);
        self.hub.unregister(&self.client_id, self.conn_id);
    }
}

fn puback(pkid: u16) -> Packet {
    Packet::PubAck(PubAck::new(pkid))
}

fn publish0(topic: String, payload: Vec<u8>) -> Packet {
    Packet::Publish(Publish::new(topic, QoS::AtMostOnce, payload))
}

fn secs_until(unix: u64) -> Duration {
    Duration::from_secs(unix.saturating_sub(edgemodule_core::wire::sas::unix_now()))
}
