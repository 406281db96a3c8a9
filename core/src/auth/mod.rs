//! Credentials: symmetric keys, fixed tokens and the IoT Edge workload API.

pub mod credentials;
pub mod workload;
