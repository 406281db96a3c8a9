//! A loopback TCP proxy under a test's control, placed between clients and the hub. It can
//! stall traffic (bytes are held, connections stay open), delay it, cut every open connection
//! and refuse new ones.
//!
//! One source, three users: the fault matrix (`faults::proxy`), the core's fault tests
//! (core/tests/common/proxy.rs includes this file with `#[path]`) and the soak
//! (bench/src/soak.rs, likewise). It needs nothing but tokio.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, mpsc, watch};
use tokio::time::Instant;

/// What the proxy does to traffic right now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Control {
    stalled: bool,
    refusing: bool,
    delay: Duration,
}

pub struct Proxy {
    pub port: u16,
    control: watch::Sender<Control>,
    cut: broadcast::Sender<()>,
    accepted: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Listens on an ephemeral 127.0.0.1 port and forwards every connection to
    /// `127.0.0.1:target_port`.
    pub async fn start(target_port: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binding the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let (control, control_rx) = watch::channel(Control::default());
        let (cut, _) = broadcast::channel(4);
        let accepted = Arc::new(AtomicU64::new(0));
        let (cut_tx, count) = (cut.clone(), accepted.clone());
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if control_rx.borrow().refusing {
                    drop(client);
                    continue;
                }
                let Ok(upstream) = TcpStream::connect(("127.0.0.1", target_port)).await else { continue };
                count.fetch_add(1, Ordering::Relaxed);
                let _ = (client.set_nodelay(true), upstream.set_nodelay(true));
                let (cr, cw) = client.into_split();
                let (ur, uw) = upstream.into_split();
                let mut cut = cut_tx.subscribe();
                let (c1, c2) = (control_rx.clone(), control_rx.clone());
                tokio::spawn(async move {
                    tokio::select! {
                        _ = async { tokio::join!(pump(cr, uw, c1), pump(ur, cw, c2)) } => {}
                        _ = cut.recv() => {}
                    }
                });
            }
        });
        Proxy { port, control, cut, accepted, task }
    }

    /// Holds every byte in both directions until `stall(false)`; connections stay open.
    pub fn stall(&self, on: bool) {
        self.control.send_modify(|c| c.stalled = on);
    }

    /// Forwards each chunk no earlier than `delay` after it was read (zero: no delay).
    pub fn delay(&self, delay: Duration) {
        self.control.send_modify(|c| c.delay = delay);
    }

    /// While on, new connections are closed as soon as they are accepted (open ones carry on).
    pub fn refuse(&self, on: bool) {
        self.control.send_modify(|c| c.refusing = on);
    }

    /// Drops every open connection (new ones are still accepted).
    pub fn cut_all(&self) {
        let _ = self.cut.send(());
    }

    /// Connections forwarded so far.
    pub fn connections(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
        self.cut_all();
    }
}

/// One direction: a reader that stops reading while stalled (so TCP back-pressure holds the
/// sender) and a writer that honours the delay and the stall for what was already read.
async fn pump<R, W>(mut r: R, mut w: W, control: watch::Receiver<Control>)
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    let (tx, mut rx) = mpsc::channel::<(Instant, Vec<u8>)>(16);
    let mut read_control = control.clone();
    let reader = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match r.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if read_control.wait_for(|c| !c.stalled).await.is_err() {
                return;
            }
            if tx.send((Instant::now(), buf[..n].to_vec())).await.is_err() {
                return;
            }
        }
    };
    let mut write_control = control;
    let writer = async move {
        while let Some((read_at, chunk)) = rx.recv().await {
            let delay = write_control.borrow().delay;
            tokio::time::sleep_until(read_at + delay).await;
            if write_control.wait_for(|c| !c.stalled).await.is_err() {
                return;
            }
            if w.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = w.shutdown().await;
    };
    tokio::join!(reader, writer);
}
