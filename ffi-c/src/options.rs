//! `edge_options`: an opaque builder over the core's `ClientOptions`. Setters only store values;
//! the core validates them when a client is created.

use std::os::raw::c_char;
use std::time::Duration;

use edgemodule_core::{ClientOptions, RetryPolicy, Transport};

use crate::boundary::{check_out, status_boundary, try_mut, try_opt_str, try_str, write_out};
use crate::status::edge_status;

/// Client options (opaque). Create with `edge_options_new`, change with `edge_options_set_*`,
/// pass to `edge_client_new_*` (which copies them) and free with `edge_options_free`.
/// Single-threaded: do not use one `edge_options` from two threads at once.
#[derive(Debug, Clone, Default)]
pub struct edge_options {
    pub(crate) inner: ClientOptions,
}

fn ms(v: u32) -> Duration {
    Duration::from_millis(u64::from(v))
}

/// Creates options holding the core's defaults.
#[no_mangle]
pub unsafe extern "C" fn edge_options_new(out: *mut *mut edge_options) -> edge_status {
    status_boundary(|| {
        check_out(out, "out")?;
        let boxed = Box::into_raw(Box::new(edge_options::default()));
        // SAFETY: checked non-NULL above.
        unsafe { write_out(out, boxed) };
        Ok(())
    })
}

/// Frees options. NULL is a no-op.
#[no_mangle]
pub unsafe extern "C" fn edge_options_free(opts: *mut edge_options) {
    crate::boundary::value_boundary((), || {
        if !opts.is_null() {
            // SAFETY: created by edge_options_new and freed once (C contract).
            drop(unsafe { Box::from_raw(opts) });
        }
    })
}

fn set(opts: *mut edge_options, f: impl FnOnce(&mut ClientOptions) -> crate::status::FfiResult) -> edge_status {
    status_boundary(|| {
        // SAFETY: NULL or a live edge_options used by this thread only (C contract).
        let o = unsafe { try_mut(opts, "opts") }?;
        f(&mut o.inner)
    })
}

/// Deadline of operations called with `timeout_ms == 0` (core default 30 000 ms).
#[no_mangle]
pub unsafe extern "C" fn edge_options_set_default_timeout(opts: *mut edge_options, timeout_ms: u32) -> edge_status {
    set(opts, |o| {
        o.default_timeout = ms(timeout_ms);
        Ok(())
    })
}

/// Deadline of one connection attempt: TCP, TLS and CONNACK (core default 10 000 ms).
#[no_mangle]
pub unsafe extern "C" fn edge_options_set_connect_timeout(opts: *mut edge_options, timeout_ms: u32) -> edge_status {
    set(opts, |o| {
        o.connect_timeout = ms(timeout_ms);
        Ok(())
    })
}

/// MQTT keep-alive interval in seconds (core default 60; 1-1177).
#[no_mangle]
pub unsafe extern "C" fn edge_options_set_keepalive(opts: *mut edge_options, seconds: u32) -> edge_status {
    set(opts, |o| {
        o.keep_alive = Duration::from_secs(u64::from(seconds));
        Ok(())
    })
}

/// SAS token lifetime and how long before expiry it is renewed, in seconds (core defaults 3600
/// and 300).
#[no_mangle]
pub unsafe extern "C" fn edge_options_set_sas_ttl(
    opts: *mut edge_options,
    ttl_seconds: u32,
    renewal_margin_seconds: u32,
) -> edge_status {
    set(opts, |o| {
        o.sas_ttl = Duration::from_secs(u64::from(ttl_seconds));
        o.sas_renewal_margin = Duration::from_secs(u64::from(renewal_margin_seconds));
        Ok(())
    })
}

/// Sends on the wire awaiting acknowledgement at once (core default 256).
#[no_mangle]
pub unsafe extern "C" fn edge_options_set_max_in_flight(opts: *mut edge_options, n: usize) -> edge_status {
    set(opts, |o| {
        o.max_in_flight = n;
        Ok(())
    })
}

/// Operations that may wait while disconnected before EDGE_STATUS_QUEUE_FULL (core default 10 000).
#[no_mangle]
pub unsafe extern "C" fn edge_options_set_queue_bound(opts: *mut edge_options, n: usize) -> edge_status {
    set(opts, |o| {
        o.queue_bound = n;
        Ok(())
    })
}

/// Product information appended to the user agent (copied).
#[no_mangle]
pub unsafe extern "C" fn edge_options_set_product_info(opts: *mut edge_options, info: *const c_char) -> edge_status {
    set(opts, |o| {
        // SAFETY: NULL or a NUL-terminated string (C contract).
        o.product_info = unsafe { try_str(info, "info") }?.to_string();
        Ok(())
    })
}

/// A DTDL model id ("dtmi:...") announced on connect (copied).
#[no_mangle]
pub unsafe extern "C" fn edge_options_set_model_id(opts: *mut edge_options, model_id: *const c_char) -> edge_status {
    set(opts, |o| {
        // SAFETY: NULL or a NUL-terminated string (C contract).
        o.model_id = Some(unsafe { try_str(model_id, "model_id") }?.to_string());
        Ok(())
    })
}

/// Extra PEM certificates to trust besides the CA of the identity (copied).
#[no_mangle]
pub unsafe extern "C" fn edge_options_set_extra_ca_pem(opts: *mut edge_options, pem: *const c_char) -> edge_status {
    set(opts, |o| {
        // SAFETY: NULL or a NUL-terminated string (C contract).
        o.extra_ca_pem = Some(unsafe { try_str(pem, "pem") }?.to_string());
        Ok(())
    })
}

/// Overrides the hub's MQTT port (default 8883).
#[no_mangle]
pub unsafe extern "C" fn edge_options_set_mqtt_port(opts: *mut edge_options, port: u16) -> edge_status {
    set(opts, |o| {
        o.mqtt_port = Some(port);
        Ok(())
    })
}

/// Overrides the hub's HTTPS port (default 443, or EDGEMODULE_HTTPS_PORT from the environment),
/// used by `edge_client_invoke_method` and by the WebSocket transport.
#[no_mangle]
pub unsafe extern "C" fn edge_options_set_https_port(opts: *mut edge_options, port: u16) -> edge_status {
    set(opts, |o| {
        o.https_port = Some(port);
        Ok(())
    })
}

/// Overrides the hub's AMQPS port (default 5671, or EDGEMODULE_AMQP_PORT from the environment),
/// used by the "amqp" transport.
#[no_mangle]
pub unsafe extern "C" fn edge_options_set_amqp_port(opts: *mut edge_options, port: u16) -> edge_status {
    set(opts, |o| {
        o.amqp_port = Some(port);
        Ok(())
    })
}

/// Picks the transport by name (case-insensitive): "mqtt" (MQTT over TLS on the MQTT port, the
/// default), "mqtt_ws" (MQTT over WebSocket over TLS on the HTTPS port, for networks that only
/// let 443 out), "amqp" (AMQP 1.0 over TLS on the AMQPS port; no user topics) or "amqp_ws" (AMQP
/// over WebSocket over TLS on the HTTPS port). An unknown name gives EDGE_STATUS_INVALID_ARGUMENT, with the accepted names in
/// the last error.
#[no_mangle]
pub unsafe extern "C" fn edge_options_set_transport(opts: *mut edge_options, name: *const c_char) -> edge_status {
    set(opts, |o| {
        // SAFETY: NULL or a NUL-terminated string (C contract).
        o.transport = unsafe { try_str(name, "name") }?.parse::<Transport>()?;
        Ok(())
    })
}

/// Tunnels the WebSocket transport, and module-to-module method calls, through an HTTP CONNECT
/// proxy, "http://[user:password@]host[:port]" (copied); NULL removes a proxy set before. Checked when
/// the client is created: a malformed URL, or a proxy with a transport that is not WebSocket,
/// gives EDGE_STATUS_CONFIGURATION.
#[no_mangle]
pub unsafe extern "C" fn edge_options_set_proxy(opts: *mut edge_options, url: *const c_char) -> edge_status {
    set(opts, |o| {
        // SAFETY: NULL or a NUL-terminated string (C contract).
        o.proxy = unsafe { try_opt_str(url, "url") }?.map(str::to_string);
        Ok(())
    })
}

/// Never reconnect: the first connection loss closes the client.
#[no_mangle]
pub unsafe extern "C" fn edge_options_set_retry_none(opts: *mut edge_options) -> edge_status {
    set(opts, |o| {
        o.retry = RetryPolicy::None;
        Ok(())
    })
}

/// Reconnect with exponential backoff and full jitter, starting at `initial_ms`, capped at
/// `max_ms`, giving up after `give_up_after_ms` of disconnection (0 = never give up).
#[no_mangle]
pub unsafe extern "C" fn edge_options_set_retry_exponential(
    opts: *mut edge_options,
    initial_ms: u32,
    max_ms: u32,
    give_up_after_ms: u32,
) -> edge_status {
    set(opts, |o| {
        o.retry = RetryPolicy::ExponentialBackoff {
            initial: ms(initial_ms),
            max: ms(max_ms),
            give_up_after: (give_up_after_ms != 0).then(|| ms(give_up_after_ms)),
        };
        Ok(())
    })
}
