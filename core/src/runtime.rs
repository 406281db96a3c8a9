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
    /// Spins, then parks, until woken (true) or `give_up` passes (false).
    fn wait_until(&self, give_up: Option<Instant>) -> bool {
        let woken = || self.woken.swap(false, Ordering::Acquire);
        let window =
            give_up.map_or(SPIN_BEFORE_PARK, |g| g.saturating_duration_since(Instant::now()).min(SPIN_BEFORE_PARK));
        if spin_until(window, woken) {
            return true;
        }
        loop {
            if woken() {
                return true;
            }
            let now = Instant::now();
            match give_up {
                Some(g) if now >= g => return false,
                Some(g) => thread::park_timeout(g - now),
                None => thread::park(),
            }
        }
    }
}

/// Keeps the calling thread on its CPU for up to `window`, until `ready` returns true (then
/// true; false once the window passed). For a thread about to sleep while it waits for an
/// answer another thread produces within microseconds: a sleep and wake-up costs more than the
/// wait. The later three quarters of the window yield the CPU to any other runnable thread, so
/// on a busy machine the spin does not delay the very threads (driver, hub) it waits for.
pub fn spin_until(window: Duration, mut ready: impl FnMut() -> bool) -> bool {
    let started = Instant::now();
    loop {
        if ready() {
            return true;
        }
        let spun = started.elapsed();
        if spun >= window {
            return false;
        }
        if spun < window / 4 {
            std::hint::spin_loop();
        } else {
            thread::yield_now();
        }
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

    #[test]
    fn a_spin_sees_what_another_thread_sets_and_gives_up_after_its_window() {
        let flag = Arc::new(AtomicBool::new(false));
        let setter = {
            let flag = flag.clone();
            thread::spawn(move || flag.store(true, Ordering::Release))
        };
        assert!(spin_until(Duration::from_secs(5), || flag.load(Ordering::Acquire)));
        setter.join().unwrap();

        let mut asked = 0;
        let started = Instant::now();
        assert!(!spin_until(Duration::from_millis(5), || {
            asked += 1;
            false
        }));
        assert!(started.elapsed() >= Duration::from_millis(5));
        assert!(asked > 1, "the condition is asked again while spinning");
    }
}
