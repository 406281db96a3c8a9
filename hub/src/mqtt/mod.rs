//! The hub's MQTT 3.1.1 surface over TLS, and over WebSocket on the HTTPS port.

pub mod auth;
pub mod connection;
pub mod permissions;
pub mod websocket;
