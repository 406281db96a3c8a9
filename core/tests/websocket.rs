//! The core `ModuleClient` over MQTT over WebSocket (`Transport::MqttWebSocket`) against a real
//! in-process `edgemodule-hub`: TLS on the hub's HTTPS port, `/$iothub/websocket`. Every client
//! here is given an MQTT port nothing listens on, so nothing can silently fall back to MQTT/TLS.

mod common;

use std::time::Duration;

use common::connect_proxy::connect_proxy;
use common::proxy::Proxy;
use common::{bounded, closed_port, TestHub};
use edgemodule_core::{ClientOptions, ErrorKind, Message, ModuleClient, Transport};
use serde_json::json;

const STEP: Duration = Duration::from_secs(10);

async fn ws_options(hub: &TestHub) -> ClientOptions {
    hub.options().with_transport(Transport::MqttWebSocket).with_mqtt_port(closed_port().await)
}

async fn ws_client(hub: &TestHub, module: &str, options: ClientOptions) -> edgemodule_core::Result<ModuleClient> {
    ModuleClient::from_connection_string(&hub.connection_string(module), Some(&hub.ca_pem()), options).await
}

#[tokio::test]
async fn send_is_routed_to_an_input_twin_and_methods_work_over_websocket() {
    bounded(async {
        let hub = TestHub::start().await;
        let sender = ws_client(&hub, "sender", ws_options(&hub).await).await.unwrap();
        let receiver = ws_client(&hub, "receiver", ws_options(&hub).await).await.unwrap();
        assert_eq!(sender.options().transport, Transport::MqttWebSocket);

        // send -> route -> input, properties intact.
        let mut in1 = receiver.input_receiver("in1").unwrap();
        let msg = Message::new(&b"{\"t\":21}"[..])
            .with_message_id("mid-ws")
            .with_content_type("application/json")
            .with_content_encoding("utf-8")
            .with_property("k/2", "a&b=c");
        sender.send_to_output("out1", msg).await.unwrap();
        let got = tokio::time::timeout(STEP, in1.recv()).await.unwrap().unwrap();
        assert_eq!(got.message().body().as_ref(), b"{\"t\":21}");
        assert_eq!(got.input_name(), Some("in1"));
        assert_eq!(got.message().message_id(), Some("mid-ws"));
        assert_eq!(got.message().property("k/2"), Some("a&b=c"));
        assert_eq!(got.message().connection_module_id(), Some("sender"));
        got.complete().unwrap();

        // A 200 KB message crosses several WebSocket frames' worth of buffering intact.
        let big: Vec<u8> = (0..200 * 1024).map(|i| (i % 251) as u8).collect();
        sender.send_to_output("out1", Message::new(big.clone())).await.unwrap();
        let got = tokio::time::timeout(STEP, in1.recv()).await.unwrap().unwrap();
        assert_eq!(got.message().body().as_ref(), big.as_slice());
        got.complete().unwrap();

        // Twin get, reported patch, desired patch.
        let mut desired = receiver.desired_receiver().unwrap();
        let twin = receiver.get_twin(None).await.unwrap();
        assert_eq!(twin.desired["threshold"], 25);
        let v0 = twin.reported_version().unwrap();
        receiver.update_reported(&json!({"transport": "mqtt_ws"}), None).await.unwrap();
        let twin = receiver.get_twin(None).await.unwrap();
        assert_eq!(twin.reported["transport"], "mqtt_ws");
        assert_eq!(twin.reported_version().unwrap(), v0 + 1);
        let dv = twin.desired_version().unwrap();
        hub.hub().patch_desired("receiver", json!({"threshold": 31}).as_object().unwrap()).await.unwrap();
        let patch = tokio::time::timeout(STEP, desired.recv()).await.unwrap().unwrap();
        assert_eq!(patch, json!({"threshold": 31, "$version": dv + 1}));

        hub.echo_methods_both_ways(&sender, &receiver).await;

        // A module on MQTT/TLS and one on WebSocket share the same routes.
        let tls_sender = hub.client("sender").await;
        tls_sender.send_to_output("out1", Message::new("from tls")).await.unwrap();
        let got = tokio::time::timeout(STEP, in1.recv()).await.unwrap().unwrap();
        assert_eq!(got.message().body().as_ref(), b"from tls");
        got.complete().unwrap();

        for c in [sender, receiver, tls_sender] {
            c.close().await.unwrap();
        }
    })
    .await
}

#[tokio::test]
async fn reconnects_after_the_websocket_connection_is_cut_and_loses_no_send() {
    bounded(async {
        let hub = TestHub::start().await;
        let proxy = Proxy::start(hub.https_port).await;
        let sender = ws_client(&hub, "sender", ws_options(&hub).await.with_https_port(proxy.port)).await.unwrap();
        let receiver = ws_client(&hub, "receiver", ws_options(&hub).await).await.unwrap();
        let mut in1 = receiver.input_receiver("in1").unwrap();
        let mut desired = sender.desired_receiver().unwrap();
        sender.get_twin(None).await.unwrap();
        sender.send_to_output("out1", Message::new("before")).await.unwrap();

        let mut state = sender.connection_state();
        proxy.cut_all();
        tokio::time::timeout(STEP, state.wait_for(|s| !s.is_connected())).await.unwrap().unwrap();
        // Sent while disconnected: it waits for the reconnect instead of failing.
        let during = tokio::spawn({
            let sender = sender.clone();
            async move { sender.send_to_output("out1", Message::new("during")).await }
        });
        tokio::time::timeout(Duration::from_secs(30), state.wait_for(|s| s.is_connected())).await.unwrap().unwrap();
        during.await.unwrap().unwrap();
        sender.send_to_output("out1", Message::new("after")).await.unwrap();
        let mut bodies = Vec::new();
        while bodies.len() < 3 {
            let m = tokio::time::timeout(STEP, in1.recv()).await.unwrap().unwrap();
            bodies.push(String::from_utf8(m.message().body().to_vec()).unwrap());
            m.complete().unwrap();
        }
        assert_eq!(bodies, ["before", "during", "after"]);
        assert!(sender.metrics().reconnects >= 1);
        // The resubscription after the reconnect still delivers desired patches.
        hub.hub().patch_desired("sender", json!({"after": "cut"}).as_object().unwrap()).await.unwrap();
        let patch = tokio::time::timeout(STEP, desired.recv()).await.unwrap().unwrap();
        assert_eq!(patch["after"], "cut");
    })
    .await
}

#[tokio::test]
async fn a_websocket_client_waits_through_a_hub_restart() {
    bounded(async {
        let mut hub = TestHub::start().await;
        let sender = ws_client(&hub, "sender", ws_options(&hub).await).await.unwrap();
        let mut state = sender.connection_state();
        hub.stop().await;
        tokio::time::timeout(STEP, state.wait_for(|s| !s.is_connected())).await.unwrap().unwrap();
        let during = tokio::spawn({
            let sender = sender.clone();
            async move { sender.send_to_output("out1", Message::new("while the hub was down")).await }
        });
        hub.restart().await;
        tokio::time::timeout(Duration::from_secs(30), state.wait_for(|s| s.is_connected())).await.unwrap().unwrap();
        during.await.unwrap().unwrap();
        let receiver = ws_client(&hub, "receiver", ws_options(&hub).await).await.unwrap();
        let mut in1 = receiver.input_receiver("in1").unwrap();
        let got = tokio::time::timeout(STEP, in1.recv()).await.unwrap().unwrap();
        assert_eq!(got.message().body().as_ref(), b"while the hub was down");
        got.complete().unwrap();
    })
    .await
}

#[tokio::test]
async fn websocket_goes_through_an_http_connect_proxy() {
    bounded(async {
        let hub = TestHub::start().await;
        let (port, seen) = connect_proxy("200").await;
        let options = ws_options(&hub).await.with_proxy(format!("http://edge%20user:p%40ss@127.0.0.1:{port}"));
        let sender = ws_client(&hub, "sender", options).await.unwrap();
        let receiver = ws_client(&hub, "receiver", ws_options(&hub).await).await.unwrap();
        let mut in1 = receiver.input_receiver("in1").unwrap();
        sender.send_to_output("out1", Message::new("via proxy")).await.unwrap();
        let got = tokio::time::timeout(STEP, in1.recv()).await.unwrap().unwrap();
        assert_eq!(got.message().body().as_ref(), b"via proxy");
        got.complete().unwrap();
        sender.get_twin(None).await.unwrap();
        // A module-to-module method call is HTTPS to the same port: through the proxy too.
        hub.echo_methods_both_ways(&sender, &receiver).await;

        let heads = seen.lock().unwrap().clone();
        assert_eq!(heads.len(), 2, "the WebSocket and the method call: {heads:?}");
        let target = format!("localhost:{}", hub.https_port);
        for head in heads {
            assert!(head.starts_with(&format!("CONNECT {target} HTTP/1.1\r\n")), "{head}");
            assert!(head.to_ascii_lowercase().contains(&format!("host: {target}\r\n")), "{head}");
            // base64("edge user:p@ss")
            assert!(head.contains("Proxy-Authorization: Basic ZWRnZSB1c2VyOnBAc3M=\r\n"), "{head}");
        }
    })
    .await
}

#[tokio::test]
async fn proxy_and_websocket_failures_have_their_documented_kinds() {
    bounded(async {
        let hub = TestHub::start().await;
        let retry_once = |o: ClientOptions| o.with_retry(edgemodule_core::RetryPolicy::None);

        let (port, _) = connect_proxy("407").await;
        let e = ws_client(
            &hub,
            "sender",
            retry_once(ws_options(&hub).await.with_proxy(format!("http://127.0.0.1:{port}"))),
        )
        .await
        .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unauthorized, "{e}");
        let (port, seen) = connect_proxy("403").await;
        let e = ws_client(
            &hub,
            "sender",
            retry_once(ws_options(&hub).await.with_proxy(format!("http://127.0.0.1:{port}"))),
        )
        .await
        .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ConnectionRefused, "{e}");
        assert!(e.message().contains("403"), "{e}");
        assert_eq!(seen.lock().unwrap().len(), 1);
        let dead = closed_port().await;
        let e = ws_client(&hub, "sender", ws_options(&hub).await.with_proxy(format!("http://127.0.0.1:{dead}")))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ConnectionRefused, "{e}");

        // A proxy that never answers, and a hub port that never answers: the connect deadline.
        let (port, _) = connect_proxy("hang").await;
        let stalled = Proxy::start(hub.https_port).await;
        stalled.stall(true);
        for options in [
            ws_options(&hub).await.with_proxy(format!("http://127.0.0.1:{port}")),
            ws_options(&hub).await.with_https_port(stalled.port),
        ] {
            let started = std::time::Instant::now();
            let e =
                ws_client(&hub, "sender", options.with_connect_timeout(Duration::from_millis(500))).await.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
            assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
        }

        for bad in ["127.0.0.1:3128", "socks5://127.0.0.1:1080", "http://127.0.0.1:0", "http://127.0.0.1:3128/x"] {
            let e = ws_client(&hub, "sender", ws_options(&hub).await.with_proxy(bad)).await.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Configuration, "{bad}: {e}");
        }
        let e =
            ws_client(&hub, "sender", hub.options().with_proxy(format!("http://127.0.0.1:{dead}"))).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Configuration, "a proxy with the MQTT/TLS transport: {e}");

        // The MQTT port given as the HTTPS port: TLS works, the WebSocket upgrade does not.
        let e = ws_client(&hub, "sender", retry_once(ws_options(&hub).await.with_https_port(hub.mqtt_port)))
            .await
            .unwrap_err();
        assert!(matches!(e.kind(), ErrorKind::ConnectionLost | ErrorKind::Protocol), "{e}");
        // A wrong key is refused by the hub's CONNECT check, as over MQTT/TLS.
        let bad_key = hub.connection_string("sender").replace("SharedAccessKey=", "SharedAccessKey=AAAA");
        let e = ModuleClient::from_connection_string(&bad_key, Some(&hub.ca_pem()), ws_options(&hub).await)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unauthorized, "{e}");
    })
    .await
}
