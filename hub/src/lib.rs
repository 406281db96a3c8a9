//! edgemodule-hub: a local edge hub that speaks edgeHub's module surface (TLS MQTT, SAS auth,
//! routes, twins, direct methods, workload API) so modules run on a laptop with no Azure.

pub mod amqp;
pub mod broker;
pub mod control;
pub mod events;
pub mod http;
pub mod hub;
pub mod listener;
pub mod manifest;
pub mod monitor;
pub mod mqtt;
pub mod routes;
pub mod server;
pub mod state;
pub mod store;
pub mod tls;
pub mod workload;
pub mod writer;
