//! `ModuleClient`: every I/O method returns a Promise; handlers are JavaScript functions called
//! from tasks on the addon's runtime. Both cross to the JavaScript thread through the long-lived
//! threadsafe functions of `pump.rs` (one settler per environment for Promises, one per handler),
//! in batches: never one threadsafe function per call or per message. Sends, responses and twin
//! operations are polled on the JavaScript thread (no runtime task per call); connecting, closing
//! and `invokeMethod` run as runtime tasks. A handler's threadsafe function keeps the process
//! alive while the client is open; `close()` ends the tasks, which releases them, so the process
//! can exit.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use edgemodule_core::{Error as CoreError, ErrorKind, ModuleClient as CoreClient};
use napi::bindgen_prelude::{Buffer, ClassInstance, Either, Function, PromiseRaw, Unknown};
use napi::{Env, JsValue};
use napi_derive::napi;
use serde_json::Value;
use tokio::task::JoinHandle;

use crate::errors::to_js;
use crate::message::{body_bytes, Message};
use crate::options::{ClientOptions, ConnectionState, MethodParams, MethodResult, PublishOptions, TopicMessage, Twin};
use crate::pump::{promise, promise_local, Arg, Pump, ReleaseOnDrop};

/// How long `close()` lets handler tasks drain (deliver a final CLOSED state) before ending them.
const DRAIN: Duration = Duration::from_secs(2);

/// Most inbound items handed to the JavaScript thread in one wake-up.
const BATCH: usize = 256;

/// A handler called from the runtime: one threadsafe function that keeps the event loop alive
/// while registered and is released when the task feeding it ends (or is aborted).
type Handler<V> = ReleaseOnDrop<Arg<V>>;

fn handler<V, A>(env: &Env, f: Function<'_, A, Unknown<'static>>) -> napi::Result<Handler<V>>
where
    V: napi::bindgen_prelude::ToNapiValue + Send + 'static,
    A: napi::bindgen_prelude::JsValuesTupleIntoVec,
{
    Ok(ReleaseOnDrop(Pump::handler(env, f.raw())?))
}

/// Feeds every item of `rx` to `handler`, in batches of what is already queued.
async fn feed<T, V>(handler: Handler<V>, mut rx: tokio::sync::mpsc::UnboundedReceiver<T>, convert: impl Fn(T) -> V)
where
    V: napi::bindgen_prelude::ToNapiValue + Send + 'static,
{
    let mut batch = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        if !handler.0.push(batch.drain(..).map(|item| Arg(convert(item)))) {
            return;
        }
    }
}

/// A connection to the module's edge hub.
#[napi]
pub struct ModuleClient {
    inner: CoreClient,
    tasks: Arc<Mutex<HashMap<String, JoinHandle<()>>>>,
}

impl ModuleClient {
    fn new(inner: CoreClient) -> Self {
        ModuleClient { inner, tasks: Arc::default() }
    }

    /// Starts the task that feeds one handler, replacing the one registered under `key`.
    fn run(&self, key: String, task: impl std::future::Future<Output = ()> + Send + 'static) {
        let handle = napi::bindgen_prelude::spawn(task);
        if let Some(old) = self.tasks.lock().unwrap().insert(key, handle) {
            old.abort();
        }
    }
}

#[napi]
impl ModuleClient {
    /// Connects with the IoT Edge environment of this process (IOTEDGE_* variables and the
    /// workload API, or EdgeHubConnectionString + EdgeModuleCACertificateFile).
    #[napi(catch_unwind)]
    pub fn from_environment(env: &Env, options: Option<ClientOptions>) -> napi::Result<PromiseRaw<'_, ModuleClient>> {
        let options = options.unwrap_or_default();
        let core = options.to_core();
        let ca = options.ca;
        promise(env, async move {
            let mut core = core?;
            if let Some(ca) = ca {
                core = core.with_extra_ca_pem(ca);
            }
            // The core's `from_environment` future is not `Send` (its environment lookup is a
            // non-`Sync` `&dyn Fn`), so it runs to completion on a blocking thread.
            let handle = tokio::runtime::Handle::current();
            tokio::task::spawn_blocking(move || handle.block_on(CoreClient::from_environment(core)))
                .await
                .map_err(|e| CoreError::new(ErrorKind::Internal, format!("connecting panicked: {e}")))?
                .map(ModuleClient::new)
        })
    }

    /// Connects with a module connection string (with `GatewayHostName` for an edge hub);
    /// `options.ca` is the PEM of the CA that issued the hub's certificate.
    #[napi(catch_unwind)]
    pub fn from_connection_string(
        env: &Env,
        connection_string: String,
        options: Option<ClientOptions>,
    ) -> napi::Result<PromiseRaw<'_, ModuleClient>> {
        let options = options.unwrap_or_default();
        let core = options.to_core();
        let ca = options.ca;
        promise(env, async move {
            CoreClient::from_connection_string(&connection_string, ca.as_deref(), core?).await.map(ModuleClient::new)
        })
    }

    #[napi(getter, catch_unwind)]
    pub fn device_id(&self) -> String {
        self.inner.device_id().to_string()
    }

    #[napi(getter, catch_unwind)]
    pub fn module_id(&self) -> String {
        self.inner.module_id().to_string()
    }

    /// The current connection state.
    #[napi(getter, catch_unwind)]
    pub fn connection_state(&self) -> ConnectionState {
        (*self.inner.connection_state().borrow()).into()
    }

    /// Sends `message` on output `outputName`; resolves when the hub has stored it.
    #[napi(catch_unwind, ts_return_type = "Promise<void>")]
    pub fn send_output_event<'env>(
        &self,
        env: &'env Env,
        output_name: String,
        message: &Message,
    ) -> napi::Result<PromiseRaw<'env, ()>> {
        let (client, msg) = (self.inner.clone(), message.inner.clone());
        promise_local(env, async move { client.send_to_output(&output_name, msg).await })
    }

    /// Sends several messages pipelined on one output; resolves when all are stored.
    #[napi(catch_unwind, ts_return_type = "Promise<void>")]
    pub fn send_output_event_batch<'env>(
        &self,
        env: &'env Env,
        output_name: String,
        messages: Vec<ClassInstance<'env, Message>>,
    ) -> napi::Result<PromiseRaw<'env, ()>> {
        let client = self.inner.clone();
        let msgs: Vec<_> = messages.iter().map(|m| m.inner.clone()).collect();
        promise_local(env, async move { client.send_batch_to_output(&output_name, msgs, None).await })
    }

    /// Reads the module twin.
    #[napi(catch_unwind)]
    pub fn get_twin<'env>(&self, env: &'env Env) -> napi::Result<PromiseRaw<'env, Twin>> {
        let client = self.inner.clone();
        promise_local(env, async move {
            let twin = client.get_twin(None).await?;
            Ok(Twin { desired: twin.desired, reported: twin.reported })
        })
    }

    /// Sends a reported-properties patch (`null` members delete).
    #[napi(catch_unwind, ts_return_type = "Promise<void>")]
    pub fn update_reported<'env>(
        &self,
        env: &'env Env,
        #[napi(ts_arg_type = "Record<string, any>")] patch: Value,
    ) -> napi::Result<PromiseRaw<'env, ()>> {
        let client = self.inner.clone();
        promise_local(env, async move { client.update_reported(&patch, None).await })
    }

    /// Calls a direct method on another module (or, with `moduleId` null, a device) through the
    /// hub.
    #[napi(catch_unwind)]
    pub fn invoke_method<'env>(
        &self,
        env: &'env Env,
        device_id: String,
        module_id: Option<String>,
        params: MethodParams,
    ) -> napi::Result<PromiseRaw<'env, MethodResult>> {
        let client = self.inner.clone();
        let call = params.to_core();
        promise(env, async move {
            let r = client.invoke_method(&device_id, module_id.as_deref(), &call?).await?;
            Ok(MethodResult { status: r.status, payload: r.payload })
        })
    }

    /// Calls `handler` with each message arriving on input `inputName`, or with `null` on every
    /// input that has no handler of its own. Settle each message with `complete()`, `abandon()` or
    /// `reject()`, now or later. Registering the same input again replaces the handler.
    #[napi(catch_unwind)]
    pub fn on_input_message(
        &self,
        env: Env,
        input_name: Option<String>,
        #[napi(ts_arg_type = "(message: Message) => unknown")] handler: Function<'_, Message, Unknown<'static>>,
    ) -> napi::Result<()> {
        let handler = self::handler::<Message, _>(&env, handler)?;
        match input_name {
            Some(name) => {
                let rx = self.inner.input_receiver(&name).map_err(|e| to_js(&env, &e))?;
                self.run(format!("input:{name}"), feed(handler, rx, Message::received));
            }
            None => {
                let client = self.inner.clone();
                self.run("input:*".into(), async move {
                    while let Ok(m) = client.recv(None).await {
                        if !handler.0.push([Arg(Message::received(m))]) {
                            return;
                        }
                    }
                });
            }
        }
        Ok(())
    }

    /// Calls `handler` with each desired-properties patch (with `$version`). After a reconnect
    /// that missed patches, the whole desired document arrives as one patch.
    #[napi(catch_unwind)]
    pub fn on_desired_properties_update(
        &self,
        env: Env,
        #[napi(ts_arg_type = "(patch: Record<string, any>) => unknown")] handler: Function<'_, Value, Unknown<'static>>,
    ) -> napi::Result<()> {
        let handler = self::handler::<Value, _>(&env, handler)?;
        let rx = self.inner.desired_receiver().map_err(|e| to_js(&env, &e))?;
        self.run("desired".into(), feed(handler, rx, |patch| patch));
        Ok(())
    }

    /// Calls `handler` with each call of direct method `methodName`, or with `null` of every
    /// method without a handler of its own. Answer with `request.respond(status, payload)`, now
    /// or later.
    #[napi(catch_unwind)]
    pub fn on_method(
        &self,
        env: Env,
        method_name: Option<String>,
        #[napi(ts_arg_type = "(request: MethodRequest) => unknown")] handler: Function<
            '_,
            MethodRequest,
            Unknown<'static>,
        >,
    ) -> napi::Result<()> {
        let handler = self::handler::<MethodRequest, _>(&env, handler)?;
        let rx = self.inner.method_receiver(method_name.as_deref()).map_err(|e| to_js(&env, &e))?;
        let key = format!("method:{}", method_name.as_deref().unwrap_or("*"));
        self.run(key, feed(handler, rx, |req| MethodRequest { inner: Arc::new(req) }));
        Ok(())
    }

    /// Calls `handler` with every change of the connection state (the last one is
    /// `{connected: false, reason: 'CLOSED'}` after `close()`).
    #[napi(catch_unwind)]
    pub fn on_connection_state_change(
        &self,
        env: Env,
        #[napi(ts_arg_type = "(state: ConnectionState) => unknown")] handler: Function<
            '_,
            ConnectionState,
            Unknown<'static>,
        >,
    ) -> napi::Result<()> {
        let handler = self::handler::<ConnectionState, _>(&env, handler)?;
        let mut rx = self.inner.connection_state();
        rx.mark_unchanged();
        self.run("state".into(), async move {
            while rx.changed().await.is_ok() {
                let state: ConnectionState = (*rx.borrow_and_update()).into();
                if !handler.0.push([Arg(state)]) {
                    return;
                }
            }
        });
        Ok(())
    }

    /// Publishes `payload` (a Buffer or a string, sent as UTF-8) on user topic `topic` (no
    /// wildcards, not a `devices/…` or `$iothub/…` topic). Resolves on the hub's PUBACK (QoS 1, the
    /// default) or once written (QoS 0). A publish the hub's policy refuses makes the hub drop
    /// the connection; the client reconnects, resends once, then rejects with CONNECTION_LOST.
    #[napi(catch_unwind, ts_return_type = "Promise<void>")]
    pub fn publish<'env>(
        &self,
        env: &'env Env,
        topic: String,
        payload: Either<Buffer, String>,
        options: Option<PublishOptions>,
    ) -> napi::Result<PromiseRaw<'env, ()>> {
        let client = self.inner.clone();
        let payload = body_bytes(payload);
        let options = options.unwrap_or_default().to_core();
        promise_local(env, async move {
            let (qos, retain, timeout) = options?;
            client.publish_with_timeout(&topic, payload, qos, retain, timeout).await
        })
    }

    /// Subscribes to user-topic filter `filter` (MQTT wildcards `+` and `#` allowed) and resolves
    /// once the hub granted it (REJECTED if its policy refuses). From then on `handler` is called
    /// with each message on a matching topic, retained ones first. Subscribing to the same filter
    /// again replaces the handler. The subscription is restored after every reconnect.
    #[napi(catch_unwind, ts_return_type = "Promise<void>")]
    pub fn subscribe<'env>(
        &self,
        env: &'env Env,
        filter: String,
        #[napi(ts_arg_type = "(message: TopicMessage) => unknown")] handler: Function<
            '_,
            TopicMessage,
            Unknown<'static>,
        >,
    ) -> napi::Result<PromiseRaw<'env, ()>> {
        let handler = self::handler::<TopicMessage, _>(env, handler)?;
        let (client, tasks) = (self.inner.clone(), self.tasks.clone());
        promise(env, async move {
            // On failure the handler is dropped here, which releases it.
            let rx = client.subscribe(&filter).await?;
            let task = napi::bindgen_prelude::spawn(feed(handler, rx, TopicMessage::from));
            if let Some(old) = tasks.lock().unwrap().insert(format!("topic:{filter}"), task) {
                old.abort();
            }
            Ok(())
        })
    }

    /// Ends the subscription to `filter`; resolves on the hub's confirmation. Its handler is not
    /// called any more (and no longer keeps the process alive).
    #[napi(catch_unwind, ts_return_type = "Promise<void>")]
    pub fn unsubscribe<'env>(&self, env: &'env Env, filter: String) -> napi::Result<PromiseRaw<'env, ()>> {
        let (client, tasks) = (self.inner.clone(), self.tasks.clone());
        promise(env, async move {
            client.unsubscribe(&filter).await?;
            if let Some(task) = tasks.lock().unwrap().remove(&format!("topic:{filter}")) {
                task.abort();
            }
            Ok(())
        })
    }

    /// Disconnects. Pending operations reject with CLOSED, handlers stop and release the event
    /// loop. Closing twice is harmless.
    #[napi(catch_unwind, ts_return_type = "Promise<void>")]
    pub fn close<'env>(&self, env: &'env Env) -> napi::Result<PromiseRaw<'env, ()>> {
        let (client, tasks) = (self.inner.clone(), self.tasks.clone());
        promise(env, async move {
            client.close().await?;
            let handles: Vec<_> = tasks.lock().unwrap().drain().map(|(_, h)| h).collect();
            for mut h in handles {
                if tokio::time::timeout(DRAIN, &mut h).await.is_err() {
                    h.abort();
                }
            }
            Ok(())
        })
    }
}

/// A direct-method call to this module.
#[napi]
pub struct MethodRequest {
    inner: Arc<edgemodule_core::MethodRequest>,
}

#[napi]
impl MethodRequest {
    #[napi(getter, catch_unwind)]
    pub fn method_name(&self) -> String {
        self.inner.name().to_string()
    }

    #[napi(getter, catch_unwind)]
    pub fn request_id(&self) -> String {
        self.inner.request_id().to_string()
    }

    /// The request payload as JSON (`null` when empty).
    #[napi(getter, catch_unwind)]
    pub fn payload(&self, env: Env) -> napi::Result<Value> {
        self.inner.payload_json().map_err(|e| to_js(&env, &e))
    }

    /// Sends the response: a status of the module's choosing and any JSON payload. Resolves when
    /// the response is on its way; a second response rejects with INVALID_STATE.
    #[napi(catch_unwind, ts_return_type = "Promise<void>")]
    pub fn respond<'env>(
        &self,
        env: &'env Env,
        status: i64,
        payload: Option<Value>,
    ) -> napi::Result<PromiseRaw<'env, ()>> {
        let req = self.inner.clone();
        promise_local(env, async move { req.respond(status, payload.as_ref()).await })
    }
}
