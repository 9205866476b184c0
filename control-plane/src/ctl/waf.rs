//! `palisadectl waf ...`: offline tools for security teams tuning the WAF.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};
use palisade_waf::raw;
use palisade_waf::{Action, Engine, RuleSet, WafSettings};

/// WAF tools.
#[derive(Debug, Args)]
pub struct WafArgs {
    #[command(subcommand)]
    pub command: WafCommand,
}

#[derive(Debug, Subcommand)]
pub enum WafCommand {
    /// Run raw HTTP/1.1 requests from files through the WAF and explain the verdicts.
    Test(TestArgs),
}

#[derive(Debug, Args)]
pub struct TestArgs {
    /// Directory of rule files (default: the base rules built into palisadectl).
    #[arg(long)]
    pub rules: Option<PathBuf>,
    /// Paranoia level, 1 (fewest false positives) to 4.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=4))]
    pub paranoia: u8,
    /// Anomaly score at which a request is blocked.
    #[arg(long, default_value_t = 5)]
    pub threshold: u32,
    /// Files holding one raw HTTP/1.1 request each.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

/// Runs a `waf` subcommand, writing its report to `out`.
pub fn run(args: &WafArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    match &args.command {
        WafCommand::Test(t) => test(t, out),
    }
}

fn test(args: &TestArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let rules = match &args.rules {
        Some(dir) => RuleSet::load_dir(dir)
            .with_context(|| format!("loading WAF rules from {}", dir.display()))?,
        None => RuleSet::embedded().context("compiling the built-in WAF rules")?,
    };
    let engine = Engine::new(rules);
    let settings = WafSettings {
        paranoia: args.paranoia,
        threshold: args.threshold,
        ..WafSettings::default()
    };
    let mut unreadable = Vec::new();
    for file in &args.files {
        if let Err(e) = test_file(&engine, &settings, file, out) {
            writeln!(out, "== {}: error: {e:#}", file.display())?;
            unreadable.push(file.display().to_string());
        }
    }
    if !unreadable.is_empty() {
        anyhow::bail!(
            "{} file(s) could not be read as HTTP requests: {}",
            unreadable.len(),
            unreadable.join(", ")
        );
    }
    Ok(())
}

fn test_file(
    engine: &Engine,
    settings: &WafSettings,
    file: &Path,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let req = raw::parse(&bytes)
        .with_context(|| format!("{} is not a raw HTTP/1.1 request", file.display()))?;
    let verdict = engine.inspect(&req.view(), settings, None);
    writeln!(out, "== {}: {} {}", file.display(), req.method, req.target)?;
    for m in &verdict.matches {
        writeln!(
            out,
            "  rule {} [{}] paranoia {} +{} on {}: {:?} ({})",
            m.rule_id,
            m.tags.join(","),
            m.paranoia,
            m.score,
            m.target,
            m.fragment,
            m.message
        )?;
    }
    let action = match verdict.action {
        Action::Pass => "PASS",
        Action::Detect => "DETECT",
        Action::Block => "BLOCK",
    };
    let status = verdict
        .status()
        .map(|s| format!(" ({s})"))
        .unwrap_or_default();
    writeln!(
        out,
        "  score {} / threshold {} at paranoia {} -> {action}{status}",
        verdict.score, verdict.threshold, settings.paranoia
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_test(files: Vec<PathBuf>, paranoia: u8) -> (anyhow::Result<()>, String) {
        let args = WafArgs {
            command: WafCommand::Test(TestArgs {
                rules: None,
                paranoia,
                threshold: 5,
                files,
            }),
        };
        let mut out = Vec::new();
        let res = run(&args, &mut out);
        (res, String::from_utf8_lossy(&out).into_owned())
    }

    #[test]
    fn explains_blocked_and_passed_requests() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bad = dir.path().join("bad.http");
        std::fs::write(
            &bad,
            "POST /login HTTP/1.1\r\nHost: app\r\nContent-Type: application/x-www-form-urlencoded\r\n\r\nuser=admin%27%20or%20%271%27%3D%271&pw=x",
        )
        .expect("write");
        let good = dir.path().join("good.http");
        std::fs::write(
            &good,
            "GET /docs/intro?lang=en HTTP/1.1\r\nHost: app\r\n\r\n",
        )
        .expect("write");
        let (res, out) = run_test(vec![bad, good], 1);
        assert!(res.is_ok(), "{res:?}");
        assert!(out.contains("rule 4201 [sqli]"), "{out}");
        assert!(out.contains("on body_arg:user"), "{out}");
        assert!(out.contains("-> BLOCK (403)"), "{out}");
        assert!(out.contains("good.http: GET /docs/intro?lang=en"), "{out}");
        assert!(
            out.contains("score 0 / threshold 5 at paranoia 1 -> PASS"),
            "{out}"
        );
    }

    #[test]
    fn malformed_file_is_named_in_the_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let broken = dir.path().join("broken.http");
        std::fs::write(&broken, "GET / HTTP/1.1\r\nthis line has no colon\r\n\r\n").expect("write");
        let (res, out) = run_test(vec![broken, dir.path().join("missing.http")], 2);
        let err = format!("{:#}", res.expect_err("malformed files fail"));
        assert!(err.contains("broken.http"), "{err}");
        assert!(err.contains("missing.http"), "{err}");
        assert!(out.contains("has no `:`"), "{out}");
    }
}
