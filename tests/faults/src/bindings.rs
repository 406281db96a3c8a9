//! The bindings under test, the programs that drive them (tests/faults/agents/*), and how to
//! build, find and run those programs.
//!
//! Every agent reads its configuration from `FAULT_*` environment variables and writes one event
//! per line on stdout (see tests/faults/README.md for the protocol).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Binding {
    Rust,
    C,
    Python,
    Node,
}

impl Binding {
    pub const ALL: [Binding; 4] = [Binding::Rust, Binding::C, Binding::Python, Binding::Node];

    pub fn name(self) -> &'static str {
        match self {
            Binding::Rust => "rust",
            Binding::C => "c",
            Binding::Python => "python",
            Binding::Node => "node",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Binding::Rust => "Rust core",
            Binding::C => "C (libedgemodule)",
            Binding::Python => "Python",
            Binding::Node => "Node",
        }
    }

    pub fn parse(s: &str) -> Option<Binding> {
        Binding::ALL.into_iter().find(|b| b.name() == s)
    }
}

/// The transport under test, by the core's names (every binding accepts them as a string
/// option: Rust `with_transport`, C `edge_options_set_transport`, Python `transport=`, Node
/// `{transport}`). The proxy sits in front of the hub port the transport uses.
///
/// Hook for more transports: add a variant with the core's name and its hub port; the agents
/// pass `FAULT_TRANSPORT` through to their binding unchanged. An agent that cannot run a
/// transport prints `skip <reason>`, which is reported as skipped, not passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// MQTT over TLS on the MQTT port.
    Mqtt,
    /// MQTT over WebSocket over TLS on the HTTPS port.
    MqttWs,
    /// AMQP 1.0 over TLS on the AMQPS port.
    Amqp,
    /// AMQP 1.0 over WebSocket over TLS on the HTTPS port.
    AmqpWs,
}

impl Transport {
    pub const ALL: [Transport; 4] = [Transport::Mqtt, Transport::MqttWs, Transport::Amqp, Transport::AmqpWs];

    pub fn name(self) -> &'static str {
        match self {
            Transport::Mqtt => "mqtt",
            Transport::MqttWs => "mqtt_ws",
            Transport::Amqp => "amqp",
            Transport::AmqpWs => "amqp_ws",
        }
    }

    pub fn parse(s: &str) -> Option<Transport> {
        Transport::ALL.into_iter().find(|t| t.name() == s)
    }

    /// The hub port this transport's clients connect to.
    pub fn hub_port(self, hub: &crate::hub::HubProcess) -> Result<u16, String> {
        match self {
            Transport::Mqtt => Ok(hub.mqtt_port),
            Transport::MqttWs | Transport::AmqpWs => Ok(hub.https_port),
            Transport::Amqp => hub.amqp_port.ok_or_else(|| "skip: this hub build serves no AMQP".to_string()),
        }
    }

    /// AMQP renews a token on the open connection (a new CBS put-token); MQTT reconnects.
    pub fn renews_in_place(self) -> bool {
        matches!(self, Transport::Amqp | Transport::AmqpWs)
    }

    /// Whether the transport carries user topics (publish/subscribe); AMQP does not.
    pub fn has_user_topics(self) -> bool {
        matches!(self, Transport::Mqtt | Transport::MqttWs)
    }

    /// The hub ports as the agents and the receiver should use them: the transport's port
    /// replaced by the proxy's. (mqtt, https, amqp)
    pub fn ports(self, hub: &crate::hub::HubProcess, proxy: u16) -> (u16, u16, u16) {
        let (mut mqtt, mut https, mut amqp) = (hub.mqtt_port, hub.https_port, hub.amqp_port.unwrap_or(5671));
        match self {
            Transport::Mqtt => mqtt = proxy,
            Transport::MqttWs | Transport::AmqpWs => https = proxy,
            Transport::Amqp => amqp = proxy,
        }
        (mqtt, https, amqp)
    }
}

/// Where things are: the repository and this executable's cargo profile directory.
#[derive(Debug, Clone)]
pub struct Env {
    pub root: PathBuf,
    /// target/<profile>
    pub profile_dir: PathBuf,
    /// The cargo profile name (`dev` for target/debug).
    pub profile: String,
}

impl Env {
    pub fn detect() -> Env {
        let exe = std::env::current_exe().expect("own path");
        let mut dir = exe.parent().expect("executable directory").to_path_buf();
        if dir.file_name().is_some_and(|n| n == "deps") {
            dir.pop(); // a test executable lives in target/<profile>/deps
        }
        let profile = match dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") => "dev".to_string(),
            Some(p) => p.to_string(),
            None => "dev".to_string(),
        };
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("repository root");
        Env { root, profile_dir: dir, profile }
    }

    fn target_dir(&self) -> &Path {
        self.profile_dir.parent().expect("target dir")
    }

    /// Builds with cargo for this profile, unless FAULTS_NO_BUILD is set (then the artifacts
    /// already in target/<profile> are used as they are).
    fn cargo_build(&self, args: &[&str]) -> Result<(), String> {
        if std::env::var_os("FAULTS_NO_BUILD").is_some() {
            return Ok(());
        }
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let out = std::process::Command::new(cargo)
            .args(["build", "--quiet", "--profile", &self.profile])
            .args(args)
            .arg("--manifest-path")
            .arg(self.root.join("Cargo.toml"))
            .arg("--target-dir")
            .arg(self.target_dir())
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("running cargo: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!("cargo build {} failed:\n{}", args.join(" "), String::from_utf8_lossy(&out.stderr)))
        }
    }

    /// The `edgemodule-hub` binary of this profile, built if needed (once per process).
    pub fn hub_exe(&self) -> Result<PathBuf, String> {
        static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
        BUILT
            .get_or_init(|| {
                self.cargo_build(&["-p", "edgemodule-hub", "--bin", "edgemodule-hub"])?;
                Ok(self.profile_dir.join("edgemodule-hub"))
            })
            .clone()
    }

    pub fn agents_dir(&self) -> PathBuf {
        self.root.join("tests/faults/agents")
    }
}

/// How to run one binding's agent.
#[derive(Debug, Clone)]
pub struct Program {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
}

#[derive(Debug, Clone)]
pub enum Prepared {
    Ready(Program),
    /// Not available on this machine (toolchain or package not built).
    Skip(String),
    /// Should work but does not (a build failed).
    Broken(String),
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|d| d.join(program)).find(|p| p.is_file()))
}

fn quiet_ok(cmd: &mut std::process::Command) -> Result<(), String> {
    match cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped()).output() {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(String::from_utf8_lossy(&out.stderr).lines().next_back().unwrap_or("").to_string()),
        Err(e) => Err(e.to_string()),
    }
}

/// Prepares (builds, checks) a binding's agent once per process.
pub fn prepare(env: &Env, binding: Binding) -> Prepared {
    static CACHE: OnceLock<Mutex<HashMap<Binding, Prepared>>> = OnceLock::new();
    let mut cache = CACHE.get_or_init(Default::default).lock().unwrap();
    cache.entry(binding).or_insert_with(|| prepare_uncached(env, binding)).clone()
}

fn prepare_uncached(env: &Env, binding: Binding) -> Prepared {
    let agents = env.agents_dir();
    match binding {
        // The Rust agent is this very executable, re-run with `__agent-rust` (see agent_rust.rs).
        Binding::Rust => Prepared::Ready(Program {
            program: std::env::current_exe().expect("own path"),
            args: vec![crate::agent_rust::ARG.into()],
            env: vec![],
        }),
        Binding::C => {
            if which("gcc").is_none() {
                return Prepared::Skip("gcc is not installed".into());
            }
            if let Err(e) = env.cargo_build(&["-p", "edgemodule-ffi", "--lib"]) {
                return Prepared::Broken(e);
            }
            let exe = env.profile_dir.join("fault-agent-c");
            // The AMQPS port option is newer than the transport option; without it the agent
            // skips the `amqp` transport instead of connecting to 5671.
            let header = std::fs::read_to_string(env.root.join("include/edgemodule.h")).unwrap_or_default();
            let amqp_port = header.contains("edge_options_set_amqp_port(");
            let out = std::process::Command::new("gcc")
                .args(["-std=c11", "-D_POSIX_C_SOURCE=200809L", "-Wall", "-Wextra", "-Werror", "-O1", "-g", "-pthread"])
                .args(amqp_port.then_some("-DFAULT_HAVE_AMQP_PORT"))
                .arg("-I")
                .arg(env.root.join("include"))
                .arg(agents.join("agent.c"))
                .arg("-o")
                .arg(&exe)
                .arg("-L")
                .arg(&env.profile_dir)
                .arg("-ledgemodule")
                .arg(format!("-Wl,-rpath,{}", env.profile_dir.display()))
                .output();
            match out {
                Ok(o) if o.status.success() => {
                    // FAULTS_C_WRAPPER="valgrind -q" (for instance) runs the C agent under a tool.
                    match std::env::var("FAULTS_C_WRAPPER").ok().filter(|w| !w.trim().is_empty()) {
                        Some(w) => {
                            let mut words = w.split_whitespace().map(String::from);
                            let program = words.next().expect("non-empty wrapper").into();
                            let mut args: Vec<String> = words.collect();
                            args.push(exe.display().to_string());
                            Prepared::Ready(Program { program, args, env: vec![] })
                        }
                        None => Prepared::Ready(Program { program: exe, args: vec![], env: vec![] }),
                    }
                }
                Ok(o) => Prepared::Broken(format!(
                    "compiling agents/agent.c failed:\n{}",
                    String::from_utf8_lossy(&o.stderr)
                )),
                Err(e) => Prepared::Broken(format!("running gcc: {e}")),
            }
        }
        Binding::Python => {
            let python = env.root.join("target/py-venv/bin/python");
            if !python.exists() {
                return Prepared::Skip("no target/py-venv (run scripts/test-python.sh first)".into());
            }
            if let Err(e) = quiet_ok(std::process::Command::new(&python).args(["-c", "import edgemodule"])) {
                return Prepared::Skip(format!("`import edgemodule` fails in target/py-venv: {e}"));
            }
            Prepared::Ready(Program {
                program: python,
                args: vec![agents.join("agent.py").display().to_string()],
                env: vec![("PYTHONUNBUFFERED".into(), "1".into())],
            })
        }
        Binding::Node => {
            let Some(node) = which("node") else { return Prepared::Skip("node is not installed".into()) };
            let dir = env.root.join("node");
            let script = format!("require({:?})", dir.display().to_string());
            if let Err(e) = quiet_ok(std::process::Command::new(&node).args(["-e", &script])) {
                return Prepared::Skip(format!("the Node addon does not load (run scripts/test-node.sh first): {e}"));
            }
            Prepared::Ready(Program {
                program: node,
                args: vec![agents.join("agent.mjs").display().to_string()],
                env: vec![("EDGEMODULE_NODE_DIR".into(), dir.display().to_string())],
            })
        }
    }
}

/// A running agent: its stdout lines arrive on `lines`; stderr is kept for failure messages.
pub struct Agent {
    child: Child,
    stdin: Option<ChildStdin>,
    pub lines: mpsc::UnboundedReceiver<String>,
    stderr: Arc<Mutex<String>>,
}

impl Agent {
    pub fn spawn(program: &Program, vars: &[(&str, String)]) -> Result<Agent, String> {
        let mut child = Command::new(&program.program)
            .args(&program.args)
            .envs(program.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .envs(vars.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", program.program.display()))?;
        let (tx, lines) = mpsc::unbounded_channel();
        let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
        tokio::spawn(async move {
            while let Ok(Some(line)) = out.next_line().await {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let (sink, mut err) = (stderr.clone(), child.stderr.take().unwrap());
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            while let Ok(n @ 1..) = err.read(&mut buf).await {
                let mut s = sink.lock().unwrap();
                s.push_str(&String::from_utf8_lossy(&buf[..n]));
                if s.len() > 64 * 1024 {
                    let cut = s.len() - 32 * 1024;
                    let cut = (cut..s.len()).find(|&i| s.is_char_boundary(i)).unwrap_or(0);
                    s.drain(..cut);
                }
            }
        });
        let stdin = child.stdin.take();
        Ok(Agent { child, stdin, lines, stderr })
    }

    /// Writes one command line to the agent.
    pub async fn tell(&mut self, line: &str) -> Result<(), String> {
        let stdin = self.stdin.as_mut().ok_or("the agent's stdin is closed")?;
        stdin.write_all(format!("{line}\n").as_bytes()).await.map_err(|e| format!("writing to the agent: {e}"))?;
        stdin.flush().await.map_err(|e| format!("writing to the agent: {e}"))
    }

    /// The next stdout line, or an error when the agent exited or `limit` passed.
    pub async fn next_line(&mut self, limit: Duration) -> Result<String, String> {
        match tokio::time::timeout(limit, self.lines.recv()).await {
            Ok(Some(line)) => Ok(line),
            Ok(None) => Err(format!("the agent exited early; stderr:\n{}", self.stderr_tail())),
            Err(_) => Err(format!("no line from the agent within {limit:?}; stderr:\n{}", self.stderr_tail())),
        }
    }

    /// Waits for the agent to exit (closing its stdin first); kills it after `limit`.
    pub async fn finish(&mut self, limit: Duration) -> Result<(), String> {
        self.stdin.take();
        match tokio::time::timeout(limit, self.child.wait()).await {
            Ok(Ok(s)) if s.success() => Ok(()),
            Ok(Ok(s)) => Err(format!("the agent exited with {s}; stderr:\n{}", self.stderr_tail())),
            Ok(Err(e)) => Err(format!("waiting for the agent: {e}")),
            Err(_) => {
                let _ = self.child.kill().await;
                Err(format!("the agent did not exit within {limit:?}; stderr:\n{}", self.stderr_tail()))
            }
        }
    }

    pub fn stderr_tail(&self) -> String {
        let s = self.stderr.lock().unwrap();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(25)..].join("\n")
    }
}
