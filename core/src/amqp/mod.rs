//! AMQP 1.0 for modules (protocol.md §7): link addresses, the message mapping and the CBS
//! put-token exchange, built and parsed in one place for the client and the hub (like `wire/`
//! for MQTT). The connection itself is fe2o3-amqp over our own TLS stream.

pub mod address;
pub mod cbs;
pub(crate) mod connect;
pub(crate) mod driver;
pub mod mapping;
pub mod twin;
