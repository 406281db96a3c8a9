//! Link addresses of a module (protocol.md §7.2). edgeHub matches them case-insensitively and
//! accepts an `amqps://{host}` prefix (the C SDK writes one).

/// The CBS node: both put-token links attach to it.
pub const CBS: &str = "$cbs";

/// What a link of a module is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkKind {
    /// `/devices/{d}/modules/{m}/messages/events`: telemetry from the module (the module's sender)
    /// and input messages to it (the module's receiver).
    Events,
    /// `/devices/{d}/modules/{m}/twin`.
    Twin,
    /// `/devices/{d}/modules/{m}/methods/devicebound`.
    Methods,
}

/// A parsed module link address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleAddress {
    pub device: String,
    pub module: String,
    pub kind: LinkKind,
}

/// `/devices/{d}/modules/{m}/messages/events`.
pub fn events(device: &str, module: &str) -> String {
    format!("/devices/{device}/modules/{module}/messages/events")
}

/// `/devices/{d}/modules/{m}/twin`.
pub fn twin(device: &str, module: &str) -> String {
    format!("/devices/{device}/modules/{module}/twin")
}

/// `/devices/{d}/modules/{m}/methods/devicebound`.
pub fn methods(device: &str, module: &str) -> String {
    format!("/devices/{device}/modules/{module}/methods/devicebound")
}

/// Parses a module link address; `None` for anything else (device links, C2D, unknown paths).
pub fn parse(address: &str) -> Option<ModuleAddress> {
    let path = strip_scheme(address);
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (device, module, rest) = match segments.as_slice() {
        [devices, d, modules, m, rest @ ..]
            if devices.eq_ignore_ascii_case("devices") && modules.eq_ignore_ascii_case("modules") =>
        {
            (*d, *m, rest)
        }
        _ => return None,
    };
    let kind = match rest {
        [a, b] if a.eq_ignore_ascii_case("messages") && b.eq_ignore_ascii_case("events") => LinkKind::Events,
        [a] if a.eq_ignore_ascii_case("twin") => LinkKind::Twin,
        [a, b] if a.eq_ignore_ascii_case("methods") && b.eq_ignore_ascii_case("devicebound") => LinkKind::Methods,
        _ => return None,
    };
    if device.is_empty() || module.is_empty() {
        return None;
    }
    Some(ModuleAddress { device: device.to_string(), module: module.to_string(), kind })
}

/// `amqps://host/devices/…` → `/devices/…`.
fn strip_scheme(address: &str) -> &str {
    match address.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("", |i| &rest[i..]),
        None => address,
    }
}

/// Whether `address` names the CBS node.
pub fn is_cbs(address: &str) -> bool {
    address.eq_ignore_ascii_case(CBS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_module_link() {
        let a = parse("/devices/d1/modules/m1/messages/events").unwrap();
        assert_eq!((a.device.as_str(), a.module.as_str(), a.kind), ("d1", "m1", LinkKind::Events));
        assert_eq!(parse("/devices/d/modules/m/twin").unwrap().kind, LinkKind::Twin);
        assert_eq!(parse("/devices/d/modules/m/methods/deviceBound").unwrap().kind, LinkKind::Methods);
        assert_eq!(parse("amqps://h.net/devices/d/modules/m/Messages/Events").unwrap().kind, LinkKind::Events);
        assert_eq!(parse(&events("d", "m")).unwrap().kind, LinkKind::Events);
        assert_eq!(parse(&twin("d", "m")).unwrap().kind, LinkKind::Twin);
        assert_eq!(parse(&methods("d", "m")).unwrap().kind, LinkKind::Methods);
    }

    #[test]
    fn rejects_other_addresses() {
        for a in ["/devices/d/messages/events", "/devices/d/modules/m", "/devices//modules/m/twin", "$cbs", ""] {
            assert!(parse(a).is_none(), "{a}");
        }
        assert!(is_cbs("$CBS"));
    }
}
