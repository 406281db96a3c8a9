//! What a module may publish to and subscribe to: its own telemetry, twin and method topics,
//! never another module's.

/// Whether `module` on `device` may subscribe to `filter`.
pub fn may_subscribe(device: &str, module: &str, filter: &str) -> bool {
    let own = format!("devices/{device}/modules/{module}/");
    filter.starts_with("$iothub/twin/res/")
        || filter.starts_with("$iothub/twin/PATCH/properties/desired/")
        || filter.starts_with("$iothub/methods/POST/")
        || filter == format!("{own}#")
        || filter.starts_with(&format!("{own}inputs/"))
}

/// Whether a subscription filter makes the module receive its input messages.
pub fn is_inputs_filter(device: &str, module: &str, filter: &str) -> bool {
    let own = format!("devices/{device}/modules/{module}/");
    filter == format!("{own}#") || filter == format!("{own}inputs/#")
}

pub fn is_methods_filter(filter: &str) -> bool {
    filter.starts_with("$iothub/methods/POST/")
}

pub fn is_desired_filter(filter: &str) -> bool {
    filter.starts_with("$iothub/twin/PATCH/properties/desired/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_topics_only() {
        assert!(may_subscribe("d", "m", "devices/d/modules/m/inputs/#"));
        assert!(may_subscribe("d", "m", "devices/d/modules/m/#"));
        assert!(may_subscribe("d", "m", "$iothub/methods/POST/#"));
        assert!(!may_subscribe("d", "m", "devices/d/modules/other/inputs/#"));
        assert!(!may_subscribe("d", "m", "#"));
        assert!(!may_subscribe("d", "m", "devices/+/modules/+/inputs/#"));
        assert!(is_inputs_filter("d", "m", "devices/d/modules/m/#"));
        assert!(!is_inputs_filter("d", "m", "devices/d/modules/m/inputs/in1"));
    }
}
