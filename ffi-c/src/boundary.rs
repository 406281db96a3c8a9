//! The panic boundary every exported function runs inside, and the NULL/UTF-8 checks that turn
//! raw pointers into borrows.

use std::any::Any;
use std::ffi::CStr;
use std::os::raw::c_char;
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::status::{clear_last_error, edge_status, set_last_error, Failure, FfiResult};

fn panic_message(payload: &(dyn Any + Send)) -> String {
    let text = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic payload".to_string());
    format!("panic inside edgemodule: {text}")
}

/// Runs a fallible body: clears the last error, maps `Err` and panics to a status and a message.
pub(crate) fn status_boundary(f: impl FnOnce() -> FfiResult) -> edge_status {
    clear_last_error();
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => edge_status::Ok,
        Ok(Err(failure)) => {
            set_last_error(&failure.message);
            failure.status
        }
        Err(payload) => {
            set_last_error(&panic_message(payload.as_ref()));
            edge_status::Internal
        }
    }
}

/// Runs an infallible body (getters returning a value); a panic gives `fallback` and sets the
/// last error.
pub(crate) fn value_boundary<T>(fallback: T, f: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(v) => v,
        Err(payload) => {
            set_last_error(&panic_message(payload.as_ref()));
            fallback
        }
    }
}

/// Borrows `*ptr`, or fails with INVALID_ARGUMENT naming `what`.
///
/// # Safety
/// `ptr` must be NULL or point to a live `T` for the returned lifetime.
pub(crate) unsafe fn try_ref<'a, T>(ptr: *const T, what: &str) -> FfiResult<&'a T> {
    // SAFETY: the caller guarantees validity when non-NULL.
    unsafe { ptr.as_ref() }.ok_or_else(|| Failure::null(what))
}

/// Mutably borrows `*ptr`, or fails with INVALID_ARGUMENT naming `what`.
///
/// # Safety
/// `ptr` must be NULL or point to a live `T` that nothing else uses for the returned lifetime.
pub(crate) unsafe fn try_mut<'a, T>(ptr: *mut T, what: &str) -> FfiResult<&'a mut T> {
    // SAFETY: the caller guarantees validity and exclusivity when non-NULL.
    unsafe { ptr.as_mut() }.ok_or_else(|| Failure::null(what))
}

/// Borrows a NUL-terminated UTF-8 string.
///
/// # Safety
/// `ptr` must be NULL or point to a NUL-terminated string alive for the returned lifetime.
pub(crate) unsafe fn try_str<'a>(ptr: *const c_char, what: &str) -> FfiResult<&'a str> {
    if ptr.is_null() {
        return Err(Failure::null(what));
    }
    // SAFETY: non-NULL and NUL-terminated per the caller's contract.
    let c = unsafe { CStr::from_ptr(ptr) };
    c.to_str().map_err(|_| Failure::invalid(format!("{what} is not valid UTF-8")))
}

/// Like `try_str`, but NULL gives `None`.
///
/// # Safety
/// As `try_str`.
pub(crate) unsafe fn try_opt_str<'a>(ptr: *const c_char, what: &str) -> FfiResult<Option<&'a str>> {
    if ptr.is_null() {
        Ok(None)
    } else {
        // SAFETY: forwarded contract.
        unsafe { try_str(ptr, what) }.map(Some)
    }
}

/// Borrows `len` bytes at `data`; NULL is allowed only with `len == 0`.
///
/// # Safety
/// `data` must be NULL or valid for `len` bytes for the returned lifetime.
pub(crate) unsafe fn try_bytes<'a>(data: *const u8, len: usize, what: &str) -> FfiResult<&'a [u8]> {
    if data.is_null() {
        return if len == 0 { Ok(&[]) } else { Err(Failure::null(what)) };
    }
    // SAFETY: non-NULL and valid for len bytes per the caller's contract.
    Ok(unsafe { std::slice::from_raw_parts(data, len) })
}

/// Like `try_bytes`, and the bytes must be UTF-8 text.
///
/// # Safety
/// As `try_bytes`.
pub(crate) unsafe fn try_text<'a>(data: *const c_char, len: usize, what: &str) -> FfiResult<&'a str> {
    // SAFETY: forwarded contract.
    let bytes = unsafe { try_bytes(data.cast::<u8>(), len, what) }?;
    std::str::from_utf8(bytes).map_err(|_| Failure::invalid(format!("{what} is not valid UTF-8")))
}

/// Writes `value` through an out-pointer that was checked non-NULL up front.
///
/// # Safety
/// `out` must be valid for one write.
pub(crate) unsafe fn write_out<T>(out: *mut T, value: T) {
    // SAFETY: per the caller's contract.
    unsafe { out.write(value) }
}

/// Fails with INVALID_ARGUMENT when an out-pointer is NULL.
pub(crate) fn check_out<T>(out: *mut T, what: &str) -> FfiResult {
    if out.is_null() {
        Err(Failure::null(what))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::last_error;

    #[test]
    fn panics_become_internal_with_the_message_in_last_error() {
        let status = status_boundary(|| panic!("boom {}", 42));
        assert_eq!(status, edge_status::Internal);
        assert_eq!(last_error(), "panic inside edgemodule: boom 42");
        let v = value_boundary(7usize, || panic!("static boom"));
        assert_eq!(v, 7);
        assert_eq!(last_error(), "panic inside edgemodule: static boom");
    }

    #[test]
    fn success_clears_and_failure_sets_the_last_error() {
        assert_eq!(status_boundary(|| Err(Failure::invalid("nope"))), edge_status::InvalidArgument);
        assert_eq!(last_error(), "nope");
        assert_eq!(status_boundary(|| Ok(())), edge_status::Ok);
        assert_eq!(last_error(), "");
    }
}
