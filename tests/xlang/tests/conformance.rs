//! Cross-language conformance suite: every scenario in tests/scenarios runs against every
//! language's agent as its own test, named `scenario::<scenario>::<language>`. A language whose
//! toolchain or build is missing, or whose agent lacks a feature a scenario requires, is
//! reported as ignored with the reason.

mod driver;

use std::time::Duration;

use driver::agent::{prepare, repo_root, Lang, Prepared};
use driver::runner::{run, Outcome, Scenario};
use libtest_mimic::{Arguments, Completion, Failed, Trial};

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

fn trial(path: std::path::PathBuf, lang: Lang) -> Result<Completion, Failed> {
    let scenario = Scenario::load(&path)?;
    let (program, args) = match prepare(lang) {
        Prepared::Skip(reason) => return Ok(Completion::ignored_with(format!("{}: {reason}", lang.name()))),
        Prepared::Broken(why) => return Err(why.into()),
        Prepared::Ready { program, args } => (program, args),
    };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let outcome = rt.block_on(run(&scenario, &program, &args));
    rt.shutdown_timeout(Duration::from_secs(5));
    match outcome? {
        Outcome::Passed => Ok(Completion::Completed),
        Outcome::Skipped(reason) => Ok(Completion::ignored_with(format!("{}: {reason}", lang.name()))),
    }
}

fn main() {
    let args = Arguments::from_args();
    let mut trials = Vec::new();
    for path in scenarios() {
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        for lang in Lang::ALL {
            let path = path.clone();
            trials.push(Trial::ignorable_test(format!("scenario::{name}::{}", lang.name()), move || trial(path, lang)));
        }
    }
    libtest_mimic::run(&args, trials).exit();
}
