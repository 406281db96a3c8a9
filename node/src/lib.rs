//! Node.js bindings for edgemodule (npm package `edgemodule`). Type conversion and lifetimes
//! only: every semantic (validation, retries, acknowledgements, errors) is the core's.

mod client;
mod errors;
mod idle_spin;
mod message;
mod options;
mod pump;

/// Hands napi the runtime every edgemodule binding uses (two named workers), instead of napi's
/// default one. If it cannot be built, napi's default runtime is used.
#[napi_derive::module_init]
fn init() {
    match edgemodule_core::runtime::build_binding_runtime("edgemodule-node") {
        Ok(rt) => napi::bindgen_prelude::create_custom_tokio_runtime(rt),
        Err(e) => eprintln!("edgemodule: cannot build the runtime ({e}); using napi's default"),
    }
}
