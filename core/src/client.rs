//! `ModuleClient`: the cheap, cloneable handle module code uses. Every operation validates its
//! input, hands a command to the driver task and waits for the hub's answer under a deadline.
//! Dropping a returned future cancels the operation (a send not yet on the wire is not sent).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use rumqttc::mqttbytes::QoS;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot, watch};

use crate::driver::{Command, Driver, DriverParts, TwinOp};
use crate::error::{Error, ErrorKind, Result};
use crate::identity::ModuleIdentity;
use crate::message::{Message, SystemProperty};
use crate::options::ClientOptions;
use crate::state::{ConnectionState, DisconnectReason};
use crate::validate;
use crate::wire::{property_bag, topic};

/// Operation counters, readable at any time through `ModuleClient::metrics`.
#[derive(Debug, Default)]
pub struct Counters {
    pub sent: AtomicU64,
    pub acknowledged: AtomicU64,
    pub received: AtomicU64,
    pub reconnects: AtomicU64,
    pub retries: AtomicU64,
    pub token_renewals: AtomicU64,
    pub queue_depth: AtomicU64,
}

/// A snapshot of the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Metrics {
    pub sent: u64,
    pub acknowledged: u64,
    pub received: u64,
    pub reconnects: u64,
    /// Connection attempts that failed and were retried.
    pub retries: u64,
    pub token_renewals: u64,
    /// Operations waiting for the connection or for room in the in-flight window.
    pub queue_depth: u64,
}

/// MQTT quality of service for user topics (QoS 2 is not supported by IoT Edge).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Qos {
    /// Fire and forget: `publish` resolves once the message is written to the connection.
    AtMostOnce = 0,
    /// Acknowledged: `publish` resolves on the hub's PUBACK; resent after a reconnect.
    #[default]
    AtLeastOnce = 1,
}

impl Qos {
    fn wire(self) -> QoS {
        match self {
            Qos::AtMostOnce => QoS::AtMostOnce,
            Qos::AtLeastOnce => QoS::AtLeastOnce,
        }
    }
}

/// A message received on a user topic (see [`ModuleClient::subscribe`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicMessage {
    /// The topic it was published on.
    pub topic: String,
    pub payload: Bytes,
    /// The QoS it was delivered with (the lower of the publish's and the subscription's).
    pub qos: Qos,
    /// Set when the message is a retained one sent because the subscription was made.
    pub retain: bool,
}

/// A message that arrived on an input. Settle it once: `complete` acknowledges it, `abandon`
/// gives it back for another delivery, `reject` refuses it so it is not delivered again. A
/// message dropped unsettled counts as abandoned. What each does on the wire depends on the
/// transport (see [`Settlement`]).
#[derive(Debug)]
pub struct InputMessage {
    message: Message,
    ack: Option<(u16, u64)>,
    driver: mpsc::UnboundedSender<Command>,
    settled: AtomicBool,
}

/// How an input message is settled, and what each transport makes of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settlement {
    /// Processed: MQTT PUBACK, AMQP `accepted`. The hub deletes it.
    Complete,
    /// Not processed, try again: AMQP `released`, sent after a pause of 100 ms that doubles with
    /// every abandon in a row up to 5 s (the hub delivers a released message again at once; the
    /// pause keeps a handler that keeps failing from spinning through it). MQTT has no negative
    /// acknowledgement, so nothing is sent and the hub delivers it again after the next
    /// reconnect.
    Abandon,
    /// Will never be processed: AMQP `rejected` (the hub drops it). MQTT cannot say so; the
    /// message is acknowledged (PUBACK) so that it is not delivered again either.
    Reject,
}

impl InputMessage {
    pub(crate) fn new(message: Message, ack: Option<(u16, u64)>, driver: mpsc::UnboundedSender<Command>) -> Self {
        InputMessage { message, ack, driver, settled: AtomicBool::new(false) }
    }

    pub fn message(&self) -> &Message {
        &self.message
    }
    pub fn into_message(self) -> Message {
        self.message.clone()
    }
    pub fn input_name(&self) -> Option<&str> {
        self.message.input_name()
    }

    /// Acknowledges the message. Settling twice is an INVALID_STATE error.
    pub fn complete(&self) -> Result<()> {
        self.settle(Settlement::Complete)
    }

    /// Gives the message back for another delivery (see [`Settlement::Abandon`]).
    pub fn abandon(&self) -> Result<()> {
        self.settle(Settlement::Abandon)
    }

    /// Refuses the message for good (see [`Settlement::Reject`]).
    pub fn reject(&self) -> Result<()> {
        self.settle(Settlement::Reject)
    }

    /// Settles the message as `how`; only the first settlement counts.
    pub fn settle(&self, how: Settlement) -> Result<()> {
        if self.settled.swap(true, Ordering::AcqRel) {
            return Err(Error::new(ErrorKind::InvalidState, "message was already completed, abandoned or rejected"));
        }
        if let Some((pkid, epoch)) = self.ack {
            self.driver.send(Command::Settle { pkid, epoch, how }).map_err(|_| closed())?;
        }
        Ok(())
    }
}

/// A direct-method call to this module. Answer it with `respond`, now or later, from any task.
#[derive(Debug)]
pub struct MethodRequest {
    name: String,
    rid: String,
    payload: Bytes,
    driver: mpsc::UnboundedSender<Command>,
    answered: AtomicBool,
}

impl MethodRequest {
    pub(crate) fn new(name: String, rid: String, payload: Bytes, driver: mpsc::UnboundedSender<Command>) -> Self {
        MethodRequest { name, rid, payload, driver, answered: AtomicBool::new(false) }
    }
    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn request_id(&self) -> &str {
        &self.rid
    }
    /// The raw JSON payload bytes (may be empty).
    pub fn payload(&self) -> &Bytes {
        &self.payload
    }
    /// The payload parsed as JSON (`null` when empty).
    pub fn payload_json(&self) -> Result<Value> {
        validate::method_payload(&self.payload)
    }

    /// Sends the response: a status chosen by the module and a JSON payload (`None` = `null`).
    pub async fn respond(&self, status: i64, payload: Option<&Value>) -> Result<()> {
        let body = serde_json::to_vec(payload.unwrap_or(&Value::Null)).expect("JSON value serialises");
        self.respond_raw(status, body.into()).await
    }

    /// Sends a response whose payload is already JSON text.
    pub async fn respond_raw(&self, status: i64, payload: Bytes) -> Result<()> {
        validate::method_payload(&payload)?;
        if self.answered.swap(true, Ordering::AcqRel) {
            return Err(Error::new(
                ErrorKind::InvalidState,
                format!("method request {} was already answered", self.rid),
            ));
        }
        let (done, wait) = oneshot::channel();
        self.driver
            .send(Command::MethodResponse { rid: self.rid.clone(), status, payload, done })
            .map_err(|_| closed())?;
        wait.await.map_err(|_| closed())?
    }
}

/// Where inbound messages, method calls and desired patches go. The driver dispatches; the
/// client registers receivers.
pub(crate) struct Handlers {
    inputs: HashMap<String, mpsc::UnboundedSender<InputMessage>>,
    default_input: mpsc::UnboundedSender<InputMessage>,
    methods: HashMap<String, mpsc::UnboundedSender<MethodRequest>>,
    default_method: Option<mpsc::UnboundedSender<MethodRequest>>,
    desired: Option<mpsc::UnboundedSender<Value>>,
    /// Messages that arrived before anyone asked for their input (the hub delivers a persisted
    /// session's inputs right after CONNACK, before module code registers its receivers).
    parked: Vec<InputMessage>,
    default_claimed: bool,
    closed: bool,
}

impl Handlers {
    pub(crate) fn dispatch_input(&mut self, msg: InputMessage) {
        let name = msg.input_name().unwrap_or("").to_string();
        if !self.default_claimed && !self.inputs.contains_key(&name) {
            self.parked.push(msg);
            return;
        }
        let msg = match self.inputs.get(&name) {
            Some(tx) => match tx.send(msg) {
                Ok(()) => return,
                Err(mpsc::error::SendError(m)) => {
                    self.inputs.remove(&name);
                    m
                }
            },
            None => msg,
        };
        let _ = self.default_input.send(msg);
    }

    fn register_input(&mut self, input: &str, tx: mpsc::UnboundedSender<InputMessage>) {
        self.inputs.insert(input.to_string(), tx);
        let (mine, rest): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.parked).into_iter().partition(|m| m.input_name() == Some(input));
        self.parked = rest;
        for m in mine {
            self.dispatch_input(m);
        }
    }

    fn claim_default(&mut self) {
        if !self.default_claimed {
            self.default_claimed = true;
            for m in std::mem::take(&mut self.parked) {
                self.dispatch_input(m);
            }
        }
    }

    pub(crate) fn dispatch_method(&mut self, req: MethodRequest) {
        let req = match self.methods.get(req.name()) {
            Some(tx) => match tx.send(req) {
                Ok(()) => return,
                Err(mpsc::error::SendError(r)) => r,
            },
            None => req,
        };
        let req = match &self.default_method {
            Some(tx) => match tx.send(req) {
                Ok(()) => return,
                Err(mpsc::error::SendError(r)) => r,
            },
            None => req,
        };
        // No handler: answer at once rather than let the caller wait for its timeout.
        let body = serde_json::json!({ "message": format!("no handler for method '{}'", req.name()) });
        let _ = req.driver.send(Command::MethodResponse {
            rid: req.rid.clone(),
            status: 501,
            payload: body.to_string().into(),
            done: oneshot::channel().0,
        });
    }

    pub(crate) fn dispatch_desired(&mut self, patch: Value) {
        if let Some(tx) = &self.desired {
            let _ = tx.send(patch);
        }
    }

    pub(crate) fn close(&mut self) {
        self.closed = true;
        self.inputs.clear();
        self.methods.clear();
        self.default_method = None;
        self.desired = None;
        self.parked.clear();
        let (tx, _) = mpsc::unbounded_channel();
        self.default_input = tx;
    }
}

/// The twin as a module sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Twin {
    pub desired: Value,
    pub reported: Value,
}

impl Twin {
    pub fn desired_version(&self) -> Option<i64> {
        crate::wire::twin::version_of(&self.desired)
    }
    pub fn reported_version(&self) -> Option<i64> {
        crate::wire::twin::version_of(&self.reported)
    }
}

struct Shared {
    driver: mpsc::UnboundedSender<Command>,
    identity: ModuleIdentity,
    options: ClientOptions,
    handlers: Arc<Mutex<Handlers>>,
    default_input: tokio::sync::Mutex<mpsc::UnboundedReceiver<InputMessage>>,
    state: watch::Receiver<ConnectionState>,
    counters: Arc<Counters>,
    invoker: crate::invoke::Invoker,
    inputs_requested: AtomicBool,
}

/// A module's connection to its edge hub. Clone it freely; all clones share one connection.
#[derive(Clone)]
pub struct ModuleClient {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for ModuleClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModuleClient")
            .field("device", &self.shared.identity.device_id)
            .field("module", &self.shared.identity.module_id)
            .finish()
    }
}

fn closed() -> Error {
    Error::new(ErrorKind::Closed, "the client is closed")
}

impl ModuleClient {
    /// Creates a client from the IoT Edge environment of this process (IOTEDGE_* variables and
    /// the workload API, or EdgeHubConnectionString + EdgeModuleCACertificateFile) and connects.
    pub async fn from_environment(options: ClientOptions) -> Result<ModuleClient> {
        let lookup = |k: &str| std::env::var(k).ok();
        Self::from_environment_with(&lookup, options).await
    }

    /// Like `from_environment`, reading variables through `lookup`.
    pub async fn from_environment_with(
        lookup: &(dyn Fn(&str) -> Option<String> + Sync),
        options: ClientOptions,
    ) -> Result<ModuleClient> {
        options.validate()?;
        let identity = ModuleIdentity::from_environment(lookup).await?;
        Self::connect(identity, options).await
    }

    /// Creates a client from a module connection string and the PEM of the CA that issued the
    /// hub's certificate, and connects.
    pub async fn from_connection_string(
        cs: &str,
        ca_pem: Option<&str>,
        options: ClientOptions,
    ) -> Result<ModuleClient> {
        options.validate()?;
        let identity = ModuleIdentity::from_connection_string(cs, ca_pem.map(str::to_string))?;
        Self::connect(identity, options).await
    }

    /// Connects with an explicit identity. Returns once the first connection is up, or with the
    /// error that stopped it (bad credentials, hub unreachable, TLS) within `connect_timeout`.
    pub async fn connect(identity: ModuleIdentity, options: ClientOptions) -> Result<ModuleClient> {
        options.validate()?;
        let mut trusted = vec![identity.trust_pem.as_str()];
        if let Some(extra) = &options.extra_ca_pem {
            trusted.push(extra);
        }
        let tls = crate::tls::client_config(&trusted)?;
        let (driver_tx, commands) = mpsc::unbounded_channel();
        let (default_tx, default_rx) = mpsc::unbounded_channel();
        let handlers = Arc::new(Mutex::new(Handlers {
            inputs: HashMap::new(),
            default_input: default_tx,
            methods: HashMap::new(),
            default_method: None,
            desired: None,
            parked: Vec::new(),
            default_claimed: false,
            closed: false,
        }));
        let (state_tx, state) = watch::channel(ConnectionState::disconnected(DisconnectReason::Ok));
        let counters = Arc::new(Counters::default());
        let invoker = crate::invoke::Invoker::new(&identity, &options, tls.clone());
        let parts = DriverParts {
            identity: identity.clone(),
            options: options.clone(),
            tls,
            commands,
            self_tx: driver_tx.clone(),
            handlers: handlers.clone(),
            state: state_tx,
            counters: counters.clone(),
        };
        let (first_tx, first_rx) = oneshot::channel();
        match options.transport {
            crate::options::Transport::Amqp | crate::options::Transport::AmqpWebSocket => {
                tokio::spawn(crate::amqp::driver::run(parts, first_tx))
            }
            _ => tokio::spawn(crate::connection_task::supervise(Driver::new(parts), first_tx)),
        };
        first_rx.await.map_err(|_| Error::new(ErrorKind::Internal, "the connection task ended unexpectedly"))??;
        Ok(ModuleClient {
            shared: Arc::new(Shared {
                driver: driver_tx,
                identity,
                options,
                handlers,
                default_input: tokio::sync::Mutex::new(default_rx),
                state,
                counters,
                invoker,
                inputs_requested: AtomicBool::new(false),
            }),
        })
    }

    pub fn device_id(&self) -> &str {
        &self.shared.identity.device_id
    }
    pub fn module_id(&self) -> &str {
        &self.shared.identity.module_id
    }
    pub fn options(&self) -> &ClientOptions {
        &self.shared.options
    }

    fn deadline(&self, timeout: Option<Duration>) -> Duration {
        timeout.unwrap_or(self.shared.options.default_timeout)
    }

    fn command(&self, cmd: Command) -> Result<()> {
        self.shared.driver.send(cmd).map_err(|_| closed())
    }

    /// Hands the driver the command `make` builds around the answer's sender, and waits for the
    /// answer within the call's deadline: CLOSED if the driver drops the sender, TIMEOUT naming
    /// `what` if the deadline passes first.
    async fn request<T>(
        &self,
        what: &str,
        timeout: Option<Duration>,
        make: impl FnOnce(oneshot::Sender<Result<T>>) -> Command,
    ) -> Result<T> {
        let (done, wait) = oneshot::channel();
        self.command(make(done))?;
        let deadline = self.deadline(timeout);
        match tokio::time::timeout(deadline, wait).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(closed()),
            Err(_) => Err(Error::timeout(what, deadline)),
        }
    }

    /// Sends `msg` on output `output`; resolves when the hub has stored it (PUBACK).
    pub async fn send_to_output(&self, output: &str, msg: Message) -> Result<()> {
        self.send_to_output_with_timeout(output, msg, None).await
    }

    pub async fn send_to_output_with_timeout(
        &self,
        output: &str,
        msg: Message,
        timeout: Option<Duration>,
    ) -> Result<()> {
        let (topic, payload) = self.output_publish(output, msg)?;
        self.request("send_to_output", timeout, |done| Command::Publish {
            topic,
            payload,
            qos: QoS::AtLeastOnce,
            retain: false,
            done,
        })
        .await
    }

    /// Sends several messages pipelined; resolves when all are acknowledged, or with the first error.
    pub async fn send_batch_to_output(
        &self,
        output: &str,
        msgs: Vec<Message>,
        timeout: Option<Duration>,
    ) -> Result<()> {
        let publishes = msgs.into_iter().map(|m| self.output_publish(output, m)).collect::<Result<Vec<_>>>()?;
        let mut waits = Vec::with_capacity(publishes.len());
        for (topic, payload) in publishes {
            let (done, wait) = oneshot::channel();
            self.command(Command::Publish { topic, payload, qos: QoS::AtLeastOnce, retain: false, done })?;
            waits.push(wait);
        }
        let deadline = self.deadline(timeout);
        let all = async {
            for w in waits {
                w.await.map_err(|_| closed())??;
            }
            Ok(())
        };
        tokio::time::timeout(deadline, all).await.map_err(|_| Error::timeout("send_batch_to_output", deadline))?
    }

    fn output_publish(&self, output: &str, mut msg: Message) -> Result<(String, Bytes)> {
        validate::endpoint_name("output", output)?;
        msg.set_system(SystemProperty::OutputName, Some(output.to_string()));
        validate::outgoing_message(&msg)?;
        let id = &self.shared.identity;
        let topic = topic::events_topic(&id.device_id, &id.module_id, &property_bag::encode_outbound(&msg));
        Ok((topic, msg.body().clone()))
    }

    /// Asks the driver for the inputs subscription once; later calls cost nothing.
    fn ensure_inputs(&self) -> Result<()> {
        if self.shared.inputs_requested.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        self.command(Command::SubscribeInputs)
    }

    /// The next message on any input without its own receiver. `None` timeout waits forever.
    pub async fn recv(&self, timeout: Option<Duration>) -> Result<InputMessage> {
        self.register(Handlers::claim_default)?;
        self.ensure_inputs()?;
        let mut rx = self.shared.default_input.lock().await;
        let next = rx.recv();
        let msg = match timeout {
            Some(t) => tokio::time::timeout(t, next).await.map_err(|_| Error::timeout("recv", t))?,
            None => next.await,
        };
        msg.ok_or_else(closed)
    }

    /// A receiver for one input's messages (they no longer reach `recv`). Registering the same
    /// input again replaces the earlier receiver.
    pub fn input_receiver(&self, input: &str) -> Result<mpsc::UnboundedReceiver<InputMessage>> {
        validate::endpoint_name("input", input)?;
        let (tx, rx) = mpsc::unbounded_channel();
        self.register(|h| h.register_input(input, tx))?;
        self.ensure_inputs()?;
        Ok(rx)
    }

    /// A receiver for calls of method `name`, or of every method without its own receiver (`None`).
    pub fn method_receiver(&self, name: Option<&str>) -> Result<mpsc::UnboundedReceiver<MethodRequest>> {
        if let Some(n) = name {
            validate::method_name(n)?;
        }
        let (tx, rx) = mpsc::unbounded_channel();
        self.register(|h| match name {
            Some(n) => {
                h.methods.insert(n.to_string(), tx);
            }
            None => h.default_method = Some(tx),
        })?;
        Ok(rx)
    }

    /// A receiver of desired-property patches (each with `$version`). After a reconnect during
    /// which desired changed, the whole desired document arrives as one patch.
    pub fn desired_receiver(&self) -> Result<mpsc::UnboundedReceiver<Value>> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.register(|h| h.desired = Some(tx))?;
        Ok(rx)
    }

    fn register(&self, f: impl FnOnce(&mut Handlers)) -> Result<()> {
        let mut h = self.shared.handlers.lock().unwrap();
        if h.closed {
            return Err(closed());
        }
        f(&mut h);
        Ok(())
    }

    async fn twin_request(&self, request: TwinOp, timeout: Option<Duration>, what: &str) -> Result<(u16, Bytes)> {
        self.request(what, timeout, |done| Command::Twin { request, done }).await
    }

    /// Reads the module twin.
    pub async fn get_twin(&self, timeout: Option<Duration>) -> Result<Twin> {
        let (status, body) = self.twin_request(TwinOp::Get, timeout, "get_twin").await?;
        check_twin_status(status, "get_twin")?;
        let doc: Value = serde_json::from_slice(&body)
            .map_err(|e| Error::with_source(ErrorKind::Protocol, "the hub's twin document is not JSON", e))?;
        Ok(Twin {
            desired: doc.get("desired").cloned().unwrap_or(Value::Null),
            reported: doc.get("reported").cloned().unwrap_or(Value::Null),
        })
    }

    /// Sends a reported-properties patch (a JSON object; `null` members delete).
    pub async fn update_reported(&self, patch: &Value, timeout: Option<Duration>) -> Result<()> {
        crate::wire::twin::validate_reported_patch(patch).map_err(Error::invalid)?;
        let body = serde_json::to_vec(patch).expect("JSON value serialises");
        if body.len() > 32 * 1024 {
            return Err(Error::new(ErrorKind::MessageTooLarge, "reported patch exceeds 32 KB"));
        }
        let (status, _) = self.twin_request(TwinOp::PatchReported(body.into()), timeout, "update_reported").await?;
        check_twin_status(status, "update_reported")
    }

    /// Calls a direct method on another module (or device) through the hub's HTTPS endpoint.
    pub async fn invoke_method(
        &self,
        device: &str,
        module: Option<&str>,
        request: &crate::invoke::MethodInvocation,
    ) -> Result<crate::invoke::MethodResult> {
        if !self.shared.identity.can_invoke_methods {
            return Err(Error::new(
                ErrorKind::Unsupported,
                "invoke_method needs a gateway: create the client from the edge environment or a connection string with GatewayHostName",
            ));
        }
        self.shared.invoker.invoke(&self.shared.identity, device, module, request).await
    }

    // ---- user topics (the MQTT broker, docs/broker.md) ----

    /// Publishes `payload` on user topic `topic` (no wildcards, not a `devices/…` or `$iothub/…`
    /// topic). QoS 1 resolves on the hub's PUBACK, QoS 0 once written. With `retain` the hub
    /// keeps the message for later subscribers (an empty payload clears it).
    ///
    /// The hub's authorization policy must allow `mqtt:publish` on the topic; if it does not, the
    /// hub closes the connection (MQTT 3.1.1 has no negative PUBACK) and the message is not
    /// delivered. The client reconnects; a QoS 1 publish refused twice fails with CONNECTION_LOST.
    pub async fn publish(&self, topic: &str, payload: impl Into<Bytes>, qos: Qos, retain: bool) -> Result<()> {
        self.publish_with_timeout(topic, payload, qos, retain, None).await
    }

    pub async fn publish_with_timeout(
        &self,
        topic: &str,
        payload: impl Into<Bytes>,
        qos: Qos,
        retain: bool,
        timeout: Option<Duration>,
    ) -> Result<()> {
        validate::user_topic(topic)?;
        let payload = payload.into();
        if payload.len() > validate::MAX_MESSAGE_BYTES {
            return Err(Error::new(
                ErrorKind::MessageTooLarge,
                format!("payload is {} bytes; the limit is {}", payload.len(), validate::MAX_MESSAGE_BYTES),
            ));
        }
        let topic = topic.to_string();
        self.request("publish", timeout, |done| Command::Publish { topic, payload, qos: qos.wire(), retain, done })
            .await
    }

    /// Subscribes to user-topic filter `filter` (MQTT wildcards allowed) at QoS 1 and returns the
    /// receiver of its messages, once the hub granted it (SUBACK). A refusal by the hub's policy
    /// is a REJECTED error. The subscription is restored after every reconnect; subscribing to
    /// the same filter again replaces the earlier receiver.
    pub async fn subscribe(&self, filter: &str) -> Result<mpsc::UnboundedReceiver<TopicMessage>> {
        self.subscribe_with(filter, Qos::AtLeastOnce, None).await
    }

    pub async fn subscribe_with(
        &self,
        filter: &str,
        qos: Qos,
        timeout: Option<Duration>,
    ) -> Result<mpsc::UnboundedReceiver<TopicMessage>> {
        validate::user_topic_filter(filter)?;
        let (tx, rx) = mpsc::unbounded_channel();
        let filter = filter.to_string();
        self.request("subscribe", timeout, |done| Command::Subscribe { filter, qos: qos.wire(), tx, done }).await?;
        Ok(rx)
    }

    /// Ends the subscription to `filter`; its receiver sees no further messages. Resolves on the
    /// hub's UNSUBACK (at once while disconnected: the UNSUBSCRIBE goes out on reconnect).
    pub async fn unsubscribe(&self, filter: &str) -> Result<()> {
        self.unsubscribe_with_timeout(filter, None).await
    }

    pub async fn unsubscribe_with_timeout(&self, filter: &str, timeout: Option<Duration>) -> Result<()> {
        validate::user_topic_filter(filter)?;
        let filter = filter.to_string();
        self.request("unsubscribe", timeout, |done| Command::Unsubscribe { filter, done }).await
    }

    /// The connection state; `changed().await` on the receiver waits for the next change.
    pub fn connection_state(&self) -> watch::Receiver<ConnectionState> {
        self.shared.state.clone()
    }

    pub fn metrics(&self) -> Metrics {
        let c = &self.shared.counters;
        Metrics {
            sent: c.sent.load(Ordering::Relaxed),
            acknowledged: c.acknowledged.load(Ordering::Relaxed),
            received: c.received.load(Ordering::Relaxed),
            reconnects: c.reconnects.load(Ordering::Relaxed),
            retries: c.retries.load(Ordering::Relaxed),
            token_renewals: c.token_renewals.load(Ordering::Relaxed),
            queue_depth: c.queue_depth.load(Ordering::Relaxed),
        }
    }

    /// Disconnects; waiting operations fail with CLOSED. Closing twice is harmless.
    pub async fn close(&self) -> Result<()> {
        let (done, wait) = oneshot::channel();
        if self.shared.driver.send(Command::Close { done }).is_err() {
            return Ok(());
        }
        let _ = tokio::time::timeout(self.shared.options.connect_timeout, wait).await;
        Ok(())
    }
}

fn check_twin_status(status: u16, what: &str) -> Result<()> {
    match status {
        200..=299 => Ok(()),
        429 => Err(Error::new(ErrorKind::Throttled, format!("{what}: the hub is throttling (429)"))),
        400 => Err(Error::new(ErrorKind::InvalidArgument, format!("{what}: the hub rejected the request (400)"))),
        s => Err(Error::new(ErrorKind::Rejected, format!("{what}: the hub answered {s}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send<T: Send>(_: &T) {}

    /// Bindings run these futures on multi-thread runtimes; they must stay `Send`.
    #[test]
    fn public_futures_are_send() {
        let lookup = |_: &str| None;
        let from_env = ModuleClient::from_environment_with(&lookup, ClientOptions::default());
        assert_send(&from_env);
        assert_send(&ModuleClient::from_environment(ClientOptions::default()));
        assert_send(&ModuleClient::from_connection_string("", None, ClientOptions::default()));
    }

    /// Compile-time check (never called): the user-topic futures are `Send` too.
    #[allow(dead_code)]
    fn user_topic_futures_are_send(c: &ModuleClient) {
        assert_send(&c.publish("t", "x", Qos::AtLeastOnce, false));
        assert_send(&c.subscribe("t/#"));
        assert_send(&c.unsubscribe("t/#"));
    }
}
