//! The bindings' side of the benchmark: the C API, the Python and Node packages and the official
//! Azure IoT SDKs, each run as a child process (bench/lang/*) against the hub this binary
//! started, one fresh module identity per (implementation, workload, run).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The workloads, in table order.
pub const WORKLOADS: [char; 5] = ['a', 'b', 'c', 'd', 'e'];

/// How long one child process may take.
const CHILD_TIMEOUT: Duration = Duration::from_secs(600);

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub enum Row {
    Rust,
    C,
    PySync,
    PyAsync,
    PyOfficial,
    Node,
    NodeOfficial,
}

impl Row {
    pub const ALL: [Row; 7] =
        [Row::Rust, Row::C, Row::PySync, Row::PyAsync, Row::PyOfficial, Row::Node, Row::NodeOfficial];

    pub fn label(self) -> &'static str {
        match self {
            Row::Rust => "Rust core (`edgemodule-core`)",
            Row::C => "C API (`libedgemodule`)",
            Row::PySync => "Python edgemodule, `ModuleClient` (sync)",
            Row::PyAsync => "Python edgemodule, `AsyncModuleClient`",
            Row::PyOfficial => "official Python azure-iot-device 2.14 (aio)",
            Row::Node => "Node edgemodule",
            Row::NodeOfficial => "official Node azure-iot-device 1.18 + mqtt 1.16",
        }
    }

    /// The short id used in module names.
    pub fn id(self) -> &'static str {
        match self {
            Row::Rust => "rust",
            Row::C => "c",
            Row::PySync => "pysync",
            Row::PyAsync => "pyasync",
            Row::PyOfficial => "pyofficial",
            Row::Node => "node",
            Row::NodeOfficial => "nodeofficial",
        }
    }

    /// The `--languages` name selecting this row.
    pub fn language(self) -> &'static str {
        match self {
            Row::Rust => "rust",
            Row::C => "c",
            Row::PySync | Row::PyAsync => "python",
            Row::Node => "node",
            Row::PyOfficial | Row::NodeOfficial => "official",
        }
    }

    pub fn official(self) -> bool {
        matches!(self, Row::PyOfficial | Row::NodeOfficial)
    }

    /// Workloads measured by a child process (the Rust core's a–d run in this process).
    pub fn child_workloads(self) -> &'static [char] {
        match self {
            Row::Rust => &['e'],
            _ => &WORKLOADS,
        }
    }
}

/// The module id of `row` for `workload` in run `run`: every run gets fresh identities, so no
/// queued message or persistent session (the official SDKs connect with clean session 0)
/// leaks from one run into the next.
pub fn module_id(row: Row, workload: char, run: usize) -> String {
    format!("{}-{workload}-{run}", row.id())
}

/// One cell of the results: the runs' JSON results, or why there are none.
#[derive(Debug, Clone)]
pub enum Cell {
    Runs(Vec<Value>),
    Missing(String),
    Error(String),
}

pub type Results = BTreeMap<(Row, char), Cell>;

pub fn push(results: &mut Results, row: Row, w: char, v: Result<Value, String>) {
    let cell = results.entry((row, w)).or_insert_with(|| Cell::Runs(Vec::new()));
    match (cell, v) {
        (Cell::Runs(runs), Ok(v)) => runs.push(v),
        (cell @ Cell::Runs(_), Err(e)) => *cell = Cell::Error(e),
        _ => {}
    }
}

/// Where things live: the repository (scripts, node/, tests/compat/) and the cargo target dir
/// of this binary (venvs, libedgemodule.so of the same profile).
pub struct Env {
    pub root: PathBuf,
    pub target: PathBuf,
    pub profile_dir: PathBuf,
    pub work: PathBuf,
}

impl Env {
    pub fn new(work: &Path) -> Env {
        let exe = std::env::current_exe().expect("own path");
        let profile_dir = exe.parent().unwrap().to_path_buf();
        let target = profile_dir.parent().unwrap().to_path_buf();
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf();
        Env { root, target, profile_dir, work: work.to_path_buf() }
    }
    fn lang(&self, file: &str) -> PathBuf {
        self.root.join("bench/lang").join(file)
    }
    fn py_venv(&self) -> PathBuf {
        self.target.join("py-venv/bin/python")
    }
    fn compat_venv(&self) -> PathBuf {
        self.target.join("compat-venv/bin/python")
    }
    fn node_dir(&self) -> PathBuf {
        self.root.join("node")
    }
    fn compat_node_modules(&self) -> PathBuf {
        self.root.join("tests/compat/node_modules")
    }
    fn c_exe(&self) -> PathBuf {
        self.work.join("c_bench")
    }
}

fn quiet_ok(cmd: &mut Command) -> Result<(), String> {
    match cmd.stdout(Stdio::null()).stderr(Stdio::piped()).output() {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(String::from_utf8_lossy(&out.stderr).lines().next_back().unwrap_or("").to_string()),
        Err(e) => Err(e.to_string()),
    }
}

/// Checks `row`'s prerequisites (building the C bench on the way); `Err` is the text for the
/// table: what is missing and the command that installs it.
pub fn prerequisites(env: &Env, row: Row) -> Result<(), String> {
    let missing = |what: &str, how: &str| Err(format!("not installed ({what}): `{how}`"));
    match row {
        Row::Rust => Ok(()),
        Row::C => {
            let lib = env.profile_dir.join("libedgemodule.so");
            if !lib.exists() {
                return missing("libedgemodule.so", "cargo build --release -p edgemodule-ffi");
            }
            let out = Command::new("gcc")
                .args(["-std=c11", "-O2", "-pthread", "-Wall", "-Wextra", "-I"])
                .arg(env.root.join("include"))
                .arg(env.lang("c_bench.c"))
                .arg("-o")
                .arg(env.c_exe())
                .arg("-L")
                .arg(&env.profile_dir)
                .arg("-ledgemodule")
                .arg(format!("-Wl,-rpath,{}", env.profile_dir.display()))
                .output();
            match out {
                Ok(o) if o.status.success() => Ok(()),
                Ok(o) => Err(format!("error: compiling c_bench.c failed: {}", String::from_utf8_lossy(&o.stderr).trim())),
                Err(_) => missing("gcc", "apt-get install gcc"),
            }
        }
        Row::PySync | Row::PyAsync => {
            match quiet_ok(Command::new(env.py_venv()).args(["-c", "import edgemodule"])) {
                Ok(()) => Ok(()),
                Err(_) => missing("edgemodule wheel in target/py-venv", "CARGO_PROFILE=release scripts/test-python.sh"),
            }
        }
        Row::PyOfficial => match quiet_ok(Command::new(env.compat_venv()).args(["-c", "import azure.iot.device"])) {
            Ok(()) => Ok(()),
            Err(_) => missing(
                "azure-iot-device in target/compat-venv",
                "python3 -m venv target/compat-venv && target/compat-venv/bin/pip install -r tests/compat/requirements.txt",
            ),
        },
        Row::Node => {
            let script = format!("require({:?})", env.node_dir().display().to_string());
            match quiet_ok(Command::new("node").args(["-e", &script])) {
                Ok(()) => Ok(()),
                Err(_) => missing("the edgemodule addon in node/", "CARGO_PROFILE=release scripts/test-node.sh"),
            }
        }
        Row::NodeOfficial => {
            let ok = quiet_ok(
                Command::new("node")
                    .env("NODE_PATH", env.compat_node_modules())
                    .args(["-e", "require('azure-iot-device'); require('azure-iot-device-mqtt')"]),
            );
            match ok {
                Ok(()) => Ok(()),
                Err(_) => missing("azure-iot-device in tests/compat/node_modules", "(cd tests/compat && npm ci)"),
            }
        }
    }
}

/// What the child for (`row`, `workload`) needs to connect.
pub struct Target<'a> {
    pub cs: &'a str,
    pub ca_file: &'a Path,
    pub port: u16,
    pub n: usize,
}

fn command(env: &Env, row: Row, w: char, t: &Target) -> Command {
    let common = |cmd: &mut Command| {
        cmd.arg("--workload")
            .arg(w.to_string())
            .arg("--cs")
            .arg(t.cs)
            .arg("--ca")
            .arg(t.ca_file)
            .arg("--port")
            .arg(t.port.to_string())
            .arg("--n")
            .arg(t.n.to_string());
    };
    match row {
        Row::Rust => {
            let mut cmd = Command::new(std::env::current_exe().unwrap());
            cmd.arg("--idle-child").arg(t.cs).arg(t.ca_file).arg(t.port.to_string());
            cmd
        }
        Row::C => {
            let mut cmd = Command::new(env.c_exe());
            cmd.arg(w.to_string()).arg(t.cs).arg(t.ca_file).arg(t.port.to_string()).arg(t.n.to_string());
            cmd
        }
        Row::PySync | Row::PyAsync | Row::PyOfficial => {
            let (py, imp, mode) = match row {
                Row::PySync => (env.py_venv(), "edgemodule", "sync"),
                Row::PyAsync => (env.py_venv(), "edgemodule", "async"),
                _ => (env.compat_venv(), "official", "async"),
            };
            let mut cmd = Command::new(py);
            cmd.arg(env.lang("python_bench.py")).args(["--impl", imp, "--mode", mode]);
            common(&mut cmd);
            cmd
        }
        Row::Node | Row::NodeOfficial => {
            let mut cmd = Command::new("node");
            cmd.arg(env.lang("node_bench.js"));
            if row == Row::Node {
                cmd.env("EDGEMODULE_NODE_DIR", env.node_dir()).args(["--impl", "edgemodule"]);
            } else {
                cmd.env("NODE_PATH", env.compat_node_modules()).args(["--impl", "official"]);
            }
            common(&mut cmd);
            cmd
        }
    }
}

/// Runs one child and returns its JSON line, or a one-line error.
pub fn run_child(env: &Env, row: Row, w: char, t: &Target) -> Result<Value, String> {
    let mut cmd = command(env, row, w, t);
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawn failed: {e}"))?;
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + CHILD_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let (out, err) = (out.join().unwrap_or_default(), err.join().unwrap_or_default());
    let tail = || err.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").chars().take(200).collect::<String>();
    match status {
        None => Err(format!("timed out after {} s", CHILD_TIMEOUT.as_secs())),
        Some(s) if !s.success() => Err(format!("exit {s}: {}", tail())),
        Some(_) => out
            .lines()
            .rev()
            .find_map(|l| serde_json::from_str::<Value>(l).ok().filter(Value::is_object))
            .ok_or_else(|| format!("no JSON result: {}", tail())),
    }
}
