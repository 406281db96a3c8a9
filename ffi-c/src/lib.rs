//! The C ABI of edgemodule: `include/edgemodule.h` + `libedgemodule.{so,a}`.
//!
//! This crate only converts types between C and the core (`edgemodule-core`), picks C idioms
//! (status codes, opaque handles, callbacks) and manages lifetimes. Every exported function runs
//! inside a panic boundary; pointers follow the contract stated in the header's top comment.
//!
//! Every exported function is `unsafe extern "C"`: its safety contract is the C contract in the
//! header (pointers NULL or valid as documented per function), so the per-function `# Safety`
//! sections that clippy asks for would only repeat it.
#![allow(clippy::missing_safety_doc)]
#![allow(non_camel_case_types)]

mod boundary;
pub mod callback;
pub mod client;
pub mod message;
pub mod options;
mod runtime;
pub mod status;

use std::os::raw::{c_char, c_int};

use boundary::{status_boundary, try_ref, value_boundary};
pub use status::edge_status;
use status::{copy_out, last_error};

/// A string allocated by the library (for example a twin document). Read it with
/// `edge_string_ptr` and `edge_string_len`; free it with `edge_string_free`.
pub struct edge_string {
    /// The text followed by one NUL byte.
    bytes: Vec<u8>,
}

impl edge_string {
    pub(crate) fn boxed(text: String) -> *mut edge_string {
        let mut bytes = text.into_bytes();
        bytes.push(0);
        Box::into_raw(Box::new(edge_string { bytes }))
    }
    /// The text without the trailing NUL.
    pub fn text(&self) -> &[u8] {
        &self.bytes[..self.bytes.len() - 1]
    }
}

/// The library version as "MAJOR.MINOR.PATCH" (static; never free it). Equals the
/// `EDGE_VERSION_*` macros of the header the program was compiled against when the header and
/// library match.
#[no_mangle]
pub extern "C" fn edge_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// The constant name of `status` (for example "EDGE_STATUS_TIMEOUT"), static; never free it.
/// An unknown number gives "EDGE_STATUS_UNKNOWN".
#[no_mangle]
pub extern "C" fn edge_status_name(status: c_int) -> *const c_char {
    // A plain int, not `edge_status`: C may pass any number, and an out-of-range enum value
    // would be undefined behaviour in Rust.
    value_boundary(c"EDGE_STATUS_INTERNAL".as_ptr(), || {
        match u32::try_from(status).ok().and_then(edge_status::from_code) {
            Some(s) => s.c_name().as_ptr().cast(),
            None => c"EDGE_STATUS_UNKNOWN".as_ptr(),
        }
    })
}

/// Copies this thread's last error message (the detail of the most recent failed `edge_*` call
/// on this thread; empty after a call that succeeded) into `buf` with a NUL terminator.
///
/// `*out_len` receives the message length without the NUL in every case; when `len` is less
/// than that plus one, nothing is copied and EDGE_STATUS_INSUFFICIENT_SIZE is returned, so a
/// caller can size a buffer with `edge_last_error_message(NULL, 0, &n)`. This call does not
/// change the last error itself.
#[no_mangle]
pub unsafe extern "C" fn edge_last_error_message(buf: *mut c_char, len: usize, out_len: *mut usize) -> edge_status {
    let message = last_error();
    let result = std::panic::catch_unwind(|| {
        // SAFETY: forwarded C contract for buf/len/out_len.
        unsafe { copy_out(message.as_bytes(), buf, len, out_len) }
    });
    match result {
        Ok(Ok(())) => edge_status::Ok,
        Ok(Err(f)) => f.status,
        Err(_) => edge_status::Internal,
    }
}

/// A pointer to the NUL-terminated text of `s` (borrowed until `edge_string_free`); NULL when
/// `s` is NULL.
#[no_mangle]
pub unsafe extern "C" fn edge_string_ptr(s: *const edge_string) -> *const c_char {
    value_boundary(std::ptr::null(), || {
        // SAFETY: NULL or a live edge_string per the C contract.
        match unsafe { s.as_ref() } {
            Some(s) => s.bytes.as_ptr().cast(),
            None => std::ptr::null(),
        }
    })
}

/// The length of `s` in bytes, without the NUL; 0 when `s` is NULL.
#[no_mangle]
pub unsafe extern "C" fn edge_string_len(s: *const edge_string) -> usize {
    // SAFETY: NULL or a live edge_string per the C contract.
    value_boundary(0, || unsafe { s.as_ref() }.map_or(0, |s| s.text().len()))
}

/// Copies `s` into `buf` (see `edge_last_error_message` for the sizing rules).
#[no_mangle]
pub unsafe extern "C" fn edge_string_copy(
    s: *const edge_string,
    buf: *mut c_char,
    len: usize,
    out_len: *mut usize,
) -> edge_status {
    status_boundary(|| {
        // SAFETY: C contract.
        let s = unsafe { try_ref(s, "s") }?;
        // SAFETY: C contract for buf/len/out_len.
        unsafe { copy_out(s.text(), buf, len, out_len) }
    })
}

/// Frees a string returned by the library. NULL is a no-op.
#[no_mangle]
pub unsafe extern "C" fn edge_string_free(s: *mut edge_string) {
    value_boundary((), || {
        if !s.is_null() {
            // SAFETY: `s` came from `edge_string::boxed` and is freed once (C contract).
            drop(unsafe { Box::from_raw(s) });
        }
    })
}
