//! The one process-wide tokio runtime of the extension, and the two ways Python code waits on it:
//! blocking (GIL released, sliced so Ctrl-C is honoured) and as an asyncio awaitable.

use std::future::Future;
use std::sync::OnceLock;
use std::time::Duration;

use pyo3::prelude::*;
use tokio::runtime::Runtime;

use crate::errors;

static RUNTIME: OnceLock<Runtime> = OnceLock::new();
static OWNER_PID: OnceLock<u32> = OnceLock::new();

/// How long a blocking call waits before re-attaching to check for signals (KeyboardInterrupt).
const SLICE: Duration = Duration::from_millis(150);

/// Builds the runtime with the core's builder and hands it to pyo3-async-runtimes.
pub fn init() -> PyResult<()> {
    if RUNTIME.get().is_none() {
        let rt = edgemodule_core::runtime::build_binding_runtime("edgemodule-py")
            .map_err(|e| errors::internal(format!("cannot build the tokio runtime: {e}")))?;
        let _ = RUNTIME.set(rt);
        let _ = OWNER_PID.set(std::process::id());
    }
    let rt: &'static Runtime = RUNTIME.get().expect("runtime was just set");
    // Fails only if already initialised (a second import of the module): harmless.
    let _ = pyo3_async_runtimes::tokio::init_with_runtime(rt);
    Ok(())
}

/// The runtime, refusing use from a forked child (its worker threads did not survive the fork).
pub fn get() -> PyResult<&'static Runtime> {
    let rt = RUNTIME.get().ok_or_else(|| errors::internal("the edgemodule runtime is not initialised"))?;
    if OWNER_PID.get().copied() != Some(std::process::id()) {
        return Err(errors::invalid_state(
            "edgemodule was initialised in a parent process; a client cannot be used after fork(). \
             Create clients in the child process (use the 'spawn' start method).",
        ));
    }
    Ok(rt)
}

/// Runs `fut` to completion on the runtime with the GIL released. The wait is sliced so that
/// pending signals are checked every ~150 ms; if one raises (Ctrl-C), the future is dropped,
/// which cancels the operation.
pub fn wait<F>(py: Python<'_>, fut: F) -> PyResult<F::Output>
where
    F: Future + Send,
    F::Output: Send,
{
    let rt = get()?;
    let mut fut = Box::pin(fut);
    loop {
        let step = py.detach(|| edgemodule_core::runtime::wait(rt.handle(), fut.as_mut(), Some(SLICE)));
        if let Some(out) = step {
            return Ok(out);
        }
        py.check_signals()?;
    }
}

/// Wraps `fut` as an asyncio awaitable on the running loop; cancelling the asyncio future drops
/// (and so cancels) the Rust future.
pub fn awaitable<'py, F, T>(py: Python<'py>, fut: F) -> PyResult<Bound<'py, PyAny>>
where
    F: Future<Output = PyResult<T>> + Send + 'static,
    T: for<'a> IntoPyObject<'a> + Send + 'static,
{
    get()?;
    pyo3_async_runtimes::tokio::future_into_py(py, fut)
}

/// `ModuleClient::from_environment`, made `Send`. The core's future holds a `&dyn Fn` that is not
/// `Sync` (see the report: core change wanted), so it runs on a short-lived thread of its own;
/// dropping the returned future abandons the attempt.
pub fn connect_from_environment(
    options: edgemodule_core::ClientOptions,
) -> PyResult<impl Future<Output = PyResult<edgemodule_core::ModuleClient>> + Send + 'static> {
    let rt = get()?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("edgemodule-env".into())
        .spawn(move || {
            let mut tx = tx;
            rt.block_on(async move {
                let fut = edgemodule_core::ModuleClient::from_environment(options);
                tokio::pin!(fut);
                let r = tokio::select! {
                    r = &mut fut => Some(r),
                    _ = tx.closed() => None,
                };
                if let Some(r) = r {
                    let _ = tx.send(r);
                }
            })
        })
        .map_err(|e| errors::internal(format!("cannot start a thread: {e}")))?;
    Ok(async move {
        rx.await
            .map_err(|_| errors::internal("the environment connection thread ended unexpectedly"))?
            .map_err(errors::to_py)
    })
}
