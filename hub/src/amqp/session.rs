//! A session's links: each attach is matched to a purpose by its address (protocol.md §7.2) and
//! its role, checked against the connection's authenticated identity, and served by its own task.

use std::sync::Arc;

use edgemodule_core::amqp::address::{self, LinkKind, ModuleAddress};
use fe2o3_amqp::acceptor::{LinkAcceptor, LinkEndpoint, ListenerSessionHandle};
use fe2o3_amqp::types::definitions::{AmqpError, Error as AmqpErrorBody, Role};
use fe2o3_amqp::types::messaging::TargetArchetype;
use fe2o3_amqp::types::performatives::Attach;
use tokio::task::JoinSet;

use super::connection::Conn;
use super::outbox::{self, Outbox, OutboxSlot};

/// What an attached link does, from the hub's side.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Purpose {
    CbsRequests,
    CbsReplies,
    Telemetry(ModuleAddress),
    Inputs(ModuleAddress),
    TwinRequests(ModuleAddress),
    TwinOut(ModuleAddress),
    MethodResponses(ModuleAddress),
    MethodRequests(ModuleAddress),
}

/// Serves one session until it ends; its link tasks end with it.
pub(super) async fn serve(conn: Arc<Conn>, mut session: ListenerSessionHandle) {
    let mut links = JoinSet::new();
    let acceptor = LinkAcceptor::new();
    while let Some(attach) = session.next_incoming_attach().await {
        let purpose = classify(&conn, &attach);
        let outbox = purpose.as_ref().ok().and_then(|p| p.outbox(&conn)).map(outbox::open);
        let endpoint = match acceptor.accept_incoming_attach(attach, &mut session).await {
            Ok(e) => e,
            Err(e) => {
                tracing::debug!(peer = conn.peer, "AMQP attach failed: {e}");
                continue;
            }
        };
        match purpose {
            Ok(p) => spawn_link(&mut links, &conn, p, endpoint, outbox),
            Err((condition, why)) => {
                tracing::warn!(peer = conn.peer, "AMQP link refused: {why}");
                links.spawn(refuse(endpoint, condition, why));
            }
        }
    }
    let _ = session.end().await;
}

impl Purpose {
    /// The channel slot of a hub-side sender that answers the peer's requests or forwards the
    /// hub's (CBS replies, twin responses and patches, method calls).
    fn outbox<'a>(&self, conn: &'a Conn) -> Option<&'a OutboxSlot> {
        match self {
            Purpose::CbsReplies => Some(&conn.cbs_out),
            Purpose::TwinOut(_) => Some(&conn.twin_out),
            Purpose::MethodRequests(_) => Some(&conn.methods_out),
            _ => None,
        }
    }
}

/// The link's purpose, or why it is refused.
fn classify(conn: &Conn, attach: &Attach) -> Result<Purpose, (AmqpError, String)> {
    let remote_sends = attach.role == Role::Sender;
    let address = if remote_sends { target_address(attach) } else { source_address(attach) };
    let address = address.ok_or((AmqpError::InvalidField, "link without an address".to_string()))?;
    if address::is_cbs(&address) {
        return Ok(if remote_sends { Purpose::CbsRequests } else { Purpose::CbsReplies });
    }
    let Some(module) = address::parse(&address) else {
        return Err((AmqpError::NotFound, format!("no such node '{address}'")));
    };
    match conn.identity() {
        Some(a) if a.device == module.device && a.module == module.module => {}
        Some(a) => {
            let why = format!("'{address}' belongs to another identity than {}/{}", a.device, a.module);
            return Err((AmqpError::UnauthorizedAccess, why));
        }
        None => return Err((AmqpError::UnauthorizedAccess, format!("'{address}' before a put-token"))),
    }
    Ok(match (module.kind, remote_sends) {
        (LinkKind::Events, true) => Purpose::Telemetry(module),
        (LinkKind::Events, false) => Purpose::Inputs(module),
        (LinkKind::Twin, true) => Purpose::TwinRequests(module),
        (LinkKind::Twin, false) => Purpose::TwinOut(module),
        (LinkKind::Methods, true) => Purpose::MethodResponses(module),
        (LinkKind::Methods, false) => Purpose::MethodRequests(module),
    })
}

fn spawn_link(
    links: &mut JoinSet<()>,
    conn: &Arc<Conn>,
    purpose: Purpose,
    endpoint: LinkEndpoint,
    outbox: Option<Outbox>,
) {
    let conn = conn.clone();
    let outbox = move || outbox.expect("opened for every purpose with an outbox");
    match (purpose, endpoint) {
        (Purpose::CbsRequests, LinkEndpoint::Receiver(r)) => links.spawn(super::cbs::serve_requests(conn, r)),
        (Purpose::CbsReplies, LinkEndpoint::Sender(s)) => links.spawn(super::cbs::serve_replies(s, outbox())),
        (Purpose::Telemetry(m), LinkEndpoint::Receiver(r)) => links.spawn(super::telemetry::serve(conn, r, m.module)),
        (Purpose::Inputs(m), LinkEndpoint::Sender(s)) => links.spawn(super::inputs::serve(conn, s, m.module)),
        (Purpose::TwinRequests(m), LinkEndpoint::Receiver(r)) => {
            links.spawn(super::twin::serve_requests(conn, r, m.module))
        }
        (Purpose::TwinOut(_), LinkEndpoint::Sender(s)) => links.spawn(super::twin::serve_out(conn, s, outbox())),
        (Purpose::MethodResponses(_), LinkEndpoint::Receiver(r)) => {
            links.spawn(super::methods::serve_responses(conn, r))
        }
        (Purpose::MethodRequests(_), LinkEndpoint::Sender(s)) => {
            links.spawn(super::methods::serve_requests(conn, s, outbox()))
        }
        (p, _) => unreachable!("the role decided the purpose {p:?}"),
    };
}

/// Detaches a refused link with an error the client can read.
async fn refuse(endpoint: LinkEndpoint, condition: AmqpError, why: String) {
    let error = AmqpErrorBody::new(condition, Some(why), None);
    let _ = match endpoint {
        LinkEndpoint::Sender(s) => s.close_with_error(error).await.map_err(|e| e.to_string()),
        LinkEndpoint::Receiver(r) => r.close_with_error(error).await.map_err(|e| e.to_string()),
    };
}

fn source_address(attach: &Attach) -> Option<String> {
    attach.source.as_ref()?.address.clone()
}

#[allow(irrefutable_let_patterns, unreachable_patterns)]
fn target_address(attach: &Attach) -> Option<String> {
    match attach.target.as_deref()? {
        TargetArchetype::Target(t) => t.address.clone(),
        _ => None,
    }
}
