//! The runtime the language bindings share. The core itself never builds a runtime; each native
//! library (C, Python, Node) builds exactly one, process-wide, from here, and the blocking
//! bindings (C, sync Python) wait on it from their own threads with [`wait`].

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

/// A multi-thread tokio runtime with two named workers: enough for a module's I/O on the small
/// devices Edge modules run on.
pub fn build_binding_runtime(thread_name: &str) -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).thread_name(thread_name).enable_all().build()
}

/// How long a thread blocked in [`wait`] spins before it parks.
///
/// A blocking call waits for the driver task (on a runtime worker) to finish the operation,
/// typically a round trip to the hub of a few tens of microseconds. Parking right away makes
/// every call pay a futex sleep and a wake-up on top of that (measured: a third of a sequential
/// send); spinning briefly first catches the fast completions, and parking takes over for
/// anything slower, so an idle or slow wait costs no CPU beyond this window.
const SPIN_BEFORE_PARK: Duration = Duration::from_micros(80);

/// Drives `future` on the calling thread (which must not be a runtime worker) until it finishes
/// or `limit` passes; `None` means the limit passed and the future is still pending (poll it
/// again with another call, or drop it to cancel). The runtime's context is entered so that the
/// future's timers and channels find it.
pub fn wait<F: Future + ?Sized>(
    runtime: &tokio::runtime::Handle,
    mut future: Pin<&mut F>,
    limit: Option<Duration>,
) -> Option<F::Output> {
    let _context = runtime.enter();
    let give_up = limit.map(|l| Instant::now() + l);
    let signal = Arc::new(Signal { woken: AtomicBool::new(false), thread: thread::current() });
    let waker = Waker::from(signal.clone());
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return Some(out);
        }
        if !signal.wait_until(give_up) {
            return None;
        }
    }
}

/// Wakes the thread blocked in [`wait`].
struct Signal {
    woken: AtomicBool,
    thread: Thread,
}

impl Wake for Signal {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        if !self.woken.swap(true, Ordering::Release) {
            self.thread.unpark();
        }
    }
}

impl Signal {
    /// Spins, then parks, until woken (true) or `give_up` passes (false). The later part of the
    /// spin yields the CPU to any other runnable thread, so on a busy machine spinning does not
    /// delay the very threads (driver, hub) whose work it waits for.
    fn wait_until(&self, give_up: Option<Instant>) -> bool {
        let started = Instant::now();
        while !self.woken.swap(false, Ordering::Acquire) {
            let now = Instant::now();
            if give_up.is_some_and(|g| now >= g) {
                return false;
            }
            let spun = now.duration_since(started);
            if spun < SPIN_BEFORE_PARK / 4 {
                std::hint::spin_loop();
            } else if spun < SPIN_BEFORE_PARK {
                thread::yield_now();
            } else if let Some(g) = give_up {
                thread::park_timeout(g - now);
            } else {
                thread::park();
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runtime() -> tokio::runtime::Runtime {
        build_binding_runtime("wait-test").unwrap()
    }

    #[test]
    fn a_wait_returns_what_a_runtime_task_sends_after_the_spin_window() {
        let rt = runtime();
        let (tx, rx) = tokio::sync::oneshot::channel();
        rt.spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            tx.send(7).unwrap();
        });
        let rx = std::pin::pin!(rx);
        assert_eq!(wait(rt.handle(), rx, None), Some(Ok(7)));
    }

    #[test]
    fn a_limited_wait_gives_up_and_the_same_future_can_be_waited_on_again() {
        let rt = runtime();
        let (tx, rx) = tokio::sync::oneshot::channel::<u8>();
        let mut rx = std::pin::pin!(rx);
        let started = Instant::now();
        assert_eq!(wait(rt.handle(), rx.as_mut(), Some(Duration::from_millis(30))), None);
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(30) && waited < Duration::from_secs(2), "{waited:?}");
        tx.send(3).unwrap();
        assert_eq!(wait(rt.handle(), rx, Some(Duration::from_secs(5))), Some(Ok(3)));
    }

    #[test]
    fn futures_waited_on_find_the_runtimes_timers() {
        let rt = runtime();
        let sleep = std::pin::pin!(async { tokio::time::sleep(Duration::from_millis(10)).await });
        assert_eq!(wait(rt.handle(), sleep, Some(Duration::from_secs(5))), Some(()));
    }
}
