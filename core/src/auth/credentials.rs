//! Where a module's SAS token comes from: its own key, a fixed token, or the workload API.

use std::time::Duration;

use super::workload::{workload_module_token, WorkloadClient};
use crate::error::{Error, ErrorKind, Result};
use crate::wire::sas::{self, unix_now, ParsedToken};

#[derive(Clone)]
pub enum Credentials {
    /// A decoded symmetric key; tokens are minted locally and renewed.
    Key(Vec<u8>),
    /// A fixed token from a connection string; it cannot be renewed.
    Token(String),
    /// The IoT Edge workload API signs for us.
    Workload { client: WorkloadClient, generation_id: String },
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Credentials::Key(_) => "Key(<redacted>)",
            Credentials::Token(_) => "Token(<redacted>)",
            Credentials::Workload { .. } => "Workload",
        })
    }
}

/// A token and the moment it stops being valid (Unix seconds).
#[derive(Clone)]
pub struct Token {
    pub value: String,
    pub expiry: u64,
}

impl Credentials {
    /// A token for `hub/devices/device/modules/module` valid for `ttl`.
    pub async fn token(&self, hub: &str, device: &str, module: &str, ttl: Duration) -> Result<Token> {
        let expiry = unix_now() + ttl.as_secs();
        match self {
            Credentials::Key(key) => Ok(Token { value: sas::module_token(hub, device, module, key, expiry), expiry }),
            Credentials::Token(t) => {
                let parsed = ParsedToken::parse(t)?;
                if parsed.expiry <= unix_now() {
                    return Err(Error::new(
                        ErrorKind::Unauthorized,
                        "the connection string's SharedAccessSignature has expired",
                    ));
                }
                Ok(Token { value: t.clone(), expiry: parsed.expiry })
            }
            Credentials::Workload { client, generation_id } => {
                let value = workload_module_token(client, hub, device, module, generation_id, expiry).await?;
                Ok(Token { value, expiry })
            }
        }
    }

    /// Whether a new token can be made when this one runs out.
    pub fn renewable(&self) -> bool {
        !matches!(self, Credentials::Token(_))
    }
}
