//! The MQTT broker for user topics (IoT Edge 1.2's broker, protocol.md §10): any topic outside the
//! IoT Hub surface (`devices/…`, `$iothub/…`) is a user topic that modules publish and subscribe
//! to directly, under the authorization policy of `$edgeHub` desired `mqttBroker.authorizations`.
//!
//! Without a policy (no `mqttBroker` section, or no statements) user topics stay closed and every
//! module may connect, which is the hub's behaviour from before the broker. With a policy,
//! `mqtt:connect` must be allowed explicitly too. IoT Hub topics never go through the policy: a
//! module always has its own telemetry, inputs, twin and methods.
//!
//! Fan-out goes through each subscriber's connection task (`ConnCommand::UserPublish`), so one
//! publisher's messages reach a subscriber in the order they were published. User messages live
//! in memory only, except retained ones (see [`retained`]): a QoS 1 message to a subscriber that
//! disconnects before acknowledging it is lost, as with a clean session.

pub mod policy;
pub mod retained;
pub mod topics;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::hub::ConnCommand;
use crate::state::Identity;
use crate::store::Store;
pub use policy::{Decision, Operation, Policy, PolicyClient, PolicyError};
use retained::RetainedStore;

struct Subscriber {
    conn_id: u64,
    module: String,
    tx: mpsc::UnboundedSender<ConnCommand>,
    /// (filter, granted qos) of this connection's user-topic subscriptions.
    filters: Vec<(String, u8)>,
}

pub struct Broker {
    policy: Option<Policy>,
    hub_host_name: String,
    device_id: String,
    retained: RetainedStore,
    subscribers: Mutex<HashMap<String, Subscriber>>,
}

impl Broker {
    /// A broker with `policy` (None: user topics closed), loading retained messages from `store`.
    pub fn new(policy: Option<Policy>, identity: &Identity, store: Arc<Store>) -> Result<Broker, String> {
        Ok(Broker {
            policy,
            hub_host_name: identity.hub_host_name.clone(),
            device_id: identity.device_id.clone(),
            retained: RetainedStore::load(store)?,
            subscribers: Mutex::new(HashMap::new()),
        })
    }

    /// Whether an authorization policy is in force.
    pub fn has_policy(&self) -> bool {
        self.policy.is_some()
    }

    /// Decides an operation of module `module` (of this device). Without a policy, connecting is
    /// allowed and user-topic publish/subscribe are not.
    pub fn authorize(&self, module: &str, op: Operation, resource: Option<&str>) -> Decision {
        let Some(policy) = &self.policy else {
            return match op {
                Operation::Connect => Decision::Allowed { statement: 0 },
                _ => Decision::Denied { statement: None },
            };
        };
        let client =
            PolicyClient { hub: &self.hub_host_name, device: &self.device_id, module, this_device: &self.device_id };
        policy.evaluate(&client, op, resource)
    }

    /// Replaces the user-topic subscriptions of a connection.
    pub fn set_subscriptions(
        &self,
        client_id: &str,
        module: &str,
        conn_id: u64,
        tx: &mpsc::UnboundedSender<ConnCommand>,
        filters: Vec<(String, u8)>,
    ) {
        let mut subs = self.subscribers.lock().unwrap();
        if filters.is_empty() {
            if subs.get(client_id).is_some_and(|s| s.conn_id == conn_id) {
                subs.remove(client_id);
            }
            return;
        }
        // An evicted older connection must not overwrite its successor's entry.
        if subs.get(client_id).is_some_and(|s| s.conn_id > conn_id) {
            return;
        }
        subs.insert(client_id.to_string(), Subscriber { conn_id, module: module.to_string(), tx: tx.clone(), filters });
    }

    /// Forgets a connection's subscriptions (unless a newer connection replaced them).
    pub fn remove(&self, client_id: &str, conn_id: u64) {
        let mut subs = self.subscribers.lock().unwrap();
        if subs.get(client_id).is_some_and(|s| s.conn_id == conn_id) {
            subs.remove(client_id);
        }
    }

    /// Publishes an authorized message: stores it as retained if asked (durably, before
    /// returning), then hands it to every subscriber with a matching filter, once per subscriber,
    /// at the lower of the message's QoS and the best QoS granted among its matching filters.
    /// A subscriber whose policy denies `mqtt:subscribe` on this very topic (a granted wildcard
    /// that overlaps a denied filter) does not get it.
    pub fn publish(&self, topic: &str, payload: Bytes, qos: u8, retain: bool) -> Result<usize, String> {
        if retain {
            self.retained.set(topic, qos, payload.clone())?;
        }
        let subs = self.subscribers.lock().unwrap();
        let mut delivered = 0;
        for sub in subs.values() {
            let granted = sub.filters.iter().filter(|(f, _)| topics::topic_matches(f, topic)).map(|(_, q)| *q).max();
            if let Some(granted) = granted {
                if self.policy.is_some() && !self.authorize(&sub.module, Operation::Subscribe, Some(topic)).is_allowed()
                {
                    continue;
                }
                let cmd = ConnCommand::UserPublish {
                    topic: topic.to_string(),
                    payload: payload.clone(),
                    qos: qos.min(granted),
                    retain: false,
                };
                if sub.tx.send(cmd).is_ok() {
                    delivered += 1;
                }
            }
        }
        Ok(delivered)
    }

    /// The retained messages a new subscription to `filter` receives: (topic, qos, payload).
    pub fn retained_for(&self, filter: &str) -> Vec<(String, u8, Bytes)> {
        self.retained.matching(filter).into_iter().map(|(t, r)| (t, r.qos, r.payload)).collect()
    }

    /// How many topics have a retained message.
    pub fn retained_count(&self) -> usize {
        self.retained.len()
    }
}
