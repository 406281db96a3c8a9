//! The hub's AMQP 1.0 surface for modules (protocol.md §7) on port 5671 (and over WebSocket on
//! the HTTPS port, `mqtt::websocket`, which hands its stream to [`serve`]): TLS, optional SASL
//! (ANONYMOUS, MSSBCBS, PLAIN), CBS put-token, and the module's events, inputs, twin and methods
//! links, feeding the same routes, store, twins and method calls as MQTT. The AMQP
//! engine is fe2o3-amqp's acceptor side over our own TLS stream.

mod cbs;
mod connection;
mod header;
mod inputs;
mod methods;
mod outbox;
mod sasl;
mod session;
mod telemetry;
mod twin;

pub use connection::serve;
