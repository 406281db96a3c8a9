//! Client options: a validated builder with defaults chosen to beat the official SDKs' pitfalls
//! (deadlines everywhere, renewal well before expiry, bounded queues).

use std::time::Duration;

use crate::error::{Error, Result};
use crate::retry::RetryPolicy;

/// Which wire protocol to use. Only MQTT over TLS exists so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Transport {
    #[default]
    Mqtt,
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
    /// Overrides the HTTPS port used for module-to-module method calls (default 443).
    pub https_port: Option<u16>,
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
        if self.mqtt_port == Some(0) || self.https_port == Some(0) {
            return bad("ports must be non-zero");
        }
        if self.product_info.chars().any(char::is_control) {
            return bad("product_info must not contain control characters");
        }
        if let Some(m) = &self.model_id {
            if !m.starts_with("dtmi:") {
                return bad("model_id must be a DTMI (dtmi:…)");
            }
        }
        self.retry.validate()
    }
}
