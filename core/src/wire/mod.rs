//! Wire formats written once and shared by the client and the hub: SAS tokens, percent-encoding,
//! property bags, topics, connection strings, twin and method envelopes.

pub mod connection_string;
pub mod encoding;
pub mod framing;
pub mod property_bag;
pub mod sas;
pub mod topic;
pub mod twin;
