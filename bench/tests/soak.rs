//! The bounded CI version of the soak (RELIABILITY.md): 20 seconds of routed traffic with
//! connection cuts every 4 seconds; no acknowledged message may be lost, and the RSS of the hub
//! process and of the client process must both stay bounded.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn twenty_second_soak_loses_nothing() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_soak"))
        .args(["--duration", "20s", "--rate", "100", "--cut-every", "4s"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(240) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the soak did not finish within 240 s");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let mut report = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut report).unwrap();
    println!("{report}");
    assert!(status.success(), "soak failed:\n{report}");
    assert!(report.contains("| lost (acknowledged, never delivered) | 0 |"), "{report}");
    for who in ["hub", "client"] {
        let row = report
            .lines()
            .find(|l| l.starts_with(&format!("| {who} RSS first third avg")))
            .unwrap_or_else(|| panic!("no {who} RSS row:\n{report}"));
        assert!(!row.contains("GREW"), "{who} RSS kept growing: {row}");
    }
    assert!(report.contains(" c") || report.contains('*'), "the RSS plot has no client series:\n{report}");
}
