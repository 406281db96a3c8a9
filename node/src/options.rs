//! Plain-object options and results, converted to and from the core types. Range checks are the
//! core's (`ClientOptions::validate`); this file only turns JavaScript numbers into durations and
//! integers.

use std::time::Duration;

use edgemodule_core::{ClientOptions as CoreOptions, Error as CoreError, ErrorKind, RetryPolicy, Transport};
use napi_derive::napi;
use serde_json::Value;

/// Options for `ModuleClient.fromEnvironment` and `ModuleClient.fromConnectionString`. Every
/// field is optional; the core's defaults apply.
#[napi(object)]
#[derive(Default)]
pub struct ClientOptions {
    /// PEM text of the CA to trust: the CA that issued the hub's certificate for
    /// `fromConnectionString`, an additional CA for `fromEnvironment`.
    pub ca: Option<String>,
    /// MQTT keep-alive in seconds (1-1177, default 60).
    pub keepalive: Option<f64>,
    /// Lifetime of each SAS token in seconds (default 3600).
    pub sas_ttl: Option<f64>,
    /// Renew the SAS token this many seconds before it expires (default 300, less than `sasTtl`).
    pub sas_renewal_margin: Option<f64>,
    /// Deadline in milliseconds for operations (send, twin) (default 30000).
    pub timeout_ms: Option<f64>,
    /// Deadline in milliseconds for one connection attempt (default 10000).
    pub connect_timeout_ms: Option<f64>,
    /// The hub's MQTT port (default 8883, or EDGEMODULE_MQTT_PORT from the environment).
    pub mqtt_port: Option<f64>,
    /// The hub's HTTPS port, for `invokeMethod` and the WebSocket transport (default 443, or
    /// EDGEMODULE_HTTPS_PORT).
    pub https_port: Option<f64>,
    /// The hub's AMQPS port, for the `'amqp'` transport (default 5671, or EDGEMODULE_AMQP_PORT).
    pub amqp_port: Option<f64>,
    /// The transport, by the core's name (case-insensitive): `'mqtt'` (MQTT over TLS, the
    /// default), `'mqtt_ws'` (MQTT over WebSocket over TLS on the HTTPS port, for networks that
    /// only let 443 out), `'amqp'` (AMQP 1.0 over TLS on the AMQPS port; no user topics) or
    /// `'amqp_ws'` (AMQP over WebSocket over TLS on the HTTPS port). More may come, hence
    /// `string`; an unknown name rejects with
    /// INVALID_ARGUMENT listing the accepted ones.
    pub transport: Option<String>,
    /// An HTTP CONNECT proxy for the WebSocket transport and module-to-module method calls,
    /// `http://[user:password@]host[:port]` (malformed, or set with `'mqtt'`: CONFIGURATION).
    pub proxy: Option<String>,
    /// Sends awaiting acknowledgement at once (default 256).
    pub max_in_flight: Option<f64>,
    /// Operations that may wait while disconnected before failing with QUEUE_FULL (default 10000).
    pub queue_bound: Option<f64>,
    /// Appended to the user agent.
    pub product_info: Option<String>,
    /// IoT Plug and Play model id (`dtmi:...`).
    pub model_id: Option<String>,
    /// The reconnect policy.
    pub retry: Option<RetryOptions>,
}

/// Reconnect policy: exponential backoff with full jitter, or no reconnection at all.
#[napi(object)]
#[derive(Default)]
pub struct RetryOptions {
    /// `false`: the first connection loss closes the client (default true).
    pub enabled: Option<bool>,
    /// First backoff delay in milliseconds (default 100).
    pub initial_delay_ms: Option<f64>,
    /// Largest backoff delay in milliseconds (default 30000).
    pub max_delay_ms: Option<f64>,
    /// Give up (and close the client) after being disconnected this long, in milliseconds.
    pub give_up_after_ms: Option<f64>,
}

fn invalid(message: String) -> CoreError {
    CoreError::new(ErrorKind::InvalidArgument, message)
}

pub(crate) fn duration(name: &str, value: f64, unit: f64) -> Result<Duration, CoreError> {
    Duration::try_from_secs_f64(value / unit)
        .map_err(|_| invalid(format!("options.{name} must be a non-negative finite number")))
}

fn integer(name: &str, value: f64, max: f64) -> Result<u64, CoreError> {
    if value.is_finite() && value >= 0.0 && value.fract() == 0.0 && value <= max {
        Ok(value as u64)
    } else {
        Err(invalid(format!("options.{name} must be an integer from 0 to {max}")))
    }
}

impl ClientOptions {
    /// The core options (not yet validated: the core does that when connecting).
    pub fn to_core(&self) -> Result<CoreOptions, CoreError> {
        let mut o = CoreOptions::default();
        if let Some(v) = self.keepalive {
            o.keep_alive = duration("keepalive", v, 1.0)?;
        }
        if let Some(v) = self.sas_ttl {
            o.sas_ttl = duration("sasTtl", v, 1.0)?;
        }
        if let Some(v) = self.sas_renewal_margin {
            o.sas_renewal_margin = duration("sasRenewalMargin", v, 1.0)?;
        }
        if let Some(v) = self.timeout_ms {
            o.default_timeout = duration("timeoutMs", v, 1000.0)?;
        }
        if let Some(v) = self.connect_timeout_ms {
            o.connect_timeout = duration("connectTimeoutMs", v, 1000.0)?;
        }
        if let Some(v) = self.mqtt_port {
            o.mqtt_port = Some(integer("mqttPort", v, 65535.0)? as u16);
        }
        if let Some(v) = self.https_port {
            o.https_port = Some(integer("httpsPort", v, 65535.0)? as u16);
        }
        if let Some(v) = self.amqp_port {
            o.amqp_port = Some(integer("amqpPort", v, 65535.0)? as u16);
        }
        if let Some(v) = &self.transport {
            o.transport = v.parse::<Transport>()?;
        }
        o.proxy = self.proxy.clone();
        if let Some(v) = self.max_in_flight {
            o.max_in_flight = integer("maxInFlight", v, u32::MAX as f64)? as usize;
        }
        if let Some(v) = self.queue_bound {
            o.queue_bound = integer("queueBound", v, u32::MAX as f64)? as usize;
        }
        if let Some(v) = &self.product_info {
            o.product_info = v.clone();
        }
        o.model_id = self.model_id.clone();
        if let Some(r) = &self.retry {
            o.retry = r.to_core()?;
        }
        Ok(o)
    }
}

impl RetryOptions {
    fn to_core(&self) -> Result<RetryPolicy, CoreError> {
        if self.enabled == Some(false) {
            return Ok(RetryPolicy::None);
        }
        let RetryPolicy::ExponentialBackoff { mut initial, mut max, mut give_up_after } = RetryPolicy::default() else {
            return Ok(RetryPolicy::default());
        };
        if let Some(v) = self.initial_delay_ms {
            initial = duration("retry.initialDelayMs", v, 1000.0)?;
        }
        if let Some(v) = self.max_delay_ms {
            max = duration("retry.maxDelayMs", v, 1000.0)?;
        }
        if let Some(v) = self.give_up_after_ms {
            give_up_after = Some(duration("retry.giveUpAfterMs", v, 1000.0)?);
        }
        Ok(RetryPolicy::ExponentialBackoff { initial, max, give_up_after })
    }
}

/// A module twin: the desired and reported property documents (each with `$version`).
#[napi(object)]
pub struct Twin {
    pub desired: Value,
    pub reported: Value,
}

/// What to invoke with `invokeMethod` (the azure-iot-device shape).
#[napi(object)]
pub struct MethodParams {
    pub method_name: String,
    /// Any JSON value (default `null`).
    pub payload: Option<Value>,
    /// How long the target may take to answer, in seconds (5-300, default 30).
    pub response_timeout_in_seconds: Option<f64>,
    /// How long to wait for the target to connect, in seconds (0-300, default 0).
    pub connect_timeout_in_seconds: Option<f64>,
}

impl MethodParams {
    pub fn to_core(&self) -> Result<edgemodule_core::MethodInvocation, CoreError> {
        let mut call = edgemodule_core::MethodInvocation::new(
            self.method_name.clone(),
            self.payload.clone().unwrap_or(Value::Null),
        );
        if let Some(v) = self.response_timeout_in_seconds {
            call.response_timeout = duration("responseTimeoutInSeconds", v, 1.0)?;
        }
        if let Some(v) = self.connect_timeout_in_seconds {
            call.connect_timeout = duration("connectTimeoutInSeconds", v, 1.0)?;
        }
        Ok(call)
    }
}

/// The answer of an invoked method.
#[napi(object)]
pub struct MethodResult {
    pub status: i64,
    pub payload: Value,
}

/// Why the connection state last changed.
#[napi(string_enum = "UPPER_SNAKE")]
pub enum ConnectionReason {
    /// Connected normally.
    Ok,
    /// The SAS token ran out; the client reconnects with a new one.
    ExpiredToken,
    /// The hub refused the credentials; the client is closed.
    BadCredential,
    /// The hub stopped answering (keep-alive).
    NoNetwork,
    /// Reconnecting gave up under the retry policy; the client is closed.
    RetryExpired,
    /// `close()` was called.
    Closed,
    /// The connection broke (reset, malformed data, hub restart).
    CommunicationError,
}

/// The connection state passed to `onConnectionStateChange` handlers.
#[napi(object)]
pub struct ConnectionState {
    pub connected: bool,
    pub reason: ConnectionReason,
}

impl From<edgemodule_core::ConnectionState> for ConnectionState {
    fn from(s: edgemodule_core::ConnectionState) -> Self {
        use edgemodule_core::DisconnectReason as R;
        let reason = match s.reason {
            R::Ok => ConnectionReason::Ok,
            R::ExpiredToken => ConnectionReason::ExpiredToken,
            R::BadCredential => ConnectionReason::BadCredential,
            R::NoNetwork => ConnectionReason::NoNetwork,
            R::RetryExpired => ConnectionReason::RetryExpired,
            R::Closed => ConnectionReason::Closed,
            R::CommunicationError => ConnectionReason::CommunicationError,
        };
        ConnectionState { connected: s.is_connected(), reason }
    }
}

/// Options for `publish`.
#[napi(object)]
#[derive(Default)]
pub struct PublishOptions {
    /// 0 (at most once: resolves once written) or 1 (at least once: resolves on the hub's
    /// PUBACK; the default). IoT Edge does not support QoS 2.
    pub qos: Option<f64>,
    /// Ask the hub to keep the message for later subscribers (an empty payload clears the topic).
    pub retain: Option<bool>,
    /// Deadline in milliseconds (default: the client's `timeoutMs`).
    pub timeout_ms: Option<f64>,
}

impl PublishOptions {
    /// The core's QoS (parsed by the core), retain flag and deadline.
    pub fn to_core(&self) -> Result<(edgemodule_core::Qos, bool, Option<Duration>), CoreError> {
        let qos = match self.qos {
            None => edgemodule_core::Qos::default(),
            // A JavaScript number is an integer only if it has no fraction; the core checks the range.
            Some(v) if v.is_finite() && v.fract() == 0.0 => edgemodule_core::validate::qos(v as i64)?,
            Some(v) => return Err(invalid(format!("options.qos must be an integer (0 or 1), got {v}"))),
        };
        let timeout = self.timeout_ms.map(|v| duration("timeoutMs", v, 1000.0)).transpose()?;
        Ok((qos, self.retain.unwrap_or(false), timeout))
    }
}

/// A message received on a user topic (see `subscribe`).
#[napi(object)]
pub struct TopicMessage {
    /// The topic it was published on.
    pub topic: String,
    pub payload: napi::bindgen_prelude::Buffer,
    /// The QoS it was delivered with (the lower of the publish's and the subscription's).
    pub qos: u32,
    /// True for a retained message sent because the subscription was made.
    pub retain: bool,
}

impl From<edgemodule_core::TopicMessage> for TopicMessage {
    fn from(m: edgemodule_core::TopicMessage) -> Self {
        TopicMessage { topic: m.topic, payload: m.payload.to_vec().into(), qos: m.qos as u32, retain: m.retain }
    }
}
