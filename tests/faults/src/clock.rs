//! One clock for every process: CLOCK_MONOTONIC in nanoseconds. The agents stamp their events
//! with the same clock (C `clock_gettime(CLOCK_MONOTONIC)`, Python `time.monotonic_ns()`, Node
//! `process.hrtime.bigint()`), so the driver can compare them with the moments it injected a
//! fault.

/// CLOCK_MONOTONIC now, in nanoseconds.
pub fn mono_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec and CLOCK_MONOTONIC is always available on Linux.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_MONOTONIC)");
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}
