//! The asyncio bridge of an `AsyncModuleClient`: runs the binding's futures on the client's
//! event loop thread instead of one tokio task plus one `call_soon_threadsafe` per call.
//!
//! A call creates a plain `asyncio.Future` and polls its Rust future once, inline (inside the
//! runtime context, so timers work). Most receives of a buffered message and every failed
//! argument check finish there: the future is returned already resolved, with no thread hop.
//! A pending future is parked here; its waker (called from whichever runtime thread completes
//! it) queues its key and, if no wake-up is outstanding, writes one byte to a socket the loop
//! watches with `add_reader`. The loop then polls every queued future in one callback and
//! resolves the asyncio futures that finished, so N completions cost one wake-up, and no
//! runtime thread ever waits for the GIL.
//!
//! Cancelling the asyncio future drops the Rust future (a done callback removes it), as with
//! pyo3-async-runtimes. Loops without `add_reader` (Windows' proactor) and calls from another
//! loop than the bridge's fall back to `runtime::awaitable`.

use std::collections::HashMap;
use std::future::Future;
use std::io::{ErrorKind as IoErrorKind, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use edgemodule_core::runtime::spin_until;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::{intern, IntoPyObjectExt};

use crate::runtime;

/// A type-erased binding future whose output becomes a Python object under the GIL.
trait Op: Send {
    fn poll_op(self: Pin<&mut Self>, cx: &mut Context<'_>, py: Python<'_>) -> Poll<PyResult<Py<PyAny>>>;
}

impl<F, T> Op for F
where
    F: Future<Output = PyResult<T>> + Send,
    T: for<'a> IntoPyObject<'a> + Send,
{
    fn poll_op(self: Pin<&mut Self>, cx: &mut Context<'_>, py: Python<'_>) -> Poll<PyResult<Py<PyAny>>> {
        match self.poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(r) => Poll::Ready(r.and_then(|v| v.into_py_any(py))),
        }
    }
}

/// A parked operation, keyed by the address of its asyncio future (alive while parked).
struct Entry {
    fut: Py<PyAny>,
    op: Pin<Box<dyn Op>>,
    waker: Waker,
}

/// What runtime threads touch: the keys to poll and the wake-up socket. Never the GIL.
struct Signal {
    ready: Mutex<Vec<usize>>,
    /// A byte was written and the loop has not drained the socket yet.
    armed: AtomicBool,
    tx: UnixStream,
}

impl Signal {
    fn notify(&self, key: usize) {
        self.ready.lock().unwrap().push(key);
        if !self.armed.swap(true, Ordering::AcqRel) {
            // WouldBlock means the socket is full of unread bytes: the loop wakes anyway.
            let _ = (&self.tx).write(&[1]);
        }
    }
}

struct OpWaker {
    signal: Arc<Signal>,
    key: usize,
}

impl Wake for OpWaker {
    fn wake(self: Arc<Self>) {
        self.signal.notify(self.key);
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.signal.notify(self.key);
    }
}

struct State {
    signal: Arc<Signal>,
    rx: UnixStream,
    ops: Mutex<HashMap<usize, Entry>>,
    /// The reader is registered with the loop.
    registered: AtomicBool,
    /// Unregister the reader once no operation is parked (set by shutdown).
    retiring: AtomicBool,
    /// An idle-loop wait (`IdleWait`) is scheduled on the loop.
    idle_wait_scheduled: AtomicBool,
}

/// The reader callback: drains the socket and polls the woken operations.
#[pyclass(module = "edgemodule._native", name = "_BridgeDrain", frozen)]
struct Drain {
    state: Arc<State>,
    event_loop: Py<PyAny>,
}

/// How long the loop, once it has nothing else to run, waits for a parked operation's answer
/// (a hub round trip is a few tens of microseconds) before it goes to sleep in `select()`. An
/// answer that comes within it is handled right there: no sleep and wake-up of the loop thread
/// per `await`. The loop only waits when no callback is ready, so it delays nothing that could
/// run, and an event on another socket by this window at most.
const IDLE_WAIT: Duration = Duration::from_micros(60);

/// Scheduled with `call_soon` when an operation parks: runs after whatever is ready, and if
/// the loop is then idle, waits briefly for a wake-up and drains it.
#[pyclass(module = "edgemodule._native", name = "_BridgeIdleWait", frozen)]
struct IdleWait {
    state: Arc<State>,
    drain: Py<Drain>,
}

#[pymethods]
impl IdleWait {
    fn __call__(&self, py: Python<'_>) -> PyResult<()> {
        self.state.idle_wait_scheduled.store(false, Ordering::Release);
        let drain = self.drain.bind(py);
        if self.state.ops.lock().unwrap().is_empty() || !loop_is_idle(py, drain.get().event_loop.bind(py)) {
            return Ok(());
        }
        let signal = &self.state.signal;
        let woken = py.detach(|| spin_until(IDLE_WAIT, || signal.armed.load(Ordering::Acquire)));
        if woken {
            drain.call0()?;
        }
        Ok(())
    }
}

/// Whether the asyncio loop has no callback ready to run (asyncio's own loops keep them in
/// `_ready`; a loop without it is never treated as idle).
fn loop_is_idle(py: Python<'_>, event_loop: &Bound<'_, PyAny>) -> bool {
    event_loop.getattr(intern!(py, "_ready")).and_then(|r| r.len()).is_ok_and(|n| n == 0)
}

/// The done callback of parked futures: drops the Rust future of a cancelled one.
#[pyclass(module = "edgemodule._native", name = "_BridgeDone", frozen)]
struct Done {
    state: Arc<State>,
}

#[pymethods]
impl Drain {
    fn __call__(&self, py: Python<'_>) {
        let mut buf = [0u8; 256];
        loop {
            match (&self.state.rx).read(&mut buf) {
                Ok(n) if n == buf.len() => continue,
                Ok(_) => break,
                Err(e) if e.kind() == IoErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
        self.state.signal.armed.store(false, Ordering::Release);
        let keys = std::mem::take(&mut *self.state.signal.ready.lock().unwrap());
        if !keys.is_empty() {
            if let Ok(rt) = runtime::get() {
                let _enter = rt.enter();
                for key in keys {
                    self.poll_parked(py, key);
                }
            }
        }
        if self.state.retiring.load(Ordering::Acquire) && self.state.ops.lock().unwrap().is_empty() {
            self.state.retiring.store(false, Ordering::Release);
            if self.state.registered.swap(false, Ordering::AcqRel) {
                let _ =
                    self.event_loop.bind(py).call_method1(intern!(py, "remove_reader"), (self.state.rx.as_raw_fd(),));
            }
        }
    }
}

impl Drain {
    fn poll_parked(&self, py: Python<'_>, key: usize) {
        let Some(mut entry) = self.state.ops.lock().unwrap().remove(&key) else { return };
        let fut = entry.fut.bind(py).clone();
        // Cancelled meanwhile: drop without polling, so nothing (a message) is taken and lost.
        if fut.call_method0(intern!(py, "done")).and_then(|d| d.is_truthy()).unwrap_or(true) {
            return;
        }
        let waker = entry.waker.clone();
        match entry.op.as_mut().poll_op(&mut Context::from_waker(&waker), py) {
            Poll::Pending => {
                self.state.ops.lock().unwrap().insert(key, entry);
            }
            Poll::Ready(r) => settle(py, &fut, r),
        }
    }
}

#[pymethods]
impl Done {
    fn __call__(&self, fut: &Bound<'_, PyAny>) {
        let key = fut.as_ptr() as usize;
        let entry = self.state.ops.lock().unwrap().remove(&key);
        drop(entry);
    }
}

fn settle(py: Python<'_>, fut: &Bound<'_, PyAny>, r: PyResult<Py<PyAny>>) {
    let set = match r {
        Ok(v) => fut.call_method1(intern!(py, "set_result"), (v,)),
        Err(e) => fut.call_method1(intern!(py, "set_exception"), (e.into_value(py),)),
    };
    // Fails only if the future was cancelled in the meantime.
    drop(set);
}

/// One client's bridge to one asyncio loop.
pub struct Bridge {
    event_loop: Py<PyAny>,
    create_future: Py<PyAny>,
    drain: Py<Drain>,
    done: Py<Done>,
    idle_wait: Py<IdleWait>,
    state: Arc<State>,
}

impl Bridge {
    /// A bridge to `event_loop`, or None if the loop cannot watch a socket.
    fn new(py: Python<'_>, event_loop: &Bound<'_, PyAny>) -> PyResult<Option<Bridge>> {
        let (tx, rx) = match UnixStream::pair() {
            Ok(p) => p,
            Err(_) => return Ok(None),
        };
        if tx.set_nonblocking(true).is_err() || rx.set_nonblocking(true).is_err() {
            return Ok(None);
        }
        let state = Arc::new(State {
            signal: Arc::new(Signal { ready: Mutex::new(Vec::new()), armed: AtomicBool::new(false), tx }),
            rx,
            ops: Mutex::new(HashMap::new()),
            registered: AtomicBool::new(false),
            retiring: AtomicBool::new(false),
            idle_wait_scheduled: AtomicBool::new(false),
        });
        let drain = Py::new(py, Drain { state: state.clone(), event_loop: event_loop.clone().unbind() })?;
        let done = Py::new(py, Done { state: state.clone() })?;
        let idle_wait = Py::new(py, IdleWait { state: state.clone(), drain: drain.clone_ref(py) })?;
        let bridge = Bridge {
            event_loop: event_loop.clone().unbind(),
            create_future: event_loop.getattr(intern!(py, "create_future"))?.unbind(),
            drain,
            done,
            idle_wait,
            state,
        };
        if !bridge.register(py) {
            return Ok(None);
        }
        Ok(Some(bridge))
    }

    fn register(&self, py: Python<'_>) -> bool {
        if self.state.registered.load(Ordering::Acquire) {
            return true;
        }
        let added = self
            .event_loop
            .bind(py)
            .call_method1(intern!(py, "add_reader"), (self.state.rx.as_raw_fd(), self.drain.bind(py)));
        if added.is_ok() {
            self.state.registered.store(true, Ordering::Release);
        }
        added.is_ok()
    }

    /// An asyncio future on this bridge's loop for `fut`, polled once right away.
    fn submit<'py, F, T>(&self, py: Python<'py>, fut: F) -> PyResult<Bound<'py, PyAny>>
    where
        F: Future<Output = PyResult<T>> + Send + 'static,
        T: for<'a> IntoPyObject<'a> + Send + 'static,
    {
        let rt = runtime::get()?;
        let pyfut = self.create_future.bind(py).call0()?;
        let key = pyfut.as_ptr() as usize;
        let mut op: Pin<Box<dyn Op>> = Box::pin(fut);
        let waker = Waker::from(Arc::new(OpWaker { signal: self.state.signal.clone(), key }));
        let polled = {
            let _enter = rt.enter();
            op.as_mut().poll_op(&mut Context::from_waker(&waker), py)
        };
        match polled {
            Poll::Ready(r) => settle(py, &pyfut, r),
            Poll::Pending => {
                // A retired bridge (after shutdown) comes back for calls made later.
                self.state.retiring.store(false, Ordering::Release);
                if !self.register(py) {
                    return Err(crate::errors::internal("cannot watch the edgemodule wake-up socket"));
                }
                self.state.ops.lock().unwrap().insert(key, Entry { fut: pyfut.clone().unbind(), op, waker });
                pyfut.call_method1(intern!(py, "add_done_callback"), (self.done.bind(py),))?;
                if !self.state.idle_wait_scheduled.swap(true, Ordering::AcqRel) {
                    self.event_loop.bind(py).call_method1(intern!(py, "call_soon"), (self.idle_wait.bind(py),))?;
                }
            }
        }
        Ok(pyfut)
    }

    /// Unregisters the reader once nothing is parked (the next wake-up checks).
    fn retire(&self) {
        self.state.retiring.store(true, Ordering::Release);
        self.state.signal.notify(0);
    }
}

/// The bridge slot of a client: created on the first call from a running loop.
#[derive(Default)]
pub struct BridgeSlot {
    slot: Mutex<Option<Result<Arc<Bridge>, Py<PyAny>>>>,
}

fn running_loop(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    static GET_RUNNING_LOOP: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    GET_RUNNING_LOOP.import(py, "asyncio", "get_running_loop")?.call0()
}

impl BridgeSlot {
    /// The bridge for the running loop, or None when this call must take the fallback path.
    /// The slot's lock is never held across Python code (which could switch threads).
    fn get(&self, py: Python<'_>) -> PyResult<Option<Arc<Bridge>>> {
        let event_loop = running_loop(py)?;
        match &*self.slot.lock().unwrap() {
            Some(Ok(b)) if b.event_loop.bind(py).is(&event_loop) => return Ok(Some(b.clone())),
            Some(Err(l)) if l.bind(py).is(&event_loop) => return Ok(None),
            // Still serving another loop: this call takes the fallback path.
            Some(Ok(b)) if b.state.registered.load(Ordering::Acquire) => return Ok(None),
            _ => {}
        }
        // First call, or the earlier loop's bridge was retired: bind to this loop.
        let made = match Bridge::new(py, &event_loop)? {
            Some(b) => Ok(Arc::new(b)),
            None => Err(event_loop.unbind()),
        };
        let got = made.as_ref().ok().cloned();
        *self.slot.lock().unwrap() = Some(made);
        Ok(got)
    }

    /// `fut` as an awaitable on the running loop.
    pub fn awaitable<'py, F, T>(&self, py: Python<'py>, fut: F) -> PyResult<Bound<'py, PyAny>>
    where
        F: Future<Output = PyResult<T>> + Send + 'static,
        T: for<'a> IntoPyObject<'a> + Send + 'static,
    {
        match self.get(py)? {
            Some(b) => b.submit(py, fut),
            None => runtime::awaitable(py, fut),
        }
    }

    /// After shutdown: stop watching the socket once the last parked call has finished.
    pub fn retire(&self) {
        if let Some(Ok(b)) = &*self.slot.lock().unwrap() {
            b.retire();
        }
    }
}
