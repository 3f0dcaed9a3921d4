//! Running the example binaries the way a user would, for the example tests
//! (`train_example.rs`, `compare_example.rs`).
//!
//! `cargo test` builds the examples into `target/<profile>/examples/` with the same
//! features as the tests, so the binaries are run directly (no nested cargo). A filtered
//! run (`cargo test --test train_example`) does not build examples; the tests then refuse
//! to run a missing or stale binary and say how to build it.

#![allow(dead_code)] // each test file uses part of it

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::SystemTime;

use serde_json::Value;

/// The precision environment variable the training example reads.
pub const ENV: &str = "BURN_PRECISION";

/// `target/<profile>/examples/<name>`, checked to be newer than every source file it was
/// built from (cargo lists them in `<name>.d` next to it).
pub fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    // target/<profile>/deps/train_example-<hash>
    let profile_dir = exe.parent().and_then(Path::parent).expect("target/<profile>");
    let path = profile_dir.join("examples").join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    let how = "`cargo test` builds the examples only when no target filter is given: run \
               `cargo build --release --example train --example infer` (same features) first, \
               or a plain `cargo test --release -p burn-mixed`";
    let built = modified(&path).unwrap_or_else(|| panic!("{} does not exist; {how}", path.display()));
    let dep_info = std::fs::read_to_string(profile_dir.join("examples").join(format!("{name}.d"))).unwrap_or_default();
    for source in dep_sources(&dep_info) {
        let changed = modified(&source).is_none_or(|m| m > built);
        assert!(!changed, "{} is older than {} (or that file is gone); {how}", path.display(), source.display());
    }
    path
}

pub fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The prerequisites of a make-style dep-info file (`target: a.rs b.rs`, spaces escaped).
pub fn dep_sources(dep_info: &str) -> Vec<PathBuf> {
    let Some((_, sources)) = dep_info.lines().next().and_then(|l| l.split_once(": ")) else {
        return Vec::new();
    };
    let sources = sources.replace("\\ ", "\0");
    sources.split_whitespace().map(|s| PathBuf::from(s.replace('\0', " "))).collect()
}

/// A fresh artifacts folder, unique to this test process and `name`.
pub fn artifacts(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("burn-mixed-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

pub struct Run {
    pub output: Output,
}

impl Run {
    pub fn code(&self) -> Option<i32> {
        self.output.status.code()
    }

    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }

    pub fn describe(&self) -> String {
        format!("exit {:?}\n--- stdout\n{}--- stderr\n{}", self.code(), self.stdout(), self.stderr())
    }

    /// The JSON object on the last line of stdout, after checking the run succeeded.
    pub fn json(&self) -> Value {
        assert_eq!(self.code(), Some(0), "{}", self.describe());
        let stdout = self.stdout();
        let last = stdout.lines().last().unwrap_or_else(|| panic!("no stdout\n{}", self.describe()));
        let value: Value = serde_json::from_str(last).unwrap_or_else(|e| panic!("last line is not JSON ({e})\n{}", self.describe()));
        assert!(value.is_object(), "{}", self.describe());
        value
    }
}

/// Runs an example with `args`; `env` sets BURN_PRECISION (unset otherwise).
pub fn run(name: &str, args: &[&str], env: Option<&str>) -> Run {
    let vars: Vec<(&str, &str)> = env.map(|value| (ENV, value)).into_iter().collect();
    run_with(name, args, &vars)
}

/// Runs an example with `args` and the environment variables `vars` (BURN_PRECISION and
/// RUST_LOG unset unless given). stdout and stderr are pipes, as in CI.
pub fn run_with(name: &str, args: &[&str], vars: &[(&str, &str)]) -> Run {
    let mut command = Command::new(example(name));
    command.args(args).env_remove(ENV).env_remove("RUST_LOG");
    command.envs(vars.iter().copied());
    Run { output: command.output().expect("the example starts") }
}

pub fn number(json: &Value, key: &str) -> f64 {
    json[key].as_f64().unwrap_or_else(|| panic!("{key} is not a number in {json}"))
}
