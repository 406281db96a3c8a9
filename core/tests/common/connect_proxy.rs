//! A tiny HTTP CONNECT proxy on loopback for the WebSocket transports' tests.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The longest the proxy waits for a request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// What the proxy saw: each request head.
pub type Seen = Arc<Mutex<Vec<String>>>;

/// Answers every CONNECT with `status`, and with 200 tunnels to 127.0.0.1 at the requested port;
/// `hang` never answers. Returns the proxy's port and the heads it saw.
pub async fn connect_proxy(status: &'static str) -> (u16, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen: Seen = Arc::default();
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    match tokio::time::timeout(HEAD_TIMEOUT, client.read(&mut byte)).await {
                        Ok(Ok(1)) => head.push(byte[0]),
                        _ => return,
                    }
                }
                let head = String::from_utf8(head).unwrap();
                log.lock().unwrap().push(head.clone());
                if status == "hang" {
                    // Never answer; hold the connection until the client gives up.
                    let _ = client.read(&mut byte).await;
                    return;
                }
                if status != "200" {
                    let _ =
                        client.write_all(format!("HTTP/1.1 {status} No\r\ncontent-length: 0\r\n\r\n").as_bytes()).await;
                    return;
                }
                let target = head.split_whitespace().nth(1).unwrap().to_string();
                let port: u16 = target.rsplit_once(':').unwrap().1.parse().unwrap();
                let Ok(mut upstream) = TcpStream::connect(("127.0.0.1", port)).await else { return };
                client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n").await.unwrap();
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            });
        }
    });
    (port, seen)
}
