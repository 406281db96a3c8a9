//! The per-client dispatcher thread: the one place user handlers run. Tokio tasks forward the
//! core's receivers into a channel; this thread attaches to the interpreter and calls the
//! handler, so slow Python code never stalls the runtime and handlers see events in order.

use std::sync::{mpsc, Arc, Mutex};
use std::thread::{JoinHandle, ThreadId};
use std::time::Duration;

use edgemodule_core::state::ConnectionStatus;
use edgemodule_core::{ConnectionState, ErrorKind, InputMessage, MethodRequest, TopicMessage};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyList};
use serde_json::{json, Value};

use crate::convert;
use crate::errors;
use crate::message::{self, Pending, PyMessage, PyMethodRequest, PyMethodResponse, PyTopicMessage};
use crate::runtime;

pub type Handler = Arc<Py<PyAny>>;

pub enum Event {
    Message(Handler, Box<InputMessage>),
    Method(Handler, MethodRequest),
    Desired(Handler, Value),
    State(Handler, ConnectionState),
    Topic(Handler, TopicMessage),
    Stop,
}

pub struct Dispatcher {
    tx: mpsc::Sender<Event>,
    thread: Mutex<Option<(JoinHandle<()>, mpsc::Receiver<()>)>>,
    thread_id: ThreadId,
}

struct Context {
    pending: Pending,
    /// The asyncio loop of an `AsyncModuleClient`: coroutine handlers run there.
    event_loop: Option<Py<PyAny>>,
}

impl Dispatcher {
    pub fn start(pending: Pending, event_loop: Option<Py<PyAny>>) -> PyResult<Dispatcher> {
        let (tx, rx) = mpsc::channel();
        let (done_tx, done_rx) = mpsc::channel();
        let ctx = Context { pending, event_loop };
        let thread = std::thread::Builder::new()
            .name("edgemodule-dispatch".into())
            .spawn(move || {
                run(rx, ctx);
                let _ = done_tx.send(());
            })
            .map_err(|e| errors::internal(format!("cannot start the dispatcher thread: {e}")))?;
        let thread_id = thread.thread().id();
        Ok(Dispatcher { tx, thread: Mutex::new(Some((thread, done_rx))), thread_id })
    }

    pub fn sender(&self) -> mpsc::Sender<Event> {
        self.tx.clone()
    }

    /// Asks the thread to stop after the handler it is running, without waiting.
    pub fn request_stop(&self) {
        let _ = self.tx.send(Event::Stop);
    }

    /// Stops the thread and waits (bounded) for it, unless called from a handler on it.
    /// Call without holding the GIL: the running handler may need it to finish.
    pub fn stop_and_join(&self, limit: Duration) {
        self.request_stop();
        if std::thread::current().id() == self.thread_id {
            return;
        }
        let taken = self.thread.lock().unwrap().take();
        if let Some((handle, done)) = taken {
            if done.recv_timeout(limit).is_ok() {
                let _ = handle.join();
            }
        }
    }
}

/// Events handled per attachment to the interpreter: a burst of messages takes the GIL once
/// per batch, not once per message. (The interpreter still switches to other Python threads at
/// its switch interval while a handler runs.)
const BATCH: usize = 256;

fn run(rx: mpsc::Receiver<Event>, ctx: Context) {
    'outer: while let Ok(first) = rx.recv() {
        if matches!(first, Event::Stop) {
            break;
        }
        // At interpreter exit, stop quietly instead of panicking (see `exit`).
        let stopped = crate::exit::attach(|py| {
            handle(py, &ctx, first);
            for _ in 1..BATCH {
                if crate::exit::exiting() {
                    return true;
                }
                match rx.try_recv() {
                    Ok(Event::Stop) => return true,
                    Ok(event) => handle(py, &ctx, event),
                    Err(_) => break,
                }
            }
            false
        });
        match stopped {
            None => return,
            Some(true) => break 'outer,
            Some(false) => {}
        }
    }
    if let Some(event_loop) = ctx.event_loop {
        let _ = crate::exit::attach(move |_py| drop(event_loop));
    }
}

fn handle(py: Python<'_>, ctx: &Context, event: Event) {
    match event {
        Event::Message(handler, input) => {
            let msg = match PyMessage::from_input(py, *input).and_then(|m| Bound::new(py, m)) {
                Ok(m) => m,
                Err(e) => return log_exception(py, "converting a received message", e),
            };
            let result = call(py, ctx, &handler, (msg.clone(),));
            // A handler that returns without settling the message completes it; one that raises
            // abandons it (the hub delivers it again: over AMQP at once, over MQTT after a
            // reconnect).
            if let Ok(m) = msg.try_borrow() {
                m.settle_after_handler(result.is_ok());
            }
            if let Err(e) = result {
                log_exception(py, "the message handler", e);
            }
        }
        Event::Method(handler, request) => {
            let req = match PyMethodRequest::new(py, request, ctx.pending.clone()).and_then(|r| Bound::new(py, r)) {
                Ok(r) => r,
                Err(e) => return log_exception(py, "converting a method request", e),
            };
            let core = req.get().core();
            match call(py, ctx, &handler, (req,)) {
                Ok(ret) => {
                    // A handler may also return its MethodResponse instead of sending it.
                    if let Ok(resp) = ret.cast::<PyMethodResponse>() {
                        let sent = resp.get().resolve(&ctx.pending).and_then(|(r, status, payload)| {
                            runtime::wait(py, message::respond(r, ctx.pending.clone(), status, payload))?
                        });
                        if let Err(e) = sent {
                            log_exception(py, "sending the returned MethodResponse", e);
                        }
                    }
                }
                Err(e) => {
                    let text = e.to_string();
                    log_exception(py, &format!("the handler of method '{}'", core.name()), e);
                    let payload = json!({ "message": format!("method handler raised: {text}") });
                    // Fails only if the handler already answered, which is fine.
                    let _ = runtime::wait(py, message::respond(core, ctx.pending.clone(), 500, payload));
                }
            }
        }
        Event::Desired(handler, patch) => {
            let result = convert::from_json(py, &patch).and_then(|p| call(py, ctx, &handler, (p,)));
            if let Err(e) = result {
                log_exception(py, "the desired-properties handler", e);
            }
        }
        Event::State(handler, state) => {
            let connected = state.status == ConnectionStatus::Connected;
            if let Err(e) = call(py, ctx, &handler, (connected, state.reason.name())) {
                log_exception(py, "the connection-state handler", e);
            }
        }
        Event::Topic(handler, m) => {
            let result = Bound::new(py, PyTopicMessage::new(m)).and_then(|m| call(py, ctx, &handler, (m,)));
            if let Err(e) = result {
                log_exception(py, "a topic subscription's handler", e);
            }
        }
        Event::Stop => {}
    }
}

/// Calls a handler; a coroutine it returns runs on the async client's loop and is waited for.
fn call<'py>(
    py: Python<'py>,
    ctx: &Context,
    handler: &Handler,
    args: impl pyo3::call::PyCallArgs<'py>,
) -> PyResult<Bound<'py, PyAny>> {
    static ISCOROUTINE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    let ret = handler.bind(py).call1(args)?;
    // Most handlers return None: skip the coroutine check.
    if ret.is_none() || !ISCOROUTINE.import(py, "asyncio", "iscoroutine")?.call1((&ret,))?.is_truthy()? {
        return Ok(ret);
    }
    let asyncio = py.import("asyncio")?;
    let Some(event_loop) = &ctx.event_loop else {
        ret.call_method0("close")?;
        return Err(PyTypeError::new_err(
            "a coroutine function was registered as a handler on the synchronous ModuleClient; use AsyncModuleClient",
        ));
    };
    let event_loop = event_loop.bind(py);
    let fut = asyncio.call_method1("run_coroutine_threadsafe", (ret, event_loop))?;
    let futures = py.import("concurrent.futures")?;
    let wait_kwargs = PyDict::new(py);
    wait_kwargs.set_item("timeout", 0.2)?;
    loop {
        // concurrent.futures.wait releases the GIL while it waits.
        futures.call_method("wait", (PyList::new(py, [&fut])?,), Some(&wait_kwargs))?;
        if fut.call_method0("done")?.is_truthy()? {
            return fut.call_method0("result");
        }
        if event_loop.call_method0("is_closed")?.is_truthy()? || !event_loop.call_method0("is_running")?.is_truthy()? {
            fut.call_method0("cancel")?;
            return Err(errors::from_kind(
                ErrorKind::Cancelled,
                "the event loop stopped while a handler coroutine was running".into(),
            ));
        }
    }
}

/// Reports a handler's exception to the `edgemodule` logger (never to stdout).
pub fn log_exception(py: Python<'_>, what: &str, err: PyErr) {
    let logged = (|| -> PyResult<()> {
        let logger = py.import("logging")?.call_method1("getLogger", ("edgemodule",))?;
        let kwargs = PyDict::new(py);
        kwargs.set_item("exc_info", err.value(py))?;
        logger.call_method("error", ("%s raised an exception", what), Some(&kwargs))?;
        Ok(())
    })();
    if logged.is_err() {
        tracing::error!("{what} raised an exception: {err}");
    }
}
