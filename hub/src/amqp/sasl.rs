//! SASL as edgeHub offers it (protocol.md §7.1): ANONYMOUS and MSSBCBS succeed at once (CBS
//! put-token follows); PLAIN carries `{device}/modules/{module}@sas.{hub}` and a SAS token, checked
//! with the same verification as MQTT.

use std::sync::Arc;

use fe2o3_amqp::acceptor::sasl_acceptor::{SaslAcceptor, SaslServerFrame};
use fe2o3_amqp::types::primitives::{Array, Symbol};
use fe2o3_amqp::types::sasl::{SaslCode, SaslInit, SaslOutcome, SaslResponse};

use super::connection::Conn;
use crate::mqtt::auth::authenticate_token;

const MECHANISMS: [&str; 3] = ["MSSBCBS", "ANONYMOUS", "PLAIN"];

#[derive(Clone)]
pub(super) struct Sasl {
    conn: Arc<Conn>,
}

impl Sasl {
    pub fn new(conn: Arc<Conn>) -> Self {
        Sasl { conn }
    }

    fn plain(&self, response: &[u8]) -> Result<(), String> {
        let mut parts = response.split(|b| *b == 0);
        let (_authzid, user, password) = match (parts.next(), parts.next(), parts.next()) {
            (Some(a), Some(u), Some(p)) => (a, u, p),
            _ => return Err("PLAIN response is not authzid\\0user\\0password".into()),
        };
        let user = std::str::from_utf8(user).map_err(|_| "PLAIN user is not UTF-8")?;
        let password = std::str::from_utf8(password).map_err(|_| "PLAIN password is not UTF-8")?;
        let (device, module) = parse_plain_user(user)?;
        let auth = authenticate_token(&self.conn.hub, device, module, password)?;
        *self.conn.auth.lock().unwrap() = Some(auth);
        Ok(())
    }
}

/// `{device}/modules/{module}@sas.{hub}` → (device, module).
fn parse_plain_user(user: &str) -> Result<(&str, &str), String> {
    let bad = || format!("PLAIN user '{user}' is not '{{device}}/modules/{{module}}@sas.{{hub}}'");
    let (identity, hub) = user.split_once('@').ok_or_else(bad)?;
    if !hub.starts_with("sas.") {
        return Err(bad());
    }
    match identity.split('/').collect::<Vec<_>>().as_slice() {
        [d, "modules", m] if !d.is_empty() && !m.is_empty() => Ok((d, m)),
        _ => Err(bad()),
    }
}

fn outcome(code: SaslCode) -> SaslServerFrame {
    SaslServerFrame::Outcome(SaslOutcome { code, additional_data: None })
}

impl SaslAcceptor for Sasl {
    fn mechanisms(&self) -> Array<Symbol> {
        Array::from(MECHANISMS.iter().map(|m| Symbol::from(*m)).collect::<Vec<_>>())
    }

    fn on_init(&mut self, init: SaslInit) -> SaslServerFrame {
        match init.mechanism.0.as_str() {
            "ANONYMOUS" | "MSSBCBS" => outcome(SaslCode::Ok),
            "PLAIN" => match self.plain(init.initial_response.as_ref().map(|b| b.as_slice()).unwrap_or(&[])) {
                Ok(()) => outcome(SaslCode::Ok),
                Err(why) => {
                    tracing::warn!(peer = self.conn.peer, "SASL PLAIN refused: {why}");
                    outcome(SaslCode::Auth)
                }
            },
            other => {
                tracing::warn!(peer = self.conn.peer, "unsupported SASL mechanism {other}");
                outcome(SaslCode::Auth)
            }
        }
    }

    fn on_response(&mut self, _response: SaslResponse) -> SaslServerFrame {
        outcome(SaslCode::Sys)
    }
}

#[cfg(test)]
mod tests {
    use super::parse_plain_user;

    #[test]
    fn plain_users() {
        assert_eq!(parse_plain_user("d/modules/m@sas.hub").unwrap(), ("d", "m"));
        assert!(parse_plain_user("d@sas.hub").is_err());
        assert!(parse_plain_user("d/modules/m@hub").is_err());
        assert!(parse_plain_user("d/modules/@sas.hub").is_err());
    }
}
