//! `edge_message`: a core `Message` plus, for messages received on an input, the handle that
//! completes, abandons or rejects it.

use std::os::raw::c_char;
use std::sync::Arc;

use edgemodule_core::{InputMessage, Message, SystemProperty};

use crate::boundary::{check_out, status_boundary, try_bytes, try_mut, try_ref, try_str, value_boundary, write_out};
use crate::status::{edge_status, Failure, FfiResult};

/// A message (opaque): body bytes, system properties and application properties.
///
/// Build one with `edge_message_new` and the setters to send it; inside an input callback you
/// get a borrowed one (keep it with `edge_message_clone`). Getters return pointers borrowed
/// from the message, valid until it is changed or freed; strings are UTF-8 and NOT
/// NUL-terminated (print them with `"%.*s", (int)len, ptr`).
#[derive(Debug, Clone)]
pub struct edge_message {
    pub(crate) message: Message,
    pub(crate) inbound: Option<Arc<InputMessage>>,
}

impl edge_message {
    pub(crate) fn inbound(msg: InputMessage) -> edge_message {
        edge_message { message: msg.message().clone(), inbound: Some(Arc::new(msg)) }
    }
}

/// Creates a message with a copy of `len` bytes at `body` (`body` may be NULL when `len` is 0).
#[no_mangle]
pub unsafe extern "C" fn edge_message_new(body: *const u8, len: usize, out: *mut *mut edge_message) -> edge_status {
    status_boundary(|| {
        check_out(out, "out")?;
        // SAFETY: C contract: body valid for len bytes.
        let body = unsafe { try_bytes(body, len, "body") }?;
        let msg = Box::new(edge_message { message: Message::new(body.to_vec()), inbound: None });
        // SAFETY: checked non-NULL.
        unsafe { write_out(out, Box::into_raw(msg)) };
        Ok(())
    })
}

/// Copies a message (its body, properties and, for a received message, the right to complete,
/// abandon or reject it). Use it to keep a message beyond the callback that received it.
#[no_mangle]
pub unsafe extern "C" fn edge_message_clone(msg: *const edge_message, out: *mut *mut edge_message) -> edge_status {
    status_boundary(|| {
        check_out(out, "out")?;
        // SAFETY: C contract.
        let m = unsafe { try_ref(msg, "msg") }?;
        // SAFETY: checked non-NULL.
        unsafe { write_out(out, Box::into_raw(Box::new(m.clone()))) };
        Ok(())
    })
}

/// Frees a message created by `edge_message_new` or `edge_message_clone`. NULL is a no-op.
/// Freeing the last copy of a received message that was not completed, abandoned or rejected
/// leaves it unacknowledged: the hub delivers it again after a reconnect.
#[no_mangle]
pub unsafe extern "C" fn edge_message_free(msg: *mut edge_message) {
    value_boundary((), || {
        if !msg.is_null() {
            // SAFETY: created by this library and freed once (C contract).
            drop(unsafe { Box::from_raw(msg) });
        }
    })
}

fn inbound(msg: *const edge_message) -> FfiResult<Arc<InputMessage>> {
    // SAFETY: C contract.
    let m = unsafe { try_ref(msg, "msg") }?;
    m.inbound
        .clone()
        .ok_or_else(|| Failure::new(edge_status::InvalidState, "the message was not received from an input"))
}

/// Acknowledges a received message to the hub. Callable from any thread, also after the
/// callback returned (on a clone). A second completion gives EDGE_STATUS_INVALID_STATE; a
/// message that was not received gives EDGE_STATUS_INVALID_STATE. Does not block.
#[no_mangle]
pub unsafe extern "C" fn edge_message_complete(msg: *const edge_message) -> edge_status {
    status_boundary(|| Ok(inbound(msg)?.complete()?))
}

/// Gives a received message back for another delivery. Over AMQP the hub delivers it again at
/// once (a `released` disposition); over MQTT nothing is sent (MQTT has no negative
/// acknowledgement) and the hub delivers it again after the next reconnect. Same rules as
/// `edge_message_complete`.
#[no_mangle]
pub unsafe extern "C" fn edge_message_abandon(msg: *const edge_message) -> edge_status {
    status_boundary(|| Ok(inbound(msg)?.abandon()?))
}

/// Refuses a received message for good: it is not delivered again. Over AMQP the hub drops it
/// (a `rejected` disposition); over MQTT, which cannot say so, it is acknowledged like a
/// completed one. Same rules as `edge_message_complete`.
#[no_mangle]
pub unsafe extern "C" fn edge_message_reject(msg: *const edge_message) -> edge_status {
    status_boundary(|| Ok(inbound(msg)?.reject()?))
}

/// Replaces the body with a copy of `len` bytes at `body`.
#[no_mangle]
pub unsafe extern "C" fn edge_message_set_body(msg: *mut edge_message, body: *const u8, len: usize) -> edge_status {
    status_boundary(|| {
        // SAFETY: C contract.
        let m = unsafe { try_mut(msg, "msg") }?;
        // SAFETY: C contract.
        let body = unsafe { try_bytes(body, len, "body") }?;
        m.message.set_body(body.to_vec());
        Ok(())
    })
}

fn set_system(msg: *mut edge_message, p: SystemProperty, value: *const c_char) -> edge_status {
    status_boundary(|| {
        // SAFETY: C contract.
        let m = unsafe { try_mut(msg, "msg") }?;
        // SAFETY: C contract.
        let v = unsafe { try_str(value, "value") }?;
        m.message.set_system(p, Some(v.to_string()));
        Ok(())
    })
}

/// Sets the message id (`$.mid`).
#[no_mangle]
pub unsafe extern "C" fn edge_message_set_message_id(msg: *mut edge_message, value: *const c_char) -> edge_status {
    set_system(msg, SystemProperty::MessageId, value)
}

/// Sets the correlation id (`$.cid`).
#[no_mangle]
pub unsafe extern "C" fn edge_message_set_correlation_id(msg: *mut edge_message, value: *const c_char) -> edge_status {
    set_system(msg, SystemProperty::CorrelationId, value)
}

/// Sets the content type (`$.ct`), e.g. "application/json" (needed for routes on `$body`).
#[no_mangle]
pub unsafe extern "C" fn edge_message_set_content_type(msg: *mut edge_message, value: *const c_char) -> edge_status {
    set_system(msg, SystemProperty::ContentType, value)
}

/// Sets the content encoding (`$.ce`), e.g. "utf-8".
#[no_mangle]
pub unsafe extern "C" fn edge_message_set_content_encoding(
    msg: *mut edge_message,
    value: *const c_char,
) -> edge_status {
    set_system(msg, SystemProperty::ContentEncoding, value)
}

/// Sets the creation time (`$.ctime`, ISO 8601).
#[no_mangle]
pub unsafe extern "C" fn edge_message_set_creation_time(msg: *mut edge_message, value: *const c_char) -> edge_status {
    set_system(msg, SystemProperty::CreationTime, value)
}

/// Sets the expiry time (`$.exp`, ISO 8601).
#[no_mangle]
pub unsafe extern "C" fn edge_message_set_expiry_time(msg: *mut edge_message, value: *const c_char) -> edge_status {
    set_system(msg, SystemProperty::ExpiryTime, value)
}

/// Sets an application property, replacing an earlier value for the same key.
#[no_mangle]
pub unsafe extern "C" fn edge_message_set_property(
    msg: *mut edge_message,
    key: *const c_char,
    value: *const c_char,
) -> edge_status {
    status_boundary(|| {
        // SAFETY: C contract.
        let m = unsafe { try_mut(msg, "msg") }?;
        // SAFETY: C contract.
        let (k, v) = unsafe { (try_str(key, "key")?, try_str(value, "value")?) };
        m.message.set_property(k, v);
        Ok(())
    })
}

/// Borrows the body: `*data` and `*len` (`*data` may be NULL when the body is empty).
#[no_mangle]
pub unsafe extern "C" fn edge_message_body(
    msg: *const edge_message,
    data: *mut *const u8,
    len: *mut usize,
) -> edge_status {
    status_boundary(|| {
        check_out(data, "data")?;
        check_out(len, "len")?;
        // SAFETY: C contract.
        let m = unsafe { try_ref(msg, "msg") }?;
        let body = m.message.body();
        // SAFETY: both checked non-NULL.
        unsafe {
            write_out(data, if body.is_empty() { std::ptr::null() } else { body.as_ptr() });
            write_out(len, body.len());
        }
        Ok(())
    })
}

/// Writes an optional borrowed string: absent gives NULL and 0.
fn out_str(value: Option<&str>, out: *mut *const c_char, out_len: *mut usize) -> FfiResult {
    check_out(out, "out")?;
    check_out(out_len, "out_len")?;
    let (p, n) = match value {
        Some(v) => (v.as_ptr().cast::<c_char>(), v.len()),
        None => (std::ptr::null(), 0),
    };
    // SAFETY: both checked non-NULL.
    unsafe {
        write_out(out, p);
        write_out(out_len, n);
    }
    Ok(())
}

fn get_str(
    msg: *const edge_message,
    out: *mut *const c_char,
    out_len: *mut usize,
    f: impl FnOnce(&edge_message) -> Option<&str>,
) -> edge_status {
    status_boundary(|| {
        // SAFETY: C contract.
        let m = unsafe { try_ref(msg, "msg") }?;
        out_str(f(m), out, out_len)
    })
}

/// Borrows the message id; `*out` is NULL (and `*out_len` 0) when it is not set.
#[no_mangle]
pub unsafe extern "C" fn edge_message_message_id(
    msg: *const edge_message,
    out: *mut *const c_char,
    out_len: *mut usize,
) -> edge_status {
    get_str(msg, out, out_len, |m| m.message.message_id())
}

/// Borrows the correlation id (NULL when not set).
#[no_mangle]
pub unsafe extern "C" fn edge_message_correlation_id(
    msg: *const edge_message,
    out: *mut *const c_char,
    out_len: *mut usize,
) -> edge_status {
    get_str(msg, out, out_len, |m| m.message.correlation_id())
}

/// Borrows the content type (NULL when not set).
#[no_mangle]
pub unsafe extern "C" fn edge_message_content_type(
    msg: *const edge_message,
    out: *mut *const c_char,
    out_len: *mut usize,
) -> edge_status {
    get_str(msg, out, out_len, |m| m.message.content_type())
}

/// Borrows the content encoding (NULL when not set).
#[no_mangle]
pub unsafe extern "C" fn edge_message_content_encoding(
    msg: *const edge_message,
    out: *mut *const c_char,
    out_len: *mut usize,
) -> edge_status {
    get_str(msg, out, out_len, |m| m.message.content_encoding())
}

/// Borrows the name of the input a received message arrived on (NULL for other messages).
#[no_mangle]
pub unsafe extern "C" fn edge_message_input_name(
    msg: *const edge_message,
    out: *mut *const c_char,
    out_len: *mut usize,
) -> edge_status {
    get_str(msg, out, out_len, |m| m.message.input_name())
}

/// Borrows the id of the module that sent a received message (NULL when unknown).
#[no_mangle]
pub unsafe extern "C" fn edge_message_connection_module_id(
    msg: *const edge_message,
    out: *mut *const c_char,
    out_len: *mut usize,
) -> edge_status {
    get_str(msg, out, out_len, |m| m.message.connection_module_id())
}

/// Borrows the id of the device that sent a received message (NULL when unknown).
#[no_mangle]
pub unsafe extern "C" fn edge_message_connection_device_id(
    msg: *const edge_message,
    out: *mut *const c_char,
    out_len: *mut usize,
) -> edge_status {
    get_str(msg, out, out_len, |m| m.message.connection_device_id())
}

/// Borrows the value of application property `key` (NULL when the message has no such key).
#[no_mangle]
pub unsafe extern "C" fn edge_message_property(
    msg: *const edge_message,
    key: *const c_char,
    out: *mut *const c_char,
    out_len: *mut usize,
) -> edge_status {
    status_boundary(|| {
        // SAFETY: C contract.
        let m = unsafe { try_ref(msg, "msg") }?;
        // SAFETY: C contract.
        let key = unsafe { try_str(key, "key") }?;
        out_str(m.message.property(key), out, out_len)
    })
}

/// The number of application properties; 0 when `msg` is NULL.
#[no_mangle]
pub unsafe extern "C" fn edge_message_property_count(msg: *const edge_message) -> usize {
    // SAFETY: C contract.
    value_boundary(0, || unsafe { msg.as_ref() }.map_or(0, |m| m.message.properties().len()))
}

/// Borrows the key and value of application property `index` (insertion order).
/// `index >= edge_message_property_count(msg)` gives EDGE_STATUS_INVALID_ARGUMENT.
#[no_mangle]
pub unsafe extern "C" fn edge_message_property_at(
    msg: *const edge_message,
    index: usize,
    key: *mut *const c_char,
    key_len: *mut usize,
    value: *mut *const c_char,
    value_len: *mut usize,
) -> edge_status {
    status_boundary(|| {
        check_out(key, "key")?;
        check_out(key_len, "key_len")?;
        // SAFETY: C contract.
        let m = unsafe { try_ref(msg, "msg") }?;
        let props = m.message.properties();
        let (k, v) = props.get(index).ok_or_else(|| {
            Failure::invalid(format!("property index {index} is out of range (count {})", props.len()))
        })?;
        out_str(Some(v), value, value_len)?;
        out_str(Some(k), key, key_len)
    })
}
