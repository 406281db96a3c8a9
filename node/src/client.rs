//! `ModuleClient`: every I/O method returns a Promise; handlers are JavaScript functions called
//! through thread-safe functions from tasks on the addon's runtime. A handler's thread-safe
//! function keeps the process alive while the client is open; `close()` ends the tasks, which
//! releases them, so the process can exit.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use edgemodule_core::{Error as CoreError, ErrorKind, InputMessage, ModuleClient as CoreClient};
use napi::bindgen_prelude::{ClassInstance, Function, PromiseRaw, Unknown};
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi::Env;
use napi_derive::napi;
use serde_json::Value;
use tokio::task::JoinHandle;

use crate::errors::{settle, to_js, CoreResult};
use crate::message::Message;
use crate::options::{ClientOptions, ConnectionState, MethodParams, MethodResult, Twin};

/// How long `close()` lets handler tasks drain (deliver a final CLOSED state) before ending them.
const DRAIN: Duration = Duration::from_secs(2);

/// A handler called from the runtime: strong while registered, never handed a JS error.
type Handler<T> = ThreadsafeFunction<T, Unknown<'static>, T, napi::Status, false>;

fn handler<T: 'static + napi::bindgen_prelude::JsValuesTupleIntoVec>(
    f: Function<'_, T, Unknown<'static>>,
) -> napi::Result<Handler<T>> {
    f.build_threadsafe_function::<T>().callee_handled::<false>().build()
}

/// Runs `fut` on the addon runtime and returns its Promise; a core error rejects it with a
/// coded `Error`.
fn promise<'env, T, F>(env: &'env Env, fut: F) -> napi::Result<PromiseRaw<'env, T>>
where
    T: 'static + Send + napi::bindgen_prelude::ToNapiValue,
    F: 'static + Send + std::future::Future<Output = CoreResult<T>>,
{
    env.spawn_future_with_callback(async move { Ok(fut.await) }, |env, result| settle(env, result))
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
        promise(env, async move { client.send_to_output(&output_name, msg).await })
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
        promise(env, async move { client.send_batch_to_output(&output_name, msgs, None).await })
    }

    /// Reads the module twin.
    #[napi(catch_unwind)]
    pub fn get_twin<'env>(&self, env: &'env Env) -> napi::Result<PromiseRaw<'env, Twin>> {
        let client = self.inner.clone();
        promise(env, async move {
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
        promise(env, async move { client.update_reported(&patch, None).await })
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
    /// input that has no handler of its own. Settle each message with `complete()` or `abandon()`,
    /// now or later. Registering the same input again replaces the handler.
    #[napi(catch_unwind)]
    pub fn on_input_message(
        &self,
        env: Env,
        input_name: Option<String>,
        #[napi(ts_arg_type = "(message: Message) => unknown")] handler: Function<'_, Message, Unknown<'static>>,
    ) -> napi::Result<()> {
        let tsfn = self::handler(handler)?;
        let deliver = move |m: InputMessage| {
            tsfn.call(Message::received(m), ThreadsafeFunctionCallMode::NonBlocking);
        };
        match input_name {
            Some(name) => {
                let mut rx = self.inner.input_receiver(&name).map_err(|e| to_js(&env, &e))?;
                self.run(format!("input:{name}"), async move {
                    while let Some(m) = rx.recv().await {
                        deliver(m);
                    }
                });
            }
            None => {
                let client = self.inner.clone();
                self.run("input:*".into(), async move {
                    while let Ok(m) = client.recv(None).await {
                        deliver(m);
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
        let tsfn = self::handler(handler)?;
        let mut rx = self.inner.desired_receiver().map_err(|e| to_js(&env, &e))?;
        self.run("desired".into(), async move {
            while let Some(patch) = rx.recv().await {
                tsfn.call(patch, ThreadsafeFunctionCallMode::NonBlocking);
            }
        });
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
        let tsfn = self::handler(handler)?;
        let mut rx = self.inner.method_receiver(method_name.as_deref()).map_err(|e| to_js(&env, &e))?;
        let key = format!("method:{}", method_name.as_deref().unwrap_or("*"));
        self.run(key, async move {
            while let Some(req) = rx.recv().await {
                tsfn.call(MethodRequest { inner: Arc::new(req) }, ThreadsafeFunctionCallMode::NonBlocking);
            }
        });
        Ok(())
    }

    /// Calls `handler` with every change of the connection state (the last one is
    /// `{connected: false, reason: 'CLOSED'}` after `close()`).
    #[napi(catch_unwind)]
    pub fn on_connection_state_change(
        &self,
        #[napi(ts_arg_type = "(state: ConnectionState) => unknown")] handler: Function<
            '_,
            ConnectionState,
            Unknown<'static>,
        >,
    ) -> napi::Result<()> {
        let tsfn = self::handler(handler)?;
        let mut rx = self.inner.connection_state();
        rx.mark_unchanged();
        self.run("state".into(), async move {
            while rx.changed().await.is_ok() {
                let state: ConnectionState = (*rx.borrow_and_update()).into();
                tsfn.call(state, ThreadsafeFunctionCallMode::NonBlocking);
            }
        });
        Ok(())
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
        promise(env, async move { req.respond(status, payload.as_ref()).await })
    }
}
