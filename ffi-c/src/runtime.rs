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
        .get_or_init(|| build_without_sigpipe().map_err(|e| format!("cannot start the edgemodule runtime: {e}")))
        .as_ref()
        .map_err(|e| Failure::new(edge_status::Internal, e.clone()))
}

/// Builds the runtime from the core's builder with SIGPIPE blocked on this thread, then restores
/// the caller's signal mask. The runtime's workers start during the build and inherit the mask,
/// and so do the threads they start. A write to a connection the hub has already closed (closing
/// races the hub's own close, more so over WebSocket) then fails with EPIPE, which the core
/// handles, instead of raising SIGPIPE, whose default action kills the C host process: Rust
/// programs, Python and Node ignore SIGPIPE, C programs do not. Only the library's own threads
/// are changed, never the process's disposition or the caller's threads.
fn build_without_sigpipe() -> std::io::Result<Runtime> {
    // SAFETY: sigset_t is plain data, initialised by sigemptyset before use; pthread_sigmask
    // only changes the calling thread's mask, and the old mask is put back below.
    let old = unsafe {
        let mut block: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut block);
        libc::sigaddset(&mut block, libc::SIGPIPE);
        (libc::pthread_sigmask(libc::SIG_BLOCK, &block, &mut old) == 0).then_some(old)
    };
    let runtime = edgemodule_core::runtime::build_binding_runtime("edgemodule-c");
    if let Some(old) = old {
        // SAFETY: restores the mask read above on the same thread.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut()) };
    }
    runtime
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
