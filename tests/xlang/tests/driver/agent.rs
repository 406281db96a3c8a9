//! Finding, building and talking to the per-language agents.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;

use super::proto::{enc, parse_fields, Fields};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Rust,
    C,
    Python,
    Node,
}

impl Lang {
    pub const ALL: [Lang; 4] = [Lang::Rust, Lang::C, Lang::Python, Lang::Node];

    pub fn name(self) -> &'static str {
        match self {
            Lang::Rust => "rust",
            Lang::C => "c",
            Lang::Python => "python",
            Lang::Node => "node",
        }
    }
}

/// How to start one language's agent, or why it cannot run here.
#[derive(Debug, Clone)]
pub enum Prepared {
    Ready {
        program: PathBuf,
        args: Vec<String>,
    },
    /// Not available on this machine (reported as an ignored test with this reason).
    Skip(String),
    /// Should be available but could not be built (reported as a failure).
    Broken(String),
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("repository root")
}

/// target/<profile>: the parent of this test executable's deps/ directory.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent().and_then(Path::parent).expect("target/<profile>").to_path_buf()
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|d| d.join(program)).find(|p| p.is_file()))
}

pub fn prepare(lang: Lang) -> Prepared {
    static CACHE: OnceLock<Mutex<HashMap<&'static str, Prepared>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    // Hold the lock while preparing: the C build runs once, and the other trials wait for it.
    let mut cache = cache.lock().unwrap();
    cache.entry(lang.name()).or_insert_with(|| prepare_uncached(lang)).clone()
}

fn prepare_uncached(lang: Lang) -> Prepared {
    let root = repo_root();
    let agents = root.join("tests/agents");
    match lang {
        Lang::Rust => Prepared::Ready { program: env!("CARGO_BIN_EXE_xlang-agent-rust").into(), args: vec![] },
        Lang::C => prepare_c(&root),
        Lang::Python => {
            let python = root.join("target/py-venv/bin/python");
            if !python.exists() {
                return Prepared::Skip("no target/py-venv (run scripts/test-python.sh first)".into());
            }
            Prepared::Ready { program: python, args: vec![agents.join("python/agent.py").display().to_string()] }
        }
        Lang::Node => {
            let Some(node) = which("node") else { return Prepared::Skip("node is not installed".into()) };
            let built = std::fs::read_dir(root.join("node"))
                .map(|d| d.flatten().any(|e| e.file_name().to_string_lossy().ends_with(".node")))
                .unwrap_or(false);
            if !built {
                return Prepared::Skip("the Node addon is not built (run scripts/test-node.sh first)".into());
            }
            Prepared::Ready { program: node, args: vec![agents.join("node/agent.mjs").display().to_string()] }
        }
    }
}

/// Builds libedgemodule for this test's profile (as ffi-c/tests/c_api.rs does) and compiles the
/// C agent against it with gcc.
fn prepare_c(root: &Path) -> Prepared {
    if which("gcc").is_none() {
        return Prepared::Skip("gcc is not installed".into());
    }
    let dir = profile_dir();
    let target = dir.parent().expect("target dir");
    let profile = match dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => "dev".to_string(),
        Some(other) => other.to_string(),
        None => return Prepared::Broken("cannot tell the cargo profile".into()),
    };
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = std::process::Command::new(cargo)
        .args(["build", "--quiet", "-p", "edgemodule-ffi", "--lib", "--profile", &profile])
        .arg("--manifest-path")
        .arg(root.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(target)
        .status();
    if !status.is_ok_and(|s| s.success()) {
        return Prepared::Broken("building libedgemodule (cargo build -p edgemodule-ffi) failed".into());
    }
    let exe = dir.join("xlang-agent-c");
    let out = std::process::Command::new("gcc")
        .args(["-std=c11", "-D_POSIX_C_SOURCE=200809L", "-Wall", "-Wextra", "-Werror", "-g", "-pthread"])
        .arg("-I")
        .arg(root.join("include"))
        .arg(root.join("tests/agents/c/agent.c"))
        .arg("-o")
        .arg(&exe)
        .arg("-L")
        .arg(&dir)
        .arg("-ledgemodule")
        .arg(format!("-Wl,-rpath,{}", dir.display()))
        .output();
    match out {
        Ok(o) if o.status.success() => Prepared::Ready { program: exe, args: vec![] },
        Ok(o) => Prepared::Broken(format!("compiling the C agent failed:\n{}", String::from_utf8_lossy(&o.stderr))),
        Err(e) => Prepared::Broken(format!("running gcc: {e}")),
    }
}

/// One line from an agent.
#[derive(Debug, Clone)]
pub enum Reply {
    Ok(Fields),
    Err { code: String, message: String },
}

#[derive(Debug, Clone)]
pub struct Event {
    pub kind: String,
    pub fields: Fields,
}

/// A running agent process.
pub struct Agent {
    child: Child,
    stdin: ChildStdin,
    replies: mpsc::UnboundedReceiver<Reply>,
    pub events: mpsc::UnboundedReceiver<Event>,
    pub features: Vec<String>,
    pub transcript: Arc<Mutex<Vec<String>>>,
    pub stderr: Arc<Mutex<String>>,
    /// Replies received for commands sent earlier than the one being awaited.
    sent: u64,
    received: u64,
    early: BTreeMap<u64, Reply>,
}

pub enum Started {
    Agent(Box<Agent>),
    Skip(String),
}

impl Agent {
    pub async fn start(program: &Path, args: &[String], env: &BTreeMap<String, String>) -> Result<Started, String> {
        let mut child = Command::new(program)
            .args(args)
            .envs(env)
            .env("PYTHONUNBUFFERED", "1")
            .current_dir(repo_root())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", program.display()))?;
        let stdin = child.stdin.take().unwrap();
        let transcript = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let (reply_tx, replies) = mpsc::unbounded_channel();
        let (event_tx, events) = mpsc::unbounded_channel();
        let (hello_tx, mut hello_rx) = mpsc::unbounded_channel::<String>();
        let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
        let log = transcript.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = out.next_line().await {
                log.lock().unwrap().push(format!("<< {}", shorten(&line)));
                let (head, rest) = line.split_once(' ').unwrap_or((line.as_str(), ""));
                match head {
                    "ok" => {
                        let _ = reply_tx.send(Reply::Ok(parse_fields(rest)));
                    }
                    "err" => {
                        let (code, message) = rest.split_once(' ').unwrap_or((rest, ""));
                        let _ = reply_tx.send(Reply::Err { code: code.into(), message: message.into() });
                    }
                    "event" => {
                        let (kind, rest) = rest.split_once(' ').unwrap_or((rest, ""));
                        let _ = event_tx.send(Event { kind: kind.into(), fields: parse_fields(rest) });
                    }
                    "hello" | "skip" => {
                        let _ = hello_tx.send(line.clone());
                    }
                    _ => {}
                }
            }
        });
        let mut err = child.stderr.take().unwrap();
        let err_buf = stderr.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                let mut s = err_buf.lock().unwrap();
                s.push_str(&String::from_utf8_lossy(&buf[..n]));
                if s.len() > 64 * 1024 {
                    let cut = s.len() - 32 * 1024;
                    let cut = (cut..s.len()).find(|i| s.is_char_boundary(*i)).unwrap_or(cut);
                    s.drain(..cut);
                }
            }
        });
        let hello = match tokio::time::timeout(Duration::from_secs(30), hello_rx.recv()).await {
            Ok(Some(l)) => l,
            _ => {
                let _ = child.start_kill();
                return Err(format!(
                    "the agent did not say hello within 30 s; stderr:\n{}",
                    stderr.lock().unwrap().clone()
                ));
            }
        };
        if let Some(reason) = hello.strip_prefix("skip ") {
            let _ = child.start_kill();
            return Ok(Started::Skip(reason.to_string()));
        }
        let fields = parse_fields(hello.strip_prefix("hello ").unwrap_or(""));
        let features = fields.get("features").map(|f| f.split(',').map(str::to_string).collect()).unwrap_or_default();
        Ok(Started::Agent(Box::new(Agent {
            child,
            stdin,
            replies,
            events,
            features,
            transcript,
            stderr,
            sent: 0,
            received: 0,
            early: BTreeMap::new(),
        })))
    }

    /// Sends a command; returns its sequence number for `reply`.
    pub async fn send(&mut self, verb: &str, args: &[(String, String)]) -> Result<u64, String> {
        let mut line = verb.to_string();
        for (k, v) in args {
            let key: Vec<String> = k.split('.').map(enc).collect();
            line.push_str(&format!(" {}={}", key.join("."), enc(v)));
        }
        self.transcript.lock().unwrap().push(format!(">> {}", shorten(&line)));
        line.push('\n');
        self.stdin.write_all(line.as_bytes()).await.map_err(|e| format!("writing to the agent: {e}"))?;
        self.stdin.flush().await.map_err(|e| format!("writing to the agent: {e}"))?;
        self.sent += 1;
        Ok(self.sent)
    }

    /// The reply to command `seq` (replies arrive in command order).
    pub async fn reply(&mut self, seq: u64, timeout: Duration) -> Result<Reply, String> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(r) = self.early.remove(&seq) {
                return Ok(r);
            }
            match tokio::time::timeout_at(deadline, self.replies.recv()).await {
                Ok(Some(r)) => {
                    self.received += 1;
                    self.early.insert(self.received, r);
                }
                Ok(None) => return Err("the agent exited".into()),
                Err(_) => return Err(format!("no reply within {} ms", timeout.as_millis())),
            }
        }
    }

    /// Asks the agent to close its client and exit; an agent still running 10 s later (a
    /// binding that keeps the process alive after close) is killed and reported.
    pub async fn quit(mut self) -> Result<(), String> {
        let _ = self.stdin.write_all(b"quit\n").await;
        let _ = self.stdin.flush().await;
        match tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await {
            Ok(Ok(status)) if status.success() => Ok(()),
            Ok(Ok(status)) => Err(format!("the agent exited with {status}\n{}", self.diagnostics())),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => {
                let _ = self.child.start_kill();
                let _ = self.child.wait().await;
                Err(format!("the agent did not exit within 10 s of 'quit'\n{}", self.diagnostics()))
            }
        }
    }

    pub fn diagnostics(&self) -> String {
        let t = self.transcript.lock().unwrap();
        let start = t.len().saturating_sub(40);
        let err = self.stderr.lock().unwrap();
        let tail: String = {
            let cut = err.len().saturating_sub(4000);
            let cut = (cut..=err.len()).find(|i| err.is_char_boundary(*i)).unwrap_or(0);
            err[cut..].to_string()
        };
        format!(
            "--- agent transcript (last {} lines) ---\n{}\n--- agent stderr ---\n{}",
            t.len() - start,
            t[start..].join("\n"),
            tail
        )
    }
}

fn shorten(line: &str) -> String {
    if line.len() <= 400 {
        return line.to_string();
    }
    let cut = (0..=400).rev().find(|i| line.is_char_boundary(*i)).unwrap_or(0);
    format!("{}… ({} bytes)", &line[..cut], line.len())
}
