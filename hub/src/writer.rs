//! The store writer: one thread that owns every durable write and commits them in groups, so a
//! burst of routed messages costs one fsync instead of one each. A sender's PUBACK waits for the
//! commit that holds its message; that is what makes "acknowledged" mean "survives kill -9".

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;

use crate::store::{NewDelivery, Store, TwinRecord};

/// A durable write and who to tell when it is done.
pub enum WriteRequest {
    /// Deliveries to module inputs plus JSON lines for the `$upstream` sink.
    Route {
        deliveries: Vec<NewDelivery>,
        upstream: Vec<String>,
        done: oneshot::Sender<Result<(), String>>,
    },
    /// Deliveries a module acknowledged.
    Ack {
        module: String,
        seqs: Vec<u64>,
    },
    SaveTwin {
        module: String,
        twin: TwinRecord,
        done: oneshot::Sender<Result<(), String>>,
    },
    /// Answered once everything queued before it is committed (acks of a closed connection
    /// included), so a reconnecting module is not sent what it already acknowledged.
    Barrier {
        done: oneshot::Sender<()>,
    },
    Stop,
}

/// Called after a commit with each module that has new deliveries.
pub type WakeFn = Arc<dyn Fn(&str) + Send + Sync>;

const MAX_GROUP: usize = 4096;

/// Starts the writer thread.
pub fn spawn(
    store: Arc<Store>,
    upstream_path: PathBuf,
    wake: WakeFn,
) -> (Sender<WriteRequest>, std::thread::JoinHandle<()>) {
    let (tx, rx) = std::sync::mpsc::channel();
    let handle = std::thread::Builder::new()
        .name("edgehub-store-writer".into())
        .spawn(move || run(store, upstream_path, wake, rx))
        .expect("spawning the store writer thread");
    (tx, handle)
}

fn run(store: Arc<Store>, upstream_path: PathBuf, wake: WakeFn, rx: Receiver<WriteRequest>) {
    loop {
        let first = match rx.recv_timeout(Duration::from_secs(3600)) {
            Ok(r) => r,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(r) => group.push(r),
                Err(_) => break,
            }
        }
        if commit_group(&store, &upstream_path, &wake, group) {
            return;
        }
    }
}

/// Commits one group; returns true when a `Stop` was seen.
fn commit_group(store: &Store, upstream_path: &PathBuf, wake: &WakeFn, group: Vec<WriteRequest>) -> bool {
    let mut deliveries = Vec::new();
    let mut upstream = Vec::new();
    let mut route_waiters = Vec::new();
    let mut stop = false;
    let mut barriers = Vec::new();
    // One transaction per module for every ack in the group, not one per PUBACK batch.
    let mut acks: HashMap<String, Vec<u64>> = HashMap::new();
    for req in group {
        match req {
            WriteRequest::Route { deliveries: d, upstream: u, done } => {
                deliveries.extend(d);
                upstream.extend(u);
                route_waiters.push(done);
            }
            WriteRequest::Ack { module, seqs } => acks.entry(module).or_default().extend(seqs),
            WriteRequest::SaveTwin { module, twin, done } => {
                let _ = done.send(store.save_twin(&module, &twin).map_err(|e| e.to_string()));
            }
            WriteRequest::Barrier { done } => barriers.push(done),
            WriteRequest::Stop => stop = true,
        }
    }
    for (module, seqs) in acks {
        if let Err(e) = store.ack(&module, &seqs) {
            tracing::error!(module, error = %e, "acknowledging deliveries failed");
        }
    }
    if route_waiters.is_empty() {
        release(barriers);
        return stop;
    }
    let result = append_upstream(upstream_path, &upstream)
        .and_then(|_| store.enqueue(&deliveries).map(|_| ()).map_err(|e| e.to_string()));
    if let Err(e) = &result {
        tracing::error!(error = %e, "storing routed messages failed");
    }
    for done in route_waiters {
        let _ = done.send(result.clone());
    }
    release(barriers);
    if result.is_ok() {
        let modules: HashSet<&str> = deliveries.iter().map(|d| d.module.as_str()).collect();
        for m in modules {
            wake(m);
        }
    }
    stop
}

fn release(barriers: Vec<oneshot::Sender<()>>) {
    for b in barriers {
        let _ = b.send(());
    }
}

fn append_upstream(path: &PathBuf, lines: &[String]) -> Result<(), String> {
    if lines.is_empty() {
        return Ok(());
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| format!("opening {}: {e}", path.display()))?;
    let mut text = lines.join("\n");
    text.push('\n');
    file.write_all(text.as_bytes())
        .and_then(|_| file.sync_data())
        .map_err(|e| format!("writing {}: {e}", path.display()))
}
