//! edgemodule core: an Azure IoT Edge `ModuleClient` over MQTT 3.1.1/TLS that owns every
//! semantic the bindings expose: authentication, validation, retries, twin resync, deadlines and
//! errors. Async-only on tokio; it never builds a runtime of its own.

pub mod amqp;
pub mod auth;
pub mod client;
mod connection_task;
mod driver;
pub mod error;
pub mod identity;
pub mod invoke;
pub mod message;
pub mod options;
pub mod retry;
pub mod runtime;
pub mod state;
mod tls;
pub mod transport;
pub mod validate;
pub mod wire;

pub use client::{InputMessage, MethodRequest, Metrics, ModuleClient, Qos, Settlement, TopicMessage, Twin};
pub use error::{Error, ErrorKind, Result};
pub use identity::ModuleIdentity;
pub use invoke::{MethodInvocation, MethodResult};
pub use message::{Message, SystemProperty};
pub use options::{ClientOptions, Transport};
pub use retry::RetryPolicy;
pub use state::{ConnectionState, ConnectionStatus, DisconnectReason};
