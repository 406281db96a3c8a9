//! Fault matrix for every binding (issue #11): a sender module written against one binding's
//! public API sends numbered QoS 1 messages to an output routed to a receiver module (the Rust
//! core, in this process), through a loopback proxy that cuts, stalls, delays or refuses
//! connections, in front of a real `edgemodule-hub` process that can be killed with SIGKILL and
//! restarted on the same state dir and port. Also: every public call with a deadline, in every
//! binding, against a stalled hub.
//!
//! `fault-matrix` (src/bin) runs the long variants and prints markdown; `cargo test -p faults`
//! runs the short variants, one test per binding × scenario. See RELIABILITY.md.

pub mod agent_rust;
pub mod bindings;
pub mod clock;
pub mod deadlines;
pub mod hub;
pub mod matrix;
pub mod proxy;
