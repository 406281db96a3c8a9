//! `edge_client`: a core `ModuleClient`, its dispatcher thread and its callback registrations.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::ffi::c_void;
use std::future::Future;
use std::os::raw::{c_char, c_int};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use edgemodule_core::{Message, MethodInvocation, ModuleClient, TopicMessage};
use tokio::task::JoinHandle;

use crate::boundary::{
    check_out, status_boundary, try_bytes, try_opt_str, try_ref, try_str, try_text, value_boundary, write_out,
};
use crate::callback::{
    dispatch, edge_connection_state_cb, edge_message_cb, edge_method_cb, edge_method_request, edge_topic_message_cb,
    edge_twin_cb, edge_user_data_free_cb, Callback, Event, Registration,
};
use crate::edge_string;
use crate::message::edge_message;
use crate::options::edge_options;
use crate::runtime::{block_on, check_may_block, in_callback, runtime};
use crate::status::{copy_out, edge_status, Failure, FfiResult};

/// What a registration is for; one live registration per key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Input(String),
    DefaultInput,
    Method(String),
    DefaultMethod,
    Desired,
    State,
    /// A user-topic subscription, by filter.
    Topic(String),
}

type Slots = Arc<Mutex<HashMap<Key, Arc<Registration>>>>;

/// A connected module client (opaque). Thread-safe: every function taking
/// `const edge_client *` may be called from any thread at the same time.
pub struct edge_client {
    client: ModuleClient,
    events: Mutex<Option<mpsc::Sender<Event>>>,
    slots: Slots,
    forwarders: Mutex<HashMap<Key, JoinHandle<()>>>,
    closing: Arc<AtomicBool>,
    dispatcher: Mutex<Option<(std::thread::JoinHandle<()>, mpsc::Receiver<()>)>>,
    shut_down: AtomicBool,
}

fn timeout(ms: u32) -> Option<Duration> {
    (ms != 0).then(|| Duration::from_millis(u64::from(ms)))
}

/// Posts an event built from the current registration of `key` to the dispatcher. Returns false
/// when the dispatcher is gone.
fn post(slots: &Slots, key: &Key, tx: &mpsc::Sender<Event>, make: impl FnOnce(Arc<Registration>) -> Event) -> bool {
    let reg = slots.lock().unwrap().get(key).cloned();
    match reg {
        Some(reg) => tx.send(make(reg)).is_ok(),
        None => true,
    }
}

impl edge_client {
    fn connect(what: &str, connect: impl Future<Output = edgemodule_core::Result<ModuleClient>>) -> FfiResult<Self> {
        let client = block_on(what, connect)??;
        let (tx, rx) = mpsc::channel();
        let closing = Arc::new(AtomicBool::new(false));
        let (done_tx, done_rx) = mpsc::channel();
        let closing2 = closing.clone();
        let thread = std::thread::Builder::new()
            .name("edgemodule-dispatch".into())
            .spawn(move || {
                dispatch(rx, closing2);
                let _ = done_tx.send(());
            })
            .map_err(|e| Failure::new(edge_status::Internal, format!("cannot start the dispatcher thread: {e}")))?;
        Ok(edge_client {
            client,
            events: Mutex::new(Some(tx)),
            slots: Arc::new(Mutex::new(HashMap::new())),
            forwarders: Mutex::new(HashMap::new()),
            closing,
            dispatcher: Mutex::new(Some((thread, done_rx))),
            shut_down: AtomicBool::new(false),
        })
    }

    fn sender(&self) -> FfiResult<mpsc::Sender<Event>> {
        self.events.lock().unwrap().clone().ok_or_else(|| Failure::new(edge_status::Closed, "the client is closed"))
    }

    /// Installs `reg` under `key`, starting the key's forwarder on first use. On failure the
    /// registration is disarmed (the caller keeps its user data).
    fn register(
        &self,
        key: Key,
        reg: Registration,
        start: impl FnOnce(Slots, Key, mpsc::Sender<Event>) -> FfiResult<JoinHandle<()>>,
    ) -> FfiResult {
        let tx = match self.sender() {
            Ok(tx) => tx,
            Err(e) => {
                reg.disarm();
                return Err(e);
            }
        };
        let mut forwarders = self.forwarders.lock().unwrap();
        let old = self.slots.lock().unwrap().insert(key.clone(), Arc::new(reg));
        if let Entry::Vacant(vacant) = forwarders.entry(key.clone()) {
            match start(self.slots.clone(), key.clone(), tx.clone()) {
                Ok(handle) => {
                    vacant.insert(handle);
                }
                Err(e) => {
                    let mine = self.slots.lock().unwrap().remove(&key);
                    if let Some(reg) = mine.and_then(Arc::into_inner) {
                        reg.disarm();
                    }
                    return Err(e);
                }
            }
        }
        if let Some(old) = old {
            // End the replaced registration on the dispatcher, after its queued events.
            let _ = tx.send(Event::Release(old));
        }
        Ok(())
    }

    /// Installs the registration of a granted subscription to `filter` and starts forwarding
    /// `rx` to it, replacing an earlier subscription to the same filter (whose `user_data_free`
    /// runs after its queued calls). On failure the registration is disarmed.
    fn register_subscription(
        &self,
        filter: &str,
        reg: Registration,
        mut rx: tokio::sync::mpsc::UnboundedReceiver<TopicMessage>,
    ) -> FfiResult {
        let (tx, rt) = match self.sender().and_then(|tx| Ok((tx, runtime()?))) {
            Ok(ready) => ready,
            Err(e) => {
                reg.disarm();
                return Err(e);
            }
        };
        let key = Key::Topic(filter.to_string());
        let mut forwarders = self.forwarders.lock().unwrap();
        let old = self.slots.lock().unwrap().insert(key.clone(), Arc::new(reg));
        let (slots, k, t) = (self.slots.clone(), key.clone(), tx.clone());
        let handle = rt.spawn(async move {
            while let Some(m) = rx.recv().await {
                if !post(&slots, &k, &t, |r| Event::Topic(r, m)) {
                    break;
                }
            }
        });
        if let Some(replaced) = forwarders.insert(key, handle) {
            replaced.abort();
        }
        if let Some(old) = old {
            let _ = tx.send(Event::Release(old));
        }
        Ok(())
    }

    /// Ends the registration of the subscription to `filter`, if any: no further calls, and its
    /// `user_data_free` runs on the dispatcher after the calls already queued.
    fn end_subscription(&self, filter: &str) {
        let key = Key::Topic(filter.to_string());
        if let Some(forwarder) = self.forwarders.lock().unwrap().remove(&key) {
            forwarder.abort();
        }
        let reg = self.slots.lock().unwrap().remove(&key);
        if let (Some(reg), Some(tx)) = (reg, self.events.lock().unwrap().as_ref()) {
            let _ = tx.send(Event::Release(reg));
        }
    }

    /// Closes the connection, stops the forwarders, ends every registration and stops the
    /// dispatcher. Idempotent. Must not run on this client's dispatcher thread.
    fn shutdown(&self) {
        if self.shut_down.swap(true, Ordering::AcqRel) {
            return;
        }
        self.closing.store(true, Ordering::Release);
        if let Ok(rt) = runtime() {
            let client = self.client.clone();
            let forwarders: Vec<_> = self.forwarders.lock().unwrap().drain().map(|(_, h)| h).collect();
            rt.block_on(async move {
                let _ = client.close().await;
                for f in &forwarders {
                    f.abort();
                }
                for f in forwarders {
                    let _ = tokio::time::timeout(Duration::from_secs(5), f).await;
                }
            });
        }
        let slots: Vec<_> = self.slots.lock().unwrap().drain().map(|(_, r)| r).collect();
        if let Some(tx) = self.events.lock().unwrap().take() {
            for reg in slots {
                let _ = tx.send(Event::Release(reg));
            }
            let _ = tx.send(Event::Shutdown);
        }
        if let Some((thread, done)) = self.dispatcher.lock().unwrap().take() {
            // A callback that never returns must not hang the caller forever.
            if done.recv_timeout(Duration::from_secs(30)).is_ok() {
                let _ = thread.join();
            }
        }
    }
}

impl Drop for edge_client {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Connects using the IoT Edge environment of this process (IOTEDGE_* variables and the
/// workload API, or EdgeHubConnectionString + EdgeModuleCACertificateFile). `opts` may be NULL
/// for defaults; it is copied. Blocks until connected or failed (bounded by the connect
/// timeout). On success `*out` receives a client to free with `edge_client_free`.
#[no_mangle]
pub unsafe extern "C" fn edge_client_new_from_environment(
    opts: *const edge_options,
    out: *mut *mut edge_client,
) -> edge_status {
    status_boundary(|| {
        check_out(out, "out")?;
        // SAFETY: NULL or live options (C contract).
        let options = unsafe { opts.as_ref() }.map(|o| o.inner.clone()).unwrap_or_default();
        let client = edge_client::connect("edge_client_new_from_environment", ModuleClient::from_environment(options))?;
        // SAFETY: checked non-NULL.
        unsafe { write_out(out, Box::into_raw(Box::new(client))) };
        Ok(())
    })
}

/// Connects with a module connection string and, optionally (NULL), the PEM text of the CA
/// that issued the hub's certificate. `opts` may be NULL for defaults. Blocks like
/// `edge_client_new_from_environment`.
#[no_mangle]
pub unsafe extern "C" fn edge_client_new_from_connection_string(
    connection_string: *const c_char,
    ca_pem: *const c_char,
    opts: *const edge_options,
    out: *mut *mut edge_client,
) -> edge_status {
    status_boundary(|| {
        check_out(out, "out")?;
        // SAFETY: C contract for all pointers.
        let (cs, ca, options) = unsafe {
            (
                try_str(connection_string, "connection_string")?,
                try_opt_str(ca_pem, "ca_pem")?,
                opts.as_ref().map(|o| o.inner.clone()).unwrap_or_default(),
            )
        };
        let client = edge_client::connect(
            "edge_client_new_from_connection_string",
            ModuleClient::from_connection_string(cs, ca, options),
        )?;
        // SAFETY: checked non-NULL.
        unsafe { write_out(out, Box::into_raw(Box::new(client))) };
        Ok(())
    })
}

/// Closes the connection (operations in progress fail with EDGE_STATUS_CLOSED), ends every
/// handler registration (calling its `user_data_free`) and frees the client. NULL is a no-op.
/// Must not be called from inside one of this client's callbacks (if it is, the close finishes
/// on a helper thread after the callback returns).
#[no_mangle]
pub unsafe extern "C" fn edge_client_free(client: *mut edge_client) {
    value_boundary((), || {
        if client.is_null() {
            return;
        }
        // SAFETY: created by edge_client_new_* and freed once (C contract).
        let boxed = unsafe { Box::from_raw(client) };
        if in_callback() || tokio::runtime::Handle::try_current().is_ok() {
            let _ = std::thread::Builder::new().name("edgemodule-free".into()).spawn(move || drop(boxed));
        } else {
            drop(boxed);
        }
    })
}

/// Closes the connection without freeing the client: later operations fail with
/// EDGE_STATUS_CLOSED and no callback runs any more. Closing twice is harmless. Blocking.
#[no_mangle]
pub unsafe extern "C" fn edge_client_close(client: *const edge_client) -> edge_status {
    status_boundary(|| {
        // SAFETY: C contract.
        let c = unsafe { try_ref(client, "client") }?;
        check_may_block("edge_client_close")?;
        c.shutdown();
        Ok(())
    })
}

/// Copies this client's module id into `buf` (sizing as `edge_last_error_message`).
#[no_mangle]
pub unsafe extern "C" fn edge_client_module_id(
    client: *const edge_client,
    buf: *mut c_char,
    len: usize,
    out_len: *mut usize,
) -> edge_status {
    status_boundary(|| {
        // SAFETY: C contract.
        let c = unsafe { try_ref(client, "client") }?;
        // SAFETY: C contract for buf/len/out_len.
        unsafe { copy_out(c.client.module_id().as_bytes(), buf, len, out_len) }
    })
}

/// Copies this client's device id into `buf` (sizing as `edge_last_error_message`).
#[no_mangle]
pub unsafe extern "C" fn edge_client_device_id(
    client: *const edge_client,
    buf: *mut c_char,
    len: usize,
    out_len: *mut usize,
) -> edge_status {
    status_boundary(|| {
        // SAFETY: C contract.
        let c = unsafe { try_ref(client, "client") }?;
        // SAFETY: C contract for buf/len/out_len.
        unsafe { copy_out(c.client.device_id().as_bytes(), buf, len, out_len) }
    })
}

/// Sends a copy of `msg` on output `output` and blocks until the hub stored it, or
/// `timeout_ms` passed (0 = the client's default timeout).
#[no_mangle]
pub unsafe extern "C" fn edge_client_send_to_output(
    client: *const edge_client,
    output: *const c_char,
    msg: *const edge_message,
    timeout_ms: u32,
) -> edge_status {
    status_boundary(|| {
        // SAFETY: C contract.
        let (c, output, msg) =
            unsafe { (try_ref(client, "client")?, try_str(output, "output")?, try_ref(msg, "msg")?) };
        let message = msg.message.clone();
        Ok(block_on(
            "edge_client_send_to_output",
            c.client.send_to_output_with_timeout(output, message, timeout(timeout_ms)),
        )??)
    })
}

/// Sends copies of `count` messages on output `output`, pipelined, and blocks until all are
/// stored or the first error (0 `timeout_ms` = the client's default, for the whole batch).
#[no_mangle]
pub unsafe extern "C" fn edge_client_send_batch_to_output(
    client: *const edge_client,
    output: *const c_char,
    msgs: *const *const edge_message,
    count: usize,
    timeout_ms: u32,
) -> edge_status {
    status_boundary(|| {
        // SAFETY: C contract.
        let (c, output) = unsafe { (try_ref(client, "client")?, try_str(output, "output")?) };
        // SAFETY: C contract: msgs holds count pointers.
        let ptrs = unsafe { try_bytes(msgs.cast::<u8>(), count * size_of::<*const edge_message>(), "msgs") }?;
        let ptrs = ptrs.as_ptr().cast::<*const edge_message>();
        let mut batch: Vec<Message> = Vec::with_capacity(count);
        for i in 0..count {
            // SAFETY: i < count; each element NULL or a live message.
            let m = unsafe { try_ref(*ptrs.add(i), "msgs[i]") }?;
            batch.push(m.message.clone());
        }
        Ok(block_on(
            "edge_client_send_batch_to_output",
            c.client.send_batch_to_output(output, batch, timeout(timeout_ms)),
        )??)
    })
}

fn need<T>(cb: Option<T>) -> FfiResult<T> {
    cb.ok_or_else(|| Failure::null("callback"))
}

/// Registers `callback` for messages on input `input`, or (`input` NULL) for every input
/// without its own handler. Replaces an earlier handler for the same input, whose
/// `user_data_free` then runs (after its queued calls). `user_data` is passed to every call;
/// `user_data_free` (nullable) runs exactly once when this registration ends: replaced, or the
/// client closed or freed. On failure neither is used. Does not block.
#[no_mangle]
pub unsafe extern "C" fn edge_client_set_input_handler(
    client: *const edge_client,
    input: *const c_char,
    callback: edge_message_cb,
    user_data: *mut c_void,
    user_data_free: edge_user_data_free_cb,
) -> edge_status {
    status_boundary(|| {
        // SAFETY: C contract.
        let (c, input) = unsafe { (try_ref(client, "client")?, try_opt_str(input, "input")?) };
        let reg = Registration::new(Callback::Message(need(callback)?), user_data, user_data_free);
        let core = c.client.clone();
        match input {
            Some(name) => {
                let name = name.to_string();
                c.register(Key::Input(name.clone()), reg, move |slots, key, tx| {
                    let mut rx = core.input_receiver(&name)?;
                    Ok(runtime()?.spawn(async move {
                        while let Some(m) = rx.recv().await {
                            if !post(&slots, &key, &tx, |r| Event::Input(r, Box::new(m))) {
                                break;
                            }
                        }
                    }))
                })
            }
            None => c.register(Key::DefaultInput, reg, move |slots, key, tx| {
                Ok(runtime()?.spawn(async move {
                    while let Ok(m) = core.recv(None).await {
                        if !post(&slots, &key, &tx, |r| Event::Input(r, Box::new(m))) {
                            break;
                        }
                    }
                }))
            }),
        }
    })
}

/// Registers `callback` for direct-method calls named `method`, or (`method` NULL) for every
/// method without its own handler. Registration rules as `edge_client_set_input_handler`.
/// Calls with no handler at all are answered 501 by the core.
#[no_mangle]
pub unsafe extern "C" fn edge_client_set_method_handler(
    client: *const edge_client,
    method: *const c_char,
    callback: edge_method_cb,
    user_data: *mut c_void,
    user_data_free: edge_user_data_free_cb,
) -> edge_status {
    status_boundary(|| {
        // SAFETY: C contract.
        let (c, method) = unsafe { (try_ref(client, "client")?, try_opt_str(method, "method")?) };
        let reg = Registration::new(Callback::Method(need(callback)?), user_data, user_data_free);
        let key = method.map_or(Key::DefaultMethod, |m| Key::Method(m.to_string()));
        let core = c.client.clone();
        let name = method.map(str::to_string);
        c.register(key, reg, move |slots, key, tx| {
            let mut rx = core.method_receiver(name.as_deref())?;
            Ok(runtime()?.spawn(async move {
                while let Some(req) = rx.recv().await {
                    if !post(&slots, &key, &tx, |r| Event::Method(r, req)) {
                        break;
                    }
                }
            }))
        })
    })
}

/// Registers `callback` for desired-property patches. Registration rules as
/// `edge_client_set_input_handler`.
#[no_mangle]
pub unsafe extern "C" fn edge_client_set_desired_handler(
    client: *const edge_client,
    callback: edge_twin_cb,
    user_data: *mut c_void,
    user_data_free: edge_user_data_free_cb,
) -> edge_status {
    status_boundary(|| {
        // SAFETY: C contract.
        let c = unsafe { try_ref(client, "client") }?;
        let reg = Registration::new(Callback::Twin(need(callback)?), user_data, user_data_free);
        let core = c.client.clone();
        c.register(Key::Desired, reg, move |slots, key, tx| {
            let mut rx = core.desired_receiver()?;
            Ok(runtime()?.spawn(async move {
                while let Some(patch) = rx.recv().await {
                    if !post(&slots, &key, &tx, |r| Event::Desired(r, patch.to_string())) {
                        break;
                    }
                }
            }))
        })
    })
}

/// Registers `callback` for connection-state changes; it is first called with the current
/// state. Registration rules as `edge_client_set_input_handler`.
#[no_mangle]
pub unsafe extern "C" fn edge_client_set_connection_state_handler(
    client: *const edge_client,
    callback: edge_connection_state_cb,
    user_data: *mut c_void,
    user_data_free: edge_user_data_free_cb,
) -> edge_status {
    status_boundary(|| {
        // SAFETY: C contract.
        let c = unsafe { try_ref(client, "client") }?;
        let reg = Registration::new(Callback::State(need(callback)?), user_data, user_data_free);
        let core = c.client.clone();
        c.register(Key::State, reg, move |slots, key, tx| {
            let mut rx = core.connection_state();
            Ok(runtime()?.spawn(async move {
                let first = *rx.borrow_and_update();
                if !post(&slots, &key, &tx, |r| Event::State(r, first)) {
                    return;
                }
                while rx.changed().await.is_ok() {
                    let state = *rx.borrow_and_update();
                    if !post(&slots, &key, &tx, |r| Event::State(r, state)) {
                        break;
                    }
                }
            }))
        })
    })
}

fn twin_json(c: &edge_client, timeout_ms: u32) -> FfiResult<String> {
    let twin = block_on("edge_client_get_twin", c.client.get_twin(timeout(timeout_ms)))??;
    Ok(serde_json::json!({ "desired": twin.desired, "reported": twin.reported }).to_string())
}

/// Reads the module twin as JSON text `{"desired":{...},"reported":{...}}` into `buf`
/// (sizing as `edge_last_error_message`; on EDGE_STATUS_INSUFFICIENT_SIZE call again with a
/// bigger buffer, or use `edge_client_get_twin_string`). Blocking.
#[no_mangle]
pub unsafe extern "C" fn edge_client_get_twin(
    client: *const edge_client,
    timeout_ms: u32,
    buf: *mut c_char,
    len: usize,
    out_len: *mut usize,
) -> edge_status {
    status_boundary(|| {
        check_out(out_len, "out_len")?;
        // SAFETY: C contract.
        let c = unsafe { try_ref(client, "client") }?;
        let json = twin_json(c, timeout_ms)?;
        // SAFETY: C contract for buf/len/out_len.
        unsafe { copy_out(json.as_bytes(), buf, len, out_len) }
    })
}

/// Reads the module twin (as `edge_client_get_twin`) into a new `edge_string` (free it with
/// `edge_string_free`). Blocking.
#[no_mangle]
pub unsafe extern "C" fn edge_client_get_twin_string(
    client: *const edge_client,
    timeout_ms: u32,
    out: *mut *mut edge_string,
) -> edge_status {
    status_boundary(|| {
        check_out(out, "out")?;
        // SAFETY: C contract.
        let c = unsafe { try_ref(client, "client") }?;
        let json = twin_json(c, timeout_ms)?;
        // SAFETY: checked non-NULL.
        unsafe { write_out(out, edge_string::boxed(json)) };
        Ok(())
    })
}

/// Sends a reported-properties patch: `len` bytes of JSON text (an object; `null` members
/// delete). Blocking.
#[no_mangle]
pub unsafe extern "C" fn edge_client_update_reported(
    client: *const edge_client,
    json: *const c_char,
    len: usize,
    timeout_ms: u32,
) -> edge_status {
    status_boundary(|| {
        // SAFETY: C contract.
        let (c, text) = unsafe { (try_ref(client, "client")?, try_text(json, len, "json")?) };
        let patch: serde_json::Value =
            serde_json::from_str(text).map_err(|e| Failure::invalid(format!("reported patch is not JSON: {e}")))?;
        Ok(block_on("edge_client_update_reported", c.client.update_reported(&patch, timeout(timeout_ms)))??)
    })
}

/// Invokes direct method `method` on module `module_id` of device `device_id` (`module_id`
/// NULL: the device itself) through the hub, with `len` bytes of JSON payload (empty = null).
/// `response_timeout_ms` 0 means the core default (30 s); `connect_timeout_ms` is how long the
/// target may take to connect. On success `*out_status` receives the status the target answered
/// and, when `out_payload` is not NULL, `*out_payload` its JSON payload (free with
/// `edge_string_free`). Blocking.
#[no_mangle]
pub unsafe extern "C" fn edge_client_invoke_method(
    client: *const edge_client,
    device_id: *const c_char,
    module_id: *const c_char,
    method: *const c_char,
    json: *const c_char,
    len: usize,
    response_timeout_ms: u32,
    connect_timeout_ms: u32,
    out_status: *mut i64,
    out_payload: *mut *mut edge_string,
) -> edge_status {
    status_boundary(|| {
        check_out(out_status, "out_status")?;
        // SAFETY: C contract for every pointer.
        let (c, device, module, method, payload) = unsafe {
            (
                try_ref(client, "client")?,
                try_str(device_id, "device_id")?,
                try_opt_str(module_id, "module_id")?,
                try_str(method, "method")?,
                try_bytes(json.cast::<u8>(), len, "json")?,
            )
        };
        let payload = edgemodule_core::validate::method_payload(payload)?;
        let mut call = MethodInvocation::new(method, payload);
        if response_timeout_ms != 0 {
            call.response_timeout = Duration::from_millis(u64::from(response_timeout_ms));
        }
        call.connect_timeout = Duration::from_millis(u64::from(connect_timeout_ms));
        let result = block_on("edge_client_invoke_method", c.client.invoke_method(device, module, &call))??;
        // SAFETY: out_status checked non-NULL; out_payload NULL or writable (C contract).
        unsafe {
            write_out(out_status, result.status);
            if !out_payload.is_null() {
                write_out(out_payload, edge_string::boxed(result.payload.to_string()));
            }
        }
        Ok(())
    })
}

/// Borrows the method name (UTF-8, not NUL-terminated).
#[no_mangle]
pub unsafe extern "C" fn edge_method_request_name(
    req: *const edge_method_request,
    out: *mut *const c_char,
    out_len: *mut usize,
) -> edge_status {
    status_boundary(|| {
        check_out(out, "out")?;
        check_out(out_len, "out_len")?;
        // SAFETY: C contract.
        let r = unsafe { try_ref(req, "req") }?;
        let name = r.inner.name();
        // SAFETY: both checked non-NULL.
        unsafe {
            write_out(out, name.as_ptr().cast());
            write_out(out_len, name.len());
        }
        Ok(())
    })
}

/// Borrows the raw JSON payload (`*data` NULL and `*len` 0 when empty).
#[no_mangle]
pub unsafe extern "C" fn edge_method_request_payload(
    req: *const edge_method_request,
    data: *mut *const c_char,
    len: *mut usize,
) -> edge_status {
    status_boundary(|| {
        check_out(data, "data")?;
        check_out(len, "len")?;
        // SAFETY: C contract.
        let r = unsafe { try_ref(req, "req") }?;
        let p = r.inner.payload();
        // SAFETY: both checked non-NULL.
        unsafe {
            write_out(data, if p.is_empty() { std::ptr::null() } else { p.as_ptr().cast() });
            write_out(len, p.len());
        }
        Ok(())
    })
}

/// Copies a method request so it can be answered after the callback returned, from any thread.
#[no_mangle]
pub unsafe extern "C" fn edge_method_request_clone(
    req: *const edge_method_request,
    out: *mut *mut edge_method_request,
) -> edge_status {
    status_boundary(|| {
        check_out(out, "out")?;
        // SAFETY: C contract.
        let r = unsafe { try_ref(req, "req") }?;
        // SAFETY: checked non-NULL.
        unsafe { write_out(out, Box::into_raw(Box::new(r.clone()))) };
        Ok(())
    })
}

/// Frees a copy made by `edge_method_request_clone`. NULL is a no-op.
#[no_mangle]
pub unsafe extern "C" fn edge_method_request_free(req: *mut edge_method_request) {
    value_boundary((), || {
        if !req.is_null() {
            // SAFETY: created by edge_method_request_clone and freed once (C contract).
            drop(unsafe { Box::from_raw(req) });
        }
    })
}

/// Answers the request with `status` and `len` bytes of JSON payload (empty = null). Allowed
/// inside callbacks and from any thread; answering twice gives EDGE_STATUS_INVALID_STATE.
#[no_mangle]
pub unsafe extern "C" fn edge_method_request_respond(
    req: *const edge_method_request,
    status: i64,
    json: *const c_char,
    len: usize,
) -> edge_status {
    status_boundary(|| {
        // SAFETY: C contract.
        let (r, payload) = unsafe { (try_ref(req, "req")?, try_bytes(json.cast::<u8>(), len, "json")?) };
        if tokio::runtime::Handle::try_current().is_ok() {
            return Err(Failure::new(edge_status::WouldDeadlock, "called from an async runtime thread"));
        }
        // Handing the response to the connection task never waits on the dispatcher, so this
        // short wait is safe inside callbacks.
        let inner = r.inner.clone();
        let payload = bytes::Bytes::copy_from_slice(payload);
        Ok(runtime()?.block_on(async move { inner.respond_raw(status, payload).await })?)
    })
}

// ---- user topics (the MQTT broker, docs/broker.md) ----

/// Publishes `len` bytes at `payload` (NULL allowed when `len` is 0) on user topic `topic` with
/// QoS `qos` (EDGE_QOS_AT_MOST_ONCE or EDGE_QOS_AT_LEAST_ONCE; anything else is
/// EDGE_STATUS_INVALID_ARGUMENT) and, when `retain` is true, asks the hub to keep it for later
/// subscribers (an empty retained payload clears the topic). Blocks until the hub's PUBACK
/// (QoS 1) or until written (QoS 0), at most `timeout_ms` (0 = the client's default timeout).
///
/// The topic must not contain wildcards nor be an IoT Hub topic (`devices/...`, `$iothub/...`):
/// EDGE_STATUS_INVALID_ARGUMENT. A publish the hub's authorization policy refuses makes the hub
/// close the connection; the client reconnects and resends a QoS 1 publish once, then fails
/// with EDGE_STATUS_CONNECTION_LOST.
#[no_mangle]
pub unsafe extern "C" fn edge_client_publish(
    client: *const edge_client,
    topic: *const c_char,
    payload: *const u8,
    len: usize,
    qos: c_int,
    retain: bool,
    timeout_ms: u32,
) -> edge_status {
    status_boundary(|| {
        // SAFETY: C contract.
        let (c, topic, payload) =
            unsafe { (try_ref(client, "client")?, try_str(topic, "topic")?, try_bytes(payload, len, "payload")?) };
        let qos = edgemodule_core::validate::qos(i64::from(qos))?;
        let payload = bytes::Bytes::copy_from_slice(payload);
        Ok(block_on(
            "edge_client_publish",
            c.client.publish_with_timeout(topic, payload, qos, retain, timeout(timeout_ms)),
        )??)
    })
}

/// Subscribes to user-topic filter `filter` (MQTT wildcards `+` and `#` allowed; not an IoT Hub
/// filter) at QoS 1 and blocks until the hub granted it (at most `timeout_ms`, 0 = the client's
/// default). From then on `callback` runs on the client's dispatcher thread with each message
/// on a matching topic, starting with the retained ones. A refusal by the hub's authorization
/// policy is EDGE_STATUS_REJECTED.
///
/// Subscribing to the same filter again replaces the earlier callback, whose `user_data_free`
/// then runs (after its queued calls). `user_data_free` (nullable) runs exactly once when this
/// registration ends: replaced, `edge_client_unsubscribe`, or the client closed or freed. On
/// failure neither `user_data` nor `user_data_free` is used. The subscription is restored after
/// every reconnect (matching retained messages then arrive again).
#[no_mangle]
pub unsafe extern "C" fn edge_client_subscribe(
    client: *const edge_client,
    filter: *const c_char,
    callback: edge_topic_message_cb,
    user_data: *mut c_void,
    user_data_free: edge_user_data_free_cb,
    timeout_ms: u32,
) -> edge_status {
    status_boundary(|| {
        // SAFETY: C contract.
        let (c, filter) = unsafe { (try_ref(client, "client")?, try_str(filter, "filter")?) };
        let callback = need(callback)?;
        let rx = block_on(
            "edge_client_subscribe",
            c.client.subscribe_with(filter, edgemodule_core::Qos::AtLeastOnce, timeout(timeout_ms)),
        )??;
        c.register_subscription(filter, Registration::new(Callback::Topic(callback), user_data, user_data_free), rx)
    })
}

/// Ends the subscription to `filter` and blocks until the hub confirmed it (at most
/// `timeout_ms`, 0 = the client's default; at once while disconnected: the request goes out on
/// reconnect). The filter's callback is not called any more and its `user_data_free` runs on the
/// dispatcher thread. Unsubscribing from a filter that has no subscription succeeds.
#[no_mangle]
pub unsafe extern "C" fn edge_client_unsubscribe(
    client: *const edge_client,
    filter: *const c_char,
    timeout_ms: u32,
) -> edge_status {
    status_boundary(|| {
        // SAFETY: C contract.
        let (c, filter) = unsafe { (try_ref(client, "client")?, try_str(filter, "filter")?) };
        block_on("edge_client_unsubscribe", c.client.unsubscribe_with_timeout(filter, timeout(timeout_ms)))??;
        c.end_subscription(filter);
        Ok(())
    })
}
