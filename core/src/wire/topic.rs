//! MQTT topic names and filters of the module surface (protocol.md §2–§4), built and parsed in
//! one place for the client and the hub.

/// Subscription filter for twin responses.
pub const TWIN_RESPONSE_FILTER: &str = "$iothub/twin/res/#";
/// Subscription filter for desired-property patches.
pub const DESIRED_PATCH_FILTER: &str = "$iothub/twin/PATCH/properties/desired/#";
/// Subscription filter for direct-method requests.
pub const METHODS_FILTER: &str = "$iothub/methods/POST/#";

/// `devices/{d}/modules/{m}/inputs/#`: the filter for every input of a module.
pub fn inputs_filter(device: &str, module: &str) -> String {
    format!("devices/{device}/modules/{module}/inputs/#")
}

/// `devices/{d}/modules/{m}/messages/events/{bag}`.
pub fn events_topic(device: &str, module: &str, bag: &str) -> String {
    format!("devices/{device}/modules/{module}/messages/events/{bag}")
}

/// `devices/{d}/modules/{m}/inputs/{input}/{bag}` (the `/` after the input is always present).
pub fn input_topic(device: &str, module: &str, input: &str, bag: &str) -> String {
    format!("devices/{device}/modules/{module}/inputs/{input}/{bag}")
}

/// A parsed telemetry topic: the sender and the raw (still encoded) property bag.
#[derive(Debug, PartialEq, Eq)]
pub struct EventsTopic<'a> {
    pub device: &'a str,
    pub module: Option<&'a str>,
    pub bag: &'a str,
}

/// Accepts every variant edgeHub accepts: with or without the bag and trailing `/`, for devices
/// and modules.
pub fn parse_events_topic(topic: &str) -> Option<EventsTopic<'_>> {
    let rest = topic.strip_prefix("devices/")?;
    let (device, rest) = rest.split_once('/')?;
    let (module, rest) = match rest.strip_prefix("modules/") {
        Some(r) => {
            let (m, r) = r.split_once('/')?;
            (Some(m), r)
        }
        None => (None, rest),
    };
    let bag = events_bag(rest)?;
    if device.is_empty() || module.is_some_and(str::is_empty) {
        return None;
    }
    Some(EventsTopic { device, module, bag })
}

/// `messages/events[/{bag}][/]` → the raw bag (empty when absent). A `/` inside the bag is not
/// allowed: the bag is one topic level.
pub fn events_bag(rest: &str) -> Option<&str> {
    match rest.strip_prefix("messages/events")? {
        "" | "/" => Some(""),
        after => {
            let bag = after.strip_prefix('/')?;
            let bag = bag.strip_suffix('/').unwrap_or(bag);
            (!bag.contains('/')).then_some(bag)
        }
    }
}

/// A parsed input delivery topic.
#[derive(Debug, PartialEq, Eq)]
pub struct InputTopic<'a> {
    pub device: &'a str,
    pub module: &'a str,
    pub input: &'a str,
    pub bag: &'a str,
}

pub fn parse_input_topic(topic: &str) -> Option<InputTopic<'_>> {
    let mut parts = topic.splitn(7, '/');
    let (d0, device, m0, module, i0, input) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if d0 != "devices" || m0 != "modules" || i0 != "inputs" || input.is_empty() {
        return None;
    }
    Some(InputTopic { device, module, input, bag: parts.next().unwrap_or("") })
}

pub fn twin_get_topic(rid: &str) -> String {
    format!("$iothub/twin/GET/?$rid={rid}")
}

pub fn twin_patch_reported_topic(rid: &str) -> String {
    format!("$iothub/twin/PATCH/properties/reported/?$rid={rid}")
}

pub fn twin_response_topic(status: u16, rid: &str) -> String {
    format!("$iothub/twin/res/{status}/?$rid={rid}")
}

pub fn desired_patch_topic(version: i64) -> String {
    format!("$iothub/twin/PATCH/properties/desired/?$version={version}")
}

pub fn method_request_topic(name: &str, rid: &str) -> String {
    format!("$iothub/methods/POST/{name}/?$rid={rid}")
}

pub fn method_response_topic(status: i64, rid: &str) -> String {
    format!("$iothub/methods/res/{status}/?$rid={rid}")
}

/// Reads `key` out of a `?a=b&c=d` query.
pub fn query_value<'a>(query: &'a str, key: &str) -> Option<&'a str> {
    query.split('&').find_map(|kv| kv.split_once('=').filter(|(k, _)| *k == key).map(|(_, v)| v))
}

/// A twin request a module sends.
#[derive(Debug, PartialEq, Eq)]
pub enum TwinRequest<'a> {
    Get { rid: &'a str },
    PatchReported { rid: &'a str },
}

pub fn parse_twin_request(topic: &str) -> Option<TwinRequest<'_>> {
    if let Some(q) = topic.strip_prefix("$iothub/twin/GET/?") {
        return query_value(q, "$rid").filter(|r| !r.is_empty()).map(|rid| TwinRequest::Get { rid });
    }
    let q = topic.strip_prefix("$iothub/twin/PATCH/properties/reported/?")?;
    query_value(q, "$rid").filter(|r| !r.is_empty()).map(|rid| TwinRequest::PatchReported { rid })
}

/// `$iothub/twin/res/{status}/?$rid={rid}[&$version=n]` → (status, rid).
pub fn parse_twin_response(topic: &str) -> Option<(u16, &str)> {
    let rest = topic.strip_prefix("$iothub/twin/res/")?;
    let (status, q) = rest.split_once("/?")?;
    Some((status.parse().ok()?, query_value(q, "$rid")?))
}

/// `$iothub/twin/PATCH/properties/desired/?$version=n` → n.
pub fn parse_desired_patch_topic(topic: &str) -> Option<i64> {
    let q = topic.strip_prefix("$iothub/twin/PATCH/properties/desired/?")?;
    query_value(q, "$version")?.parse().ok()
}

/// `$iothub/methods/POST/{name}/?$rid={rid}` → (name, rid).
pub fn parse_method_request(topic: &str) -> Option<(&str, &str)> {
    let rest = topic.strip_prefix("$iothub/methods/POST/")?;
    let (name, q) = rest.split_once("/?")?;
    Some((name, query_value(q, "$rid")?))
}

/// `$iothub/methods/res/{status}/?$rid={rid}` → (status text, rid).
pub fn parse_method_response(topic: &str) -> Option<(&str, &str)> {
    let rest = topic.strip_prefix("$iothub/methods/res/")?;
    let (status, q) = rest.split_once("/?")?;
    Some((status, query_value(q, "$rid")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_topic_variants() {
        for (t, bag) in [
            ("devices/d/modules/m/messages/events/%24.on=o", "%24.on=o"),
            ("devices/d/modules/m/messages/events/%24.on=o/", "%24.on=o"),
            ("devices/d/modules/m/messages/events/", ""),
            ("devices/d/modules/m/messages/events", ""),
        ] {
            let p = parse_events_topic(t).unwrap();
            assert_eq!((p.device, p.module, p.bag), ("d", Some("m"), bag), "{t}");
        }
        assert_eq!(parse_events_topic("devices/d/messages/events/").unwrap().module, None);
        assert!(parse_events_topic("devices/d/modules/m/messages/eventsX").is_none());
        assert!(parse_events_topic("devices/d/modules/m/messages/events/a/b").is_none());
        assert!(parse_events_topic("devices//modules/m/messages/events").is_none());
    }

    #[test]
    fn input_topic_round_trip() {
        let t = input_topic("edge1", "filter", "input1", "a=b&%24.cdid=edge1");
        let p = parse_input_topic(&t).unwrap();
        assert_eq!((p.device, p.module, p.input, p.bag), ("edge1", "filter", "input1", "a=b&%24.cdid=edge1"));
        assert_eq!(parse_input_topic("devices/d/modules/m/inputs/i/").unwrap().bag, "");
        assert!(parse_input_topic("devices/d/modules/m/outputs/i/").is_none());
    }

    #[test]
    fn twin_and_method_topics() {
        assert_eq!(parse_twin_request("$iothub/twin/GET/?$rid=7"), Some(TwinRequest::Get { rid: "7" }));
        assert_eq!(
            parse_twin_request("$iothub/twin/PATCH/properties/reported/?$rid=ab"),
            Some(TwinRequest::PatchReported { rid: "ab" })
        );
        assert_eq!(parse_twin_request("$iothub/twin/GET/?$rid="), None);
        assert_eq!(parse_twin_response("$iothub/twin/res/204/?$rid=x&$version=2"), Some((204, "x")));
        assert_eq!(parse_desired_patch_topic(&desired_patch_topic(5)), Some(5));
        assert_eq!(parse_method_request(&method_request_topic("reset", "g-1")), Some(("reset", "g-1")));
        assert_eq!(parse_method_response(&method_response_topic(200, "42")), Some(("200", "42")));
    }
}
