//! Closing an AMQP client right after settling input messages: the dispositions reach the hub
//! before the connection closes, so a completed or rejected message is not delivered again.
//! Regression: on a multi-thread runtime the connection's close overtook dispositions still queued
//! in the session's task, and the hub delivered completed messages again on the next connection
//! (found by the C binding's int_amqp.c, which completes and frees the client at once).

mod common;

use std::time::Duration;

use common::{bounded, TestHub};
use edgemodule_core::{ClientOptions, InputMessage, Message, ModuleClient, Transport};
use tokio::sync::mpsc::UnboundedReceiver;

async fn client(hub: &TestHub, module: &str, transport: Transport) -> ModuleClient {
    let options: ClientOptions = hub.options().with_transport(transport).with_connect_timeout(Duration::from_secs(15));
    ModuleClient::from_connection_string(&hub.connection_string(module), Some(&hub.ca_pem()), options).await.unwrap()
}

async fn next(rx: &mut UnboundedReceiver<InputMessage>) -> InputMessage {
    tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.expect("a message within 10 s").unwrap()
}

fn body(m: &InputMessage) -> String {
    String::from_utf8(m.message().body().to_vec()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settling_then_closing_at_once_reaches_the_hub() {
    for (send_over, reconnect_over) in [(Transport::Mqtt, Transport::Amqp), (Transport::Amqp, Transport::Mqtt)] {
        settle_then_close(send_over, reconnect_over).await;
    }
}

async fn settle_then_close(send_over: Transport, reconnect_over: Transport) {
    bounded(async {
        let hub = TestHub::start().await;
        let sender = client(&hub, "sender", send_over).await;
        for round in 0..5 {
            let receiver = client(&hub, "receiver", Transport::Amqp).await;
            let mut in1 = receiver.input_receiver("in1").unwrap();
            let (c, r, marker) = (format!("complete-{round}"), format!("reject-{round}"), format!("marker-{round}"));
            for b in [&c, &r] {
                sender.send_to_output("out1", Message::new(b.clone())).await.unwrap();
            }
            let first = next(&mut in1).await;
            let second = next(&mut in1).await;
            assert_eq!((body(&first), body(&second)), (c.clone(), r.clone()));
            first.complete().unwrap();
            second.reject().unwrap();
            // No round trip in between: close must not overtake the dispositions.
            receiver.close().await.unwrap();

            let again = client(&hub, "receiver", reconnect_over).await;
            let mut in1 = again.input_receiver("in1").unwrap();
            sender.send_to_output("out1", Message::new(marker.clone())).await.unwrap();
            let m = next(&mut in1).await;
            assert_eq!(body(&m), marker, "round {round}: a settled message came back after the close");
            m.complete().unwrap();
            again.close().await.unwrap();
        }
        sender.close().await.unwrap();
    })
    .await
}
