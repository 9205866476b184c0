//! Watching `--policy-dir`: a valid change is applied and pushed to every watching proxy
//! (within two poll intervals plus the push), a broken one is refused with every problem
//! in one structured `policy_rejected` event, and the last good set stays in force.
//!
//! A change is read only once the directory has been quiet for one poll: a file caught
//! half-written (truncated, say, by `echo > file`) could otherwise be a valid but
//! different policy — an empty file is valid and removes a service's policy.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use palisade_api::policy::{Diagnostics, KnownRules};
use tokio::sync::watch as signal;

use super::dir::{self, Listing};
use super::{ActivePolicy, PolicyBundle};
use crate::metrics::ControlPlaneMetrics;
use crate::registry::Registry;

/// How often the directory is looked at.
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);
/// Every this many polls the contents are read even when sizes and mtimes did not change:
/// a same-size rewrite within the file system's mtime granularity is still noticed.
const FULL_READ_EVERY: u32 = 10;

/// The directory's last seen state.
#[derive(Debug)]
pub struct DirWatcher {
    dir: PathBuf,
    known: Arc<KnownRules>,
    listing: Listing,
    digest: String,
    polls_since_read: u32,
    /// The listing changed at the last poll; read once it holds still.
    settling: bool,
}

impl DirWatcher {
    /// Loads `dir` for the start; a broken directory is an error with every problem.
    pub fn load(dir: &Path, known: Arc<KnownRules>) -> Result<(PolicyBundle, Self), Diagnostics> {
        let listing = dir::list(dir);
        let contents = dir::read(&listing);
        let bundle = PolicyBundle::from_contents(&contents, &known)?;
        let watcher = DirWatcher {
            dir: dir.to_owned(),
            known,
            listing,
            digest: contents.digest,
            polls_since_read: 0,
            settling: false,
        };
        Ok((bundle, watcher))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Looks once: `None` when nothing changed since the last look, else the new set or
    /// why it is refused. A refused change is reported once, not on every poll.
    pub fn poll(&mut self) -> Option<Result<PolicyBundle, Diagnostics>> {
        let listing = dir::list(&self.dir);
        self.polls_since_read += 1;
        if listing != self.listing {
            self.listing = listing;
            self.settling = true;
            return None;
        }
        if !self.settling && self.polls_since_read < FULL_READ_EVERY {
            return None;
        }
        let contents = dir::read(&listing);
        if dir::list(&self.dir) != listing {
            // Written to while we read: wait for it to hold still.
            self.settling = true;
            return None;
        }
        self.settling = false;
        self.polls_since_read = 0;
        if contents.digest == self.digest {
            return None;
        }
        self.digest.clone_from(&contents.digest);
        Some(PolicyBundle::from_contents(&contents, &self.known))
    }
}

/// Polls until `shutdown`, applying valid changes to `registry`.
pub async fn run(
    mut watcher: DirWatcher,
    registry: Arc<Registry>,
    metrics: Arc<ControlPlaneMetrics>,
    mut shutdown: signal::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(POLL_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            _ = tick.tick() => {}
        }
        let polled = tokio::task::spawn_blocking(move || {
            let outcome = watcher.poll();
            (watcher, outcome)
        })
        .await;
        let Ok((back, outcome)) = polled else {
            tracing::error!(event = "policy_watch_failed", "the policy directory poll panicked; policy updates stopped, the last good set stays in force");
            return;
        };
        watcher = back;
        match outcome {
            None => {}
            Some(Ok(bundle)) => {
                let active = ActivePolicy::next(bundle, registry.current().policy.version);
                log_applied(watcher.dir(), &active);
                registry.set_policy(Arc::new(active));
            }
            Some(Err(problems)) => {
                metrics.policy_rejected();
                log_rejected(watcher.dir(), &problems, registry.current().policy.version);
            }
        }
    }
}

/// The `policy_applied` event.
pub fn log_applied(dir: &Path, active: &ActivePolicy) {
    tracing::info!(
        event = "policy_applied",
        policy_dir = %dir.display(),
        version = active.version,
        digest = %active.bundle.digest,
        files = active.bundle.files,
        policies = active.bundle.set.policies.len(),
        waf_policies = active.bundle.waf.len(),
        mesh_default = %active.bundle.set.mesh.default_action,
        "policy applied and pushed to the proxies"
    );
}

/// The `policy_rejected` event: every problem in `diagnostics`, a JSON array of
/// `{file, line, column, field, message, hint}`.
pub fn log_rejected(dir: &Path, problems: &Diagnostics, version_in_force: u64) {
    tracing::warn!(
        event = "policy_rejected",
        policy_dir = %dir.display(),
        problems = problems.0.len(),
        diagnostics = %diagnostics_json(problems),
        version_in_force,
        "policy change refused; the last good policy stays in force"
    );
}

/// The diagnostics as a JSON array with stable field names.
pub fn diagnostics_json(problems: &Diagnostics) -> String {
    let list: Vec<serde_json::Value> = problems
        .0
        .iter()
        .map(|d| {
            serde_json::json!({
                "file": d.file,
                "line": d.line,
                "column": d.column,
                "field": d.path,
                "message": d.message,
                "hint": d.hint,
            })
        })
        .collect();
    serde_json::Value::Array(list).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MESH: &str = "apiVersion: palisade.dev/v1alpha1\nkind: MeshConfig\nmetadata:\n  name: mesh\nspec:\n  defaultAction: deny\n";

    /// Polls until something is reported (a change is read after one quiet poll).
    fn next_outcome(watcher: &mut DirWatcher) -> Result<PolicyBundle, Diagnostics> {
        for _ in 0..3 {
            if let Some(outcome) = watcher.poll() {
                return outcome;
            }
        }
        panic!("no outcome after 3 polls");
    }

    #[test]
    fn a_change_is_seen_once_and_a_broken_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("mesh.yaml"), MESH).unwrap();
        let known = Arc::new(KnownRules::default());
        let (bundle, mut watcher) = DirWatcher::load(dir.path(), Arc::clone(&known)).unwrap();
        assert_eq!(bundle.files, 1);
        assert!(watcher.poll().is_none());

        std::fs::write(dir.path().join("mesh.yaml"), MESH.replace("deny", "dney")).unwrap();
        assert!(
            watcher.poll().is_none(),
            "the first poll waits for the directory to settle"
        );
        let refused = watcher.poll().unwrap().unwrap_err();
        assert!(refused.to_string().contains("mesh.yaml:6:"), "{refused}");
        let json = diagnostics_json(&refused);
        assert!(json.contains("\"field\":\"spec.defaultAction\""), "{json}");
        assert!(watcher.poll().is_none(), "a refusal is reported once");

        std::fs::write(
            dir.path().join("mesh.yaml"),
            MESH.replace("deny", "allowAll"),
        )
        .unwrap();
        assert!(next_outcome(&mut watcher).is_ok());
        for _ in 0..FULL_READ_EVERY {
            assert!(
                watcher.poll().is_none(),
                "periodic reads of an unchanged directory report nothing"
            );
        }
    }

    /// A `MakeWriter` collecting the formatted events.
    #[derive(Clone, Default)]
    struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
        type Writer = Captured;
        fn make_writer(&'a self) -> Captured {
            self.clone()
        }
    }

    #[test]
    fn a_refusal_is_one_structured_event_with_every_problem() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("mesh.yaml"),
            MESH.replace("deny", "dney")
                .replace("name: mesh", "name: Mesh"),
        )
        .unwrap();
        let problems = PolicyBundle::load_dir(dir.path(), &KnownRules::default()).unwrap_err();
        let captured = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_writer(captured.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || log_rejected(dir.path(), &problems, 7));
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1, "{text}");
        let event: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(event["event"], "policy_rejected");
        assert_eq!(event["problems"], 2);
        assert_eq!(event["version_in_force"], 7);
        let diagnostics: serde_json::Value =
            serde_json::from_str(event["diagnostics"].as_str().unwrap()).unwrap();
        let fields: Vec<&str> = diagnostics
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["field"].as_str().unwrap())
            .collect();
        assert_eq!(fields, ["metadata.name", "spec.defaultAction"]);
        assert_eq!(diagnostics[1]["line"], 6);
        assert!(diagnostics[1]["file"]
            .as_str()
            .unwrap()
            .ends_with("mesh.yaml"));
        assert!(diagnostics[1]["hint"].as_str().is_some());
    }
}
