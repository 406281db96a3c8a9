//! edgemodule-hub: a local edge hub that speaks edgeHub's module surface (TLS MQTT, SAS auth,
//! routes, twins, direct methods, workload API) so modules run on a laptop with no Azure.

pub mod manifest;
pub mod routes;
pub mod state;
pub mod store;
pub mod workload;
