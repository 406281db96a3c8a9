//! Topic helpers of the broker: which topics are user topics, filter inclusion for policy
//! resources, and the short telemetry alias `devices/{d}/{m}/messages/events`.
//!
//! Name and filter syntax and plain matching come from the core (`edgemodule_core::validate`) so
//! the client and the hub agree on them.

pub use edgemodule_core::validate::{is_reserved_topic, topic_filter_syntax, topic_matches, topic_name_syntax};

/// Whether a topic name or filter is a user topic (anything outside the IoT Hub surface).
pub fn is_user_topic(topic: &str) -> bool {
    !is_reserved_topic(topic)
}

/// Whether every topic that `inner` matches is also matched by `outer` (both valid filters).
/// Used to decide whether a policy resource allows a requested subscription: `sensors/#` covers
/// `sensors/+/temp`, but `sensors/+` does not cover `sensors/#`.
pub fn filter_covers(outer: &str, inner: &str) -> bool {
    if inner.starts_with('$') && (outer.starts_with('+') || outer.starts_with('#')) {
        return false;
    }
    let mut o = outer.split('/');
    let mut i = inner.split('/');
    loop {
        match (o.next(), i.next()) {
            (Some("#"), _) => return true,
            (Some(_), Some("#")) => return false,
            (Some("+"), Some(_)) => {}
            (Some(ol), Some(il)) if ol == il => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// `devices/{d}/{m}/messages/events[/{bag}][/]` → (device, module, bag): the short form of the
/// module telemetry topic from the IoT Edge 1.2 broker documentation.
pub fn parse_short_events_topic(topic: &str) -> Option<(&str, &str, &str)> {
    let rest = topic.strip_prefix("devices/")?;
    let (device, rest) = rest.split_once('/')?;
    let (module, rest) = rest.split_once('/')?;
    if device.is_empty() || module.is_empty() || module == "modules" && rest.starts_with("messages/events") {
        // `devices/d/modules/messages/events` is ambiguous; the long form handles real modules.
        return None;
    }
    let bag = edgemodule_core::wire::topic::events_bag(rest)?;
    Some((device, module, bag))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn covers() {
        assert!(filter_covers("#", "a/b"));
        assert!(filter_covers("#", "#"));
        assert!(filter_covers("a/#", "a"));
        assert!(filter_covers("a/#", "a/+/c"));
        assert!(filter_covers("a/+", "a/+"));
        assert!(filter_covers("a/+", "a/b"));
        assert!(!filter_covers("a/+", "a/#"));
        assert!(!filter_covers("a/b", "a/+"));
        assert!(!filter_covers("a/+", "a/b/c"));
        assert!(!filter_covers("#", "$SYS/#"));
        assert!(filter_covers("$SYS/#", "$SYS/x"));
        assert!(!filter_covers("a/b/c", "a/b"));
    }

    #[test]
    fn short_events() {
        assert_eq!(parse_short_events_topic("devices/d/m/messages/events"), Some(("d", "m", "")));
        assert_eq!(parse_short_events_topic("devices/d/m/messages/events/"), Some(("d", "m", "")));
        assert_eq!(parse_short_events_topic("devices/d/m/messages/events/a=1&b=2/"), Some(("d", "m", "a=1&b=2")));
        assert_eq!(parse_short_events_topic("devices/d/m/messages/events/a/b"), None);
        assert_eq!(parse_short_events_topic("devices/d/modules/m/messages/events"), None);
        assert_eq!(parse_short_events_topic("devices/d/messages/events"), None);
        assert!(is_user_topic("sensors/x") && !is_user_topic("devices/x") && !is_user_topic("$iothub/x"));
    }
}
