//! Cross-language conformance suite: every scenario in tests/scenarios runs against every
//! language's agent over every transport as its own test, named
//! `scenario::<scenario>::<language>::<transport>`. A language whose toolchain or build is
//! missing, an agent that lacks a feature a scenario requires, or a transport a scenario declares
//! it cannot run on, is reported as ignored with the reason.

mod driver;

use std::time::Duration;

use driver::agent::{prepare, repo_root, Lang, Prepared};
use driver::runner::{run, Outcome, Scenario};
use edgemodule_core::Transport;
use libtest_mimic::{Arguments, Completion, Failed, Trial};

/// The transports every scenario runs over, by the core's names (`Transport::name`). The one
/// place to add a transport: append it here once the hub serves it.
const TRANSPORTS: &[Transport] =
    &[Transport::Mqtt, Transport::MqttWebSocket, Transport::Amqp, Transport::AmqpWebSocket];

fn scenarios() -> Vec<std::path::PathBuf> {
    let dir = repo_root().join("tests/scenarios");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    files
}

fn trial(path: std::path::PathBuf, lang: Lang, transport: Transport) -> Result<Completion, Failed> {
    let scenario = Scenario::load(&path)?;
    if let Some(reason) = scenario.skip_reason(transport) {
        return Ok(Completion::ignored_with(format!("{transport}: {reason}")));
    }
    let (program, args) = match prepare(lang) {
        Prepared::Skip(reason) => return Ok(Completion::ignored_with(format!("{}: {reason}", lang.name()))),
        Prepared::Broken(why) => return Err(why.into()),
        Prepared::Ready { program, args } => (program, args),
    };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let outcome = rt.block_on(run(&scenario, transport, &program, &args));
    rt.shutdown_timeout(Duration::from_secs(5));
    match outcome? {
        Outcome::Passed => Ok(Completion::Completed),
        Outcome::Skipped(reason) => Ok(Completion::ignored_with(format!("{}: {reason}", lang.name()))),
    }
}

fn main() {
    // The hub runs in this process: its shutdown says so when a stopped hub stays referenced
    // (its store stays open and a restart on the same state dir fails).
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("edgemodule_hub::server=warn"))
        .with_writer(std::io::stderr)
        .init();
    let args = Arguments::from_args();
    let mut trials = Vec::new();
    for path in scenarios() {
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        for lang in Lang::ALL {
            for &transport in TRANSPORTS {
                let path = path.clone();
                trials.push(Trial::ignorable_test(
                    format!("scenario::{name}::{}::{transport}", lang.name()),
                    move || trial(path, lang, transport),
                ));
            }
        }
    }
    libtest_mimic::run(&args, trials).exit();
}
