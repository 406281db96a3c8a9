//! A loopback TCP proxy under a test's control, placed between a client and the hub: it can
//! stall traffic (bytes are held, connections stay open) and cut every connection.
#![allow(dead_code)]

use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, watch};

pub struct Proxy {
    pub port: u16,
    stalled: watch::Sender<bool>,
    cut: broadcast::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    pub async fn start(target_port: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (stalled, stall_rx) = watch::channel(false);
        let (cut, _) = broadcast::channel(4);
        let cut_tx = cut.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(upstream) = TcpStream::connect(("127.0.0.1", target_port)).await else { continue };
                let _ = (client.set_nodelay(true), upstream.set_nodelay(true));
                let (cr, cw) = client.into_split();
                let (ur, uw) = upstream.into_split();
                let stall_rx = Arc::new(stall_rx.clone());
                for (r, w) in
                    [(Box::new(cr) as Box<dyn Reader>, Box::new(uw) as Box<dyn Writer>), (Box::new(ur), Box::new(cw))]
                {
                    let (stall, mut cut) = (stall_rx.clone(), cut_tx.subscribe());
                    tokio::spawn(async move {
                        tokio::select! {
                            _ = pump(r, w, (*stall).clone()) => {}
                            _ = cut.recv() => {}
                        }
                    });
                }
            }
        });
        Proxy { port, stalled, cut, task }
    }

    /// Holds every byte in both directions until `stall(false)`.
    pub fn stall(&self, on: bool) {
        self.stalled.send_replace(on);
    }

    /// Drops every open connection (new ones are still accepted).
    pub fn cut_all(&self) {
        let _ = self.cut.send(());
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
        self.cut_all();
    }
}

trait Reader: tokio::io::AsyncRead + Unpin + Send {}
impl<T: tokio::io::AsyncRead + Unpin + Send> Reader for T {}
trait Writer: tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncWrite + Unpin + Send> Writer for T {}

async fn pump(mut r: Box<dyn Reader>, mut w: Box<dyn Writer>, mut stalled: watch::Receiver<bool>) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match r.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if stalled.wait_for(|s| !*s).await.is_err() {
            return;
        }
        if w.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
