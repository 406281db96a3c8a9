//! Property-based fuzzing of the core's wire codecs (issue #11): percent-encoding, property
//! bags, topics, the inbound topic + bag → `Message` path, twin patches and MQTT framing.
//!
//! Each property runs a small, fast number of cases by default; set `PROPTEST_CASES=N` for a
//! longer run (see RELIABILITY.md).

use bytes::BytesMut;
use edgemodule_core::message::{Message, SystemProperty};
use edgemodule_core::wire::{encoding, framing, property_bag, topic, twin};
use proptest::prelude::*;
use rumqttc::mqttbytes::v4::{Packet, PubAck, Publish, Subscribe, SubscribeFilter, Unsubscribe};
use rumqttc::mqttbytes::QoS;

/// `default` cases unless PROPTEST_CASES says otherwise; no regression files in the tree.
fn config(default: u32) -> ProptestConfig {
    let mut c = ProptestConfig { failure_persistence: None, ..ProptestConfig::default() };
    if std::env::var_os("PROPTEST_CASES").is_none() {
        c.cases = default;
    }
    c
}

/// Device and module ids as `validate::identity_id` accepts them.
fn identity_id() -> impl Strategy<Value = String> {
    "[A-Za-z0-9\\-.+%_#*?!(),=@$']{1,24}"
}

/// Output and input names as `validate::endpoint_name` accepts them (printable, no separators).
fn endpoint_name() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_\\-.~!'|%&^`éü]{1,20}"
}

/// Application property keys: anything non-empty that is not a system key.
fn app_key() -> impl Strategy<Value = String> {
    any::<String>()
        .prop_filter("not empty and not a system key", |k| !k.is_empty() && SystemProperty::from_wire_key(k).is_none())
}

fn app_properties() -> impl Strategy<Value = Vec<(String, String)>> {
    proptest::collection::vec((app_key(), any::<String>()), 0..8).prop_map(|mut v| {
        let mut seen = std::collections::HashSet::new();
        v.retain(|(k, _)| seen.insert(k.clone()));
        v
    })
}

fn system_properties() -> impl Strategy<Value = Vec<(SystemProperty, String)>> {
    proptest::collection::vec((0..SystemProperty::ALL.len(), any::<String>()), 0..6)
        .prop_map(|v| v.into_iter().map(|(i, s)| (SystemProperty::ALL[i], s)).collect())
}

fn message(body: Vec<u8>, sys: &[(SystemProperty, String)], app: &[(String, String)]) -> Message {
    let mut m = Message::new(body);
    for (p, v) in sys {
        m.set_system(*p, Some(v.clone()));
    }
    for (k, v) in app {
        m.set_property(k.clone(), v.clone());
    }
    m
}

/// Strings biased towards the characters the wire formats treat specially.
fn wire_ish() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[a-z$%&=/?#+.0-9A-F]{0,40}",
        "(devices/[a-z]{0,3}/(modules/[a-z]{0,3}/)?(messages/events|inputs/[a-z]{0,3})/?[a-z%=&$.0-9]{0,12}/?)",
        "\\$iothub/(twin/(GET|res/[0-9]{0,4}|PATCH/properties/(reported|desired))|methods/(POST/[a-z]{0,4}|res/[0-9a-z]{0,4}))/?\\??(\\$rid|\\$version)?=?[0-9a-z&=]{0,8}",
    ]
}

/// What the client's driver does with an incoming PUBLISH on an input topic.
fn inbound(topic_name: &str, payload: &[u8]) -> Option<(Message, bool)> {
    let input = topic::parse_input_topic(topic_name)?;
    let mut msg = Message::new(payload.to_vec());
    let clean = match property_bag::decode_pairs(input.bag) {
        Ok(pairs) => {
            property_bag::apply_pairs(&mut msg, pairs);
            true
        }
        Err(_) => false,
    };
    msg.set_input_name(encoding::decode(input.input).or(Some(input.input.to_string())));
    Some((msg, clean))
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn percent_encoding_round_trips(s in any::<String>()) {
        let e = encoding::encode(&s);
        prop_assert!(e.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~%".contains(&b)), "{e}");
        prop_assert_eq!(encoding::decode(&e), Some(s));
    }

    #[test]
    fn arbitrary_strings_never_panic_the_parsers(s in wire_ish(), body in proptest::collection::vec(any::<u8>(), 0..64)) {
        let _ = encoding::decode(&s);
        let _ = property_bag::decode_pairs(&s);
        let _ = topic::parse_events_topic(&s);
        let _ = topic::parse_input_topic(&s);
        let _ = topic::parse_twin_request(&s);
        let _ = topic::parse_twin_response(&s);
        let _ = topic::parse_desired_patch_topic(&s);
        let _ = topic::parse_method_request(&s);
        let _ = topic::parse_method_response(&s);
        let _ = topic::query_value(&s, "$rid");
        if let Some((msg, _)) = inbound(&s, &body) {
            prop_assert_eq!(msg.body().as_ref(), &body[..]);
            prop_assert!(msg.input_name().is_some());
        }
    }

    #[test]
    fn decoded_bags_have_unique_nonempty_keys(s in wire_ish()) {
        if let Ok(pairs) = property_bag::decode_pairs(&s) {
            let mut keys: Vec<&String> = pairs.iter().map(|(k, _)| k).collect();
            prop_assert!(keys.iter().all(|k| !k.is_empty()));
            let n = keys.len();
            keys.sort();
            keys.dedup();
            prop_assert_eq!(keys.len(), n);
        }
    }

    #[test]
    fn outbound_bag_round_trips(sys in system_properties(), app in app_properties()) {
        let sent = message(Vec::new(), &sys, &app);
        let bag = property_bag::encode_outbound(&sent);
        prop_assert!(!bag.contains('/'), "a bag is one topic level: {}", bag);
        let mut got = Message::new(Vec::new());
        property_bag::apply_pairs(&mut got, property_bag::decode_pairs(&bag).unwrap());
        prop_assert_eq!(got, sent);
    }

    #[test]
    fn events_topic_round_trips(
        device in identity_id(), module in identity_id(), sys in system_properties(), app in app_properties()
    ) {
        let bag = property_bag::encode_outbound(&message(Vec::new(), &sys, &app));
        let t = topic::events_topic(&device, &module, &bag);
        let parsed = topic::parse_events_topic(&t).expect("own events topic parses");
        prop_assert_eq!((parsed.device, parsed.module, parsed.bag), (device.as_str(), Some(module.as_str()), bag.as_str()));
    }

    /// The hub's delivery (`encode_delivery` + `input_topic`) read back by the client's inbound path.
    #[test]
    fn delivered_messages_parse_back(
        device in identity_id(), module in identity_id(), input in endpoint_name(),
        sys in system_properties(), app in app_properties(), body in proptest::collection::vec(any::<u8>(), 0..64)
    ) {
        let routed = message(body.clone(), &sys, &app);
        let t = topic::input_topic(&device, &module, &input, &property_bag::encode_delivery(&routed));
        let parsed = topic::parse_input_topic(&t).expect("own input topic parses");
        prop_assert_eq!((parsed.device, parsed.module, parsed.input), (device.as_str(), module.as_str(), input.as_str()));
        let (got, clean) = inbound(&t, &body).unwrap();
        prop_assert!(clean);
        let want_input = encoding::decode(&input).unwrap_or_else(|| input.clone());
        prop_assert_eq!(got.input_name(), Some(want_input.as_str()));
        prop_assert_eq!(got.body().as_ref(), &body[..]);
        prop_assert_eq!(got.properties(), routed.properties());
        for p in SystemProperty::ALL {
            let want = if p.forwarded_to_receiver() { routed.system(p) } else { None };
            prop_assert_eq!(got.system(p), want, "{:?}", p);
        }
    }

    #[test]
    fn twin_and_method_topics_round_trip(rid in "[A-Za-z0-9\\-]{1,36}", name in endpoint_name(), version in any::<i64>(), status in 100u16..1000) {
        let (get, patch) = (topic::twin_get_topic(&rid), topic::twin_patch_reported_topic(&rid));
        prop_assert_eq!(topic::parse_twin_request(&get), Some(topic::TwinRequest::Get { rid: &rid }));
        prop_assert_eq!(topic::parse_twin_request(&patch), Some(topic::TwinRequest::PatchReported { rid: &rid }));
        let res = topic::twin_response_topic(status, &rid);
        prop_assert_eq!(topic::parse_twin_response(&res), Some((status, rid.as_str())));
        prop_assert_eq!(topic::parse_desired_patch_topic(&topic::desired_patch_topic(version)), Some(version));
        let req = topic::method_request_topic(&name, &rid);
        prop_assert_eq!(topic::parse_method_request(&req), Some((name.as_str(), rid.as_str())));
        let (status_text, mres) = ((status as i64).to_string(), topic::method_response_topic(status as i64, &rid));
        prop_assert_eq!(topic::parse_method_response(&mres), Some((status_text.as_str(), rid.as_str())));
    }
}

// ---------------------------------------------------------------------------------------------
// Twin patches: arbitrary JSON never panics merge or validation.

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        "[a-z$. ]{0,6}".prop_map(Value::String),
    ];
    leaf.prop_recursive(6, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map("[a-z$. ]{0,4}", inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn twin_merge_and_validation_never_panic(doc in json_value(), patch in json_value()) {
        let _ = twin::validate_reported_patch(&patch);
        let _ = twin::version_of(&doc);
        if let (serde_json::Value::Object(mut target), serde_json::Value::Object(p)) = (doc, patch.clone()) {
            twin::merge_patch(&mut target, &p);
            // A merged patch is idempotent.
            let once = target.clone();
            twin::merge_patch(&mut target, &p);
            prop_assert_eq!(target, once);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// MQTT framing: the decoder the hub and the client both read with.

const MAX: usize = 64 * 1024;

/// Decodes everything in `bytes`; must end in Ok(None) or an error, never panic or spin.
fn decode_all(bytes: &[u8]) -> Vec<Packet> {
    let mut buf = BytesMut::from(bytes);
    let mut out = Vec::new();
    for _ in 0..=bytes.len() {
        match framing::decode(&mut buf, MAX) {
            Ok(Some(p)) => out.push(p),
            Ok(None) | Err(_) => return out,
        }
    }
    panic!("decoder did not finish on {} bytes", bytes.len());
}

fn packet() -> impl Strategy<Value = Packet> {
    let qos = prop_oneof![Just(QoS::AtMostOnce), Just(QoS::AtLeastOnce)];
    let publish = (
        "[^\u{0}#+]{1,40}",
        qos.clone(),
        1u16..=u16::MAX,
        proptest::collection::vec(any::<u8>(), 0..200),
        any::<bool>(),
    )
        .prop_map(|(t, q, pkid, payload, retain)| {
            let mut p = Publish::new(t, q, payload);
            p.retain = retain;
            if q != QoS::AtMostOnce {
                p.pkid = pkid;
            }
            Packet::Publish(p)
        });
    let subscribe =
        (1u16..=u16::MAX, proptest::collection::vec(("[^\u{0}]{1,30}", qos), 1..4)).prop_map(|(pkid, fs)| {
            let filters = fs.into_iter().map(|(path, qos)| SubscribeFilter::new(path, qos)).collect();
            Packet::Subscribe(Subscribe { pkid, filters })
        });
    let unsubscribe = (1u16..=u16::MAX, proptest::collection::vec("[^\u{0}]{1,30}", 1..4))
        .prop_map(|(pkid, topics)| Packet::Unsubscribe(Unsubscribe { pkid, topics }));
    prop_oneof![
        publish,
        subscribe,
        unsubscribe,
        (1u16..=u16::MAX).prop_map(|p| Packet::PubAck(PubAck::new(p))),
        Just(Packet::PingReq),
        Just(Packet::PingResp),
        Just(Packet::Disconnect),
    ]
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Insert(usize, u8),
    Remove(usize),
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1u8..=255).prop_map(|(i, x)| Mutation::Flip(i, x)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<usize>().prop_map(Mutation::Remove),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn mutate(bytes: &mut Vec<u8>, mutations: &[Mutation]) {
    for m in mutations {
        let n = bytes.len().max(1);
        match *m {
            Mutation::Flip(i, x) if !bytes.is_empty() => bytes[i % n] ^= x,
            Mutation::Insert(i, b) => bytes.insert(i % (bytes.len() + 1), b),
            Mutation::Remove(i) if !bytes.is_empty() => {
                bytes.remove(i % n);
            }
            Mutation::Truncate(i) => bytes.truncate(i % (bytes.len() + 1)),
            _ => {}
        }
    }
}

proptest! {
    #![proptest_config(config(1000))]

    #[test]
    fn arbitrary_bytes_never_panic_the_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        decode_all(&bytes);
    }

    #[test]
    fn valid_packets_round_trip_and_prefixes_wait_for_more(packets in proptest::collection::vec(packet(), 1..5)) {
        let mut out = BytesMut::new();
        for p in &packets {
            framing::encode(p, &mut out).unwrap();
        }
        prop_assert_eq!(&decode_all(&out), &packets);
        // Every strict prefix of the first packet is "need more bytes", never an error.
        let mut first = BytesMut::new();
        framing::encode(&packets[0], &mut first).unwrap();
        for cut in 0..first.len() {
            let mut buf = BytesMut::from(&first[..cut]);
            prop_assert!(matches!(framing::decode(&mut buf, MAX), Ok(None)), "prefix of {} bytes", cut);
        }
    }

    #[test]
    fn mutated_packets_never_panic_the_decoder(
        packets in proptest::collection::vec(packet(), 1..4), mutations in proptest::collection::vec(mutation(), 1..6)
    ) {
        let mut out = BytesMut::new();
        for p in &packets {
            framing::encode(p, &mut out).unwrap();
        }
        let mut bytes = out.to_vec();
        mutate(&mut bytes, &mutations);
        decode_all(&bytes);
    }

    #[test]
    fn oversized_lengths_are_refused_not_buffered_forever(len in (MAX as u32 + 1)..(1u32 << 28), kind in 1u8..15) {
        // A fixed header announcing more than the limit is an error as soon as it is read.
        let mut bytes = vec![kind << 4 | if kind == 8 || kind == 10 || kind == 6 { 2 } else { 0 }];
        let mut x = len;
        loop {
            let mut b = (x % 128) as u8;
            x /= 128;
            if x > 0 {
                b |= 128;
            }
            bytes.push(b);
            if x == 0 {
                break;
            }
        }
        let mut buf = BytesMut::from(&bytes[..]);
        prop_assert!(framing::decode(&mut buf, MAX).is_err());
    }
}
