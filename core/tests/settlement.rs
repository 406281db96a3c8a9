//! Settling input messages over each transport: complete, abandon and reject as the hub sees
//! them. AMQP carries all three (accepted / released, after a pause / rejected); MQTT only
//! acknowledges, so an abandoned message comes back after a reconnect and a rejected one is
//! acknowledged away.

mod common;

use std::time::{Duration, Instant};

use common::{bounded, TestHub};
use edgemodule_core::{ClientOptions, InputMessage, Message, ModuleClient, Transport};
use tokio::sync::mpsc::UnboundedReceiver;

async fn client(hub: &TestHub, module: &str, transport: Transport) -> ModuleClient {
    let options: ClientOptions = hub.options().with_transport(transport);
    ModuleClient::from_connection_string(&hub.connection_string(module), Some(&hub.ca_pem()), options).await.unwrap()
}

async fn next(rx: &mut UnboundedReceiver<InputMessage>) -> InputMessage {
    tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.expect("a message within 10 s").unwrap()
}

fn body(m: &InputMessage) -> String {
    String::from_utf8(m.message().body().to_vec()).unwrap()
}

/// After a reconnect, the first message on in1 is `marker`: nothing settled away came back.
async fn first_after_reconnect_is(hub: &TestHub, sender: &ModuleClient, transport: Transport, marker: &str) {
    let again = client(hub, "receiver", transport).await;
    let mut in1 = again.input_receiver("in1").unwrap();
    sender.send_to_output("out1", Message::new(marker.to_string())).await.unwrap();
    let m = next(&mut in1).await;
    assert_eq!(body(&m), marker);
    m.complete().unwrap();
    again.close().await.unwrap();
}

#[tokio::test]
async fn over_amqp_abandon_redelivers_after_a_growing_pause_and_reject_drops() {
    bounded(async {
        let hub = TestHub::start().await;
        let sender = client(&hub, "sender", Transport::Mqtt).await;
        let receiver = client(&hub, "receiver", Transport::Amqp).await;
        let mut in1 = receiver.input_receiver("in1").unwrap();
        sender.send_to_output("out1", Message::new("a")).await.unwrap();
        let first = next(&mut in1).await;
        let abandoned = Instant::now();
        first.abandon().unwrap();
        let second = next(&mut in1).await;
        let first_pause = abandoned.elapsed();
        let abandoned = Instant::now();
        second.abandon().unwrap();
        let again = next(&mut in1).await;
        let second_pause = abandoned.elapsed();
        assert_eq!((body(&first), body(&second), body(&again)), ("a".into(), "a".into(), "a".into()));
        assert_eq!(receiver.metrics().reconnects, 0, "released, not redelivered by a reconnect");
        // The release waits 100 ms, then 200 ms for the next abandon in a row: a handler that
        // keeps failing does not spin through the message.
        assert!(first_pause >= Duration::from_millis(100), "{first_pause:?}");
        assert!(second_pause >= Duration::from_millis(200), "{second_pause:?}");
        again.reject().unwrap();
        hub.pending_becomes("receiver", 0).await;
        assert!(again.complete().is_err(), "a message settles once");
        receiver.close().await.unwrap();
        first_after_reconnect_is(&hub, &sender, Transport::Amqp, "after").await;
    })
    .await
}

#[tokio::test]
async fn over_mqtt_reject_acknowledges_and_abandon_waits_for_a_reconnect() {
    bounded(async {
        let hub = TestHub::start().await;
        let sender = client(&hub, "sender", Transport::Mqtt).await;
        let receiver = client(&hub, "receiver", Transport::Mqtt).await;
        let mut in1 = receiver.input_receiver("in1").unwrap();
        sender.send_to_output("out1", Message::new("rejected")).await.unwrap();
        let m = next(&mut in1).await;
        m.reject().unwrap();
        hub.pending_becomes("receiver", 0).await;
        sender.send_to_output("out1", Message::new("abandoned")).await.unwrap();
        let m = next(&mut in1).await;
        m.abandon().unwrap();
        hub.pending_becomes("receiver", 1).await;
        receiver.close().await.unwrap();
        let again = client(&hub, "receiver", Transport::Mqtt).await;
        let mut in1 = again.input_receiver("in1").unwrap();
        let m = next(&mut in1).await;
        assert_eq!(body(&m), "abandoned");
        m.complete().unwrap();
        again.close().await.unwrap();
        first_after_reconnect_is(&hub, &sender, Transport::Mqtt, "after").await;
    })
    .await
}
