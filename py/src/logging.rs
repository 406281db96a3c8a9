//! Routes the core's `tracing` events to Python's `logging` (logger `edgemodule`). Events are
//! queued to one forwarding thread, so tokio workers never wait for the GIL; the queue is bounded
//! and drops records rather than grow without limit.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::mpsc;

use pyo3::prelude::*;
use pyo3::types::PyDict;
use tracing::field::{Field, Visit};
use tracing::subscriber::Interest;
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::Layer;

/// Most verbose tracing level forwarded: 1 error … 5 trace.
static MAX_LEVEL: AtomicU8 = AtomicU8::new(3);

fn rank(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 1,
        Level::WARN => 2,
        Level::INFO => 3,
        Level::DEBUG => 4,
        Level::TRACE => 5,
    }
}

fn python_level(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 40,
        Level::WARN => 30,
        Level::INFO => 20,
        Level::DEBUG => 10,
        Level::TRACE => 5,
    }
}

struct Record {
    level: u8,
    target: String,
    message: String,
}

struct Forward {
    tx: mpsc::SyncSender<Record>,
}

#[derive(Default)]
struct Text(String);

impl Visit for Text {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0.push_str(value);
        } else {
            let _ = write!(self.0, " {}={value}", field.name());
        }
    }
}

impl<S: Subscriber> Layer<S> for Forward {
    fn register_callsite(&self, _: &'static Metadata<'static>) -> Interest {
        // The threshold can change at runtime, so ask `enabled` every time (one atomic load).
        Interest::sometimes()
    }
    fn enabled(&self, metadata: &Metadata<'_>, _: Context<'_, S>) -> bool {
        rank(metadata.level()) <= MAX_LEVEL.load(Ordering::Relaxed)
    }
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let mut text = Text::default();
        event.record(&mut text);
        let meta = event.metadata();
        let _ = self.tx.try_send(Record {
            level: python_level(meta.level()),
            target: meta.target().to_string(),
            message: text.0,
        });
    }
}

fn forward(rx: mpsc::Receiver<Record>) {
    while let Ok(record) = rx.recv() {
        let delivered = crate::exit::attach(|py| -> PyResult<()> {
            let logger = py.import("logging")?.call_method1("getLogger", ("edgemodule",))?;
            if logger.call_method1("isEnabledFor", (record.level,))?.is_truthy()? {
                let extra = PyDict::new(py);
                extra.set_item("rust_target", &record.target)?;
                let kwargs = PyDict::new(py);
                kwargs.set_item("extra", extra)?;
                logger.call_method("log", (record.level, "%s", &record.message), Some(&kwargs))?;
            }
            Ok(())
        });
        if delivered.is_none() {
            return; // the interpreter is shutting down
        }
    }
}

/// Installs the forwarding subscriber as the process-wide default (once; a no-op if the host
/// application already installed one).
pub fn init() {
    let (tx, rx) = mpsc::sync_channel(1024);
    let subscriber = tracing_subscriber::registry().with(Forward { tx });
    if tracing::subscriber::set_global_default(subscriber).is_ok() {
        let _ = std::thread::Builder::new().name("edgemodule-log".into()).spawn(move || forward(rx));
    }
}

/// Sets the most verbose Python level forwarded (e.g. `logging.DEBUG`); the `edgemodule`
/// logger's own level still filters. Default: INFO.
#[pyfunction]
pub fn set_log_level(level: i64) {
    let rank = match level {
        l if l >= 40 => 1,
        l if l >= 30 => 2,
        l if l >= 20 => 3,
        l if l >= 10 => 4,
        _ => 5,
    };
    MAX_LEVEL.store(rank, Ordering::Relaxed);
}
