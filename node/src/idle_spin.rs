//! Keeps the JavaScript thread awake for a moment before libuv puts it to sleep, while an
//! awaited send is in flight.
//!
//! A sequential `await client.sendOutputEvent(...)` loop is one hub round trip per call (a few
//! tens of microseconds). Without help, the JavaScript thread goes to sleep in `epoll_wait` after
//! each call and the answer has to wake it through the settler's async handle: a sleep and a
//! wake-up per message, as long as the round trip itself. A libuv *prepare* handle runs right
//! before the loop blocks; when operations polled on this thread are pending and the loop has
//! nothing else due, it spins briefly until the settler has work queued. The async handle's
//! eventfd is written by then, so the poll that follows returns at once instead of sleeping.
//!
//! libuv is reached through the symbols the `node` executable exports, looked up at run time
//! (N-API has no hook before the poll phase); a host without them runs without the spin. The handle is unreferenced (it never keeps the loop alive) and closed by an
//! environment cleanup hook.

use std::cell::{Cell, RefCell};
use std::ffi::{c_char, c_int, c_void, CStr};
use std::ptr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use edgemodule_core::runtime::spin_until;
use napi::sys;

/// How long the loop, about to sleep with a send in flight, waits for its answer first: a hub
/// round trip fits; anything slower pays the sleep as before, plus this window once per loop
/// turn, and only while operations are pending.
const IDLE_SPIN: Duration = Duration::from_micros(60);

/// `UV_PREPARE` in libuv's `uv_handle_type`.
const UV_PREPARE: c_int = 9;

type UvHandle = c_void;
type UvLoop = c_void;

/// The libuv functions the spin uses, looked up in the running process (the `node` executable
/// exports libuv). A host that does not export them simply gets no spin: the addon never fails
/// to load or crashes over it.
struct Uv {
    handle_size: unsafe extern "C" fn(c_int) -> usize,
    prepare_init: unsafe extern "C" fn(*mut UvLoop, *mut UvHandle) -> c_int,
    prepare_start: unsafe extern "C" fn(*mut UvHandle, unsafe extern "C" fn(*mut UvHandle)) -> c_int,
    unref: unsafe extern "C" fn(*mut UvHandle),
    close: unsafe extern "C" fn(*mut UvHandle, unsafe extern "C" fn(*mut UvHandle)),
    backend_timeout: unsafe extern "C" fn(*const UvLoop) -> c_int,
    handle_get_loop: unsafe extern "C" fn(*const UvHandle) -> *mut UvLoop,
    handle_get_data: unsafe extern "C" fn(*const UvHandle) -> *mut c_void,
    handle_set_data: unsafe extern "C" fn(*mut UvHandle, *mut c_void),
}

extern "C" {
    fn dlsym(handle: *mut c_void, symbol: *const c_char) -> *mut c_void;
}

/// `RTLD_DEFAULT`: search the global symbol scope of the process.
#[cfg(target_os = "macos")]
const RTLD_DEFAULT: *mut c_void = -2isize as *mut c_void;
#[cfg(not(target_os = "macos"))]
const RTLD_DEFAULT: *mut c_void = ptr::null_mut();

/// The function named `name` in the process, as `F` (a function pointer type).
///
/// # Safety
/// `F` must be the symbol's true signature.
unsafe fn lookup<F: Copy>(name: &CStr) -> Option<F> {
    // SAFETY: a plain symbol lookup.
    let found = unsafe { dlsym(RTLD_DEFAULT, name.as_ptr()) };
    if found.is_null() || size_of::<F>() != size_of::<*mut c_void>() {
        return None;
    }
    // SAFETY: per the contract, `found` is a function of type `F`.
    Some(unsafe { std::mem::transmute_copy::<*mut c_void, F>(&found) })
}

fn uv() -> Option<&'static Uv> {
    static UV: OnceLock<Option<Uv>> = OnceLock::new();
    // SAFETY: the types are libuv's documented signatures (uv.h).
    UV.get_or_init(|| unsafe {
        Some(Uv {
            handle_size: lookup(c"uv_handle_size")?,
            prepare_init: lookup(c"uv_prepare_init")?,
            prepare_start: lookup(c"uv_prepare_start")?,
            unref: lookup(c"uv_unref")?,
            close: lookup(c"uv_close")?,
            backend_timeout: lookup(c"uv_backend_timeout")?,
            handle_get_loop: lookup(c"uv_handle_get_loop")?,
            handle_get_data: lookup(c"uv_handle_get_data")?,
            handle_set_data: lookup(c"uv_handle_set_data")?,
        })
    })
    .as_ref()
}

/// Whether the spin should keep going: the caller's view of the settler.
pub trait Watch {
    /// Operations polled on this thread are waiting for an answer.
    fn awaiting(&self) -> bool;
    /// Work for the JavaScript thread is queued (the poll will not sleep).
    fn queued(&self) -> bool;
}

thread_local! {
    /// The environment whose loop has the prepare handle (one per JavaScript thread).
    static INSTALLED_FOR: Cell<usize> = const { Cell::new(0) };
    /// What the prepare callback watches: the settler of this thread.
    static WATCH: RefCell<Option<Arc<dyn Watch>>> = const { RefCell::new(None) };
}

/// A prepare handle's memory: libuv gives its size at run time.
struct HandleMemory(Vec<u64>);

impl HandleMemory {
    fn new(uv: &Uv) -> Box<Self> {
        // SAFETY: a plain query of a constant.
        let bytes = unsafe { (uv.handle_size)(UV_PREPARE) };
        Box::new(HandleMemory(vec![0; bytes.div_ceil(8)]))
    }
}

/// Starts the spin on `env`'s loop (once per environment) watching `watch`, the thread's
/// current settler.
pub fn install(env: sys::napi_env, watch: Arc<dyn Watch>) {
    WATCH.with(|w| *w.borrow_mut() = Some(watch));
    if INSTALLED_FOR.with(Cell::get) == env as usize {
        return;
    }
    let Some(uv) = uv() else { return };
    let mut event_loop = ptr::null_mut();
    // SAFETY: on the JavaScript thread of `env`; the handle memory is owned by libuv from
    // `uv_prepare_init` until the close callback frees it.
    unsafe {
        if sys::napi_get_uv_event_loop(env, &mut event_loop) != sys::Status::napi_ok || event_loop.is_null() {
            return;
        }
        let handle = Box::into_raw(HandleMemory::new(uv));
        let raw = (*handle).0.as_mut_ptr().cast::<UvHandle>();
        if (uv.prepare_init)(event_loop.cast(), raw) != 0 {
            drop(Box::from_raw(handle));
            return;
        }
        (uv.handle_set_data)(raw, handle.cast()); // the box to free on close
        (uv.prepare_start)(raw, before_poll);
        (uv.unref)(raw);
        sys::napi_add_env_cleanup_hook(env, Some(uninstall), raw);
    }
    INSTALLED_FOR.with(|i| i.set(env as usize));
}

unsafe extern "C" fn before_poll(handle: *mut UvHandle) {
    let Some(uv) = uv() else { return };
    // Runs on every turn of the loop: the watch is borrowed, not cloned.
    WATCH.with(|w| {
        let Some(watch) = &*w.borrow() else { return };
        if !watch.awaiting() || watch.queued() {
            return;
        }
        // SAFETY: `handle` is the live prepare handle, run by its own loop.
        if unsafe { (uv.backend_timeout)((uv.handle_get_loop)(handle)) } == 0 {
            return; // the loop will not sleep: something else is due.
        }
        spin_until(IDLE_SPIN, || watch.queued());
    })
}

unsafe extern "C" fn uninstall(handle: *mut c_void) {
    INSTALLED_FOR.with(|i| i.set(0));
    WATCH.with(|w| w.borrow_mut().take());
    let Some(uv) = uv() else { return }; // installed only when libuv was found
                                         // SAFETY: the handle started in `install`; closing it stops the callback and hands the
                                         // memory back to `free_after_close`.
    unsafe { (uv.close)(handle, free_after_close) };
}

unsafe extern "C" fn free_after_close(handle: *mut UvHandle) {
    let Some(uv) = uv() else { return };
    // SAFETY: `data` holds the box leaked in `install`; libuv calls this once.
    unsafe { drop(Box::from_raw((uv.handle_get_data)(handle).cast::<HandleMemory>())) };
}
