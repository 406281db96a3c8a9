//! The core client through a fault-injecting proxy: every operation against a stalled hub
//! returns TIMEOUT within its deadline, and cut connections lose no acknowledged send.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::proxy::Proxy;
use common::{bounded, TestHub};
use edgemodule_core::{ErrorKind, Message, ModuleClient, RetryPolicy};
use serde_json::json;

async fn client_via(hub: &TestHub, proxy: &Proxy, module: &str) -> ModuleClient {
    let options = hub.options().with_mqtt_port(proxy.port).with_retry(RetryPolicy::ExponentialBackoff {
        initial: Duration::from_millis(20),
        max: Duration::from_millis(200),
        give_up_after: None,
    });
    ModuleClient::from_connection_string(&hub.connection_string(module), Some(&hub.ca_pem()), options).await.unwrap()
}

fn assert_timeout<T: std::fmt::Debug>(what: &str, r: edgemodule_core::Result<T>, started: Instant, deadline: Duration) {
    let err = r.expect_err(what);
    assert_eq!(err.kind(), ErrorKind::Timeout, "{what}: {err}");
    let took = started.elapsed();
    assert!(took >= deadline && took < deadline + Duration::from_millis(400), "{what} took {took:?}");
}

#[tokio::test]
async fn every_operation_against_a_stalled_hub_times_out_within_its_deadline() {
    bounded(async {
        let hub = TestHub::start().await;
        let proxy = Proxy::start(hub.mqtt_port).await;
        let client = client_via(&hub, &proxy, "receiver").await;
        client.get_twin(None).await.unwrap();
        proxy.stall(true);
        let d = Duration::from_millis(500);

        let t = Instant::now();
        assert_timeout("send", client.send_to_output_with_timeout("out1", Message::new("x"), Some(d)).await, t, d);
        let t = Instant::now();
        assert_timeout("get_twin", client.get_twin(Some(d)).await, t, d);
        let t = Instant::now();
        assert_timeout("update_reported", client.update_reported(&json!({"a": 1}), Some(d)).await, t, d);
        let t = Instant::now();
        assert_timeout(
            "batch",
            client.send_batch_to_output("out1", vec![Message::new("a"), Message::new("b")], Some(d)).await,
            t,
            d,
        );
        let t = Instant::now();
        assert_timeout("recv", client.recv(Some(d)).await, t, d);

        // The stall ends before the keep-alive gives up: the same connection carries on.
        proxy.stall(false);
        client.get_twin(None).await.unwrap();
        client.send_to_output("out1", Message::new("after")).await.unwrap();
    })
    .await
}

#[tokio::test]
async fn three_connection_cuts_during_sends_lose_no_acknowledged_message() {
    bounded(async {
        let hub = TestHub::start().await;
        let proxy = Proxy::start(hub.mqtt_port).await;
        let sender = client_via(&hub, &proxy, "sender").await;
        let total = 3000usize;
        let sends = {
            let sender = sender.clone();
            tokio::spawn(async move {
                let mut handles = Vec::with_capacity(total);
                for i in 0..total {
                    let s = sender.clone();
                    handles
                        .push(tokio::spawn(async move { s.send_to_output("out1", Message::new(i.to_string())).await }));
                    if i % 50 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
                let mut results = Vec::with_capacity(total);
                for h in handles {
                    results.push(h.await.unwrap());
                }
                results
            })
        };
        let mut state = sender.connection_state();
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            proxy.cut_all();
            state.wait_for(|s| !s.is_connected()).await.unwrap();
            state.wait_for(|s| s.is_connected()).await.unwrap();
        }
        let results = sends.await.unwrap();
        let acked: HashSet<usize> = results.iter().enumerate().filter(|(_, r)| r.is_ok()).map(|(i, _)| i).collect();
        assert_eq!(acked.len(), total, "sends wait through reconnects: {:?}", results.iter().find(|r| r.is_err()));
        assert!(sender.metrics().reconnects >= 3, "{:?}", sender.metrics());

        let receiver = hub.client("receiver").await;
        let mut input = receiver.input_receiver("in1").unwrap();
        let mut seen = HashSet::new();
        while !acked.is_subset(&seen) {
            let m = tokio::time::timeout(Duration::from_secs(20), input.recv())
                .await
                .expect("acknowledged send lost")
                .unwrap();
            seen.insert(std::str::from_utf8(m.message().body()).unwrap().parse::<usize>().unwrap());
            m.complete().unwrap();
        }
    })
    .await
}

#[tokio::test]
async fn sends_while_disconnected_wait_in_a_bounded_queue_then_go_out() {
    bounded(async {
        let mut hub = TestHub::start().await;
        let options = hub.options().with_queue_bound(5).with_retry(RetryPolicy::ExponentialBackoff {
            initial: Duration::from_millis(20),
            max: Duration::from_millis(100),
            give_up_after: None,
        });
        let sender =
            ModuleClient::from_connection_string(&hub.connection_string("sender"), Some(&hub.ca_pem()), options)
                .await
                .unwrap();
        let mut state = sender.connection_state();
        hub.stop().await;
        state.wait_for(|s| !s.is_connected()).await.unwrap();

        let waiting: Vec<_> = (0..5)
            .map(|i| {
                let s = sender.clone();
                tokio::spawn(async move { s.send_to_output("out1", Message::new(format!("queued {i}"))).await })
            })
            .collect();
        while sender.metrics().queue_depth < 5 {
            tokio::task::yield_now().await;
        }
        let full = sender.send_to_output("out1", Message::new("one too many")).await.unwrap_err();
        assert_eq!(full.kind(), ErrorKind::QueueFull, "{full}");

        hub.restart().await;
        for w in waiting {
            w.await.unwrap().unwrap();
        }
        let m = sender.metrics();
        assert_eq!(m.queue_depth, 0);
        assert!(m.retries >= 1 && m.reconnects >= 1, "{m:?}");

        let receiver = hub.client("receiver").await;
        let mut input = receiver.input_receiver("in1").unwrap();
        let mut bodies = Vec::new();
        for _ in 0..5 {
            let msg = tokio::time::timeout(Duration::from_secs(10), input.recv()).await.unwrap().unwrap();
            bodies.push(String::from_utf8(msg.message().body().to_vec()).unwrap());
            msg.complete().unwrap();
        }
        bodies.sort();
        assert_eq!(bodies, (0..5).map(|i| format!("queued {i}")).collect::<Vec<_>>());
    })
    .await
}
