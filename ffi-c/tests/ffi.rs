//! Rust-side tests of the exported functions: status mapping, NULL handling, last-error sizing.

use std::ffi::CStr;
use std::os::raw::c_char;
use std::ptr;

use edgemodule::client::*;
use edgemodule::message::*;
use edgemodule::options::*;
use edgemodule::*;
use edgemodule_core::ErrorKind;

fn name(status: edge_status) -> String {
    let p = edge_status_name(status as i32);
    unsafe { CStr::from_ptr(p) }.to_str().unwrap().to_string()
}

fn last_error() -> String {
    let mut n = 0usize;
    let st = unsafe { edge_last_error_message(ptr::null_mut(), 0, &mut n) };
    assert_eq!(st, edge_status::InsufficientSize, "a NULL buffer never fits (the NUL needs a byte)");
    if n == 0 {
        let mut b = [0 as c_char; 1];
        assert_eq!(unsafe { edge_last_error_message(b.as_mut_ptr(), 1, &mut n) }, edge_status::Ok);
        return String::new();
    }
    let mut buf = vec![0 as c_char; n + 1];
    assert_eq!(unsafe { edge_last_error_message(buf.as_mut_ptr(), buf.len(), &mut n) }, edge_status::Ok);
    unsafe { CStr::from_ptr(buf.as_ptr()) }.to_str().unwrap().to_string()
}

#[test]
fn every_core_error_kind_has_a_status_with_the_same_number_and_name() {
    for kind in ErrorKind::ALL {
        let status = edge_status::from_code(kind.code()).unwrap_or_else(|| panic!("{kind} has no status"));
        assert_eq!(status as u32, kind.code());
        assert_eq!(status, edge_status::from_kind(*kind));
        assert_eq!(name(status), format!("EDGE_STATUS_{}", kind.name()));
        assert_eq!(status.short_name(), kind.name());
    }
    // Binding-only statuses sit after a gap, so core kinds can be appended.
    for s in [edge_status::InsufficientSize, edge_status::WouldDeadlock] {
        assert!(s as u32 >= 1000);
        assert!(ErrorKind::from_code(s as u32).is_none());
    }
    assert_eq!(name(edge_status::Ok), "EDGE_STATUS_OK");
    assert_eq!(name(edge_status::WouldDeadlock), "EDGE_STATUS_WOULD_DEADLOCK");
    let unknown = unsafe { CStr::from_ptr(edge_status_name(999)) };
    assert_eq!(unknown.to_str().unwrap(), "EDGE_STATUS_UNKNOWN");
    assert_eq!(unsafe { CStr::from_ptr(edge_status_name(-1)) }.to_str().unwrap(), "EDGE_STATUS_UNKNOWN");
    // Every status listed in ALL has a distinct name.
    let mut names: Vec<String> = edge_status::ALL.iter().map(|s| name(*s)).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), edge_status::ALL.len());
}

#[test]
fn null_arguments_give_invalid_argument_with_a_message() {
    unsafe {
        assert_eq!(edge_options_new(ptr::null_mut()), edge_status::InvalidArgument);
        assert_eq!(last_error(), "out is NULL");
        assert_eq!(edge_options_set_keepalive(ptr::null_mut(), 5), edge_status::InvalidArgument);
        assert_eq!(last_error(), "opts is NULL");
        let mut msg = ptr::null_mut();
        assert_eq!(edge_message_new(ptr::null(), 3, &mut msg), edge_status::InvalidArgument);
        assert!(msg.is_null(), "out written on failure");
        assert_eq!(edge_message_new(ptr::null(), 0, &mut msg), edge_status::Ok);
        assert_eq!(edge_message_set_property(msg, c"k".as_ptr(), ptr::null()), edge_status::InvalidArgument);
        assert_eq!(last_error(), "value is NULL");
        assert_eq!(edge_message_complete(msg), edge_status::InvalidState);
        assert_eq!(edge_message_complete(ptr::null()), edge_status::InvalidArgument);
        let mut out = ptr::null_mut();
        assert_eq!(
            edge_client_new_from_connection_string(ptr::null(), ptr::null(), ptr::null(), &mut out),
            edge_status::InvalidArgument
        );
        assert_eq!(edge_client_send_to_output(ptr::null(), c"o".as_ptr(), msg, 0), edge_status::InvalidArgument);
        assert_eq!(edge_client_close(ptr::null()), edge_status::InvalidArgument);
        assert_eq!(edge_message_property_count(ptr::null()), 0);
        assert!(edge_string_ptr(ptr::null()).is_null());
        edge_message_free(msg);
        // _free(NULL) is a no-op everywhere.
        edge_message_free(ptr::null_mut());
        edge_options_free(ptr::null_mut());
        edge_client_free(ptr::null_mut());
        edge_string_free(ptr::null_mut());
        edgemodule::client::edge_method_request_free(ptr::null_mut());
    }
}

#[test]
fn invalid_utf8_gives_invalid_argument() {
    let bad = [0x66u8, 0xff, 0xfe, 0];
    let mut opts = ptr::null_mut();
    unsafe {
        assert_eq!(edge_options_new(&mut opts), edge_status::Ok);
        assert_eq!(edge_options_set_product_info(opts, bad.as_ptr().cast()), edge_status::InvalidArgument);
        assert_eq!(last_error(), "info is not valid UTF-8");
        let mut msg = ptr::null_mut();
        assert_eq!(edge_message_new(b"x".as_ptr(), 1, &mut msg), edge_status::Ok);
        assert_eq!(edge_message_set_message_id(msg, bad.as_ptr().cast()), edge_status::InvalidArgument);
        edge_message_free(msg);
        edge_options_free(opts);
    }
}

#[test]
fn last_error_buffer_sizing() {
    unsafe {
        assert_eq!(edge_options_set_retry_none(ptr::null_mut()), edge_status::InvalidArgument);
        let expected = "opts is NULL";
        let mut n = 0usize;
        assert_eq!(edge_last_error_message(ptr::null_mut(), 0, &mut n), edge_status::InsufficientSize);
        assert_eq!(n, expected.len());
        let mut small = [0x55 as c_char; 12]; // exactly the text, no room for NUL
        assert_eq!(edge_last_error_message(small.as_mut_ptr(), small.len(), &mut n), edge_status::InsufficientSize);
        assert!(small.iter().all(|c| *c == 0x55), "a too-small buffer must stay untouched");
        let mut fits = [0 as c_char; 13];
        assert_eq!(edge_last_error_message(fits.as_mut_ptr(), fits.len(), &mut n), edge_status::Ok);
        assert_eq!(CStr::from_ptr(fits.as_ptr()).to_str().unwrap(), expected);
        assert_eq!(
            edge_last_error_message(fits.as_mut_ptr(), fits.len(), ptr::null_mut()),
            edge_status::InvalidArgument
        );
        // Reading does not clear; a successful call does.
        assert_eq!(last_error(), expected);
        let mut opts = ptr::null_mut();
        assert_eq!(edge_options_new(&mut opts), edge_status::Ok);
        assert_eq!(last_error(), "");
        edge_options_free(opts);
    }
}

#[test]
fn last_error_is_per_thread() {
    unsafe { assert_eq!(edge_options_set_retry_none(ptr::null_mut()), edge_status::InvalidArgument) };
    let other = std::thread::spawn(last_error).join().unwrap();
    assert_eq!(other, "");
    assert_eq!(last_error(), "opts is NULL");
}

#[test]
fn message_builder_and_getters() {
    unsafe {
        let mut msg = ptr::null_mut();
        assert_eq!(edge_message_new(b"{\"t\":1}".as_ptr(), 7, &mut msg), edge_status::Ok);
        assert_eq!(edge_message_set_message_id(msg, c"m1".as_ptr()), edge_status::Ok);
        assert_eq!(edge_message_set_property(msg, c"a".as_ptr(), c"1".as_ptr()), edge_status::Ok);
        assert_eq!(edge_message_set_property(msg, c"b".as_ptr(), c"2".as_ptr()), edge_status::Ok);
        assert_eq!(edge_message_set_property(msg, c"a".as_ptr(), c"3".as_ptr()), edge_status::Ok);
        assert_eq!(edge_message_property_count(msg), 2);
        let (mut p, mut n) = (ptr::null(), 0usize);
        assert_eq!(edge_message_message_id(msg, &mut p, &mut n), edge_status::Ok);
        assert_eq!(std::slice::from_raw_parts(p.cast::<u8>(), n), b"m1");
        assert_eq!(edge_message_correlation_id(msg, &mut p, &mut n), edge_status::Ok);
        assert!(p.is_null() && n == 0);
        assert_eq!(edge_message_property(msg, c"a".as_ptr(), &mut p, &mut n), edge_status::Ok);
        assert_eq!(std::slice::from_raw_parts(p.cast::<u8>(), n), b"3");
        let (mut k, mut kn, mut v, mut vn) = (ptr::null(), 0usize, ptr::null(), 0usize);
        assert_eq!(edge_message_property_at(msg, 1, &mut k, &mut kn, &mut v, &mut vn), edge_status::Ok);
        assert_eq!(std::slice::from_raw_parts(k.cast::<u8>(), kn), b"b");
        assert_eq!(edge_message_property_at(msg, 2, &mut k, &mut kn, &mut v, &mut vn), edge_status::InvalidArgument);
        let (mut d, mut dn) = (ptr::null(), 0usize);
        assert_eq!(edge_message_body(msg, &mut d, &mut dn), edge_status::Ok);
        assert_eq!(std::slice::from_raw_parts(d, dn), b"{\"t\":1}");
        let mut copy = ptr::null_mut();
        assert_eq!(edge_message_clone(msg, &mut copy), edge_status::Ok);
        edge_message_free(msg);
        assert_eq!(edge_message_property_count(copy), 2);
        edge_message_free(copy);
    }
}

#[test]
fn options_are_validated_by_the_core_at_client_creation() {
    unsafe {
        let mut opts = ptr::null_mut();
        assert_eq!(edge_options_new(&mut opts), edge_status::Ok);
        assert_eq!(edge_options_set_keepalive(opts, 0), edge_status::Ok, "setters only store");
        let mut client = ptr::null_mut();
        let st = edge_client_new_from_connection_string(
            c"HostName=h;DeviceId=d;ModuleId=m;SharedAccessKey=AAAA".as_ptr(),
            ptr::null(),
            opts,
            &mut client,
        );
        assert_eq!(st, edge_status::InvalidArgument);
        assert!(last_error().contains("keep_alive"), "{}", last_error());
        assert!(client.is_null());
        edge_options_free(opts);
    }
}

#[test]
fn version_and_reason_names() {
    let v = unsafe { CStr::from_ptr(edge_version()) }.to_str().unwrap();
    assert_eq!(v, env!("CARGO_PKG_VERSION"));
    let r = unsafe { CStr::from_ptr(edgemodule::callback::edge_disconnect_reason_name(3)) };
    assert_eq!(r.to_str().unwrap(), edgemodule_core::DisconnectReason::NoNetwork.name());
}
