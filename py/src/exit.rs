//! Keeps the extension's own threads (handler dispatchers, the log forwarder) off the
//! interpreter once it starts to exit.
//!
//! `Python::try_attach` refuses once the interpreter is finalizing, but a thread that passed
//! that check can still be waiting for the GIL when finalization begins, and CPython aborts
//! ("PyGILState_Release … finalizing") when it then runs and releases. So every attach from
//! our threads goes through [`attach`], which counts itself in and refuses after exit began,
//! and an `atexit` hook (run before finalization) closes the gate and, with the GIL released,
//! waits (bounded) for the threads already inside to finish.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::time::{Duration, Instant};

use pyo3::prelude::*;

static EXITING: AtomicBool = AtomicBool::new(false);
static INSIDE: AtomicUsize = AtomicUsize::new(0);

/// How long exit waits for a handler that is running right now.
const DRAIN_LIMIT: Duration = Duration::from_secs(2);

/// Runs `f` attached to the interpreter, or returns None once the interpreter is exiting.
pub fn attach<R>(f: impl for<'py> FnOnce(Python<'py>) -> R) -> Option<R> {
    struct Leave;
    impl Drop for Leave {
        fn drop(&mut self) {
            INSIDE.fetch_sub(1, SeqCst);
        }
    }
    INSIDE.fetch_add(1, SeqCst);
    let _leave = Leave;
    if EXITING.load(SeqCst) {
        return None;
    }
    Python::try_attach(f)
}

/// Whether the interpreter began to exit: a thread inside [`attach`] stops at the next step.
pub fn exiting() -> bool {
    EXITING.load(SeqCst)
}

/// The `atexit` hook: no new attaches; waits for the ones in progress with the GIL released.
#[pyfunction]
fn _close_exit_gate(py: Python<'_>) {
    EXITING.store(true, SeqCst);
    py.detach(|| {
        let give_up = Instant::now() + DRAIN_LIMIT;
        while INSIDE.load(SeqCst) > 0 && Instant::now() < give_up {
            std::thread::sleep(Duration::from_millis(1));
        }
    });
}

/// Registers the hook with `atexit` when the module is imported (not a module attribute).
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let hook = wrap_pyfunction!(_close_exit_gate, m)?;
    m.py().import("atexit")?.call_method1("register", (hook,))?;
    Ok(())
}
