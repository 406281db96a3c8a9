//! Durable hub store on top of redb.
//!
//! Tables:
//! - `deliveries`: `(module, seq) -> encoded record`. The tuple key orders entries per module by
//!   sequence number, so a range scan over one module yields deliveries in enqueue order.
//! - `delivery_counts`: `module -> number of stored deliveries` (kept in step with `deliveries`
//!   inside the same transactions, so `pending_count` does not need a scan).
//! - `meta`: `"next_seq" -> u64`, the next sequence number to hand out.
//! - `twins`: `module -> JSON TwinRecord`.
//! - `sessions`: `client id -> JSON SessionRecord`.
//! - `retained`: `user topic -> qos:u8 | payload…`, the broker's last retained message per topic.
//!
//! Delivery values use a compact binary layout (see [`encode_delivery`]) so bodies of arbitrary
//! bytes round-trip without any text encoding.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use redb::{Database, Durability, ReadableTable, TableDefinition};

const DELIVERIES: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("deliveries");
const DELIVERY_COUNTS: TableDefinition<&str, u64> = TableDefinition::new("delivery_counts");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const TWINS: TableDefinition<&str, &[u8]> = TableDefinition::new("twins");
const SESSIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("sessions");
const RETAINED: TableDefinition<&str, &[u8]> = TableDefinition::new("retained");

const META_NEXT_SEQ: &str = "next_seq";

/// Layout version byte written at the start of every encoded delivery.
const DELIVERY_FORMAT_V1: u8 = 1;
/// Flag bit in the header byte: an expiry timestamp follows.
const FLAG_HAS_EXPIRY: u8 = 0x01;

/// A message routed to a module input, not yet stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDelivery {
    pub module: String,
    pub input: String,
    pub bag: String,
    pub body: Vec<u8>,
    pub expires_at_ms: Option<u64>,
    pub route: String,
}

/// A stored message waiting for the module to acknowledge it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredDelivery {
    pub seq: u64,
    pub module: String,
    pub input: String,
    pub bag: String,
    pub body: Vec<u8>,
    pub expires_at_ms: Option<u64>,
    pub route: String,
}

/// Persisted module twin.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct TwinRecord {
    pub desired: serde_json::Map<String, serde_json::Value>,
    pub desired_version: i64,
    pub reported: serde_json::Map<String, serde_json::Value>,
    pub reported_version: i64,
}

/// Persisted MQTT session state of a clean-session-0 client.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct SessionRecord {
    /// (topic filter, granted qos)
    pub subscriptions: Vec<(String, u8)>,
}

/// A store failure: which database, which operation, and what went wrong.
#[derive(Debug)]
pub struct StoreError {
    path: PathBuf,
    op: &'static str,
    detail: String,
}

impl StoreError {
    fn new(path: &Path, op: &'static str, detail: impl fmt::Display) -> StoreError {
        StoreError { path: path.to_path_buf(), op, detail: detail.to_string() }
    }

    /// The database file the error refers to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The store operation that failed (e.g. `"enqueue"`).
    pub fn operation(&self) -> &'static str {
        self.op
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "store {}: {} failed: {}", self.path.display(), self.op, self.detail)
    }
}

impl std::error::Error for StoreError {}

/// The hub's durable store. Cheap to share behind an `Arc`; all methods take `&self`.
pub struct Store {
    db: Database,
    path: PathBuf,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (or creates) the database at `path` and creates any missing tables.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        if let Some(parent) = path.parent() {
            if !parent.as_os_str().is_empty() {
                std::fs::create_dir_all(parent).map_err(|e| StoreError::new(path, "open (create directory)", e))?;
            }
        }
        let db = Database::create(path).map_err(|e| StoreError::new(path, "open", e))?;
        let store = Store { db, path: path.to_path_buf() };
        store.init_tables()?;
        Ok(store)
    }

    /// The database file path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err<E: fmt::Display>(&self, op: &'static str) -> impl FnOnce(E) -> StoreError + '_ {
        move |e| StoreError::new(&self.path, op, e)
    }

    fn init_tables(&self) -> Result<(), StoreError> {
        const OP: &str = "open (create tables)";
        let mut tx = self.db.begin_write().map_err(self.err(OP))?;
        tx.set_durability(Durability::Immediate);
        {
            tx.open_table(DELIVERIES).map_err(self.err(OP))?;
            tx.open_table(DELIVERY_COUNTS).map_err(self.err(OP))?;
            let mut meta = tx.open_table(META).map_err(self.err(OP))?;
            if meta.get(META_NEXT_SEQ).map_err(self.err(OP))?.is_none() {
                meta.insert(META_NEXT_SEQ, 1u64).map_err(self.err(OP))?;
            }
            tx.open_table(TWINS).map_err(self.err(OP))?;
            tx.open_table(SESSIONS).map_err(self.err(OP))?;
            tx.open_table(RETAINED).map_err(self.err(OP))?;
        }
        tx.commit().map_err(self.err(OP))
    }

    /// Stores (or, with an empty payload, removes) the retained message of a user topic, durably.
    pub fn save_retained(&self, topic: &str, qos: u8, payload: &[u8]) -> Result<(), StoreError> {
        const OP: &str = "save_retained";
        let mut tx = self.db.begin_write().map_err(self.err(OP))?;
        tx.set_durability(Durability::Immediate);
        {
            let mut table = tx.open_table(RETAINED).map_err(self.err(OP))?;
            if payload.is_empty() {
                table.remove(topic).map_err(self.err(OP))?;
            } else {
                let mut value = Vec::with_capacity(payload.len() + 1);
                value.push(qos);
                value.extend_from_slice(payload);
                table.insert(topic, value.as_slice()).map_err(self.err(OP))?;
            }
        }
        tx.commit().map_err(self.err(OP))
    }

    /// Every retained message: (topic, qos, payload), in topic order.
    pub fn load_retained(&self) -> Result<Vec<(String, u8, Vec<u8>)>, StoreError> {
        const OP: &str = "load_retained";
        let tx = self.db.begin_read().map_err(self.err(OP))?;
        let table = tx.open_table(RETAINED).map_err(self.err(OP))?;
        let mut out = Vec::new();
        for entry in table.iter().map_err(self.err(OP))? {
            let (k, v) = entry.map_err(self.err(OP))?;
            if let Some((&qos, payload)) = v.value().split_first() {
                out.push((k.value().to_string(), qos, payload.to_vec()));
            }
        }
        Ok(out)
    }

    /// Stores a batch in one durable (fsync'd) transaction and returns the assigned sequence
    /// numbers, in batch order. Sequence numbers are strictly increasing across calls and reopen.
    pub fn enqueue(&self, batch: &[NewDelivery]) -> Result<Vec<u64>, StoreError> {
        const OP: &str = "enqueue";
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let mut seqs = Vec::with_capacity(batch.len());
        let mut tx = self.db.begin_write().map_err(self.err(OP))?;
        tx.set_durability(Durability::Immediate);
        {
            let mut meta = tx.open_table(META).map_err(self.err(OP))?;
            let first = meta.get(META_NEXT_SEQ).map_err(self.err(OP))?.map(|g| g.value()).unwrap_or(1);
            let mut deliveries = tx.open_table(DELIVERIES).map_err(self.err(OP))?;
            let mut added: HashMap<&str, u64> = HashMap::new();
            let mut buf = Vec::new();
            let mut seq = first;
            for d in batch {
                encode_delivery(&mut buf, &d.input, &d.bag, &d.route, d.expires_at_ms, &d.body);
                deliveries.insert((d.module.as_str(), seq), buf.as_slice()).map_err(self.err(OP))?;
                *added.entry(d.module.as_str()).or_default() += 1;
                seqs.push(seq);
                seq += 1;
            }
            meta.insert(META_NEXT_SEQ, seq).map_err(self.err(OP))?;
            let mut counts = tx.open_table(DELIVERY_COUNTS).map_err(self.err(OP))?;
            for (module, n) in added {
                let current = counts.get(module).map_err(self.err(OP))?.map(|g| g.value()).unwrap_or(0);
                counts.insert(module, current + n).map_err(self.err(OP))?;
            }
        }
        tx.commit().map_err(self.err(OP))?;
        Ok(seqs)
    }

    /// Up to `limit` deliveries for `module` with `seq > after` (`None` = from the start), in seq
    /// order. Entries with `expires_at_ms <= now_ms` are skipped and deleted (a write transaction
    /// is opened only when something expired).
    pub fn pending(
        &self,
        module: &str,
        after: Option<u64>,
        limit: usize,
        now_ms: u64,
    ) -> Result<Vec<StoredDelivery>, StoreError> {
        const OP: &str = "pending";
        let start = match after {
            None => 0,
            Some(u64::MAX) => return Ok(Vec::new()),
            Some(a) => a + 1,
        };
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        let mut expired = Vec::new();
        {
            let tx = self.db.begin_read().map_err(self.err(OP))?;
            let table = tx.open_table(DELIVERIES).map_err(self.err(OP))?;
            let range = table.range((module, start)..=(module, u64::MAX)).map_err(self.err(OP))?;
            for entry in range {
                let (key, value) = entry.map_err(self.err(OP))?;
                let (_, seq) = key.value();
                let rec = decode_delivery(value.value())
                    .map_err(|e| StoreError::new(&self.path, OP, format!("delivery {module}/{seq}: {e}")))?;
                if rec.expires_at_ms.is_some_and(|exp| exp <= now_ms) {
                    expired.push(seq);
                    continue;
                }
                out.push(StoredDelivery {
                    seq,
                    module: module.to_owned(),
                    input: rec.input,
                    bag: rec.bag,
                    body: rec.body,
                    expires_at_ms: rec.expires_at_ms,
                    route: rec.route,
                });
                if out.len() >= limit {
                    break;
                }
            }
        }
        if !expired.is_empty() {
            // Losing this deletion in a crash is harmless (the entries expire again), so it
            // does not need to wait for an fsync.
            self.remove_deliveries(module, &expired, Durability::Eventual, "pending (delete expired)")?;
        }
        Ok(out)
    }

    /// Removes acknowledged deliveries in one durable transaction; unknown seqs are ignored.
    pub fn ack(&self, module: &str, seqs: &[u64]) -> Result<(), StoreError> {
        if seqs.is_empty() {
            return Ok(());
        }
        self.remove_deliveries(module, seqs, Durability::Immediate, "ack")
    }

    fn remove_deliveries(
        &self,
        module: &str,
        seqs: &[u64],
        durability: Durability,
        op: &'static str,
    ) -> Result<(), StoreError> {
        let mut tx = self.db.begin_write().map_err(self.err(op))?;
        tx.set_durability(durability);
        let mut removed = 0u64;
        {
            let mut deliveries = tx.open_table(DELIVERIES).map_err(self.err(op))?;
            for &seq in seqs {
                if deliveries.remove((module, seq)).map_err(self.err(op))?.is_some() {
                    removed += 1;
                }
            }
        }
        if removed == 0 {
            tx.abort().map_err(self.err(op))?;
            return Ok(());
        }
        {
            let mut counts = tx.open_table(DELIVERY_COUNTS).map_err(self.err(op))?;
            let current = counts.get(module).map_err(self.err(op))?.map(|g| g.value()).unwrap_or(0);
            let left = current.saturating_sub(removed);
            if left == 0 {
                counts.remove(module).map_err(self.err(op))?;
            } else {
                counts.insert(module, left).map_err(self.err(op))?;
            }
        }
        tx.commit().map_err(self.err(op))
    }

    /// Number of stored (unacknowledged, not yet purged) deliveries for `module`. Entries that
    /// have expired but were not yet seen by [`Store::pending`] are still counted.
    pub fn pending_count(&self, module: &str) -> Result<u64, StoreError> {
        const OP: &str = "pending_count";
        let tx = self.db.begin_read().map_err(self.err(OP))?;
        let counts = tx.open_table(DELIVERY_COUNTS).map_err(self.err(OP))?;
        Ok(counts.get(module).map_err(self.err(OP))?.map(|g| g.value()).unwrap_or(0))
    }

    pub fn load_twin(&self, module: &str) -> Result<Option<TwinRecord>, StoreError> {
        self.load_json(TWINS, module, "load_twin")
    }

    pub fn save_twin(&self, module: &str, twin: &TwinRecord) -> Result<(), StoreError> {
        self.save_json(TWINS, module, twin, "save_twin")
    }

    pub fn load_session(&self, client_id: &str) -> Result<Option<SessionRecord>, StoreError> {
        self.load_json(SESSIONS, client_id, "load_session")
    }

    pub fn save_session(&self, client_id: &str, s: &SessionRecord) -> Result<(), StoreError> {
        self.save_json(SESSIONS, client_id, s, "save_session")
    }

    pub fn delete_session(&self, client_id: &str) -> Result<(), StoreError> {
        const OP: &str = "delete_session";
        let mut tx = self.db.begin_write().map_err(self.err(OP))?;
        tx.set_durability(Durability::Immediate);
        let existed = {
            let mut table = tx.open_table(SESSIONS).map_err(self.err(OP))?;
            let old = table.remove(client_id).map_err(self.err(OP))?;
            old.is_some()
        };
        if existed {
            tx.commit().map_err(self.err(OP))
        } else {
            tx.abort().map_err(self.err(OP))
        }
    }

    fn load_json<T: serde::de::DeserializeOwned>(
        &self,
        def: TableDefinition<&str, &[u8]>,
        key: &str,
        op: &'static str,
    ) -> Result<Option<T>, StoreError> {
        let tx = self.db.begin_read().map_err(self.err(op))?;
        let table = tx.open_table(def).map_err(self.err(op))?;
        let Some(guard) = table.get(key).map_err(self.err(op))? else {
            return Ok(None);
        };
        serde_json::from_slice(guard.value())
            .map(Some)
            .map_err(|e| StoreError::new(&self.path, op, format!("decoding record {key:?}: {e}")))
    }

    fn save_json<T: serde::Serialize>(
        &self,
        def: TableDefinition<&str, &[u8]>,
        key: &str,
        value: &T,
        op: &'static str,
    ) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(value)
            .map_err(|e| StoreError::new(&self.path, op, format!("encoding record {key:?}: {e}")))?;
        let mut tx = self.db.begin_write().map_err(self.err(op))?;
        tx.set_durability(Durability::Immediate);
        {
            let mut table = tx.open_table(def).map_err(self.err(op))?;
            table.insert(key, bytes.as_slice()).map_err(self.err(op))?;
        }
        tx.commit().map_err(self.err(op))
    }
}

/// Decoded value of a `deliveries` entry (the module and seq live in the key).
#[derive(Debug, PartialEq, Eq)]
struct DeliveryRecord {
    input: String,
    bag: String,
    route: String,
    expires_at_ms: Option<u64>,
    body: Vec<u8>,
}

/// Layout (little endian):
/// `version:u8 | flags:u8 | [expires_at_ms:u64 if flags&1] | (len:u32, utf8)×3 (input, bag, route) | body…`
/// The body takes the remaining bytes, so it needs no length prefix.
fn encode_delivery(buf: &mut Vec<u8>, input: &str, bag: &str, route: &str, expires_at_ms: Option<u64>, body: &[u8]) {
    buf.clear();
    buf.reserve(2 + 8 + 12 + input.len() + bag.len() + route.len() + body.len());
    buf.push(DELIVERY_FORMAT_V1);
    match expires_at_ms {
        Some(exp) => {
            buf.push(FLAG_HAS_EXPIRY);
            buf.extend_from_slice(&exp.to_le_bytes());
        }
        None => buf.push(0),
    }
    for s in [input, bag, route] {
        // Topic segments, property bags and route names are far below 4 GiB.
        let len = u32::try_from(s.len()).unwrap_or(u32::MAX);
        buf.extend_from_slice(&len.to_le_bytes());
        buf.extend_from_slice(&s.as_bytes()[..len as usize]);
    }
    buf.extend_from_slice(body);
}

fn decode_delivery(bytes: &[u8]) -> Result<DeliveryRecord, String> {
    struct Reader<'a>(&'a [u8]);
    impl<'a> Reader<'a> {
        fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
            if self.0.len() < n {
                return Err(format!("truncated record (wanted {n} bytes, {} left)", self.0.len()));
            }
            let (head, tail) = self.0.split_at(n);
            self.0 = tail;
            Ok(head)
        }
        fn u8(&mut self) -> Result<u8, String> {
            Ok(self.take(1)?[0])
        }
        fn u32(&mut self) -> Result<u32, String> {
            Ok(u32::from_le_bytes(self.take(4)?.try_into().map_err(|_| "bad u32")?))
        }
        fn u64(&mut self) -> Result<u64, String> {
            Ok(u64::from_le_bytes(self.take(8)?.try_into().map_err(|_| "bad u64")?))
        }
        fn string(&mut self) -> Result<String, String> {
            let len = self.u32()? as usize;
            let raw = self.take(len)?;
            String::from_utf8(raw.to_vec()).map_err(|e| format!("invalid utf-8: {e}"))
        }
    }

    let mut r = Reader(bytes);
    let version = r.u8()?;
    if version != DELIVERY_FORMAT_V1 {
        return Err(format!("unknown record version {version}"));
    }
    let flags = r.u8()?;
    let expires_at_ms = if flags & FLAG_HAS_EXPIRY != 0 { Some(r.u64()?) } else { None };
    let input = r.string()?;
    let bag = r.string()?;
    let route = r.string()?;
    let body = r.0.to_vec();
    Ok(DeliveryRecord { input, bag, route, expires_at_ms, body })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn nd(module: &str, input: &str, body: &[u8]) -> NewDelivery {
        NewDelivery {
            module: module.to_owned(),
            input: input.to_owned(),
            bag: format!("%24.ct=application%2Fjson&k={input}"),
            body: body.to_vec(),
            expires_at_ms: None,
            route: "r1".to_owned(),
        }
    }

    fn open(dir: &tempfile::TempDir) -> Store {
        Store::open(&dir.path().join("hub.redb")).unwrap()
    }

    #[test]
    fn encoding_round_trips_and_rejects_garbage() {
        let mut buf = Vec::new();
        encode_delivery(&mut buf, "in1", "a=b", "route", Some(42), &[0, 1, 2, 255]);
        let rec = decode_delivery(&buf).unwrap();
        assert_eq!(
            rec,
            DeliveryRecord {
                input: "in1".into(),
                bag: "a=b".into(),
                route: "route".into(),
                expires_at_ms: Some(42),
                body: vec![0, 1, 2, 255],
            }
        );
        encode_delivery(&mut buf, "", "", "", None, &[]);
        assert_eq!(decode_delivery(&buf).unwrap().body, Vec::<u8>::new());
        assert!(decode_delivery(&[]).is_err());
        assert!(decode_delivery(&[9, 0]).is_err());
        assert!(decode_delivery(&[1, 0, 10, 0, 0, 0, b'x']).is_err());
        assert!(decode_delivery(&[1, 1, 0, 0]).is_err());
    }

    #[test]
    fn enqueue_and_pending_in_order_across_modules() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir);
        let seqs = store
            .enqueue(&[nd("a", "in1", b"a0"), nd("b", "in1", b"b0"), nd("a", "in2", b"a1"), nd("b", "in1", b"b1")])
            .unwrap();
        assert_eq!(seqs.len(), 4);
        assert!(seqs.windows(2).all(|w| w[0] < w[1]));
        let seqs2 = store.enqueue(&[nd("a", "in1", b"a2")]).unwrap();
        assert!(seqs2[0] > seqs[3]);

        let a = store.pending("a", None, 100, 0).unwrap();
        assert_eq!(a.iter().map(|d| d.body.as_slice()).collect::<Vec<_>>(), vec![&b"a0"[..], b"a1", b"a2"]);
        assert_eq!(a.iter().map(|d| d.seq).collect::<Vec<_>>(), vec![seqs[0], seqs[2], seqs2[0]]);
        assert!(a.iter().all(|d| d.module == "a" && d.route == "r1"));
        assert_eq!(a[1].input, "in2");
        assert_eq!(a[1].bag, "%24.ct=application%2Fjson&k=in2");

        let b = store.pending("b", None, 100, 0).unwrap();
        assert_eq!(b.iter().map(|d| d.body.as_slice()).collect::<Vec<_>>(), vec![&b"b0"[..], b"b1"]);
        assert_eq!(b.iter().map(|d| d.seq).collect::<Vec<_>>(), vec![seqs[1], seqs[3]]);

        // A module whose name is a prefix of another must not see the other's entries.
        assert!(store.pending("", None, 100, 0).unwrap().is_empty());
        assert!(store.pending("aa", None, 100, 0).unwrap().is_empty());

        assert_eq!(store.pending_count("a").unwrap(), 3);
        assert_eq!(store.pending_count("b").unwrap(), 2);
        assert_eq!(store.pending_count("c").unwrap(), 0);
        assert!(store.enqueue(&[]).unwrap().is_empty());
    }

    #[test]
    fn ack_removes_and_ignores_unknown() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir);
        let seqs =
            store.enqueue(&[nd("m", "i", b"0"), nd("m", "i", b"1"), nd("m", "i", b"2"), nd("n", "i", b"x")]).unwrap();
        store.ack("m", &[seqs[0], seqs[2], 999_999]).unwrap();
        // Acking another module's seq under the wrong module name does nothing.
        store.ack("m", &[seqs[3]]).unwrap();
        let left = store.pending("m", None, 10, 0).unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].seq, seqs[1]);
        assert_eq!(store.pending_count("m").unwrap(), 1);
        assert_eq!(store.pending_count("n").unwrap(), 1);
        // Acking twice is harmless and the count stays right.
        store.ack("m", &[seqs[0], seqs[1], seqs[1]]).unwrap();
        assert!(store.pending("m", None, 10, 0).unwrap().is_empty());
        assert_eq!(store.pending_count("m").unwrap(), 0);
        store.ack("m", &[]).unwrap();
        store.ack("nobody", &[1, 2, 3]).unwrap();
        assert_eq!(store.pending_count("n").unwrap(), 1);
    }

    #[test]
    fn seq_monotonic_across_reopen_and_data_survives_drop() {
        let dir = tempfile::tempdir().unwrap();
        let (first, acked) = {
            let store = open(&dir);
            let s = store.enqueue(&[nd("m", "i", b"one"), nd("m", "i", b"two"), nd("m", "i", b"three")]).unwrap();
            store.ack("m", &[s[2]]).unwrap();
            let acked = s[2];
            (s, acked)
            // Dropped here without any explicit close/flush.
        };
        let store = open(&dir);
        let pending = store.pending("m", None, 10, 0).unwrap();
        assert_eq!(pending.iter().map(|d| d.seq).collect::<Vec<_>>(), vec![first[0], first[1]]);
        assert_eq!(pending[1].body, b"two");
        assert_eq!(store.pending_count("m").unwrap(), 2);
        let next = store.enqueue(&[nd("m", "i", b"four")]).unwrap();
        assert!(next[0] > acked, "seq {} must exceed every earlier seq {first:?}", next[0]);
        drop(store);
        let store = open(&dir);
        let next2 = store.enqueue(&[nd("x", "i", b"five")]).unwrap();
        assert!(next2[0] > next[0]);
    }

    #[test]
    fn expired_entries_are_skipped_and_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir);
        let mut batch = Vec::new();
        for (i, exp) in [None, Some(100), Some(200), None, Some(100), Some(300)].into_iter().enumerate() {
            let mut d = nd("m", "i", format!("{i}").as_bytes());
            d.expires_at_ms = exp;
            batch.push(d);
        }
        let seqs = store.enqueue(&batch).unwrap();
        // Nothing expired yet at t=50.
        let all = store.pending("m", None, 10, 50).unwrap();
        assert_eq!(all.len(), 6);
        assert_eq!(all[1].expires_at_ms, Some(100));
        // At t=200 entries 1, 2, 4 are expired (expiry <= now). The limit counts live entries only.
        let live = store.pending("m", None, 3, 200).unwrap();
        assert_eq!(live.iter().map(|d| d.seq).collect::<Vec<_>>(), vec![seqs[0], seqs[3], seqs[5]]);
        assert_eq!(store.pending_count("m").unwrap(), 3);
        // They are really gone, even when asking with an earlier clock.
        let again = store.pending("m", None, 10, 0).unwrap();
        assert_eq!(again.iter().map(|d| d.seq).collect::<Vec<_>>(), vec![seqs[0], seqs[3], seqs[5]]);
        drop(store);
        let store = open(&dir);
        assert_eq!(store.pending("m", None, 10, 0).unwrap().len(), 3);
        // Everything with an expiry goes at t=1000; the rest stays.
        assert_eq!(store.pending("m", None, 10, 1000).unwrap().len(), 2);
        assert_eq!(store.pending_count("m").unwrap(), 2);
    }

    #[test]
    fn pending_limit_and_after() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir);
        let batch: Vec<_> = (0..20).map(|i| nd(if i % 2 == 0 { "m" } else { "o" }, "i", &[i as u8])).collect();
        let seqs = store.enqueue(&batch).unwrap();
        let m_seqs: Vec<u64> = seqs.iter().copied().step_by(2).collect();

        let page1 = store.pending("m", None, 4, 0).unwrap();
        assert_eq!(page1.iter().map(|d| d.seq).collect::<Vec<_>>(), m_seqs[..4]);
        let page2 = store.pending("m", Some(page1[3].seq), 4, 0).unwrap();
        assert_eq!(page2.iter().map(|d| d.seq).collect::<Vec<_>>(), m_seqs[4..8]);
        let page3 = store.pending("m", Some(page2[3].seq), 4, 0).unwrap();
        assert_eq!(page3.iter().map(|d| d.seq).collect::<Vec<_>>(), m_seqs[8..]);
        assert!(store.pending("m", Some(page3[1].seq), 4, 0).unwrap().is_empty());
        // `after` need not be one of this module's seqs.
        let from_odd = store.pending("m", Some(seqs[5]), 2, 0).unwrap();
        assert_eq!(from_odd.iter().map(|d| d.seq).collect::<Vec<_>>(), vec![seqs[6], seqs[8]]);
        assert!(store.pending("m", None, 0, 0).unwrap().is_empty());
        assert!(store.pending("m", Some(u64::MAX), 10, 0).unwrap().is_empty());
        assert_eq!(store.pending("m", Some(0), 100, 0).unwrap().len(), 10);
    }

    #[test]
    fn big_batch_round_trips_binary_bodies() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir);
        let big: Vec<u8> = (0..256 * 1024).map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        let batch: Vec<NewDelivery> = (0..10_000u32)
            .map(|i| {
                let body = match i {
                    0 => Vec::new(),
                    1 => big.clone(),
                    _ => {
                        let mut b = i.to_le_bytes().to_vec();
                        b.extend_from_slice(&[0, 0xff, 0x80, b'\n', 0]);
                        b.extend(std::iter::repeat_n((i % 251) as u8, (i % 300) as usize));
                        b
                    }
                };
                NewDelivery {
                    module: format!("mod{}", i % 3),
                    input: format!("input{}", i % 7),
                    bag: if i % 5 == 0 { String::new() } else { format!("$.mid={i}&ü=ß") },
                    body,
                    expires_at_ms: if i % 4 == 0 { Some(u64::MAX - u64::from(i)) } else { None },
                    route: format!("route{}", i % 2),
                }
            })
            .collect();

        let started = std::time::Instant::now();
        let seqs = store.enqueue(&batch).unwrap();
        let elapsed = started.elapsed();
        eprintln!(
            "enqueue of {} deliveries (one txn): {:?} ({:.0} msg/s)",
            batch.len(),
            elapsed,
            batch.len() as f64 / elapsed.as_secs_f64()
        );
        assert_eq!(seqs.len(), batch.len());
        assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1));

        drop(store);
        let store = open(&dir);
        let mut seen = 0;
        for m in 0..3u32 {
            let module = format!("mod{m}");
            let got = store.pending(&module, None, usize::MAX, 1_000).unwrap();
            assert_eq!(store.pending_count(&module).unwrap(), got.len() as u64);
            let mut last = 0;
            for d in &got {
                assert!(d.seq > last);
                last = d.seq;
                let idx = usize::try_from(d.seq - seqs[0]).unwrap();
                let want = &batch[idx];
                assert_eq!(
                    (&d.module, &d.input, &d.bag, &d.body, d.expires_at_ms, &d.route),
                    (&want.module, &want.input, &want.bag, &want.body, want.expires_at_ms, &want.route),
                    "seq {}",
                    d.seq
                );
            }
            seen += got.len();
        }
        assert_eq!(seen, batch.len());
        let d0 = store.pending("mod0", None, 1, 0).unwrap();
        assert!(d0[0].body.is_empty());
        let d1 = store.pending("mod1", None, 1, 0).unwrap();
        assert_eq!(d1[0].body.len(), 256 * 1024);
        assert_eq!(d1[0].body, big);
    }

    #[test]
    fn twin_and_session_round_trip_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut twin = TwinRecord::default();
        twin.desired.insert("interval".into(), serde_json::json!(5));
        twin.desired.insert("nested".into(), serde_json::json!({"a": [1, "two", null], "b": true}));
        twin.desired_version = 7;
        twin.reported.insert("status".into(), serde_json::json!("ok"));
        twin.reported_version = 3;
        let session = SessionRecord {
            subscriptions: vec![("devices/d/modules/m/inputs/#".into(), 1), ("$iothub/methods/POST/#".into(), 0)],
        };
        {
            let store = open(&dir);
            assert_eq!(store.load_twin("m").unwrap(), None);
            assert_eq!(store.load_session("d/m").unwrap(), None);
            store.save_twin("m", &TwinRecord::default()).unwrap();
            store.save_twin("m", &twin).unwrap();
            store.save_session("d/m", &session).unwrap();
            store.save_session("d/other", &SessionRecord::default()).unwrap();
        }
        let store = open(&dir);
        assert_eq!(store.load_twin("m").unwrap(), Some(twin));
        assert_eq!(store.load_twin("other").unwrap(), None);
        assert_eq!(store.load_session("d/m").unwrap(), Some(session));
        assert_eq!(store.load_session("d/other").unwrap(), Some(SessionRecord::default()));
        store.delete_session("d/m").unwrap();
        store.delete_session("never-existed").unwrap();
        assert_eq!(store.load_session("d/m").unwrap(), None);
        drop(store);
        let store = open(&dir);
        assert_eq!(store.load_session("d/m").unwrap(), None);
        assert_eq!(store.load_session("d/other").unwrap(), Some(SessionRecord::default()));
    }

    #[test]
    fn concurrent_enqueue_assigns_unique_increasing_seqs() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(open(&dir));
        let handles: Vec<_> = (0..4)
            .map(|t| {
                let store = Arc::clone(&store);
                std::thread::spawn(move || {
                    let mut all = Vec::new();
                    for i in 0..10 {
                        let batch: Vec<_> = (0..5).map(|j| nd("m", "i", format!("{t}-{i}-{j}").as_bytes())).collect();
                        let seqs = store.enqueue(&batch).unwrap();
                        assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1));
                        all.extend(seqs);
                    }
                    all
                })
            })
            .collect();
        let mut all: Vec<u64> = handles.into_iter().flat_map(|h| h.join().unwrap()).collect();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 200);
        assert_eq!(store.pending_count("m").unwrap(), 200);
        assert_eq!(store.pending("m", None, 1000, 0).unwrap().len(), 200);
    }

    #[test]
    fn retained_round_trips_and_empty_payload_deletes() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = open(&dir);
            s.save_retained("b/x", 1, b"one").unwrap();
            s.save_retained("a", 0, &[0, 1, 2]).unwrap();
            s.save_retained("gone", 1, b"x").unwrap();
            s.save_retained("gone", 1, b"").unwrap();
            s.save_retained("nothing", 0, b"").unwrap();
        }
        let s = open(&dir);
        assert_eq!(
            s.load_retained().unwrap(),
            vec![("a".to_string(), 0, vec![0, 1, 2]), ("b/x".to_string(), 1, b"one".to_vec())]
        );
    }

    #[test]
    fn error_names_path_and_operation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hub.redb");
        let _first = Store::open(&path).unwrap();
        // A second handle on the same file is refused by redb.
        let err = Store::open(&path).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("hub.redb"), "{msg}");
        assert!(msg.contains("open"), "{msg}");
        assert_eq!(err.operation(), "open");
        assert_eq!(err.path(), path);
    }
}
