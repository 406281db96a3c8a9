//! The core client's user-topic API against a real hub with a broker policy: publish and
//! subscribe between two modules, QoS 0/1, retained messages, refusals, validation, and
//! subscriptions that survive a hub restart.

mod common;

use std::time::Duration;

use common::{bounded, TestHub};
use edgemodule_core::{ErrorKind, Qos, TopicMessage};
use serde_json::{json, Value};
use tokio::sync::mpsc::UnboundedReceiver;

const WAIT: Duration = Duration::from_secs(10);

/// The default deployment plus a policy: everyone connects; `sender` publishes on `sensors/#`
/// and its own `out/{{iot:module_id}}/#`; everyone subscribes to `sensors/#` and their own
/// `in/{{iot:module_id}}/#`; nobody touches `sensors/secret/#`.
fn deployment() -> Value {
    let mut d = common::default_deployment();
    d["modulesContent"]["$edgeHub"]["properties.desired"]["schemaVersion"] = json!("1.2");
    d["modulesContent"]["$edgeHub"]["properties.desired"]["mqttBroker"] = json!({"authorizations": [
        {"identities": ["{{iot:identity}}"], "allow": [{"operations": ["mqtt:connect"]}]},
        {"identities": ["{{iot:this_device_id}}/sender"], "allow": [
            {"operations": ["mqtt:publish"], "resources": ["sensors/#", "in/receiver/#"]}]},
        {"identities": ["{{iot:identity}}"],
         "allow": [{"operations": ["mqtt:subscribe"], "resources": ["sensors/#", "in/{{iot:module_id}}/#"]}],
         "deny": [{"operations": ["mqtt:publish", "mqtt:subscribe"], "resources": ["sensors/secret/#"]}]}
    ]});
    d
}

async fn next(rx: &mut UnboundedReceiver<TopicMessage>) -> TopicMessage {
    tokio::time::timeout(WAIT, rx.recv()).await.expect("no message within 10 s").expect("receiver closed")
}

async fn nothing(rx: &mut UnboundedReceiver<TopicMessage>) {
    if let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(300), rx.recv()).await {
        panic!("unexpected message on {}", m.topic);
    }
}

#[tokio::test]
async fn two_modules_publish_and_subscribe_on_user_topics() {
    bounded(async {
        let hub = TestHub::start_with(deployment()).await;
        let (sender, receiver) = (hub.client("sender").await, hub.client("receiver").await);

        let mut temps = receiver.subscribe("sensors/+/temp").await.unwrap();
        let mut own = receiver.subscribe_with("in/receiver/#", Qos::AtMostOnce, None).await.unwrap();

        sender.publish("sensors/kitchen/temp", "21", Qos::AtLeastOnce, false).await.unwrap();
        sender.publish("sensors/hall/temp", &b"19"[..], Qos::AtMostOnce, false).await.unwrap();
        sender.publish("sensors/hall/humidity", "40", Qos::AtLeastOnce, false).await.unwrap();
        sender.publish("in/receiver/cmd", "go", Qos::AtLeastOnce, false).await.unwrap();

        let m = next(&mut temps).await;
        assert_eq!(
            (m.topic.as_str(), &m.payload[..], m.qos, m.retain),
            ("sensors/kitchen/temp", &b"21"[..], Qos::AtLeastOnce, false)
        );
        let m = next(&mut temps).await;
        assert_eq!((m.topic.as_str(), &m.payload[..], m.qos), ("sensors/hall/temp", &b"19"[..], Qos::AtMostOnce));
        // The subscription was granted at QoS 0, so a QoS 1 publish arrives at QoS 0.
        let m = next(&mut own).await;
        assert_eq!((m.topic.as_str(), &m.payload[..], m.qos), ("in/receiver/cmd", &b"go"[..], Qos::AtMostOnce));
        nothing(&mut temps).await;

        // Retained: a late subscriber gets the last retained message, flagged as retained.
        sender.publish("sensors/door/state", "closed", Qos::AtLeastOnce, true).await.unwrap();
        sender.publish("sensors/door/state", "open", Qos::AtLeastOnce, true).await.unwrap();
        let mut doors = receiver.subscribe("sensors/door/#").await.unwrap();
        let m = next(&mut doors).await;
        assert_eq!((m.topic.as_str(), &m.payload[..], m.retain), ("sensors/door/state", &b"open"[..], true));
        nothing(&mut doors).await;

        // Unsubscribe: no more messages on that receiver.
        receiver.unsubscribe("sensors/+/temp").await.unwrap();
        sender.publish("sensors/kitchen/temp", "22", Qos::AtLeastOnce, false).await.unwrap();
        sender.publish("sensors/door/state", "ajar", Qos::AtLeastOnce, false).await.unwrap();
        assert_eq!(&next(&mut doors).await.payload[..], b"ajar");
        nothing(&mut temps).await;

        // Refusals and validation.
        let e = receiver.subscribe("sensors/secret/#").await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Rejected, "{e}");
        let e = receiver.subscribe("in/sender/#").await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Rejected, "{e}");
        for bad in ["a/+", "a/#", "", "devices/x/modules/y/messages/events", "$iothub/twin/GET/?$rid=1"] {
            let e = sender.publish(bad, "x", Qos::AtLeastOnce, false).await.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{bad:?}: {e}");
        }
        for bad in ["a/#/b", "a+", "devices/#", "$iothub/#"] {
            let e = receiver.subscribe(bad).await.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{bad:?}: {e}");
        }
        let e = sender.publish("big", vec![0u8; 256 * 1024 + 1], Qos::AtMostOnce, false).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::MessageTooLarge);

        // The IoT Hub surface is untouched: twin and routed outputs still work.
        receiver.get_twin(None).await.unwrap();
        sender.close().await.unwrap();
        receiver.close().await.unwrap();
    })
    .await
}

#[tokio::test]
async fn a_refused_publish_is_not_delivered_and_fails() {
    bounded(async {
        let hub = TestHub::start_with(deployment()).await;
        let (sender, receiver) = (hub.client("sender").await, hub.client("receiver").await);
        let mut all = receiver.subscribe("sensors/#").await.unwrap();
        // Allowed for `sender` by statement 1, denied by statement 2: deny wins. The hub closes the
        // connection each time; the client resends once after reconnecting, then gives up.
        let e = sender
            .publish_with_timeout("sensors/secret/code", "1234", Qos::AtLeastOnce, false, Some(Duration::from_secs(30)))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ConnectionLost, "{e}");
        // `receiver` may not publish at all.
        let e = receiver
            .publish_with_timeout("sensors/x", "y", Qos::AtLeastOnce, false, Some(Duration::from_secs(30)))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ConnectionLost, "{e}");
        // The client is still usable afterwards and nothing refused was delivered.
        sender.publish("sensors/ok", "fine", Qos::AtLeastOnce, false).await.unwrap();
        let m = next(&mut all).await;
        assert_eq!(m.topic, "sensors/ok");
        nothing(&mut all).await;
    })
    .await
}

#[tokio::test]
async fn subscriptions_are_restored_after_a_hub_restart() {
    bounded(async {
        let mut hub = TestHub::start_with(deployment()).await;
        let (sender, receiver) = (hub.client("sender").await, hub.client("receiver").await);
        let mut temps = receiver.subscribe("sensors/+/temp").await.unwrap();
        sender.publish("sensors/a/temp", "1", Qos::AtLeastOnce, false).await.unwrap();
        assert_eq!(&next(&mut temps).await.payload[..], b"1");

        let (mut s_state, mut r_state) = (sender.connection_state(), receiver.connection_state());
        hub.stop().await;
        for state in [&mut s_state, &mut r_state] {
            tokio::time::timeout(WAIT, state.wait_for(|s| !s.is_connected())).await.unwrap().unwrap();
        }
        // Subscribed while disconnected: goes out on reconnect.
        let late = receiver.clone();
        let late = tokio::spawn(async move {
            late.subscribe_with("in/receiver/#", Qos::AtLeastOnce, Some(Duration::from_secs(30))).await
        });
        hub.restart().await;
        for state in [&mut s_state, &mut r_state] {
            tokio::time::timeout(Duration::from_secs(20), state.wait_for(|s| s.is_connected())).await.unwrap().unwrap();
        }
        let mut own = late.await.unwrap().unwrap();
        // The receiver's re-SUBSCRIBE may still be on its way: publish until one arrives.
        let got = tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                sender.publish("sensors/b/temp", "2", Qos::AtLeastOnce, false).await.unwrap();
                if let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(200), temps.recv()).await {
                    return m;
                }
            }
        })
        .await
        .unwrap();
        assert_eq!(got.topic, "sensors/b/temp");
        sender.publish("in/receiver/x", "3", Qos::AtLeastOnce, false).await.unwrap();
        assert_eq!(&next(&mut own).await.payload[..], b"3");
    })
    .await
}
