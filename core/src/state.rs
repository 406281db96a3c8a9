//! Connection state with a typed reason, observable as a `watch` channel.

/// Whether the client is connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionStatus {
    Connected,
    Disconnected,
}

/// Why the state last changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisconnectReason {
    /// Connected normally.
    Ok,
    /// The SAS token ran out; the client reconnects with a new one.
    ExpiredToken,
    /// The hub refused our credentials; the client is closed.
    BadCredential,
    /// The hub stopped answering (keep-alive).
    NoNetwork,
    /// Reconnecting gave up under the retry policy; the client is closed.
    RetryExpired,
    /// `close()` was called.
    Closed,
    /// The connection broke (reset, malformed data, hub restart).
    CommunicationError,
}

impl DisconnectReason {
    pub fn name(self) -> &'static str {
        match self {
            DisconnectReason::Ok => "OK",
            DisconnectReason::ExpiredToken => "EXPIRED_TOKEN",
            DisconnectReason::BadCredential => "BAD_CREDENTIAL",
            DisconnectReason::NoNetwork => "NO_NETWORK",
            DisconnectReason::RetryExpired => "RETRY_EXPIRED",
            DisconnectReason::Closed => "CLOSED",
            DisconnectReason::CommunicationError => "COMMUNICATION_ERROR",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionState {
    pub status: ConnectionStatus,
    pub reason: DisconnectReason,
}

impl ConnectionState {
    pub fn connected() -> Self {
        ConnectionState { status: ConnectionStatus::Connected, reason: DisconnectReason::Ok }
    }
    pub fn disconnected(reason: DisconnectReason) -> Self {
        ConnectionState { status: ConnectionStatus::Disconnected, reason }
    }
    pub fn is_connected(&self) -> bool {
        self.status == ConnectionStatus::Connected
    }
}
