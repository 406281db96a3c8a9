//! The conformance driver: agents, the in-process hub, the protocol and the scenario runner.

pub mod agent;
pub mod hub;
pub mod proto;
pub mod runner;
