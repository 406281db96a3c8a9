//! The hub's MQTT 3.1.1 surface over TLS.

pub mod auth;
pub mod connection;
pub mod listener;
pub mod permissions;
