//! Client options: a validated builder with defaults chosen to beat the official SDKs' pitfalls
//! (deadlines everywhere, renewal well before expiry, bounded queues).

use std::time::Duration;

use crate::error::{Error, Result};
use crate::retry::RetryPolicy;

/// Which wire protocol carries the connection. Everything else (auth, routes, twins, methods,
/// errors) is the same for each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Transport {
    /// MQTT 3.1.1 over TLS on port 8883 (`mqtt_port` overrides it).
    #[default]
    Mqtt,
    /// MQTT 3.1.1 over WebSocket over TLS on the HTTPS port (443; `https_port` overrides it), at
    /// `/$iothub/websocket`, for networks that block 8883; may go through `proxy`.
    MqttWebSocket,
    /// AMQP 1.0 over TLS on port 5671 (`amqp_port` overrides it), authenticated by CBS
    /// put-token; input messages are settled by disposition. No user topics (an MQTT broker
    /// feature).
    Amqp,
    /// AMQP 1.0 over WebSocket over TLS on the HTTPS port (443; `https_port` overrides it), at
    /// `/$iothub/websocket` with subprotocol `AMQPWSB10`; otherwise as `Amqp`. May go through `proxy`.
    AmqpWebSocket,
}

impl Transport {
    /// Every transport, in the order of their names.
    pub const ALL: &'static [Transport] =
        &[Transport::Mqtt, Transport::MqttWebSocket, Transport::Amqp, Transport::AmqpWebSocket];

    /// The stable name bindings accept and print: `mqtt`, `mqtt_ws`, `amqp`, `amqp_ws`.
    pub fn name(self) -> &'static str {
        match self {
            Transport::Mqtt => "mqtt",
            Transport::MqttWebSocket => "mqtt_ws",
            Transport::Amqp => "amqp",
            Transport::AmqpWebSocket => "amqp_ws",
        }
    }

    /// Whether the transport runs over WebSocket (and so may use an HTTP proxy).
    pub fn is_websocket(self) -> bool {
        matches!(self, Transport::MqttWebSocket | Transport::AmqpWebSocket)
    }
}

impl std::fmt::Display for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Transport {
    type Err = Error;

    /// Parses a transport name, case-insensitively: `mqtt`, `mqtt_ws` (also `mqtt-ws`,
    /// `mqttws`, `mqtt_websocket`), `amqp` (also `amqps`), `amqp_ws` (also `amqp-ws`, `amqpws`,
    /// `amqp_websocket`). Anything else is INVALID_ARGUMENT listing the names.
    fn from_str(s: &str) -> Result<Transport> {
        match s.trim().to_ascii_lowercase().replace('-', "_").as_str() {
            "mqtt" => Ok(Transport::Mqtt),
            "mqtt_ws" | "mqttws" | "mqtt_websocket" => Ok(Transport::MqttWebSocket),
            "amqp" | "amqps" => Ok(Transport::Amqp),
            "amqp_ws" | "amqpws" | "amqp_websocket" => Ok(Transport::AmqpWebSocket),
            _ => Err(Error::invalid(format!(
                "unknown transport '{s}' (expected one of: {})",
                Transport::ALL.iter().map(|t| t.name()).collect::<Vec<_>>().join(", ")
            ))),
        }
    }
}

/// Options for a `ModuleClient`. Build with `ClientOptions::default()` and the `with_*` setters;
/// `validate` runs when the client is created.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    pub transport: Transport,
    pub keep_alive: Duration,
    pub sas_ttl: Duration,
    /// Renew the token this long before it expires.
    pub sas_renewal_margin: Duration,
    pub retry: RetryPolicy,
    /// Deadline for an operation that was given none.
    pub default_timeout: Duration,
    /// Deadline for one connection attempt (TCP + TLS + CONNACK).
    pub connect_timeout: Duration,
    /// Sends on the wire awaiting PUBACK at once.
    pub max_in_flight: usize,
    /// Operations that may wait while disconnected; beyond that they fail with QUEUE_FULL.
    pub queue_bound: usize,
    pub product_info: String,
    pub model_id: Option<String>,
    /// Extra PEM certificates to trust besides the trust bundle / CA file.
    pub extra_ca_pem: Option<String>,
    /// Overrides the MQTT port (the official SDKs always use 8883).
    pub mqtt_port: Option<u16>,
    /// Overrides the HTTPS port used for module-to-module method calls and the WebSocket
    /// transport (default 443).
    pub https_port: Option<u16>,
    /// Overrides the AMQPS port of the AMQP transport (default 5671).
    pub amqp_port: Option<u16>,
    /// An HTTP CONNECT proxy for the WebSocket transport and module-to-module method calls,
    /// `http://[user:password@]host[:port]`.
    pub proxy: Option<String>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            transport: Transport::Mqtt,
            keep_alive: Duration::from_secs(60),
            sas_ttl: Duration::from_secs(3600),
            sas_renewal_margin: Duration::from_secs(300),
            retry: RetryPolicy::default(),
            default_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            max_in_flight: 256,
            queue_bound: 10_000,
            product_info: String::new(),
            model_id: None,
            extra_ca_pem: None,
            mqtt_port: None,
            https_port: None,
            amqp_port: None,
            proxy: None,
        }
    }
}

impl ClientOptions {
    pub fn with_keep_alive(mut self, d: Duration) -> Self {
        self.keep_alive = d;
        self
    }
    pub fn with_sas_ttl(mut self, ttl: Duration, renewal_margin: Duration) -> Self {
        self.sas_ttl = ttl;
        self.sas_renewal_margin = renewal_margin;
        self
    }
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }
    pub fn with_default_timeout(mut self, d: Duration) -> Self {
        self.default_timeout = d;
        self
    }
    pub fn with_connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = d;
        self
    }
    pub fn with_max_in_flight(mut self, n: usize) -> Self {
        self.max_in_flight = n;
        self
    }
    pub fn with_queue_bound(mut self, n: usize) -> Self {
        self.queue_bound = n;
        self
    }
    pub fn with_product_info(mut self, s: impl Into<String>) -> Self {
        self.product_info = s.into();
        self
    }
    pub fn with_model_id(mut self, s: impl Into<String>) -> Self {
        self.model_id = Some(s.into());
        self
    }
    pub fn with_extra_ca_pem(mut self, pem: impl Into<String>) -> Self {
        self.extra_ca_pem = Some(pem.into());
        self
    }
    pub fn with_mqtt_port(mut self, port: u16) -> Self {
        self.mqtt_port = Some(port);
        self
    }
    pub fn with_https_port(mut self, port: u16) -> Self {
        self.https_port = Some(port);
        self
    }
    pub fn with_amqp_port(mut self, port: u16) -> Self {
        self.amqp_port = Some(port);
        self
    }
    pub fn with_transport(mut self, transport: Transport) -> Self {
        self.transport = transport;
        self
    }
    /// Tunnels the WebSocket transport, and module-to-module method calls, through an HTTP
    /// CONNECT proxy.
    pub fn with_proxy(mut self, url: impl Into<String>) -> Self {
        self.proxy = Some(url.into());
        self
    }

    /// Checks every option, naming the first one out of range.
    pub fn validate(&self) -> Result<()> {
        let bad = |what: &str| Err(Error::invalid(what.to_string()));
        if self.keep_alive < Duration::from_secs(1) || self.keep_alive > Duration::from_secs(1177) {
            return bad("keep_alive must be 1-1177 s");
        }
        if self.sas_ttl < Duration::from_secs(5) {
            return bad("sas_ttl must be at least 5 s");
        }
        if self.sas_renewal_margin >= self.sas_ttl {
            return bad("sas_renewal_margin must be shorter than sas_ttl");
        }
        if self.default_timeout.is_zero() || self.connect_timeout.is_zero() {
            return bad("timeouts must be positive");
        }
        if self.max_in_flight == 0 || self.max_in_flight > 65_000 {
            return bad("max_in_flight must be 1-65000");
        }
        if self.queue_bound == 0 {
            return bad("queue_bound must be at least 1");
        }
        if self.mqtt_port == Some(0) || self.https_port == Some(0) || self.amqp_port == Some(0) {
            return bad("ports must be non-zero");
        }
        if self.product_info.chars().any(char::is_control) {
            return bad("product_info must not contain control characters");
        }
        if let Some(url) = &self.proxy {
            crate::transport::proxy::ProxyUrl::parse(url)?;
            if !self.transport.is_websocket() {
                return Err(Error::config(format!(
                    "proxy is only used by the WebSocket transports (transport is '{}'; use 'mqtt_ws' or 'amqp_ws')",
                    self.transport
                )));
            }
        }
        if let Some(m) = &self.model_id {
            if !m.starts_with("dtmi:") {
                return bad("model_id must be a DTMI (dtmi:…)");
            }
        }
        self.retry.validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    #[test]
    fn transport_names_round_trip_and_bad_names_are_invalid_arguments() {
        for t in Transport::ALL {
            assert_eq!(t.name().parse::<Transport>().unwrap(), *t);
        }
        assert_eq!("MQTT-WS".parse::<Transport>().unwrap(), Transport::MqttWebSocket);
        let e = "http".parse::<Transport>().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        assert!(e.message().contains("mqtt, mqtt_ws, amqp, amqp_ws"), "{e}");
        assert_eq!("AMQP".parse::<Transport>().unwrap(), Transport::Amqp);
        assert_eq!("AMQP-WS".parse::<Transport>().unwrap(), Transport::AmqpWebSocket);
        assert!(Transport::AmqpWebSocket.is_websocket() && !Transport::Amqp.is_websocket());
    }

    #[test]
    fn proxy_needs_a_websocket_transport_and_a_well_formed_url() {
        let ws = ClientOptions::default().with_transport(Transport::MqttWebSocket);
        ws.clone().with_proxy("http://127.0.0.1:3128").validate().unwrap();
        let e = ws.with_proxy("127.0.0.1:3128").validate().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Configuration);
        let e = ClientOptions::default().with_proxy("http://127.0.0.1:3128").validate().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Configuration);
        assert!(e.message().contains("WebSocket"), "{e}");
    }
}
