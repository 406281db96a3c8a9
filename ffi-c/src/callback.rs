//! Callback registrations and the per-client dispatcher thread that runs them.
//!
//! Tokio tasks ("forwarders") drain the core's receivers and post events to a std channel; one
//! OS thread per client (never a tokio worker) takes events in order and calls into C with the
//! thread-local "in callback" flag set. Registrations are reference counted; the count only
//! drops on the dispatcher thread (events and releases move their reference there), so
//! `user_data_free` runs there, exactly once, when a registration is replaced or the client is
//! freed.

use std::ffi::c_void;
use std::os::raw::c_char;
use std::sync::mpsc;
use std::sync::Arc;

use edgemodule_core::{
    ConnectionState, ConnectionStatus, DisconnectReason, InputMessage, MethodRequest, Qos, TopicMessage,
};

use crate::message::edge_message;
use crate::runtime::as_callback;

/// Frees the `user_data` of a registration; called exactly once when the registration ends.
pub type edge_user_data_free_cb = Option<unsafe extern "C" fn(user_data: *mut c_void)>;

/// Called with a message received on an input. `msg` is borrowed for the duration of the call.
///
/// When the callback returns, the message is completed (acknowledged) unless the callback
/// settled it itself (`edge_message_complete`, `edge_message_abandon`, `edge_message_reject`) or
/// kept a copy with `edge_message_clone` (then whoever holds the copy settles it, from any
/// thread).
pub type edge_message_cb = Option<unsafe extern "C" fn(user_data: *mut c_void, msg: *const edge_message)>;

/// Called with a direct-method request. `req` is borrowed for the duration of the call; answer
/// it with `edge_method_request_respond`, now or later on a copy from `edge_method_request_clone`.
/// A request that is never answered makes the caller wait for its timeout.
pub type edge_method_cb = Option<unsafe extern "C" fn(user_data: *mut c_void, req: *const edge_method_request)>;

/// Called with a desired-properties patch as JSON text (NUL-terminated, `len` bytes without the
/// NUL, borrowed for the duration of the call). The patch carries `$version`.
pub type edge_twin_cb = Option<unsafe extern "C" fn(user_data: *mut c_void, json: *const c_char, len: usize)>;

/// Called when the connection state changes (and once with the current state on registration).
pub type edge_connection_state_cb = Option<
    unsafe extern "C" fn(user_data: *mut c_void, status: edge_connection_status, reason: edge_disconnect_reason),
>;

/// Called with a message received on a user topic (see `edge_client_subscribe`). `topic` is
/// NUL-terminated UTF-8 (`topic_len` bytes without the NUL); `payload` is `payload_len` bytes
/// (NULL when empty). Both are borrowed for the duration of the call; copy what you keep. `qos`
/// is the QoS it was delivered with; `retain` is true for a retained message sent because the
/// subscription was made.
pub type edge_topic_message_cb = Option<
    unsafe extern "C" fn(
        user_data: *mut c_void,
        topic: *const c_char,
        topic_len: usize,
        payload: *const u8,
        payload_len: usize,
        qos: edge_qos,
        retain: bool,
    ),
>;

/// MQTT quality of service for user topics (IoT Edge does not support QoS 2).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum edge_qos {
    /// Fire and forget: a publish returns once the message is written to the connection.
    AtMostOnce = 0,
    /// Acknowledged: a publish returns on the hub's PUBACK; resent after a reconnect.
    AtLeastOnce = 1,
}

impl From<Qos> for edge_qos {
    fn from(q: Qos) -> Self {
        match q {
            Qos::AtMostOnce => edge_qos::AtMostOnce,
            Qos::AtLeastOnce => edge_qos::AtLeastOnce,
        }
    }
}

/// Whether the client is connected.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum edge_connection_status {
    Connected = 0,
    Disconnected = 1,
}

/// Why the connection state last changed (the core's `DisconnectReason`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum edge_disconnect_reason {
    /// Connected normally.
    Ok = 0,
    /// The SAS token ran out; the client reconnects with a new one.
    ExpiredToken = 1,
    /// The hub refused the credentials; the client is closed.
    BadCredential = 2,
    /// The hub stopped answering (keep-alive).
    NoNetwork = 3,
    /// Reconnecting gave up under the retry policy; the client is closed.
    RetryExpired = 4,
    /// The client was closed.
    Closed = 5,
    /// The connection broke (reset, malformed data, hub restart).
    CommunicationError = 6,
}

impl From<DisconnectReason> for edge_disconnect_reason {
    fn from(r: DisconnectReason) -> Self {
        match r {
            DisconnectReason::Ok => edge_disconnect_reason::Ok,
            DisconnectReason::ExpiredToken => edge_disconnect_reason::ExpiredToken,
            DisconnectReason::BadCredential => edge_disconnect_reason::BadCredential,
            DisconnectReason::NoNetwork => edge_disconnect_reason::NoNetwork,
            DisconnectReason::RetryExpired => edge_disconnect_reason::RetryExpired,
            DisconnectReason::Closed => edge_disconnect_reason::Closed,
            DisconnectReason::CommunicationError => edge_disconnect_reason::CommunicationError,
        }
    }
}

impl edge_disconnect_reason {
    /// The core's name of this reason, e.g. "NO_NETWORK".
    pub fn name(self) -> &'static std::ffi::CStr {
        match self {
            edge_disconnect_reason::Ok => c"OK",
            edge_disconnect_reason::ExpiredToken => c"EXPIRED_TOKEN",
            edge_disconnect_reason::BadCredential => c"BAD_CREDENTIAL",
            edge_disconnect_reason::NoNetwork => c"NO_NETWORK",
            edge_disconnect_reason::RetryExpired => c"RETRY_EXPIRED",
            edge_disconnect_reason::Closed => c"CLOSED",
            edge_disconnect_reason::CommunicationError => c"COMMUNICATION_ERROR",
        }
    }

    const ALL: [edge_disconnect_reason; 7] = [
        edge_disconnect_reason::Ok,
        edge_disconnect_reason::ExpiredToken,
        edge_disconnect_reason::BadCredential,
        edge_disconnect_reason::NoNetwork,
        edge_disconnect_reason::RetryExpired,
        edge_disconnect_reason::Closed,
        edge_disconnect_reason::CommunicationError,
    ];
}

/// The name of a disconnect reason (for example "NO_NETWORK"; the core's names), static; never
/// free it. An unknown number gives "UNKNOWN".
#[no_mangle]
pub extern "C" fn edge_disconnect_reason_name(reason: std::os::raw::c_int) -> *const c_char {
    crate::boundary::value_boundary(c"UNKNOWN".as_ptr(), || {
        edge_disconnect_reason::ALL
            .iter()
            .find(|r| **r as std::os::raw::c_int == reason)
            .map_or(c"UNKNOWN".as_ptr(), |r| r.name().as_ptr())
    })
}

impl From<ConnectionStatus> for edge_connection_status {
    fn from(s: ConnectionStatus) -> Self {
        match s {
            ConnectionStatus::Connected => edge_connection_status::Connected,
            ConnectionStatus::Disconnected => edge_connection_status::Disconnected,
        }
    }
}

/// A direct-method request (opaque), borrowed inside `edge_method_cb`; keep it with
/// `edge_method_request_clone` to answer later from any thread.
#[derive(Debug, Clone)]
pub struct edge_method_request {
    pub(crate) inner: Arc<MethodRequest>,
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Callback {
    Message(unsafe extern "C" fn(*mut c_void, *const edge_message)),
    Method(unsafe extern "C" fn(*mut c_void, *const edge_method_request)),
    Twin(unsafe extern "C" fn(*mut c_void, *const c_char, usize)),
    State(unsafe extern "C" fn(*mut c_void, edge_connection_status, edge_disconnect_reason)),
    Topic(unsafe extern "C" fn(*mut c_void, *const c_char, usize, *const u8, usize, edge_qos, bool)),
}

/// One callback registration: the callback, its user data and the user data's finaliser.
#[derive(Debug)]
pub(crate) struct Registration {
    pub(crate) callback: Callback,
    user_data: *mut c_void,
    user_data_free: edge_user_data_free_cb,
}

// SAFETY: the C contract says user_data is used from the client's dispatcher thread and that
// the caller makes it safe to do so; the registration itself is immutable.
unsafe impl Send for Registration {}
// SAFETY: as above; shared references only read the fields.
unsafe impl Sync for Registration {}

impl Registration {
    pub(crate) fn new(callback: Callback, user_data: *mut c_void, user_data_free: edge_user_data_free_cb) -> Self {
        Registration { callback, user_data, user_data_free }
    }

    /// Ends a registration that never took effect without calling `user_data_free`: the caller
    /// keeps ownership of `user_data` when registering fails.
    pub(crate) fn disarm(mut self) {
        self.user_data_free = None;
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Some(f) = self.user_data_free {
            // SAFETY: the finaliser the C caller registered for this user_data; called once.
            as_callback(|| unsafe { f(self.user_data) });
        }
    }
}

/// Work for the dispatcher thread.
pub(crate) enum Event {
    Input(Arc<Registration>, Box<InputMessage>),
    Method(Arc<Registration>, MethodRequest),
    Desired(Arc<Registration>, String),
    State(Arc<Registration>, ConnectionState),
    Topic(Arc<Registration>, TopicMessage),
    /// A registration ended (replaced or the client closing): drop it here.
    Release(Arc<Registration>),
    /// Stop after the events before this one.
    Shutdown,
}

/// Runs the dispatcher loop until `Shutdown` or until every sender is gone.
pub(crate) fn dispatch(events: mpsc::Receiver<Event>, closing: Arc<std::sync::atomic::AtomicBool>) {
    use std::sync::atomic::Ordering;
    while let Ok(event) = events.recv() {
        if matches!(event, Event::Shutdown) {
            break;
        }
        let skip = closing.load(Ordering::Acquire);
        // A panic in our own glue must not kill the dispatcher; C code cannot unwind here.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match event {
            Event::Input(reg, msg) => {
                if skip {
                    return;
                }
                deliver_input(&reg, *msg);
            }
            Event::Method(reg, req) => {
                if let (Callback::Method(f), false) = (reg.callback, skip) {
                    let handle = edge_method_request { inner: Arc::new(req) };
                    // SAFETY: calling the registered C callback with its user data and a
                    // request borrowed for the call.
                    as_callback(|| unsafe { f(reg.user_data, &handle) });
                }
            }
            Event::Desired(reg, mut json) => {
                if let (Callback::Twin(f), false) = (reg.callback, skip) {
                    let len = json.len();
                    json.push('\0');
                    // SAFETY: NUL-terminated JSON borrowed for the call.
                    as_callback(|| unsafe { f(reg.user_data, json.as_ptr().cast(), len) });
                }
            }
            Event::State(reg, state) => {
                if let Callback::State(f) = reg.callback {
                    // SAFETY: registered C callback with plain enum arguments.
                    as_callback(|| unsafe { f(reg.user_data, state.status.into(), state.reason.into()) });
                }
            }
            Event::Topic(reg, m) => {
                if let (Callback::Topic(f), false) = (reg.callback, skip) {
                    let mut topic = m.topic.into_bytes();
                    let topic_len = topic.len();
                    topic.push(0);
                    let payload = if m.payload.is_empty() { std::ptr::null() } else { m.payload.as_ptr() };
                    // SAFETY: registered C callback with a NUL-terminated topic and a payload
                    // borrowed for the call.
                    as_callback(|| unsafe {
                        f(
                            reg.user_data,
                            topic.as_ptr().cast(),
                            topic_len,
                            payload,
                            m.payload.len(),
                            m.qos.into(),
                            m.retain,
                        )
                    });
                }
            }
            Event::Release(reg) => drop(reg),
            Event::Shutdown => {}
        }));
    }
    // Dropping the receiver here drops anything still queued on this thread.
    drop(events);
}

fn deliver_input(reg: &Registration, msg: InputMessage) {
    let Callback::Message(f) = reg.callback else { return };
    let handle = edge_message::inbound(msg);
    // SAFETY: registered C callback with a message borrowed for the call.
    as_callback(|| unsafe { f(reg.user_data, &handle) });
    if let Some(inbound) = handle.inbound {
        // Nobody kept a copy: settle it now. If the callback completed or abandoned it already,
        // the core answers INVALID_STATE, which is expected here.
        if Arc::strong_count(&inbound) == 1 {
            let _ = inbound.complete();
        }
    }
}
