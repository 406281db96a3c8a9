//! The core `ModuleClient` against a real in-process `edgemodule-hub` over TLS on loopback.

mod common;

use std::time::Duration;

use common::{bounded, TestHub};
use edgemodule_core::{ErrorKind, Message, MethodInvocation, ModuleClient};
use serde_json::json;

#[tokio::test]
async fn output_is_routed_to_input_with_every_property_intact() {
    bounded(async {
        let hub = TestHub::start().await;
        let sender = hub.client("sender").await;
        let receiver = hub.client("receiver").await;
        let mut in1 = receiver.input_receiver("in1").unwrap();
        let msg = Message::new(&b"{\"t\":21}"[..])
            .with_message_id("mid-1")
            .with_correlation_id("cid-1")
            .with_content_type("application/json")
            .with_content_encoding("utf-8")
            .with_creation_time("2026-11-24T05:00:00Z")
            .with_property("k/2", "a&b=c")
            .with_property("k1", "v 1");
        sender.send_to_output("out1", msg).await.unwrap();
        let got = tokio::time::timeout(Duration::from_secs(10), in1.recv()).await.unwrap().unwrap();
        let m = got.message();
        assert_eq!(m.body().as_ref(), b"{\"t\":21}");
        assert_eq!(got.input_name(), Some("in1"));
        assert_eq!(m.message_id(), Some("mid-1"));
        assert_eq!(m.correlation_id(), Some("cid-1"));
        assert_eq!(m.content_type(), Some("application/json"));
        assert_eq!(m.content_encoding(), Some("utf-8"));
        assert_eq!(m.property("k/2"), Some("a&b=c"));
        assert_eq!(m.property("k1"), Some("v 1"));
        assert_eq!(m.connection_module_id(), Some("sender"));
        assert_eq!(m.connection_device_id(), Some(receiver.device_id()));
        assert_eq!(m.output_name(), None, "edgeHub does not forward $.on");
        got.complete().unwrap();
        assert_eq!(got.complete().unwrap_err().kind(), ErrorKind::InvalidState);
    })
    .await
}

#[tokio::test]
async fn route_condition_on_json_body_filters() {
    bounded(async {
        let hub = TestHub::start().await;
        let sender = hub.client("sender").await;
        let receiver = hub.client("receiver").await;
        let mut hot = receiver.input_receiver("hot").unwrap();
        for t in [10, 31, 20, 45] {
            let m = Message::new(format!("{{\"t\":{t}}}"))
                .with_content_type("application/json")
                .with_content_encoding("utf-8");
            sender.send_to_output("temps", m).await.unwrap();
        }
        for expected in ["{\"t\":31}", "{\"t\":45}"] {
            let got = tokio::time::timeout(Duration::from_secs(10), hot.recv()).await.unwrap().unwrap();
            assert_eq!(got.message().body().as_ref(), expected.as_bytes());
            got.complete().unwrap();
        }
        let none = tokio::time::timeout(Duration::from_millis(300), hot.recv()).await;
        assert!(none.is_err(), "a message that fails the WHERE was delivered");
    })
    .await
}

#[tokio::test]
async fn stored_messages_reach_a_late_subscriber_and_uncompleted_ones_are_redelivered() {
    bounded(async {
        let hub = TestHub::start().await;
        let sender = hub.client("sender").await;
        for i in 0..5 {
            sender.send_to_output("out1", Message::new(format!("m{i}"))).await.unwrap();
        }
        let receiver = hub.client("receiver").await;
        let mut in1 = receiver.input_receiver("in1").unwrap();
        let mut bodies = Vec::new();
        for _ in 0..5 {
            let m = tokio::time::timeout(Duration::from_secs(10), in1.recv()).await.unwrap().unwrap();
            bodies.push(String::from_utf8(m.message().body().to_vec()).unwrap());
            if bodies.len() <= 3 {
                m.complete().unwrap();
            } else {
                m.abandon().unwrap();
            }
        }
        assert_eq!(bodies, ["m0", "m1", "m2", "m3", "m4"]);
        receiver.close().await.unwrap();
        let again = hub.client("receiver").await;
        let mut in1 = again.input_receiver("in1").unwrap();
        // At least once: m3 and m4 come again; m0-m2 may too if their acks were still in flight.
        let mut redelivered = Vec::new();
        while !redelivered.contains(&"m4".to_string()) {
            let m = tokio::time::timeout(Duration::from_secs(10), in1.recv()).await.unwrap().unwrap();
            redelivered.push(String::from_utf8(m.message().body().to_vec()).unwrap());
            m.complete().unwrap();
        }
        assert!(redelivered.ends_with(&["m3".to_string(), "m4".to_string()]), "{redelivered:?}");
    })
    .await
}

#[tokio::test]
async fn twin_get_reported_patch_and_desired_patches() {
    bounded(async {
        let hub = TestHub::start().await;
        let receiver = hub.client("receiver").await;
        let mut desired = receiver.desired_receiver().unwrap();
        let twin = receiver.get_twin(None).await.unwrap();
        assert_eq!(twin.desired["threshold"], 25);
        let v0 = twin.reported_version().unwrap();
        receiver.update_reported(&json!({"state": {"ok": true}, "n": 1}), None).await.unwrap();
        receiver.update_reported(&json!({"n": null}), None).await.unwrap();
        let twin = receiver.get_twin(None).await.unwrap();
        assert_eq!(twin.reported["state"]["ok"], true);
        assert!(twin.reported.get("n").is_none());
        assert_eq!(twin.reported_version().unwrap(), v0 + 2);

        let dv = twin.desired_version().unwrap();
        let version = hub.hub().patch_desired("receiver", json!({"threshold": 30}).as_object().unwrap()).await.unwrap();
        assert_eq!(version, dv + 1);
        let patch = tokio::time::timeout(Duration::from_secs(10), desired.recv()).await.unwrap().unwrap();
        assert_eq!(patch, json!({"threshold": 30, "$version": dv + 1}));

        let bad = receiver.update_reported(&json!([1, 2]), None).await.unwrap_err();
        assert_eq!(bad.kind(), ErrorKind::InvalidArgument);
    })
    .await
}

#[tokio::test]
async fn desired_change_made_while_disconnected_arrives_after_reconnect() {
    bounded(async {
        let mut hub = TestHub::start().await;
        let receiver = hub.client("receiver").await;
        let mut desired = receiver.desired_receiver().unwrap();
        receiver.get_twin(None).await.unwrap();
        let mut state = receiver.connection_state();
        hub.stop().await;
        tokio::time::timeout(Duration::from_secs(10), state.wait_for(|s| !s.is_connected())).await.unwrap().unwrap();
        // Change desired while the module cannot hear it: start the hub on a new manifest value.
        let mut deployment = common::default_deployment();
        deployment["modulesContent"]["receiver"]["properties.desired"]["threshold"] = json!(99);
        std::fs::write(&hub.deployment, deployment.to_string()).unwrap();
        hub.restart().await;
        let patch = tokio::time::timeout(Duration::from_secs(20), desired.recv()).await.unwrap().unwrap();
        assert_eq!(patch["threshold"], 99);
        assert!(receiver.metrics().reconnects >= 1);
    })
    .await
}

#[tokio::test]
async fn methods_per_name_default_late_response_and_timeouts() {
    bounded(async {
        let hub = TestHub::start().await;
        let receiver = hub.client("receiver").await;
        let mut reset = receiver.method_receiver(Some("reset")).unwrap();
        let mut any = receiver.method_receiver(None).unwrap();
        tokio::spawn(async move {
            while let Some(req) = reset.recv().await {
                let payload = req.payload_json().unwrap();
                tokio::time::sleep(Duration::from_millis(50)).await; // answered later, from another task
                req.respond(200, Some(&json!({"echo": payload}))).await.unwrap();
            }
        });
        tokio::spawn(async move {
            while let Some(req) = any.recv().await {
                if req.name() != "silent" {
                    req.respond(404, Some(&json!({"unknown": req.name()}))).await.unwrap();
                }
            }
        });
        let h = hub.hub();
        let out = h
            .invoke_method("receiver", "reset", b"{\"hard\":true}".to_vec(), Duration::from_secs(5), Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(out.status, 200);
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(out.payload.as_deref().unwrap()).unwrap(),
            json!({"echo": {"hard": true}})
        );
        let out =
            h.invoke_method("receiver", "other", b"1".to_vec(), Duration::from_secs(5), Duration::ZERO).await.unwrap();
        assert_eq!(out.status, 404);
        let timed_out = h
            .invoke_method("receiver", "silent", b"1".to_vec(), Duration::from_millis(300), Duration::ZERO)
            .await
            .unwrap_err();
        assert_eq!(timed_out.http_status, 504);
        let absent =
            h.invoke_method("sender", "x", b"1".to_vec(), Duration::from_secs(1), Duration::ZERO).await.unwrap_err();
        assert_eq!(absent.http_status, 404);

        // Module to module over HTTPS.
        let sender = hub.client("sender").await;
        let result = sender
            .invoke_method(receiver.device_id(), Some("receiver"), &MethodInvocation::new("reset", json!({"n": 1})))
            .await
            .unwrap();
        assert_eq!((result.status, result.payload), (200, json!({"echo": {"n": 1}})));
        let err = sender
            .invoke_method(receiver.device_id(), Some("other"), &MethodInvocation::new("reset", json!(null)))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound);
        let mut slow = MethodInvocation::new("silent", json!(null));
        slow.response_timeout = Duration::from_secs(5);
        let err = sender.invoke_method(receiver.device_id(), Some("receiver"), &slow).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Timeout);
    })
    .await
}

#[tokio::test]
async fn from_environment_uses_the_workload_api() {
    bounded(async {
        let hub = TestHub::start().await;
        let env = edgemodule_hub::control::module_env(
            hub.hub(),
            "sender",
            hub.running.as_ref().unwrap().mqtt_addr,
            hub.running.as_ref().unwrap().https_addr,
        );
        let lookup = |k: &str| env.get(k).cloned();
        let client = ModuleClient::from_environment_with(&lookup, hub.options()).await.unwrap();
        client.send_to_output("out1", Message::new("from env")).await.unwrap();
        client.update_reported(&json!({"env": true}), None).await.unwrap();

        let empty = |_: &str| None;
        let err = ModuleClient::from_environment_with(&empty, hub.options()).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Configuration);
        assert!(err.message().contains("IOTEDGE_WORKLOADURI"), "{err}");
    })
    .await
}

#[tokio::test]
async fn bad_inputs_get_their_documented_kinds() {
    bounded(async {
        let hub = TestHub::start().await;
        let sender = hub.client("sender").await;
        let cases = [
            (sender.send_to_output("bad name", Message::new("x")).await, ErrorKind::InvalidArgument),
            (sender.send_to_output("", Message::new("x")).await, ErrorKind::InvalidArgument),
            (sender.send_to_output("o", Message::new(vec![0u8; 256 * 1024 + 1])).await, ErrorKind::MessageTooLarge),
            (
                sender.send_to_output("o", Message::new("x").with_property("$.mid", "no")).await,
                ErrorKind::InvalidArgument,
            ),
        ];
        for (i, (result, kind)) in cases.into_iter().enumerate() {
            assert_eq!(result.unwrap_err().kind(), kind, "case {i}");
        }
        // Nothing invalid reached the hub: the connection is still healthy.
        sender.send_to_output("out1", Message::new("fine")).await.unwrap();

        let wrong_key = hub.connection_string("sender").replace("SharedAccessKey=", "SharedAccessKey=AAAA");
        let err =
            ModuleClient::from_connection_string(&wrong_key, Some(&hub.ca_pem()), hub.options()).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unauthorized, "{err}");
        let undeployed = hub.connection_string("sender").replace("ModuleId=sender", "ModuleId=ghost");
        let err =
            ModuleClient::from_connection_string(&undeployed, Some(&hub.ca_pem()), hub.options()).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unauthorized);
        let err = ModuleClient::from_connection_string("HostName=x", None, hub.options()).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument);
        let err =
            ModuleClient::from_connection_string(&hub.connection_string("sender"), Some("not a pem"), hub.options())
                .await
                .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Tls);
    })
    .await
}

#[tokio::test]
async fn unreachable_and_silent_hubs_time_out_within_the_deadline() {
    bounded(async {
        let hub = TestHub::start().await;
        // Nothing listens here any more.
        let closed_port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let opts = hub.options().with_mqtt_port(closed_port).with_connect_timeout(Duration::from_secs(2));
        let err = ModuleClient::from_connection_string(&hub.connection_string("sender"), Some(&hub.ca_pem()), opts)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ConnectionRefused);

        // A listener that accepts and never answers.
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = silent.local_addr().unwrap().port();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = silent.accept().await {
                held.push(s);
            }
        });
        let opts = hub.options().with_mqtt_port(port).with_connect_timeout(Duration::from_millis(500));
        let started = std::time::Instant::now();
        let err = ModuleClient::from_connection_string(&hub.connection_string("sender"), Some(&hub.ca_pem()), opts)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Timeout);
        assert!(started.elapsed() < Duration::from_millis(1500), "took {:?}", started.elapsed());
    })
    .await
}

#[tokio::test]
async fn sends_wait_through_a_hub_restart_and_none_is_lost() {
    bounded(async {
        let mut hub = TestHub::start().await;
        let sender = hub.client("sender").await;
        let total = 2000usize;
        let sends = {
            let sender = sender.clone();
            tokio::spawn(async move {
                let mut handles = Vec::new();
                for i in 0..total {
                    let s = sender.clone();
                    handles.push(tokio::spawn(async move {
                        s.send_to_output_with_timeout(
                            "out1",
                            Message::new(format!("{i}")),
                            Some(Duration::from_secs(60)),
                        )
                        .await
                    }));
                    if i % 100 == 0 {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
                let mut results = Vec::new();
                for h in handles {
                    results.push(h.await.unwrap());
                }
                results
            })
        };
        tokio::time::sleep(Duration::from_millis(30)).await;
        hub.stop().await;
        hub.restart().await;
        let results = sends.await.unwrap();
        let ok: Vec<usize> = results.iter().enumerate().filter(|(_, r)| r.is_ok()).map(|(i, _)| i).collect();
        for r in results.iter().filter(|r| r.is_err()) {
            let kind = r.as_ref().unwrap_err().kind();
            assert!(kind.is_retryable() || kind == ErrorKind::Closed, "unexpected {kind}");
        }
        // Every acknowledged send reaches the receiver (duplicates allowed: at least once).
        let receiver = hub.client("receiver").await;
        let mut in1 = receiver.input_receiver("in1").unwrap();
        let mut seen = std::collections::HashSet::new();
        while seen.len() < ok.len() {
            let m = tokio::time::timeout(Duration::from_secs(20), in1.recv())
                .await
                .expect("acknowledged message lost")
                .unwrap();
            seen.insert(String::from_utf8(m.message().body().to_vec()).unwrap().parse::<usize>().unwrap());
            m.complete().unwrap();
        }
        for i in &ok {
            assert!(seen.contains(i), "acknowledged send {i} never arrived");
        }
        assert_eq!(ok.len(), total, "sends should survive a restart by waiting and resending");
    })
    .await
}

#[tokio::test]
async fn short_lived_tokens_renew_without_failing_operations() {
    bounded(async {
        let hub = TestHub::start().await;
        let opts = hub.options().with_sas_ttl(Duration::from_secs(6), Duration::from_secs(4));
        let sender = ModuleClient::from_connection_string(&hub.connection_string("sender"), Some(&hub.ca_pem()), opts)
            .await
            .unwrap();
        let started = std::time::Instant::now();
        let mut n = 0;
        while started.elapsed() < Duration::from_secs(7) {
            sender.send_to_output("out1", Message::new(format!("{n}"))).await.unwrap();
            sender.get_twin(None).await.unwrap();
            n += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(sender.metrics().token_renewals >= 2, "{:?}", sender.metrics());
    })
    .await
}
