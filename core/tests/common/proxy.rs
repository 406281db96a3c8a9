//! The fault-injecting loopback proxy (stall, delay, cut, refuse). Its one source lives with the
//! fault matrix, in tests/faults/src/proxy.rs, and is compiled into these tests from there.
#![allow(unused_imports)] // not every test binary that includes `common` uses the proxy

#[path = "../../../tests/faults/src/proxy.rs"]
mod shared;

pub use shared::Proxy;
