//! Who the module is and where its hub is: from the IoT Edge environment (IOTEDGE_* and the
//! workload API) or from a connection string.

use std::time::Duration;

use crate::auth::credentials::Credentials;
use crate::auth::workload::WorkloadClient;
use crate::error::{Error, ErrorKind, Result};
use crate::validate;
use crate::wire::connection_string::{ConnectionString, Credential};

/// The default workload API version when IOTEDGE_APIVERSION is absent.
pub const DEFAULT_WORKLOAD_API_VERSION: &str = "2018-06-28";
const WORKLOAD_TIMEOUT: Duration = Duration::from_secs(10);

/// Everything needed to connect: identity, endpoints, credentials and the CA to trust.
#[derive(Debug, Clone)]
pub struct ModuleIdentity {
    pub hub_host_name: String,
    pub device_id: String,
    pub module_id: String,
    /// Where to open the connection (the gateway, or the hub when there is none).
    pub gateway_host_name: String,
    pub credentials: Credentials,
    /// PEM text of the CA(s) to trust for the hub's certificate.
    pub trust_pem: String,
    /// Ports announced by the environment (edgemodule-hub on non-default ports).
    pub mqtt_port: Option<u16>,
    pub https_port: Option<u16>,
    /// `EDGEMODULE_AMQP_PORT`: the hub's AMQPS port when it is not 5671.
    pub amqp_port: Option<u16>,
    /// Whether module-to-module method calls are possible (only from the edge environment).
    pub can_invoke_methods: bool,
}

/// Reads a variable through `lookup` so tests can pass a map instead of the process environment.
pub type EnvLookup<'a> = &'a (dyn Fn(&str) -> Option<String> + Sync);

impl ModuleIdentity {
    /// From a connection string plus the PEM of the CA that signed the hub's certificate.
    pub fn from_connection_string(cs: &str, trust_pem: Option<String>) -> Result<ModuleIdentity> {
        let cs = ConnectionString::parse(cs)?;
        let credentials = match cs.credential {
            Credential::SharedAccessKey(k) => Credentials::Key(crate::wire::sas::decode_key(&k)?),
            Credential::SharedAccessSignature(t) => Credentials::Token(t),
        };
        Ok(ModuleIdentity {
            gateway_host_name: cs.gateway_host_name.clone().unwrap_or_else(|| cs.host_name.clone()),
            hub_host_name: cs.host_name,
            device_id: cs.device_id,
            module_id: cs.module_id,
            credentials,
            trust_pem: trust_pem.unwrap_or_default(),
            mqtt_port: None,
            https_port: None,
            amqp_port: None,
            can_invoke_methods: cs.gateway_host_name.is_some(),
        })
    }

    /// From IOTEDGE_* variables and the workload API; falls back to `EdgeHubConnectionString` +
    /// `EdgeModuleCACertificateFile` when the IOTEDGE_* set is incomplete.
    pub async fn from_environment(lookup: EnvLookup<'_>) -> Result<ModuleIdentity> {
        let get = |k: &str| lookup(k).filter(|v| !v.trim().is_empty());
        let edge_vars = [
            "IOTEDGE_WORKLOADURI",
            "IOTEDGE_DEVICEID",
            "IOTEDGE_MODULEID",
            "IOTEDGE_IOTHUBHOSTNAME",
            "IOTEDGE_MODULEGENERATIONID",
        ];
        let missing: Vec<&str> = edge_vars.iter().copied().filter(|k| get(k).is_none()).collect();
        if missing.is_empty() {
            return Self::from_edge_variables(&get).await;
        }
        if let Some(cs) = get("EdgeHubConnectionString") {
            let ca_file = get("EdgeModuleCACertificateFile").ok_or_else(|| {
                Error::config("EdgeHubConnectionString is set but EdgeModuleCACertificateFile is missing")
            })?;
            let pem = std::fs::read_to_string(&ca_file).map_err(|e| {
                Error::with_source(
                    ErrorKind::Configuration,
                    format!("cannot read EdgeModuleCACertificateFile '{ca_file}'"),
                    e,
                )
            })?;
            let mut id = Self::from_connection_string(&cs, Some(pem))
                .map_err(|e| Error::config(format!("EdgeHubConnectionString: {}", e.message())))?;
            id.apply_port_overrides(&get)?;
            return Ok(id);
        }
        Err(Error::config(format!(
            "IoT Edge environment not configured: missing {} (and no EdgeHubConnectionString fallback)",
            missing.join(", ")
        )))
    }

    async fn from_edge_variables(get: &(dyn Fn(&str) -> Option<String> + Sync)) -> Result<ModuleIdentity> {
        let var = |k: &str| get(k).expect("checked by the caller");
        if let Some(scheme) = get("IOTEDGE_AUTHSCHEME") {
            if !scheme.eq_ignore_ascii_case("sasToken") {
                return Err(Error::config(format!("IOTEDGE_AUTHSCHEME '{scheme}' is not supported (only sasToken)")));
            }
        }
        let (device_id, module_id) = (var("IOTEDGE_DEVICEID"), var("IOTEDGE_MODULEID"));
        validate::identity_id("IOTEDGE_DEVICEID", &device_id).map_err(|e| Error::config(e.message()))?;
        validate::identity_id("IOTEDGE_MODULEID", &module_id).map_err(|e| Error::config(e.message()))?;
        let hub_host_name = var("IOTEDGE_IOTHUBHOSTNAME");
        let api_version = get("IOTEDGE_APIVERSION").unwrap_or_else(|| DEFAULT_WORKLOAD_API_VERSION.to_string());
        let client = WorkloadClient::new(&var("IOTEDGE_WORKLOADURI"), &api_version, WORKLOAD_TIMEOUT)?;
        let trust_pem = client.trust_bundle().await?;
        let mut id = ModuleIdentity {
            gateway_host_name: get("IOTEDGE_GATEWAYHOSTNAME").unwrap_or_else(|| hub_host_name.clone()),
            hub_host_name,
            device_id,
            module_id,
            credentials: Credentials::Workload { client, generation_id: var("IOTEDGE_MODULEGENERATIONID") },
            trust_pem,
            mqtt_port: None,
            https_port: None,
            amqp_port: None,
            can_invoke_methods: true,
        };
        id.apply_port_overrides(get)?;
        Ok(id)
    }

    fn apply_port_overrides(&mut self, get: &(dyn Fn(&str) -> Option<String> + Sync)) -> Result<()> {
        let port = |k: &str| -> Result<Option<u16>> {
            get(k)
                .map(|v| {
                    v.parse::<u16>()
                        .ok()
                        .filter(|p| *p != 0)
                        .ok_or_else(|| Error::config(format!("{k} '{v}' is not a port")))
                })
                .transpose()
        };
        self.mqtt_port = port("EDGEMODULE_MQTT_PORT")?;
        self.https_port = port("EDGEMODULE_HTTPS_PORT")?;
        self.amqp_port = port("EDGEMODULE_AMQP_PORT")?;
        Ok(())
    }
}
