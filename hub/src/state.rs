//! The hub's persistent identity: a state directory holding the hub/device names, a local CA, the TLS server
//! certificate the hub presents to modules, and the modules' SAS keys.
//!
//! Layout of the state directory (created with mode 0700; `init` and `open` take group and other
//! access away from the directory and the key files again if it was granted since):
//!
//! | File | Content | Mode |
//! |---|---|---|
//! | `identity.json` | [`Identity`] plus bookkeeping (server certificate expiry) | 0644 |
//! | `ca.pem` / `ca.key` | the local CA certificate (the trust bundle) and its private key | 0644 / 0600 |
//! | `server.pem` / `server.key` | the server certificate followed by the CA certificate, and its key | 0644 / 0600 |
//! | `keys.json` | `{"modules": {"<moduleId>": "<base64 SAS key>"}}` | 0600 |
//! | `hub.redb`, `workload.sock`, `control.sock`, `upstream.jsonl` | used by other parts of the hub | |

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use rand::RngCore as _;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType, SerialNumber,
};
use serde::{Deserialize, Serialize};

const IDENTITY_FILE: &str = "identity.json";
const CA_CERT_FILE: &str = "ca.pem";
const CA_KEY_FILE: &str = "ca.key";
const SERVER_CERT_FILE: &str = "server.pem";
const SERVER_KEY_FILE: &str = "server.key";
const KEYS_FILE: &str = "keys.json";

/// The IoT Hub host name the local hub pretends to belong to (used in SAS audiences and `IOTEDGE_IOTHUBHOSTNAME`).
pub const DEFAULT_HUB_HOST_NAME: &str = "edgemodule-local.azure-devices.net";
/// The edge device id the local hub pretends to be.
pub const DEFAULT_DEVICE_ID: &str = "edge-device";
/// The gateway host name used when `init` is given none.
pub const DEFAULT_GATEWAY_HOST_NAME: &str = "localhost";

/// Subject common name of the local CA. It must stay the same for the life of a state directory: the server
/// certificate's issuer name is rebuilt from it when the server certificate is re-issued.
const CA_COMMON_NAME: &str = "edgemodule-hub local CA";
const CERT_ORGANIZATION: &str = "edgemodule";
/// Certificates start to be valid a little in the past so small clock differences do not matter.
const BACKDATE: Duration = Duration::from_secs(60 * 60);
const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 60 * 60);
const SERVER_VALIDITY: Duration = Duration::from_secs(365 * 24 * 60 * 60);
/// `init` re-issues the server certificate when less than this much of its validity is left.
const SERVER_RENEW_BEFORE: Duration = Duration::from_secs(30 * 24 * 60 * 60);

/// The names the hub uses for itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// The IoT Hub host name (`IOTEDGE_IOTHUBHOSTNAME`; first part of every SAS audience).
    pub hub_host_name: String,
    /// The edge device id (`IOTEDGE_DEVICEID`).
    pub device_id: String,
    /// The host name modules connect to (`IOTEDGE_GATEWAYHOSTNAME`); the server certificate is valid for it.
    pub gateway_host_name: String,
}

/// What `identity.json` holds: the identity plus bookkeeping about the certificates.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct IdentityFile {
    #[serde(flatten)]
    identity: Identity,
    /// Unix time at which the current server certificate expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    server_cert_not_after: Option<u64>,
}

/// `keys.json`.
#[derive(Debug, Default, Serialize, Deserialize)]
struct KeysFile {
    #[serde(default)]
    modules: BTreeMap<String, String>,
}

/// Errors from the state directory. Messages name the file and the problem and never contain key material.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The state directory does not exist.
    #[error("state directory {} does not exist; run `edgemodule-hub init --state-dir {}` first", .dir.display(), .dir.display())]
    NoStateDir { dir: PathBuf },
    /// The state directory exists but a file written by `init` is missing.
    #[error("state directory {} is not initialised ({file} is missing); run `edgemodule-hub init --state-dir {}` first", .dir.display(), .dir.display())]
    NotInitialised { dir: PathBuf, file: &'static str },
    /// A file system operation failed.
    #[error("{}: cannot {op}: {source}", .path.display())]
    Io {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: io::Error,
    },
    /// A file exists but its content is unusable.
    #[error("{}: {problem}", .path.display())]
    Corrupt { path: PathBuf, problem: String },
    /// The gateway host name given to `init` cannot go into a certificate.
    #[error("invalid hostname {hostname:?}: {problem}")]
    InvalidHostname { hostname: String, problem: String },
    /// A module id that is not a valid IoT Hub module id.
    #[error("invalid module id {id:?}: {problem}")]
    InvalidModuleId { id: String, problem: &'static str },
    /// Certificate or key generation failed.
    #[error("cannot generate the {what}: {problem}")]
    Crypto { what: &'static str, problem: String },
}

/// An initialised state directory.
pub struct StateDir {
    path: PathBuf,
    identity: Identity,
    /// Serialises read-modify-write cycles of `keys.json` within this process.
    keys_lock: Mutex<()>,
}

impl fmt::Debug for StateDir {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StateDir").field("path", &self.path).field("identity", &self.identity).finish()
    }
}

impl StateDir {
    /// Initialises (or refreshes) a state directory; see the module docs for the files it writes.
    ///
    /// Idempotent: existing keys are never replaced. The server certificate is re-issued (with the same key) when
    /// the hostname differs from the recorded one, when the server certificate is missing, or when it expires
    /// within 30 days. A missing CA key makes a new CA (and therefore a new server certificate).
    pub fn init(dir: &Path, hostname: &str) -> Result<StateDir, StateError> {
        let host = HostKind::parse(hostname)?;
        create_state_dir(dir)?;

        let identity_path = dir.join(IDENTITY_FILE);
        let previous = if identity_path.exists() { Some(read_identity(&identity_path)?) } else { None };

        // CA key and certificate.
        let ca_key_path = dir.join(CA_KEY_FILE);
        let ca_cert_path = dir.join(CA_CERT_FILE);
        let (ca_key, new_ca_key) = load_or_generate_key(&ca_key_path, "CA key")?;
        let mut new_ca_cert = false;
        if new_ca_key || !ca_cert_path.exists() {
            if new_ca_key && ca_cert_path.exists() {
                tracing::warn!(dir = %dir.display(), "{CA_KEY_FILE} was missing; creating a new local CA");
            }
            let ca_cert =
                ca_params(SystemTime::now()).self_signed(&ca_key).map_err(|e| crypto_err("CA certificate", e))?;
            write_file_atomic(&ca_cert_path, ca_cert.pem().as_bytes(), 0o644)?;
            new_ca_cert = true;
        }

        // Server key and certificate.
        let server_key_path = dir.join(SERVER_KEY_FILE);
        let server_cert_path = dir.join(SERVER_CERT_FILE);
        let (server_key, new_server_key) = load_or_generate_key(&server_key_path, "server key")?;
        let now = SystemTime::now();
        // Without a recorded hostname (identity.json lost) the existing certificate cannot be trusted to match.
        let hostname_changed = previous.as_ref().is_none_or(|p| p.identity.gateway_host_name != hostname);
        let expiring = previous
            .as_ref()
            .and_then(|p| p.server_cert_not_after)
            .is_some_and(|not_after| unix_secs(now).saturating_add(SERVER_RENEW_BEFORE.as_secs()) >= not_after);
        let mut server_cert_not_after = previous.as_ref().and_then(|p| p.server_cert_not_after);
        if new_ca_cert || new_server_key || hostname_changed || expiring || !server_cert_path.exists() {
            // The issuer: the CA's parameters (same subject name as in ca.pem) with the CA key. The certificate
            // built here is only used as the issuer description; ca.pem is left as it is.
            let issuer = ca_params(now).self_signed(&ca_key).map_err(|e| crypto_err("CA certificate", e))?;
            let server_cert = server_params(&host, hostname, now)?
                .signed_by(&server_key, &issuer, &ca_key)
                .map_err(|e| crypto_err("server certificate", e))?;
            let ca_pem = read_text(&ca_cert_path)?;
            let mut chain = server_cert.pem();
            if !chain.ends_with('\n') {
                chain.push('\n');
            }
            chain.push_str(&ca_pem);
            write_file_atomic(&server_cert_path, chain.as_bytes(), 0o644)?;
            server_cert_not_after = Some(unix_secs(now + SERVER_VALIDITY));
            tracing::info!(dir = %dir.display(), hostname, "issued the hub's server certificate");
        }

        let identity = match previous.as_ref() {
            Some(p) => Identity { gateway_host_name: hostname.to_owned(), ..p.identity.clone() },
            None => Identity {
                hub_host_name: DEFAULT_HUB_HOST_NAME.to_owned(),
                device_id: DEFAULT_DEVICE_ID.to_owned(),
                gateway_host_name: hostname.to_owned(),
            },
        };
        let file = IdentityFile { identity, server_cert_not_after };
        let unchanged = previous
            .as_ref()
            .is_some_and(|p| p.identity == file.identity && p.server_cert_not_after == file.server_cert_not_after);
        if !unchanged {
            let mut json = serde_json::to_string_pretty(&file).expect("identity serialises");
            json.push('\n');
            write_file_atomic(&identity_path, json.as_bytes(), 0o644)?;
        }

        // Keys written by an older run (or by hand) may be readable by others; tighten them.
        tighten(dir)?;

        StateDir::open(dir)
    }

    /// Opens a state directory written by [`StateDir::init`].
    pub fn open(dir: &Path) -> Result<StateDir, StateError> {
        match fs::metadata(dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(StateError::Corrupt { path: dir.to_owned(), problem: "is not a directory".into() });
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StateError::NoStateDir { dir: dir.to_owned() });
            }
            Err(e) => return Err(io_err(dir, "read the state directory", e)),
        }
        for file in [IDENTITY_FILE, CA_CERT_FILE, CA_KEY_FILE, SERVER_CERT_FILE, SERVER_KEY_FILE] {
            if !dir.join(file).exists() {
                return Err(StateError::NotInitialised { dir: dir.to_owned(), file });
            }
        }
        // A state dir copied, unpacked or edited with a permissive umask since `init`: the hub
        // must not serve keys (or a control socket) others can read. Best effort here (a
        // read-only command run by another user must still work); `init` insists.
        if let Err(e) = tighten(dir) {
            tracing::warn!(dir = %dir.display(), "{e}");
        }
        let file = read_identity(&dir.join(IDENTITY_FILE))?;

        // Fail early (at start-up) on unusable PEM files rather than at the first TLS connection.
        for name in [CA_CERT_FILE, SERVER_CERT_FILE] {
            let path = dir.join(name);
            let text = read_text(&path)?;
            let certs: Result<Vec<_>, _> = rustls_pemfile::certs(&mut text.as_bytes()).collect();
            match certs {
                Ok(c) if !c.is_empty() => {}
                _ => return Err(StateError::Corrupt { path, problem: "holds no PEM certificate".into() }),
            }
        }
        for name in [CA_KEY_FILE, SERVER_KEY_FILE] {
            let path = dir.join(name);
            let text = read_text(&path)?;
            if !matches!(rustls_pemfile::private_key(&mut text.as_bytes()), Ok(Some(_))) {
                return Err(StateError::Corrupt { path, problem: "holds no PEM private key".into() });
            }
        }
        if let Some(not_after) = file.server_cert_not_after {
            let now = unix_secs(SystemTime::now());
            if now >= not_after {
                tracing::warn!(dir = %dir.display(), "the hub's server certificate has expired; run `edgemodule-hub init` again to renew it");
            } else if now.saturating_add(SERVER_RENEW_BEFORE.as_secs()) >= not_after {
                tracing::warn!(dir = %dir.display(), "the hub's server certificate expires soon; run `edgemodule-hub init` again to renew it");
            }
        }

        Ok(StateDir { path: dir.to_owned(), identity: file.identity, keys_lock: Mutex::new(()) })
    }

    /// The state directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The hub's names.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The CA certificate in PEM form: the trust bundle modules use for the hub's TLS certificate.
    pub fn ca_pem(&self) -> Result<String, StateError> {
        read_text(&self.path.join(CA_CERT_FILE))
    }

    /// The server certificate followed by the CA certificate, PEM.
    pub fn server_cert_chain_pem(&self) -> Result<String, StateError> {
        read_text(&self.path.join(SERVER_CERT_FILE))
    }

    /// The server certificate's private key (PKCS#8 PEM).
    pub fn server_key_pem(&self) -> Result<String, StateError> {
        read_text(&self.path.join(SERVER_KEY_FILE))
    }

    /// The module's base64 SAS key (32 random bytes), generated and persisted on first use.
    pub fn ensure_module_key(&self, module_id: &str) -> Result<String, StateError> {
        check_module_id(module_id)?;
        let _guard = self.keys_lock.lock().unwrap_or_else(|e| e.into_inner());
        let path = self.path.join(KEYS_FILE);
        let mut keys = read_keys(&path)?;
        if let Some(key) = keys.modules.get(module_id) {
            return Ok(key.clone());
        }
        let mut raw = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut raw);
        let key = base64::engine::general_purpose::STANDARD.encode(raw);
        keys.modules.insert(module_id.to_owned(), key.clone());
        let mut json = serde_json::to_string_pretty(&keys).expect("keys serialise");
        json.push('\n');
        write_file_atomic(&path, json.as_bytes(), 0o600)?;
        Ok(key)
    }

    /// The module's SAS key if one has been generated.
    pub fn module_key(&self, module_id: &str) -> Result<Option<String>, StateError> {
        let _guard = self.keys_lock.lock().unwrap_or_else(|e| e.into_inner());
        Ok(read_keys(&self.path.join(KEYS_FILE))?.modules.get(module_id).cloned())
    }

    /// Ids of the modules that have a SAS key, sorted.
    pub fn module_ids(&self) -> Result<Vec<String>, StateError> {
        let _guard = self.keys_lock.lock().unwrap_or_else(|e| e.into_inner());
        Ok(read_keys(&self.path.join(KEYS_FILE))?.modules.into_keys().collect())
    }

    /// The message/twin database: `DIR/hub.redb`.
    pub fn db_path(&self) -> PathBuf {
        self.path.join("hub.redb")
    }

    /// The workload API socket: `DIR/workload.sock`.
    pub fn workload_socket_path(&self) -> PathBuf {
        self.path.join("workload.sock")
    }

    /// The hub's control socket: `DIR/control.sock`.
    pub fn control_socket_path(&self) -> PathBuf {
        self.path.join("control.sock")
    }

    /// The `$upstream` sink: `DIR/upstream.jsonl`.
    pub fn upstream_path(&self) -> PathBuf {
        self.path.join("upstream.jsonl")
    }
}

/// The gateway host name, as it goes into the server certificate.
enum HostKind {
    Ip(IpAddr),
    Dns,
}

impl HostKind {
    fn parse(hostname: &str) -> Result<HostKind, StateError> {
        let bad =
            |problem: &str| StateError::InvalidHostname { hostname: hostname.to_owned(), problem: problem.into() };
        if hostname.is_empty() {
            return Err(bad("must not be empty"));
        }
        if let Ok(ip) = hostname.parse::<IpAddr>() {
            return Ok(HostKind::Ip(ip));
        }
        if hostname.len() > 253 {
            return Err(bad("longer than 253 characters"));
        }
        if rustls_pki_types::DnsName::try_from(hostname).is_err() {
            return Err(bad("not a DNS name or IP address (use letters, digits, '-' and '.')"));
        }
        Ok(HostKind::Dns)
    }
}

fn ca_params(now: SystemTime) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, CA_COMMON_NAME);
    dn.push(DnType::OrganizationName, CERT_ORGANIZATION);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    params.use_authority_key_identifier_extension = true;
    params.serial_number = Some(random_serial());
    set_validity(&mut params, now - BACKDATE, now + CA_VALIDITY);
    params
}

fn server_params(host: &HostKind, hostname: &str, now: SystemTime) -> Result<CertificateParams, StateError> {
    let mut params = CertificateParams::default();
    let mut sans: Vec<SanType> = Vec::new();
    let mut push = |san: SanType| {
        if !sans.contains(&san) {
            sans.push(san);
        }
    };
    let dns = |name: &str| -> Result<SanType, StateError> {
        let ia5 = name.try_into().map_err(|e: rcgen::Error| StateError::InvalidHostname {
            hostname: name.to_owned(),
            problem: e.to_string(),
        })?;
        Ok(SanType::DnsName(ia5))
    };
    match host {
        HostKind::Ip(ip) => push(SanType::IpAddress(*ip)),
        HostKind::Dns => push(dns(hostname)?),
    }
    push(dns("localhost")?);
    push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    push(SanType::IpAddress(IpAddr::V6(Ipv6Addr::LOCALHOST)));
    params.subject_alt_names = sans;

    let mut dn = DistinguishedName::new();
    // X.520 limits a common name to 64 characters; clients match host names against the SANs anyway.
    dn.push(DnType::CommonName, if hostname.len() <= 64 { hostname } else { "edgemodule-hub" });
    dn.push(DnType::OrganizationName, CERT_ORGANIZATION);
    params.distinguished_name = dn;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    params.serial_number = Some(random_serial());
    set_validity(&mut params, now - BACKDATE, now + SERVER_VALIDITY);
    Ok(params)
}

/// A random positive 16-byte serial number (so re-issued certificates never share a serial).
fn random_serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    SerialNumber::from_slice(&bytes)
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Sets the validity period (the date type is `time`'s, which is not a dependency of this crate, so it is never named).
fn set_validity(params: &mut CertificateParams, not_before: SystemTime, not_after: SystemTime) {
    params.not_before = rcgen::date_time_ymd(1970, 1, 1) + Duration::from_secs(unix_secs(not_before));
    params.not_after = rcgen::date_time_ymd(1970, 1, 1) + Duration::from_secs(unix_secs(not_after));
}

fn crypto_err(what: &'static str, e: rcgen::Error) -> StateError {
    StateError::Crypto { what, problem: e.to_string() }
}

fn io_err(path: &Path, op: &'static str, source: io::Error) -> StateError {
    StateError::Io { path: path.to_owned(), op, source }
}

/// Module ids as IoT Hub allows them: 1-128 ASCII alphanumerics and `- . + % _ # * ? ! ( ) , = @ $ '`.
fn check_module_id(id: &str) -> Result<(), StateError> {
    let bad = |problem| StateError::InvalidModuleId { id: id.to_owned(), problem };
    if id.is_empty() {
        return Err(bad("must not be empty"));
    }
    if id.len() > 128 {
        return Err(bad("longer than 128 characters"));
    }
    if !id.chars().all(|c| c.is_ascii_alphanumeric() || "-.+%_#*?!(),=@$'".contains(c)) {
        return Err(bad("only ASCII letters, digits and - . + % _ # * ? ! ( ) , = @ $ ' are allowed"));
    }
    Ok(())
}

fn create_state_dir(dir: &Path) -> Result<(), StateError> {
    match fs::metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(StateError::Corrupt { path: dir.to_owned(), problem: "exists but is not a directory".into() }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let mut builder = fs::DirBuilder::new();
            builder.recursive(true);
            #[cfg(unix)]
            std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
            builder.create(dir).map_err(|e| io_err(dir, "create the state directory", e))?;
            set_mode(dir, 0o700)
        }
        Err(e) => Err(io_err(dir, "read the state directory", e)),
    }
}

/// Removes group and other access from the state dir and the key files, with a warning for each
/// one that had it.
fn tighten(dir: &Path) -> Result<(), StateError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let loose = |p: &Path| fs::metadata(p).ok().map(|m| m.permissions().mode() & 0o777).filter(|m| m & 0o077 != 0);
        if let Some(mode) = loose(dir) {
            tracing::warn!(dir = %dir.display(), "the state directory was accessible to others (mode {mode:o}); setting 0700");
            set_mode(dir, 0o700)?;
        }
        for name in [CA_KEY_FILE, SERVER_KEY_FILE, KEYS_FILE] {
            let p = dir.join(name);
            if let Some(mode) = loose(&p) {
                tracing::warn!(file = %p.display(), "a key file was readable by others (mode {mode:o}); setting 0600");
                set_mode(&p, 0o600)?;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) -> Result<(), StateError> {
    use std::os::unix::fs::PermissionsExt as _;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(|e| io_err(path, "set permissions on", e))
}

#[cfg(not(unix))]
fn set_mode(_path: &Path, _mode: u32) -> Result<(), StateError> {
    Ok(())
}

fn read_text(path: &Path) -> Result<String, StateError> {
    fs::read_to_string(path).map_err(|e| io_err(path, "read", e))
}

fn read_identity(path: &Path) -> Result<IdentityFile, StateError> {
    let text = read_text(path)?;
    serde_json::from_str(&text).map_err(|e| StateError::Corrupt { path: path.to_owned(), problem: e.to_string() })
}

/// Reads `keys.json` (absent = no keys). Parse errors report the position only, never the content.
fn read_keys(path: &Path) -> Result<KeysFile, StateError> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(KeysFile::default()),
        Err(e) => return Err(io_err(path, "read", e)),
    };
    serde_json::from_str(&text).map_err(|e| StateError::Corrupt {
        path: path.to_owned(),
        problem: format!(
            "not a valid keys file (expected {{\"modules\": {{\"<moduleId>\": \"<key>\"}}}}); error at line {} column {}",
            e.line(),
            e.column()
        ),
    })
}

/// Loads a PEM private key, or generates one (ECDSA P-256) and writes it with mode 0600.
fn load_or_generate_key(path: &Path, what: &'static str) -> Result<(KeyPair, bool), StateError> {
    if path.exists() {
        let pem = read_text(path)?;
        let key = KeyPair::from_pem(&pem)
            .map_err(|e| StateError::Corrupt { path: path.to_owned(), problem: format!("unusable {what}: {e}") })?;
        Ok((key, false))
    } else {
        let key = KeyPair::generate().map_err(|e| crypto_err(what, e))?;
        write_file_atomic(path, key.serialize_pem().as_bytes(), 0o600)?;
        Ok((key, true))
    }
}

/// Writes a file atomically: a temporary file in the same directory (created with `mode`), fsync, rename.
fn write_file_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<(), StateError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}-{:08x}", std::process::id(), rand::random::<u32>()));
    let result = (|| {
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
        let mut f = options.open(&tmp).map_err(|e| io_err(&tmp, "create", e))?;
        // The umask may have removed bits we want; for key files it can only have made them stricter.
        set_mode(&tmp, mode)?;
        f.write_all(contents).map_err(|e| io_err(&tmp, "write", e))?;
        f.sync_all().map_err(|e| io_err(&tmp, "sync", e))?;
        fs::rename(&tmp, path).map_err(|e| io_err(path, "replace", e))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    } else if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use rustls::client::danger::ServerCertVerifier as _;
    use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

    #[cfg(unix)]
    fn mode_of(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt as _;
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    fn certs(pem: &str) -> Vec<CertificateDer<'static>> {
        rustls_pemfile::certs(&mut pem.as_bytes()).collect::<Result<_, _>>().unwrap()
    }

    fn verify(state: &StateDir, name: &str) -> Result<(), rustls::Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        for c in certs(&state.ca_pem().unwrap()) {
            roots.add(c).unwrap();
        }
        let verifier =
            rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider).build().unwrap();
        let chain = certs(&state.server_cert_chain_pem().unwrap());
        let (leaf, rest) = chain.split_first().unwrap();
        let server_name = ServerName::try_from(name.to_owned()).unwrap();
        verifier.verify_server_cert(leaf, rest, &server_name, &[], UnixTime::now()).map(|_| ())
    }

    #[test]
    fn init_creates_all_files_with_modes() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("state").join("nested");
        let state = StateDir::init(&dir, "localhost").unwrap();
        for f in [IDENTITY_FILE, CA_CERT_FILE, CA_KEY_FILE, SERVER_CERT_FILE, SERVER_KEY_FILE] {
            assert!(dir.join(f).is_file(), "{f} missing");
        }
        state.ensure_module_key("filter").unwrap();
        #[cfg(unix)]
        {
            assert_eq!(mode_of(&dir), 0o700);
            assert_eq!(mode_of(&dir.join(CA_KEY_FILE)), 0o600);
            assert_eq!(mode_of(&dir.join(SERVER_KEY_FILE)), 0o600);
            assert_eq!(mode_of(&dir.join(KEYS_FILE)), 0o600);
        }
        assert_eq!(
            state.identity(),
            &Identity {
                hub_host_name: DEFAULT_HUB_HOST_NAME.into(),
                device_id: DEFAULT_DEVICE_ID.into(),
                gateway_host_name: "localhost".into(),
            }
        );
        assert_eq!(state.path(), dir.as_path());
        assert_eq!(state.db_path(), dir.join("hub.redb"));
        assert_eq!(state.workload_socket_path(), dir.join("workload.sock"));
        assert_eq!(state.control_socket_path(), dir.join("control.sock"));
        assert_eq!(state.upstream_path(), dir.join("upstream.jsonl"));
        // The chain is leaf + CA, and the key is PKCS#8.
        let chain = certs(&state.server_cert_chain_pem().unwrap());
        assert_eq!(chain.len(), 2);
        assert_eq!(chain[1], certs(&state.ca_pem().unwrap())[0]);
        assert!(state.server_key_pem().unwrap().starts_with("-----BEGIN PRIVATE KEY-----"));
        // No temporary files left behind.
        let leftovers: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".tmp-"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[cfg(unix)]
    #[test]
    fn a_pre_existing_state_dir_and_loose_key_files_are_tightened() {
        use std::os::unix::fs::PermissionsExt as _;
        let chmod = |p: &Path, m: u32| fs::set_permissions(p, fs::Permissions::from_mode(m)).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("state");
        // A directory the user made beforehand, with the usual umask: init keeps nothing open.
        fs::create_dir(&dir).unwrap();
        chmod(&dir, 0o755);
        let state = StateDir::init(&dir, "localhost").unwrap();
        state.ensure_module_key("m").unwrap();
        assert_eq!(mode_of(&dir), 0o700);

        // Loosened afterwards (copied, unpacked, edited): init tightens again, and so does open
        // (which `start` uses).
        for open in [false, true] {
            chmod(&dir, 0o775);
            for f in [CA_KEY_FILE, SERVER_KEY_FILE, KEYS_FILE] {
                chmod(&dir.join(f), 0o644);
            }
            if open {
                StateDir::open(&dir).unwrap();
            } else {
                StateDir::init(&dir, "localhost").unwrap();
            }
            assert_eq!(mode_of(&dir), 0o700, "open: {open}");
            for f in [CA_KEY_FILE, SERVER_KEY_FILE, KEYS_FILE] {
                assert_eq!(mode_of(&dir.join(f)), 0o600, "{f}, open: {open}");
            }
            // Public files stay readable.
            assert_eq!(mode_of(&dir.join(CA_CERT_FILE)), 0o644);
        }
        assert!(StateDir::open(&dir).unwrap().module_key("m").unwrap().is_some());
    }

    #[test]
    fn server_cert_validates_with_webpki() {
        let tmp = tempfile::tempdir().unwrap();
        let state = StateDir::init(tmp.path(), "edge-box.example.net").unwrap();
        verify(&state, "edge-box.example.net").unwrap();
        verify(&state, "localhost").unwrap();
        verify(&state, "127.0.0.1").unwrap();
        verify(&state, "::1").unwrap();
        assert!(verify(&state, "other.example.net").is_err());
        assert!(verify(&state, "10.0.0.1").is_err());
    }

    #[test]
    fn ip_hostname_goes_into_an_ip_san() {
        let tmp = tempfile::tempdir().unwrap();
        let state = StateDir::init(tmp.path(), "192.168.7.20").unwrap();
        verify(&state, "192.168.7.20").unwrap();
        verify(&state, "localhost").unwrap();
        assert_eq!(state.identity().gateway_host_name, "192.168.7.20");
    }

    #[test]
    fn invalid_hostname_is_rejected() {
        let tmp = tempfile::tempdir().unwrap();
        for bad in ["", "has space", "bad/name"] {
            let err = StateDir::init(tmp.path(), bad).unwrap_err();
            assert!(matches!(err, StateError::InvalidHostname { .. }), "{bad}: {err}");
        }
    }

    #[test]
    fn init_is_idempotent() {
        let tmp = tempfile::tempdir().unwrap();
        let first = StateDir::init(tmp.path(), "localhost").unwrap();
        let key = first.ensure_module_key("sensor").unwrap();
        let read = |f: &str| fs::read(tmp.path().join(f)).unwrap();
        let before: Vec<_> =
            [IDENTITY_FILE, CA_CERT_FILE, CA_KEY_FILE, SERVER_CERT_FILE, SERVER_KEY_FILE].map(read).into();
        let second = StateDir::init(tmp.path(), "localhost").unwrap();
        let after: Vec<_> =
            [IDENTITY_FILE, CA_CERT_FILE, CA_KEY_FILE, SERVER_CERT_FILE, SERVER_KEY_FILE].map(read).into();
        assert_eq!(before, after);
        assert_eq!(second.module_key("sensor").unwrap(), Some(key));
        assert_eq!(first.identity(), second.identity());
    }

    #[test]
    fn hostname_change_reissues_server_cert_only() {
        let tmp = tempfile::tempdir().unwrap();
        let read = |f: &str| fs::read(tmp.path().join(f)).unwrap();
        let first = StateDir::init(tmp.path(), "localhost").unwrap();
        let key = first.ensure_module_key("sensor").unwrap();
        let (ca, ca_key, server, server_key) =
            (read(CA_CERT_FILE), read(CA_KEY_FILE), read(SERVER_CERT_FILE), read(SERVER_KEY_FILE));
        assert!(verify(&first, "gw.example.org").is_err());

        let second = StateDir::init(tmp.path(), "gw.example.org").unwrap();
        assert_eq!(read(CA_CERT_FILE), ca);
        assert_eq!(read(CA_KEY_FILE), ca_key);
        assert_eq!(read(SERVER_KEY_FILE), server_key);
        assert_ne!(read(SERVER_CERT_FILE), server);
        assert_eq!(second.identity().gateway_host_name, "gw.example.org");
        assert_eq!(second.identity().hub_host_name, first.identity().hub_host_name);
        assert_eq!(second.module_key("sensor").unwrap(), Some(key));
        verify(&second, "gw.example.org").unwrap();
        verify(&second, "localhost").unwrap();

        // And back again: a new certificate with a new serial number, still for the same key.
        let third = StateDir::init(tmp.path(), "localhost").unwrap();
        assert_eq!(third.identity().gateway_host_name, "localhost");
        assert_eq!(read(CA_CERT_FILE), ca);
        assert_ne!(read(SERVER_CERT_FILE), server);
        verify(&third, "localhost").unwrap();
    }

    #[test]
    fn missing_server_cert_is_reissued_and_missing_ca_key_makes_new_ca() {
        let tmp = tempfile::tempdir().unwrap();
        let read = |f: &str| fs::read(tmp.path().join(f)).unwrap();
        StateDir::init(tmp.path(), "localhost").unwrap();
        let ca = read(CA_CERT_FILE);
        fs::remove_file(tmp.path().join(SERVER_CERT_FILE)).unwrap();
        let state = StateDir::init(tmp.path(), "localhost").unwrap();
        assert_eq!(read(CA_CERT_FILE), ca);
        verify(&state, "localhost").unwrap();

        // identity.json lost: the hostname the certificate was issued for is unknown, so it is re-issued.
        fs::remove_file(tmp.path().join(IDENTITY_FILE)).unwrap();
        let state = StateDir::init(tmp.path(), "lost.example.com").unwrap();
        assert_eq!(read(CA_CERT_FILE), ca);
        verify(&state, "lost.example.com").unwrap();

        fs::remove_file(tmp.path().join(CA_KEY_FILE)).unwrap();
        let state = StateDir::init(tmp.path(), "localhost").unwrap();
        assert_ne!(read(CA_CERT_FILE), ca);
        verify(&state, "localhost").unwrap();
    }

    #[test]
    fn open_uninitialised_dir_gives_clear_error() {
        let tmp = tempfile::tempdir().unwrap();
        let err = StateDir::open(tmp.path()).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, StateError::NotInitialised { file: IDENTITY_FILE, .. }), "{msg}");
        assert!(msg.contains(&tmp.path().display().to_string()), "{msg}");
        assert!(msg.contains("identity.json"), "{msg}");
        assert!(
            msg.contains(&format!("run `edgemodule-hub init --state-dir {}` first", tmp.path().display())),
            "{msg}"
        );

        let missing = tmp.path().join("nope");
        let msg = StateDir::open(&missing).unwrap_err().to_string();
        assert!(msg.contains(&missing.display().to_string()) && msg.contains("does not exist"), "{msg}");

        StateDir::init(tmp.path(), "localhost").unwrap();
        fs::remove_file(tmp.path().join(SERVER_KEY_FILE)).unwrap();
        let msg = StateDir::open(tmp.path()).unwrap_err().to_string();
        assert!(msg.contains("server.key is missing"), "{msg}");
    }

    #[test]
    fn corrupt_files_are_reported_without_content() {
        let tmp = tempfile::tempdir().unwrap();
        let state = StateDir::init(tmp.path(), "localhost").unwrap();
        fs::write(tmp.path().join(KEYS_FILE), r#"{"modules": {"m": 12345678}}"#).unwrap();
        let msg = state.module_key("m").unwrap_err().to_string();
        assert!(msg.contains("keys.json") && !msg.contains("12345678"), "{msg}");

        fs::write(tmp.path().join(SERVER_KEY_FILE), "not a key").unwrap();
        let msg = StateDir::open(tmp.path()).unwrap_err().to_string();
        assert!(msg.contains("server.key") && msg.contains("no PEM private key"), "{msg}");
    }

    #[test]
    fn module_keys_persist_across_open() {
        let tmp = tempfile::tempdir().unwrap();
        let state = StateDir::init(tmp.path(), "localhost").unwrap();
        assert_eq!(state.module_key("filter").unwrap(), None);
        assert!(state.module_ids().unwrap().is_empty());
        let k1 = state.ensure_module_key("filter").unwrap();
        let k2 = state.ensure_module_key("sensor").unwrap();
        assert_ne!(k1, k2);
        assert_eq!(base64::engine::general_purpose::STANDARD.decode(&k1).unwrap().len(), 32);
        assert_eq!(state.ensure_module_key("filter").unwrap(), k1);
        drop(state);

        let state = StateDir::open(tmp.path()).unwrap();
        assert_eq!(state.module_key("filter").unwrap(), Some(k1.clone()));
        assert_eq!(state.ensure_module_key("filter").unwrap(), k1);
        assert_eq!(state.module_key("sensor").unwrap(), Some(k2));
        assert_eq!(state.module_ids().unwrap(), vec!["filter".to_owned(), "sensor".to_owned()]);
        assert!(matches!(state.ensure_module_key(""), Err(StateError::InvalidModuleId { .. })));
        assert!(matches!(state.ensure_module_key("a/b"), Err(StateError::InvalidModuleId { .. })));
    }

    #[test]
    fn concurrent_key_generation_is_consistent() {
        let tmp = tempfile::tempdir().unwrap();
        let state = Arc::new(StateDir::init(tmp.path(), "localhost").unwrap());
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let state = Arc::clone(&state);
                std::thread::spawn(move || (state.ensure_module_key(&format!("m{}", i % 4)).unwrap(), i % 4))
            })
            .collect();
        let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        for (key, i) in results {
            assert_eq!(state.module_key(&format!("m{i}")).unwrap(), Some(key));
        }
        assert_eq!(state.module_ids().unwrap().len(), 4);
    }

    #[test]
    fn state_dir_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<StateDir>();
    }
}
