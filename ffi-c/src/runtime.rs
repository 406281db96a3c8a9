//! The process-wide tokio runtime (built lazily from the core's builder) and the blocking bridge
//! that refuses to block inside a callback.

use std::cell::Cell;
use std::future::Future;
use std::sync::OnceLock;

use tokio::runtime::Runtime;

use crate::status::{edge_status, Failure, FfiResult};

static RUNTIME: OnceLock<Result<Runtime, String>> = OnceLock::new();

thread_local! {
    static IN_CALLBACK: Cell<bool> = const { Cell::new(false) };
}

/// The shared runtime, built on first use.
pub(crate) fn runtime() -> FfiResult<&'static Runtime> {
    RUNTIME
        .get_or_init(|| {
            edgemodule_core::runtime::build_binding_runtime("edgemodule-c")
                .map_err(|e| format!("cannot start the edgemodule runtime: {e}"))
        })
        .as_ref()
        .map_err(|e| Failure::new(edge_status::Internal, e.clone()))
}

/// Whether this thread is running a user callback right now.
pub(crate) fn in_callback() -> bool {
    IN_CALLBACK.with(Cell::get)
}

/// Marks this thread as inside a callback while `f` runs.
pub(crate) fn as_callback<R>(f: impl FnOnce() -> R) -> R {
    struct Reset(bool);
    impl Drop for Reset {
        fn drop(&mut self) {
            IN_CALLBACK.with(|c| c.set(self.0));
        }
    }
    let _reset = Reset(IN_CALLBACK.with(|c| c.replace(true)));
    f()
}

/// Fails with WOULD_DEADLOCK when a blocking call is made from a callback or a runtime thread.
pub(crate) fn check_may_block(what: &str) -> FfiResult {
    if in_callback() {
        return Err(Failure::new(
            edge_status::WouldDeadlock,
            format!("{what} blocks and must not be called from inside an edgemodule callback"),
        ));
    }
    if tokio::runtime::Handle::try_current().is_ok() {
        return Err(Failure::new(
            edge_status::WouldDeadlock,
            format!("{what} blocks and must not be called from an async runtime thread"),
        ));
    }
    Ok(())
}

/// Runs `f` to completion on the shared runtime, blocking this (non-callback) thread.
pub(crate) fn block_on<F: Future>(what: &str, f: F) -> FfiResult<F::Output> {
    check_may_block(what)?;
    let f = std::pin::pin!(f);
    Ok(edgemodule_core::runtime::wait(runtime()?.handle(), f, None).expect("an unlimited wait finishes"))
}
