//! Opening one AMQP connection for a module (protocol.md §7): the byte stream from
//! `crate::transport` (TLS to the gateway on 5671, or AMQP over WebSocket on the HTTPS port), SASL
//! ANONYMOUS, CBS put-token, then the module's links: events (sender), twin and methods (a sender
//! and a receiver each, with the channel-correlation and api-version attach properties) and,
//! once wanted, inputs (receiver on the events address).

use std::sync::Arc;
use std::time::Duration;

use fe2o3_amqp::connection::ConnectionHandle;
use fe2o3_amqp::sasl_profile::SaslProfile;
use fe2o3_amqp::session::SessionHandle;
use fe2o3_amqp::types::definitions::Fields;
use fe2o3_amqp::types::messaging::Body;
use fe2o3_amqp::types::primitives::{Symbol, Value};
use fe2o3_amqp::{Connection, Receiver, Sender, Session};

use super::{address, cbs, twin};
use crate::error::{Error, ErrorKind, Result};
use crate::identity::ModuleIdentity;
use crate::options::ClientOptions;

const API_VERSION: &str = "2020-09-30";

/// The CBS links, kept open for renewals in place.
pub(crate) struct Cbs {
    tx: Sender,
    rx: Receiver,
}

/// One connection and the module's links on it.
pub(crate) struct Links {
    pub connection: ConnectionHandle<()>,
    pub session: SessionHandle<()>,
    pub cbs: Cbs,
    pub events: Sender,
    pub twin_tx: Sender,
    pub twin_rx: Receiver,
    pub methods_tx: Sender,
    pub methods_rx: Receiver,
    pub inputs: Option<Receiver>,
    pub token_expiry: u64,
}

/// Connects, authenticates and attaches every link. The caller bounds it in time.
pub(crate) async fn open(
    id: &ModuleIdentity,
    options: &ClientOptions,
    tls: &Arc<rustls::ClientConfig>,
    inputs: bool,
) -> Result<Links> {
    let token = id.credentials.token(&id.hub_host_name, &id.device_id, &id.module_id, options.sas_ttl).await?;
    let host = id.gateway_host_name.as_str();
    let stream = crate::transport::connect(id, options, tls).await?;
    let mut connection = Connection::builder()
        .container_id(format!("{}/{}/{}", id.device_id, id.module_id, uuid::Uuid::new_v4()))
        .hostname(host)
        .scheme("amqp")
        .sasl_profile(SaslProfile::Anonymous)
        .idle_time_out(options.keep_alive.as_millis().min(u32::MAX as u128) as u32)
        .open_with_stream(crate::transport::write_behind::WriteBehind::new(stream))
        .await
        .map_err(|e| Error::with_source(ErrorKind::ConnectionRefused, "the hub refused the AMQP connection", e))?;
    let mut session = Session::begin(&mut connection).await.map_err(|e| lost("beginning the session", e))?;
    let mut cbs = Cbs::attach(&mut session).await?;
    cbs.put_token(id, &token.value, options.connect_timeout).await?;
    let links = attach_module_links(&mut session, id, inputs).await?;
    let (events, twin_tx, twin_rx, methods_tx, methods_rx, inputs) = links;
    Ok(Links {
        connection,
        session,
        cbs,
        events,
        twin_tx,
        twin_rx,
        methods_tx,
        methods_rx,
        inputs,
        token_expiry: token.expiry,
    })
}

type ModuleLinks = (Sender, Sender, Receiver, Sender, Receiver, Option<Receiver>);

async fn attach_module_links(
    session: &mut SessionHandle<()>,
    id: &ModuleIdentity,
    inputs: bool,
) -> Result<ModuleLinks> {
    let (d, m) = (id.device_id.as_str(), id.module_id.as_str());
    let events = Sender::attach(session, "events", address::events(d, m)).await.map_err(|e| refused("events", e))?;
    let twin_props = link_properties("twin");
    let twin_tx = sender(session, "twin-sender", address::twin(d, m), twin_props.clone()).await?;
    let twin_rx = receiver(session, "twin-receiver", address::twin(d, m), twin_props).await?;
    let method_props = link_properties("methods");
    let methods_tx = sender(session, "methods-sender", address::methods(d, m), method_props.clone()).await?;
    let methods_rx = receiver(session, "methods-receiver", address::methods(d, m), method_props).await?;
    let inputs = match inputs {
        true => Some(attach_inputs(session, id).await?),
        false => None,
    };
    Ok((events, twin_tx, twin_rx, methods_tx, methods_rx, inputs))
}

/// The input-messages receiver (the events address, hub → module).
pub(crate) async fn attach_inputs(session: &mut SessionHandle<()>, id: &ModuleIdentity) -> Result<Receiver> {
    let addr = address::events(&id.device_id, &id.module_id);
    Receiver::attach(session, "inputs", addr).await.map_err(|e| refused("inputs", e))
}

fn link_properties(channel: &str) -> Fields {
    let mut f = Fields::default();
    let client = format!("edgemodule/{}", env!("CARGO_PKG_VERSION"));
    f.insert(Symbol::from(twin::API_VERSION_PROPERTY), Value::String(API_VERSION.into()));
    f.insert(
        Symbol::from(twin::CHANNEL_CORRELATION_PROPERTY),
        Value::String(format!("{channel}:{}", uuid::Uuid::new_v4())),
    );
    f.insert(Symbol::from(twin::CLIENT_VERSION_PROPERTY), Value::String(client));
    f
}

async fn sender(session: &mut SessionHandle<()>, name: &str, addr: String, props: Fields) -> Result<Sender> {
    Sender::builder().name(name).target(addr).properties(props).attach(session).await.map_err(|e| refused(name, e))
}

async fn receiver(session: &mut SessionHandle<()>, name: &str, addr: String, props: Fields) -> Result<Receiver> {
    Receiver::builder().name(name).source(addr).properties(props).attach(session).await.map_err(|e| refused(name, e))
}

impl Cbs {
    async fn attach(session: &mut SessionHandle<()>) -> Result<Cbs> {
        let tx = Sender::attach(session, "cbs-sender", address::CBS).await.map_err(|e| refused("$cbs", e))?;
        let rx = Receiver::attach(session, "cbs-receiver", address::CBS).await.map_err(|e| refused("$cbs", e))?;
        Ok(Cbs { tx, rx })
    }

    /// Sends a put-token and waits (up to `deadline`) for its answer: 200 or UNAUTHORIZED.
    pub(crate) async fn put_token(&mut self, id: &ModuleIdentity, token: &str, deadline: Duration) -> Result<()> {
        let request_id = uuid::Uuid::new_v4().to_string();
        let audience = crate::wire::sas::module_resource_uri(&id.hub_host_name, &id.device_id, &id.module_id);
        let exchange = async {
            self.tx
                .send(cbs::request(&request_id, &audience, token))
                .await
                .map_err(|e| lost("sending a put-token", e))?;
            loop {
                let reply =
                    self.rx.recv::<Body<Value>>().await.map_err(|e| lost("waiting for the put-token answer", e))?;
                let _ = self.rx.accept(&reply).await;
                let answer = cbs::parse_response(reply.message());
                if answer.correlation_id.as_deref() == Some(request_id.as_str()) {
                    return Ok(answer);
                }
            }
        };
        let answer =
            tokio::time::timeout(deadline, exchange).await.map_err(|_| Error::timeout("put-token", deadline))??;
        match answer.status {
            200 => Ok(()),
            s => Err(Error::new(
                ErrorKind::Unauthorized,
                format!("the hub refused our token ({s}: {})", answer.description),
            )),
        }
    }
}

fn lost(what: &str, e: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::with_source(ErrorKind::ConnectionLost, format!("AMQP: {what}"), e)
}

fn refused(link: &str, e: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::with_source(ErrorKind::ConnectionRefused, format!("the hub refused the '{link}' link"), e)
}
