//! edgemodule core: an Azure IoT Edge `ModuleClient` over MQTT 3.1.1/TLS that owns every
//! semantic the bindings expose: authentication, validation, retries, twin resync, deadlines and
//! errors. Async-only on tokio; it never builds a runtime of its own.

pub mod auth;
pub mod error;
pub mod message;
pub mod validate;
pub mod wire;

pub use error::{Error, ErrorKind, Result};
pub use message::{Message, SystemProperty};
