//! The last retained message per user topic: in memory for delivery, written through to the
//! store so it survives a restart.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use super::topics::topic_matches;
use crate::store::Store;

/// A retained message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retained {
    pub qos: u8,
    pub payload: Bytes,
}

pub struct RetainedStore {
    map: Mutex<BTreeMap<String, Retained>>,
    store: Arc<Store>,
}

impl RetainedStore {
    /// Loads what the store kept.
    pub fn load(store: Arc<Store>) -> Result<RetainedStore, String> {
        let map = store
            .load_retained()
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|(topic, qos, payload)| (topic, Retained { qos, payload: payload.into() }))
            .collect();
        Ok(RetainedStore { map: Mutex::new(map), store })
    }

    /// Keeps `payload` as the topic's retained message (an empty payload clears it). Durable
    /// before it returns, so a PUBACK sent afterwards means the retained message survives a crash.
    pub fn set(&self, topic: &str, qos: u8, payload: Bytes) -> Result<(), String> {
        let mut map = self.map.lock().unwrap();
        self.store.save_retained(topic, qos, &payload).map_err(|e| e.to_string())?;
        if payload.is_empty() {
            map.remove(topic);
        } else {
            map.insert(topic.to_string(), Retained { qos, payload });
        }
        Ok(())
    }

    /// The retained messages whose topics match `filter`, in topic order.
    pub fn matching(&self, filter: &str) -> Vec<(String, Retained)> {
        let map = self.map.lock().unwrap();
        map.iter().filter(|(t, _)| topic_matches(filter, t)).map(|(t, r)| (t.clone(), r.clone())).collect()
    }

    pub fn len(&self) -> usize {
        self.map.lock().unwrap().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
