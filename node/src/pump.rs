//! The bridge from the runtime's threads to the JavaScript thread: one long-lived threadsafe
//! function per destination, woken at most once per batch.
//!
//! A [`Pump`] owns a queue and a raw N-API threadsafe function. Runtime tasks push items; only
//! the push that finds the queue empty wakes the JavaScript thread, whose callback then drains
//! everything queued by then in one go. So a burst of N completions or inbound messages costs one
//! cross-thread wake-up instead of N, and no threadsafe function is created per operation.
//!
//! Two kinds of pump exist:
//! - the promise settler ([`promise`]): one per JavaScript environment (thread), created on first
//!   use, referenced (keeping the event loop alive) only while a Promise it will settle is
//!   pending;
//! - a handler pump per registered handler ([`Pump::handler`]): it calls the handler once per
//!   item, keeps the event loop alive while registered, and is released when its task ends.

use std::cell::RefCell;
use std::ffi::c_void;
use std::future::Future;
use std::pin::Pin;
use std::ptr;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Wake, Waker};

use edgemodule_core::Error as CoreError;
use napi::bindgen_prelude::{FromNapiValue, PromiseRaw, ToNapiValue};
use napi::{sys, Env};

use crate::errors::to_js;
use crate::idle_spin::{self, Watch};

/// What a pump's JavaScript-thread callback does with each item.
pub trait Item: Send + 'static {
    /// Runs on the JavaScript thread inside its own handle scope; `func` is the pump's function
    /// (null for the settler).
    ///
    /// # Safety
    /// `env` is the live environment of the current JavaScript thread.
    unsafe fn deliver(self, env: sys::napi_env, func: sys::napi_value, shared: &PumpState) -> sys::napi_status;
}

/// State the JavaScript thread keeps beside the queue.
#[derive(Default)]
pub struct PumpState {
    /// Promises created and not settled yet (settler only).
    pending: AtomicUsize,
    /// Of those, futures polled on the JavaScript thread that have not finished (settler only).
    awaiting: AtomicUsize,
}

struct Raw(sys::napi_threadsafe_function);
// SAFETY: a threadsafe function handle may be called and released from any thread; it is only
// used while the queue lock is held and cleared (under that lock) when Node finalizes it.
unsafe impl Send for Raw {}

struct Queue<T> {
    items: Vec<T>,
    tsfn: Option<Raw>,
}

struct Shared<T> {
    queue: Mutex<Queue<T>>,
    /// Whether `queue` holds items: read without the lock by the idle spin.
    queued: AtomicBool,
    state: PumpState,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, Queue<T>> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A queue drained on the JavaScript thread by one threadsafe function.
pub struct Pump<T: Item> {
    shared: Arc<Shared<T>>,
}

impl<T: Item> Clone for Pump<T> {
    fn clone(&self) -> Self {
        Pump { shared: self.shared.clone() }
    }
}

impl<T: Item> Pump<T> {
    /// Creates the threadsafe function; `func` is the JavaScript function handed to each item
    /// (may be null). The function starts referenced.
    fn create(env: sys::napi_env, func: sys::napi_value) -> napi::Result<Self> {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue { items: Vec::new(), tsfn: None }),
            queued: AtomicBool::new(false),
            state: PumpState::default(),
        });
        let context = Box::into_raw(Box::new(shared.clone())).cast::<c_void>();
        let mut name = ptr::null_mut();
        let mut tsfn = ptr::null_mut();
        // SAFETY: called on the JavaScript thread with its live `env`; `context` stays valid until
        // `finalize` (which Node calls exactly once) takes it back.
        unsafe {
            let label = "edgemodule";
            napi::check_status!(sys::napi_create_string_utf8(
                env,
                label.as_ptr().cast(),
                label.len() as isize,
                &mut name
            ))?;
            let status = sys::napi_create_threadsafe_function(
                env,
                func,
                ptr::null_mut(),
                name,
                0,
                1,
                ptr::null_mut(),
                Some(finalize::<T>),
                context,
                Some(call_js::<T>),
                &mut tsfn,
            );
            if status != sys::Status::napi_ok {
                drop(Box::from_raw(context.cast::<Arc<Shared<T>>>()));
                napi::check_status!(status)?;
            }
        }
        shared.lock().tsfn = Some(Raw(tsfn));
        Ok(Pump { shared })
    }

    /// Queues `items`; wakes the JavaScript thread if the queue was empty. Returns false (and
    /// drops the items) once the pump is released or its environment is gone.
    pub fn push(&self, items: impl IntoIterator<Item = T>) -> bool {
        let mut q = self.shared.lock();
        let Some(raw) = &q.tsfn else { return false };
        let raw = raw.0;
        let was_empty = q.items.is_empty();
        q.items.extend(items);
        if was_empty && !q.items.is_empty() {
            self.shared.queued.store(true, Ordering::Release);
            // SAFETY: `raw` is live: it is cleared under this lock before Node frees it.
            let status = unsafe {
                sys::napi_call_threadsafe_function(raw, ptr::null_mut(), sys::ThreadsafeFunctionCallMode::nonblocking)
            };
            if status != sys::Status::napi_ok {
                q.items.clear();
                return false;
            }
        }
        true
    }

    /// Lets Node close the threadsafe function once the items queued so far are delivered.
    pub fn release(&self) {
        let mut q = self.shared.lock();
        if let Some(raw) = q.tsfn.take() {
            // SAFETY: as in `push`; this pump's one thread reference is given back exactly once.
            unsafe { sys::napi_release_threadsafe_function(raw.0, sys::ThreadsafeFunctionReleaseMode::release) };
        }
    }

    /// References or unreferences the threadsafe function (whether it keeps the event loop
    /// alive). JavaScript thread only.
    fn set_ref(&self, env: sys::napi_env, referenced: bool) {
        let q = self.shared.lock();
        if let Some(raw) = &q.tsfn {
            // SAFETY: on the JavaScript thread that created it, with its live environment.
            unsafe {
                if referenced {
                    sys::napi_ref_threadsafe_function(env, raw.0);
                } else {
                    sys::napi_unref_threadsafe_function(env, raw.0);
                }
            }
        }
    }

    fn is_live(&self) -> bool {
        self.shared.lock().tsfn.is_some()
    }
}

unsafe extern "C" fn finalize<T: Item>(_env: sys::napi_env, _data: *mut c_void, hint: *mut c_void) {
    // SAFETY: `hint` is the context boxed in `create`; Node finalizes once.
    let shared = unsafe { Box::from_raw(hint.cast::<Arc<Shared<T>>>()) };
    let mut q = shared.lock();
    q.tsfn = None;
    q.items.clear();
}

unsafe extern "C" fn call_js<T: Item>(
    env: sys::napi_env,
    func: sys::napi_value,
    context: *mut c_void,
    _data: *mut c_void,
) {
    // A null environment means the function is being torn down (after `finalize`, which already
    // freed `context`): nothing to deliver to.
    if env.is_null() {
        return;
    }
    // SAFETY: `context` is the boxed `Arc` from `create`, alive until `finalize`.
    let shared = unsafe { &*context.cast::<Arc<Shared<T>>>() };
    let items = {
        let mut q = shared.lock();
        shared.queued.store(false, Ordering::Release);
        std::mem::take(&mut q.items)
    };
    for item in items {
        let mut scope = ptr::null_mut();
        // SAFETY: on the JavaScript thread with its live `env`.
        unsafe {
            if sys::napi_open_handle_scope(env, &mut scope) != sys::Status::napi_ok {
                return;
            }
            let status = item.deliver(env, func, &shared.state);
            if status == sys::Status::napi_pending_exception {
                let mut err = ptr::null_mut();
                sys::napi_get_and_clear_last_exception(env, &mut err);
                sys::napi_fatal_exception(env, err);
            }
            sys::napi_close_handle_scope(env, scope);
        }
    }
}

impl Watch for Shared<Completion> {
    fn awaiting(&self) -> bool {
        self.state.awaiting.load(Ordering::Relaxed) > 0
    }
    fn queued(&self) -> bool {
        self.queued.load(Ordering::Acquire)
    }
}

// --- handlers ---------------------------------------------------------------------------------

/// An argument for a handler: converted to JavaScript and passed to the pump's function.
pub struct Arg<V>(pub V);

impl<V: ToNapiValue + Send + 'static> Item for Arg<V> {
    unsafe fn deliver(self, env: sys::napi_env, func: sys::napi_value, _: &PumpState) -> sys::napi_status {
        // SAFETY: per the trait contract.
        unsafe {
            let arg = match V::to_napi_value(env, self.0) {
                Ok(v) => v,
                Err(e) => {
                    sys::napi_throw(env, napi::JsError::from(e).into_value(env));
                    return sys::Status::napi_pending_exception;
                }
            };
            let mut recv = ptr::null_mut();
            sys::napi_get_undefined(env, &mut recv);
            let mut result = ptr::null_mut();
            sys::napi_call_function(env, recv, func, 1, &arg, &mut result)
        }
    }
}

impl<V: ToNapiValue + Send + 'static> Pump<Arg<V>> {
    /// A pump that calls `handler` with each value; referenced (keeps the event loop alive)
    /// until released.
    pub fn handler(env: &Env, handler: sys::napi_value) -> napi::Result<Self> {
        Pump::create(env.raw(), handler)
    }
}

/// Releases a handler pump when dropped: owned by the task that feeds it, so ending or aborting
/// the task lets the event loop go.
pub struct ReleaseOnDrop<T: Item>(pub Pump<T>);

impl<T: Item> Drop for ReleaseOnDrop<T> {
    fn drop(&mut self) {
        self.0.release();
    }
}

// --- promises ---------------------------------------------------------------------------------

type Settle = Box<dyn FnOnce(sys::napi_env) -> napi::Result<sys::napi_value> + Send>;
type Outcome = Result<Settle, CoreError>;
type LocalFuture = Pin<Box<dyn Future<Output = Outcome> + Send>>;

/// Work for the settler on the JavaScript thread.
pub enum Completion {
    /// An operation finished on the runtime: settle its Promise.
    Done { deferred: usize, outcome: Outcome },
    /// A future polled on the JavaScript thread was woken: poll it again.
    Poll(Arc<Local>),
}

impl Item for Completion {
    unsafe fn deliver(self, env: sys::napi_env, _: sys::napi_value, state: &PumpState) -> sys::napi_status {
        let (deferred, outcome) = match self {
            Completion::Done { deferred, outcome } => (deferred, outcome),
            Completion::Poll(local) => match local.poll() {
                Some(done) => {
                    state.awaiting.fetch_sub(1, Ordering::Relaxed);
                    done
                }
                None => return sys::Status::napi_ok,
            },
        };
        // SAFETY: per the trait contract.
        unsafe { finish(env, state, deferred, outcome) }
    }
}

/// Settles the Promise of `deferred` and gives back its reference on the event loop.
///
/// # Safety
/// On the JavaScript thread of `env`; `deferred` came from `napi_create_promise` in `env` and is
/// settled exactly once, here.
unsafe fn finish(env: sys::napi_env, state: &PumpState, deferred: usize, outcome: Outcome) -> sys::napi_status {
    let deferred = deferred as sys::napi_deferred;
    // SAFETY: per the contract.
    let status = unsafe {
        let e = Env::from_raw(env);
        match outcome.map_err(|err| to_js(&e, &err)).and_then(|settle| settle(env)) {
            Ok(value) => sys::napi_resolve_deferred(env, deferred, value),
            Err(err) => sys::napi_reject_deferred(env, deferred, napi::JsError::from(err).into_value(env)),
        }
    };
    if state.pending.fetch_sub(1, Ordering::Relaxed) == 1 {
        SETTLER.with(|s| {
            if let Some(current) = &*s.borrow() {
                current.pump.set_ref(env, false);
            }
        });
    }
    status
}

thread_local! {
    /// The promise settler of the JavaScript environment on this thread, and the addon runtime
    /// as it was when the environment first used it (napi restarts the runtime for a new
    /// environment after the last one exited, so the handle is not cached process-wide).
    static SETTLER: RefCell<Option<Settler>> = const { RefCell::new(None) };
}

struct Settler {
    env: usize,
    pump: Pump<Completion>,
    runtime: Option<tokio::runtime::Handle>,
}

fn settler(env: sys::napi_env) -> napi::Result<(Pump<Completion>, Option<tokio::runtime::Handle>)> {
    SETTLER.with(|s| {
        let mut s = s.borrow_mut();
        if let Some(current) = &*s {
            if current.env == env as usize && current.pump.is_live() {
                return Ok((current.pump.clone(), current.runtime.clone()));
            }
        }
        let pump = Pump::create(env, ptr::null_mut())?;
        pump.set_ref(env, false);
        idle_spin::install(env, pump.shared.clone());
        let runtime = napi::bindgen_prelude::within_runtime_if_available(tokio::runtime::Handle::try_current).ok();
        *s = Some(Settler { env: env as usize, pump: pump.clone(), runtime: runtime.clone() });
        Ok((pump, runtime))
    })
}

type Pending<'env, T> = (Pump<Completion>, Option<tokio::runtime::Handle>, usize, PromiseRaw<'env, T>);

/// A new Promise, counted as pending on the settler (which keeps the event loop alive meanwhile).
fn pending<'env, T>(env: &'env Env) -> napi::Result<Pending<'env, T>> {
    let raw_env = env.raw();
    let (pump, runtime) = settler(raw_env)?;
    let mut deferred = ptr::null_mut();
    let mut promise = ptr::null_mut();
    // SAFETY: on the JavaScript thread with its live environment; `promise` is the Promise just
    // created there.
    let promise = unsafe {
        napi::check_status!(sys::napi_create_promise(raw_env, &mut deferred, &mut promise))?;
        PromiseRaw::<T>::from_napi_value(raw_env, promise)?
    };
    if pump.shared.state.pending.fetch_add(1, Ordering::Relaxed) == 0 {
        pump.set_ref(raw_env, true);
    }
    Ok((pump, runtime, deferred as usize, promise))
}

fn outcome<T: 'static + Send + ToNapiValue>(result: Result<T, CoreError>) -> Outcome {
    result.map(|v| -> Settle {
        // SAFETY: called on the JavaScript thread, with its environment, in `finish`.
        Box::new(move |env| unsafe { T::to_napi_value(env, v) })
    })
}

/// Runs `fut` on the addon runtime and returns its Promise, settled through the environment's
/// settler; a core error rejects it with a coded `Error`.
pub fn promise<'env, T, F>(env: &'env Env, fut: F) -> napi::Result<PromiseRaw<'env, T>>
where
    T: 'static + Send + ToNapiValue,
    F: 'static + Send + Future<Output = Result<T, CoreError>>,
{
    let (pump, _, deferred, promise) = pending(env)?;
    let mut slot = Unsettled { pump, deferred };
    napi::bindgen_prelude::spawn(async move {
        let outcome = outcome(fut.await);
        slot.settle(outcome);
    });
    Ok(promise)
}

/// Like [`promise`], for futures that only hand work to the core's connection task and wait for
/// its answer (sends, responses): they are polled on the JavaScript thread, first right away
/// (so the work reaches the connection without a task hop) and again whenever they are woken,
/// through the settler. No runtime task is spawned per call.
pub fn promise_local<'env, T, F>(env: &'env Env, fut: F) -> napi::Result<PromiseRaw<'env, T>>
where
    T: 'static + Send + ToNapiValue,
    F: 'static + Send + Future<Output = Result<T, CoreError>>,
{
    let (pump, runtime, deferred, promise) = pending(env)?;
    let local = Arc::new(Local {
        runtime,
        fut: Mutex::new(Some(Box::pin(async move { outcome(fut.await) }))),
        scheduled: AtomicBool::new(false),
        deferred,
        pump,
    });
    let state = &local.pump.shared.state;
    match local.poll() {
        // SAFETY: on the JavaScript thread of `env`; the deferred was just created there and is
        // settled only here (the future is gone, so no later poll can finish it again).
        Some((deferred, outcome)) => {
            unsafe { finish(env.raw(), state, deferred, outcome) };
        }
        None => {
            state.awaiting.fetch_add(1, Ordering::Relaxed);
        }
    }
    Ok(promise)
}

/// A future polled on the JavaScript thread; its waker queues it on the settler.
pub struct Local {
    /// Entered while polling: the future's timers and channels belong to the runtime.
    runtime: Option<tokio::runtime::Handle>,
    fut: Mutex<Option<LocalFuture>>,
    scheduled: AtomicBool,
    deferred: usize,
    pump: Pump<Completion>,
}

impl Local {
    /// Polls the future (JavaScript thread only); returns the outcome once, when it is ready.
    fn poll(self: &Arc<Self>) -> Option<(usize, Outcome)> {
        self.scheduled.store(false, Ordering::Release);
        let mut slot = self.fut.lock().unwrap_or_else(|e| e.into_inner());
        let fut = slot.as_mut()?;
        let waker = Waker::from(self.clone());
        let _runtime = self.runtime.as_ref().map(|h| h.enter());
        let polled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            fut.as_mut().poll(&mut Context::from_waker(&waker))
        }));
        let outcome = match polled {
            Ok(Poll::Pending) => return None,
            Ok(Poll::Ready(outcome)) => outcome,
            Err(_) => Err(CoreError::new(edgemodule_core::ErrorKind::Internal, "the operation panicked")),
        };
        *slot = None;
        Some((self.deferred, outcome))
    }
}

impl Wake for Local {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if !self.scheduled.swap(true, Ordering::AcqRel) {
            self.pump.push([Completion::Poll(self.clone())]);
        }
    }
}

/// A Promise's deferred on its way through the runtime. Dropped without being settled (the
/// future panicked, or the runtime shut down) it rejects with INTERNAL, so the Promise settles
/// and the settler's reference on the event loop is given back.
struct Unsettled {
    pump: Pump<Completion>,
    deferred: usize,
}

impl Unsettled {
    fn settle(&mut self, outcome: Outcome) {
        let deferred = std::mem::take(&mut self.deferred);
        self.pump.push([Completion::Done { deferred, outcome }]);
    }
}

impl Drop for Unsettled {
    fn drop(&mut self) {
        if self.deferred != 0 {
            self.settle(Err(CoreError::new(
                edgemodule_core::ErrorKind::Internal,
                "the operation was dropped unfinished",
            )));
        }
    }
}
