//! The client over AMQP 1.0 (`Transport::Amqp`) against the real hub over TLS: outputs routed to
//! another module's input and acknowledged by disposition, messages crossing transports, twin get
//! and reported patches, desired patches, direct methods both ways, a CBS token renewal in place
//! during traffic that loses nothing, and reconnecting through a hub restart. The same over AMQP
//! over WebSocket (`Transport::AmqpWebSocket`, the hub's HTTPS port) with an AMQP and an MQTT port
//! nothing listens on, once through an HTTP CONNECT proxy and once through a cut connection.

mod common;

use std::time::Duration;

use common::connect_proxy::connect_proxy;
use common::proxy::Proxy;
use common::{bounded, closed_port, TestHub};
use edgemodule_core::{ClientOptions, ErrorKind, Message, MethodInvocation, ModuleClient, Qos, Transport};
use serde_json::json;

fn amqp(hub: &TestHub) -> ClientOptions {
    hub.options().with_transport(Transport::Amqp)
}

/// AMQP over WebSocket, with no AMQP or MQTT port to fall back to.
async fn amqp_ws(hub: &TestHub) -> ClientOptions {
    hub.options()
        .with_transport(Transport::AmqpWebSocket)
        .with_amqp_port(closed_port().await)
        .with_mqtt_port(closed_port().await)
}

async fn client(hub: &TestHub, module: &str, options: ClientOptions) -> ModuleClient {
    ModuleClient::from_connection_string(&hub.connection_string(module), Some(&hub.ca_pem()), options).await.unwrap()
}

#[tokio::test]
async fn outputs_are_routed_to_inputs_and_completed_by_disposition() {
    bounded(async {
        let hub = TestHub::start().await;
        let sender = client(&hub, "sender", amqp(&hub)).await;
        let receiver = client(&hub, "receiver", amqp(&hub)).await;
        let mut in1 = receiver.input_receiver("in1").unwrap();
        let mut msg = Message::new(&b"{\"t\":1}"[..]);
        msg.set_property("k/2", "a&b=c");
        msg.set_system(edgemodule_core::SystemProperty::MessageId, Some("m-1".into()));
        sender.send_to_output("out1", msg).await.unwrap();
        let got = tokio::time::timeout(Duration::from_secs(10), in1.recv()).await.unwrap().unwrap();
        let m = got.message();
        assert_eq!((m.body().as_ref(), got.input_name()), (&b"{\"t\":1}"[..], Some("in1")));
        assert_eq!((m.property("k/2"), m.message_id()), (Some("a&b=c"), Some("m-1")));
        assert_eq!(m.connection_module_id(), Some("sender"));
        hub.pending_becomes("receiver", 1).await;
        got.complete().unwrap();
        hub.pending_becomes("receiver", 0).await;
        assert_eq!(sender.metrics().acknowledged, 1);
        let refused = sender.publish("user/topic", "x", Qos::AtLeastOnce, false).await.unwrap_err();
        assert_eq!(refused.kind(), ErrorKind::Unsupported);
        sender.close().await.unwrap();
        receiver.close().await.unwrap();
    })
    .await
}

#[tokio::test]
async fn messages_cross_between_mqtt_and_amqp_modules() {
    bounded(async {
        let hub = TestHub::start().await;
        let sender = client(&hub, "sender", hub.options()).await;
        let receiver = client(&hub, "receiver", amqp(&hub)).await;
        let mut in1 = receiver.input_receiver("in1").unwrap();
        let mut back = sender.input_receiver("back").unwrap();
        sender.send_to_output("out1", Message::new("from mqtt")).await.unwrap();
        let got = tokio::time::timeout(Duration::from_secs(10), in1.recv()).await.unwrap().unwrap();
        assert_eq!(got.message().body().as_ref(), b"from mqtt");
        got.complete().unwrap();
        receiver.send_to_output("reply", Message::new("from amqp")).await.unwrap();
        let got = tokio::time::timeout(Duration::from_secs(10), back.recv()).await.unwrap().unwrap();
        assert_eq!(got.message().body().as_ref(), b"from amqp");
        got.complete().unwrap();
    })
    .await
}

#[tokio::test]
async fn twin_reads_reports_and_receives_desired_patches() {
    bounded(async {
        let hub = TestHub::start().await;
        let receiver = client(&hub, "receiver", amqp(&hub)).await;
        let mut desired = receiver.desired_receiver().unwrap();
        let twin = receiver.get_twin(None).await.unwrap();
        assert_eq!(twin.desired["threshold"], 25);
        receiver.update_reported(&json!({"mode": "amqp", "gone": null}), None).await.unwrap();
        assert_eq!(hub.hub().twin_document("receiver").await.unwrap()["reported"]["mode"], "amqp");
        let bad = receiver.update_reported(&json!([1]), None).await.unwrap_err();
        assert_eq!(bad.kind(), ErrorKind::InvalidArgument);
        let version = hub.hub().patch_desired("receiver", json!({"threshold": 30}).as_object().unwrap()).await.unwrap();
        let patch = tokio::time::timeout(Duration::from_secs(10), desired.recv()).await.unwrap().unwrap();
        assert_eq!((patch["threshold"].as_i64(), patch["$version"].as_i64()), (Some(30), Some(version)));
    })
    .await
}

#[tokio::test]
async fn direct_methods_both_ways() {
    bounded(async {
        let hub = TestHub::start().await;
        let receiver = client(&hub, "receiver", amqp(&hub)).await;
        let sender = client(&hub, "sender", amqp(&hub)).await;
        let mut calls = receiver.method_receiver(Some("reset")).unwrap();
        tokio::spawn(async move {
            while let Some(call) = calls.recv().await {
                let echo = call.payload_json().unwrap();
                call.respond(201, Some(&json!({"echo": echo}))).await.unwrap();
            }
        });
        let from_hub = hub
            .hub()
            .invoke_method(
                "receiver",
                "reset",
                b"{\"hard\":true}".to_vec(),
                Duration::from_secs(5),
                Duration::from_secs(5),
            )
            .await
            .unwrap();
        assert_eq!((from_hub.status, from_hub.payload.as_deref()), (201, Some(r#"{"echo":{"hard":true}}"#)));
        let request = MethodInvocation {
            method_name: "reset".into(),
            payload: json!({"n": 1}),
            response_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
        };
        let from_module =
            sender.invoke_method(&hub.hub().identity.device_id, Some("receiver"), &request).await.unwrap();
        assert_eq!((from_module.status, from_module.payload), (201, json!({"echo": {"n": 1}})));
        let unknown = hub
            .hub()
            .invoke_method("receiver", "other", b"1".to_vec(), Duration::from_secs(5), Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(unknown.status, 501);
    })
    .await
}

#[tokio::test]
async fn token_renewal_in_place_during_traffic_loses_nothing() {
    bounded(async {
        let hub = TestHub::start().await;
        let opts = amqp(&hub).with_sas_ttl(Duration::from_secs(6), Duration::from_secs(4));
        let sender = client(&hub, "sender", opts).await;
        let receiver = client(&hub, "receiver", amqp(&hub)).await;
        let mut in1 = receiver.input_receiver("in1").unwrap();
        let started = std::time::Instant::now();
        let mut sent = 0u32;
        while started.elapsed() < Duration::from_secs(7) {
            sender.send_to_output("out1", Message::new(sent.to_string())).await.unwrap();
            sender.get_twin(None).await.unwrap();
            sent += 1;
        }
        for n in 0..sent {
            let got = tokio::time::timeout(Duration::from_secs(10), in1.recv()).await.unwrap().unwrap();
            assert_eq!(got.message().body().as_ref(), n.to_string().as_bytes(), "messages in order, none lost");
            got.complete().unwrap();
        }
        let m = sender.metrics();
        assert!(m.token_renewals >= 2, "{m:?}");
        assert_eq!((m.reconnects, m.acknowledged), (0, sent as u64), "renewed in place, every send acknowledged");
    })
    .await
}

#[tokio::test]
async fn reconnects_through_a_hub_restart_and_delivers_what_waited() {
    bounded(async {
        let mut hub = TestHub::start().await;
        let sender = client(&hub, "sender", amqp(&hub)).await;
        let receiver = client(&hub, "receiver", amqp(&hub)).await;
        let mut in1 = receiver.input_receiver("in1").unwrap();
        let mut desired = receiver.desired_receiver().unwrap();
        receiver.get_twin(None).await.unwrap();
        hub.stop().await;
        let mut state = sender.connection_state();
        while state.borrow().is_connected() {
            state.changed().await.unwrap();
        }
        let waiting = tokio::spawn({
            let sender = sender.clone();
            async move { sender.send_to_output("out1", Message::new("through the cut")).await }
        });
        hub.restart().await;
        hub.hub().patch_desired("receiver", json!({"threshold": 40}).as_object().unwrap()).await.unwrap();
        waiting.await.unwrap().unwrap();
        let got = tokio::time::timeout(Duration::from_secs(20), in1.recv()).await.unwrap().unwrap();
        assert_eq!(got.message().body().as_ref(), b"through the cut");
        got.complete().unwrap();
        let patch = tokio::time::timeout(Duration::from_secs(20), desired.recv()).await.unwrap().unwrap();
        assert_eq!(patch["threshold"], 40);
        assert!(sender.metrics().reconnects >= 1 && receiver.metrics().reconnects >= 1);
    })
    .await
}

#[tokio::test]
async fn a_wrong_key_is_unauthorized() {
    bounded(async {
        let hub = TestHub::start().await;
        let cs = hub.connection_string("sender");
        let other = hub.connection_string("receiver");
        let wrong_key = other.split("SharedAccessKey=").nth(1).unwrap().split(';').next().unwrap();
        let right_key = cs.split("SharedAccessKey=").nth(1).unwrap().split(';').next().unwrap();
        let cs = cs.replace(right_key, wrong_key);
        let e = ModuleClient::from_connection_string(&cs, Some(&hub.ca_pem()), amqp(&hub)).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unauthorized, "{e}");
    })
    .await
}

#[tokio::test]
async fn an_idle_connection_stays_up_on_heartbeats() {
    bounded(async {
        let hub = TestHub::start().await;
        let opts = amqp(&hub).with_keep_alive(Duration::from_secs(1));
        let sender = client(&hub, "sender", opts).await;
        // The scenario is idleness itself: three keep-alive periods without traffic.
        tokio::time::sleep(Duration::from_secs(3)).await;
        sender.send_to_output("out1", Message::new("after idling")).await.unwrap();
        assert_eq!(sender.metrics().reconnects, 0, "the hub's heartbeats kept the connection open");
    })
    .await
}

#[tokio::test]
async fn over_websocket_outputs_are_routed_and_twin_and_methods_work() {
    bounded(async {
        let hub = TestHub::start().await;
        let sender = client(&hub, "sender", amqp_ws(&hub).await).await;
        let receiver = client(&hub, "receiver", amqp_ws(&hub).await).await;
        assert!(sender.options().transport.is_websocket());

        // send -> route -> input, properties intact, completed by disposition.
        let mut in1 = receiver.input_receiver("in1").unwrap();
        let mut msg = Message::new(&b"{\"t\":2}"[..]);
        msg.set_property("k/2", "a&b=c");
        msg.set_system(edgemodule_core::SystemProperty::MessageId, Some("m-ws".into()));
        sender.send_to_output("out1", msg).await.unwrap();
        let got = tokio::time::timeout(Duration::from_secs(10), in1.recv()).await.unwrap().unwrap();
        let m = got.message();
        assert_eq!((m.body().as_ref(), got.input_name()), (&b"{\"t\":2}"[..], Some("in1")));
        assert_eq!((m.property("k/2"), m.message_id()), (Some("a&b=c"), Some("m-ws")));
        assert_eq!(m.connection_module_id(), Some("sender"));
        hub.pending_becomes("receiver", 1).await;
        got.complete().unwrap();
        hub.pending_becomes("receiver", 0).await;
        // A 200 KB message spans many AMQP frames and WebSocket messages.
        let big: Vec<u8> = (0..200 * 1024).map(|i| (i % 251) as u8).collect();
        sender.send_to_output("out1", Message::new(big.clone())).await.unwrap();
        let got = tokio::time::timeout(Duration::from_secs(10), in1.recv()).await.unwrap().unwrap();
        assert_eq!(got.message().body().as_ref(), big.as_slice());
        got.complete().unwrap();

        // Twin get, reported patch, desired patch.
        let mut desired = receiver.desired_receiver().unwrap();
        let twin = receiver.get_twin(None).await.unwrap();
        assert_eq!(twin.desired["threshold"], 25);
        receiver.update_reported(&json!({"transport": "amqp_ws"}), None).await.unwrap();
        assert_eq!(hub.hub().twin_document("receiver").await.unwrap()["reported"]["transport"], "amqp_ws");
        let version = hub.hub().patch_desired("receiver", json!({"threshold": 33}).as_object().unwrap()).await.unwrap();
        let patch = tokio::time::timeout(Duration::from_secs(10), desired.recv()).await.unwrap().unwrap();
        assert_eq!((patch["threshold"].as_i64(), patch["$version"].as_i64()), (Some(33), Some(version)));

        hub.echo_methods_both_ways(&sender, &receiver).await;
        assert_eq!(sender.metrics().reconnects, 0);
        sender.close().await.unwrap();
        receiver.close().await.unwrap();
    })
    .await
}

#[tokio::test]
async fn over_websocket_through_an_http_connect_proxy() {
    bounded(async {
        let hub = TestHub::start().await;
        let (port, seen) = connect_proxy("200").await;
        let options = amqp_ws(&hub).await.with_proxy(format!("http://edge:secret@127.0.0.1:{port}"));
        let sender = client(&hub, "sender", options).await;
        let receiver = client(&hub, "receiver", amqp_ws(&hub).await).await;
        let mut in1 = receiver.input_receiver("in1").unwrap();
        sender.send_to_output("out1", Message::new("via proxy")).await.unwrap();
        let got = tokio::time::timeout(Duration::from_secs(10), in1.recv()).await.unwrap().unwrap();
        assert_eq!(got.message().body().as_ref(), b"via proxy");
        got.complete().unwrap();
        sender.get_twin(None).await.unwrap();
        let heads = seen.lock().unwrap().clone();
        assert_eq!(heads.len(), 1, "one tunnel for the one connection: {heads:?}");
        let target = format!("localhost:{}", hub.https_port);
        assert!(heads[0].starts_with(&format!("CONNECT {target} HTTP/1.1\r\n")), "{}", heads[0]);
        // base64("edge:secret")
        assert!(heads[0].contains("Proxy-Authorization: Basic ZWRnZTpzZWNyZXQ=\r\n"), "{}", heads[0]);
        // A proxy with plain AMQP is a configuration error, as with MQTT.
        let e = ModuleClient::from_connection_string(
            &hub.connection_string("sender"),
            Some(&hub.ca_pem()),
            amqp(&hub).with_proxy(format!("http://127.0.0.1:{port}")),
        )
        .await
        .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Configuration, "{e}");
    })
    .await
}

#[tokio::test]
async fn over_websocket_a_cut_connection_reconnects_and_loses_no_send() {
    bounded(async {
        let hub = TestHub::start().await;
        let proxy = Proxy::start(hub.https_port).await;
        let sender = client(&hub, "sender", amqp_ws(&hub).await.with_https_port(proxy.port)).await;
        let receiver = client(&hub, "receiver", amqp_ws(&hub).await).await;
        let mut in1 = receiver.input_receiver("in1").unwrap();
        sender.send_to_output("out1", Message::new("before")).await.unwrap();
        let mut state = sender.connection_state();
        proxy.cut_all();
        tokio::time::timeout(Duration::from_secs(10), state.wait_for(|s| !s.is_connected())).await.unwrap().unwrap();
        let during = tokio::spawn({
            let sender = sender.clone();
            async move { sender.send_to_output("out1", Message::new("during")).await }
        });
        tokio::time::timeout(Duration::from_secs(30), state.wait_for(|s| s.is_connected())).await.unwrap().unwrap();
        during.await.unwrap().unwrap();
        let mut bodies = Vec::new();
        while bodies.len() < 2 {
            let m = tokio::time::timeout(Duration::from_secs(10), in1.recv()).await.unwrap().unwrap();
            bodies.push(String::from_utf8(m.message().body().to_vec()).unwrap());
            m.complete().unwrap();
        }
        assert_eq!(bodies, ["before", "during"]);
        assert!(sender.metrics().reconnects >= 1);
    })
    .await
}

#[tokio::test]
async fn over_websocket_a_wrong_key_is_unauthorized_and_a_wrong_port_refused() {
    bounded(async {
        let hub = TestHub::start().await;
        let bad_key = hub.connection_string("sender").replace("SharedAccessKey=", "SharedAccessKey=AAAA");
        let e =
            ModuleClient::from_connection_string(&bad_key, Some(&hub.ca_pem()), amqp_ws(&hub).await).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unauthorized, "{e}");
        // The hub's AMQPS port as the HTTPS port: TLS works, the WebSocket upgrade does not.
        let options = amqp_ws(&hub).await.with_https_port(hub.amqp_port).with_retry(edgemodule_core::RetryPolicy::None);
        let e = ModuleClient::from_connection_string(&hub.connection_string("sender"), Some(&hub.ca_pem()), options)
            .await
            .unwrap_err();
        assert!(matches!(e.kind(), ErrorKind::ConnectionLost | ErrorKind::Protocol | ErrorKind::Timeout), "{e}");
    })
    .await
}

/// Connects are quick to follow each other and each must work: the put-token's answer and the
/// twin's must never be lost to a reply link the hub had not finished setting up (it was, about
/// once in ten connects, before the hub opened a reply link's channel before answering its attach).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_after_connect_over_both_amqp_transports() {
    bounded(async {
        let hub = TestHub::start().await;
        for i in 0..120 {
            let transport = [Transport::Amqp, Transport::AmqpWebSocket][i % 2];
            let options = match transport {
                Transport::Amqp => amqp(&hub),
                _ => amqp_ws(&hub).await,
            };
            let options = options
                .with_connect_timeout(Duration::from_secs(3))
                .with_default_timeout(Duration::from_secs(3))
                .with_retry(edgemodule_core::RetryPolicy::None);
            let c =
                ModuleClient::from_connection_string(&hub.connection_string("sender"), Some(&hub.ca_pem()), options)
                    .await
                    .unwrap_or_else(|e| panic!("connect {i} over {transport}: {e}"));
            c.get_twin(None).await.unwrap_or_else(|e| panic!("twin on connect {i} over {transport}: {e}"));
            c.send_to_output("sink", Message::new("x")).await.unwrap();
            c.close().await.unwrap();
        }
    })
    .await
}
