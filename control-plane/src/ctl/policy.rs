//! `palisadectl policy lint DIR` and `palisadectl policy check ...`.
//!
//! Both use `palisade_api::policy`, the same code the proxies enforce with, so that what
//! `check` explains is what a proxy does.

use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use palisade_api::policy::{DecidedBy, Decision, PolicySet, RequestFacts};
use palisade_spiffe::{SpiffeId, TrustDomain};

/// Exit code of `check` when the request would be denied (allowed: 0; errors: 2).
pub const EXIT_DENIED: u8 = 1;
/// Exit code of `lint` when a file has a problem.
pub const EXIT_LINT_FAILED: u8 = 1;

#[derive(Debug, clap::Subcommand)]
pub enum PolicyCommand {
    /// Check every policy file under DIR; print each problem with file:line and a hint.
    Lint {
        /// A directory of policy YAML files (read recursively).
        dir: PathBuf,
    },
    /// Explain whether a caller may call a route of a service, and which rule decides.
    Check(CheckArgs),
}

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// The caller's SPIFFE ID.
    #[arg(long, required_unless_present = "unauthenticated")]
    pub from: Option<String>,
    /// The caller has no SVID (a plaintext caller in permissive mode).
    #[arg(long, conflicts_with = "from")]
    pub unauthenticated: bool,
    /// The service called: `NAME` or `NAME.NAMESPACE`.
    #[arg(long)]
    pub to: String,
    /// The HTTP method, such as GET.
    pub method: String,
    /// The request path, such as /v1/charges/ch_1.
    pub path: String,
    /// A request header, `name: value`; repeat for several.
    #[arg(long = "header", short = 'H')]
    pub headers: Vec<String>,
    /// The caller's address, for CIDR rules.
    #[arg(long, default_value = "127.0.0.1")]
    pub peer_ip: IpAddr,
    /// The directory of policy files to decide with.
    #[arg(long, env = "PALISADE_POLICY_DIR")]
    pub policy_dir: PathBuf,
    /// The mesh's SPIFFE trust domain.
    #[arg(long, env = "PALISADE_TRUST_DOMAIN", default_value = "palisade.local")]
    pub trust_domain: String,
}

/// Runs one `policy` subcommand, writing its report to `out`.
pub fn run(cmd: PolicyCommand, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    match cmd {
        PolicyCommand::Lint { dir } => lint(&dir, out),
        PolicyCommand::Check(args) => check(&args, out),
    }
}

fn lint(dir: &Path, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    match PolicySet::load_dir(dir) {
        Ok(set) => {
            writeln!(
                out,
                "ok: {} file(s), {} policy(ies) for {} service(s), mesh default {}",
                set.files,
                set.policies.len(),
                set.services().len(),
                set.mesh.default_action
            )?;
            Ok(ExitCode::SUCCESS)
        }
        Err(problems) => {
            for d in &problems.0 {
                writeln!(out, "{d}")?;
            }
            writeln!(
                out,
                "{} problem(s) found; nothing was applied",
                problems.0.len()
            )?;
            Ok(ExitCode::from(EXIT_LINT_FAILED))
        }
    }
}

fn check(args: &CheckArgs, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let trust_domain = TrustDomain::new(&args.trust_domain)
        .with_context(|| format!("--trust-domain `{}`", args.trust_domain))?;
    let peer = match &args.from {
        Some(from) if !args.unauthenticated => Some(
            SpiffeId::parse(from).with_context(|| format!("--from `{from}` is not a SPIFFE ID"))?,
        ),
        _ => None,
    };
    let headers = parse_headers(&args.headers)?;
    let set = PolicySet::load_dir(&args.policy_dir).map_err(|problems| {
        anyhow::anyhow!(
            "{problems}\nthe policy directory has {} problem(s); run `palisadectl policy lint {}`",
            problems.0.len(),
            args.policy_dir.display()
        )
    })?;
    let (service, namespace) = resolve_service(&set, &args.to)?;
    let compiled = set.compile_service(&trust_domain, &namespace, &service);
    let decision = compiled.evaluate(&RequestFacts {
        peer: peer.as_ref(),
        peer_ip: args.peer_ip,
        method: &args.method,
        path: &args.path,
        headers: &headers,
    });
    let policies = set.policies_for(&namespace, &service).count();
    write_decision(out, &decision, &service, &namespace, policies)?;
    Ok(if decision.allowed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_DENIED)
    })
}

fn write_decision(
    out: &mut dyn Write,
    d: &Decision<'_>,
    service: &str,
    namespace: &str,
    policies: usize,
) -> std::io::Result<()> {
    let verdict = |allowed: bool| if allowed { "ALLOW" } else { "DENY" };
    writeln!(out, "{}", verdict(d.allowed))?;
    writeln!(
        out,
        "  service:    {service}.{namespace} ({policies} policy(ies))"
    )?;
    writeln!(out, "  decided by: {}", describe(&d.decided_by))?;
    writeln!(out, "  why:        {} [{}]", d.reason, d.reason.code())?;
    if let Some(a) = d.audit.filter(|_| !d.audit_disagrees()) {
        writeln!(
            out,
            "  audit mode: same verdict ({})",
            describe(&a.decided_by)
        )?;
    } else if let Some(a) = &d.audit {
        writeln!(
            out,
            "  audit mode: would {} by {}: {}",
            verdict(a.allowed),
            describe(&a.decided_by),
            a.reason
        )?;
    }
    Ok(())
}

fn describe(by: &DecidedBy<'_>) -> String {
    match by {
        DecidedBy::Rule(r) => format!(
            "{} rule {}{}",
            r.action,
            r,
            if r.audit { " [audit]" } else { "" }
        ),
        DecidedBy::Default => "the default".to_owned(),
    }
}

/// `NAME.NAMESPACE`, or `NAME` when exactly one namespace has policies for it (a service
/// no policy names gets the mesh default whatever its namespace).
fn resolve_service(set: &PolicySet, to: &str) -> anyhow::Result<(String, String)> {
    if let Some((name, namespace)) = to.split_once('.') {
        return Ok((name.to_owned(), namespace.to_owned()));
    }
    let namespaces: Vec<&str> = set
        .services()
        .into_iter()
        .filter(|(_, s)| *s == to)
        .map(|(ns, _)| ns)
        .collect();
    match namespaces.as_slice() {
        [] => Ok((
            to.to_owned(),
            palisade_api::policy::DEFAULT_NAMESPACE.to_owned(),
        )),
        [ns] => Ok((to.to_owned(), (*ns).to_owned())),
        many => bail!(
            "--to `{to}` is ambiguous: policies target it in namespaces {}; write `{to}.NAMESPACE`",
            many.join(", ")
        ),
    }
}

fn parse_headers(raw: &[String]) -> anyhow::Result<http::HeaderMap> {
    let mut headers = http::HeaderMap::new();
    for h in raw {
        let Some((name, value)) = h.split_once(':') else {
            bail!("--header `{h}`: write `name: value`");
        };
        let name = http::HeaderName::from_bytes(name.trim().as_bytes())
            .with_context(|| format!("--header `{h}`: bad header name"))?;
        let value = http::HeaderValue::from_str(value.trim())
            .with_context(|| format!("--header `{h}`: bad header value"))?;
        headers.append(name, value);
    }
    Ok(headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = "\
apiVersion: palisade.dev/v1alpha1
kind: AuthorizationPolicy
metadata:
  name: payments
  namespace: shop
spec:
  targetService: payments
  rules:
    - name: orders-charges
      action: allow
      callers: [\"spiffe://palisade.local/ns/shop/sa/orders\"]
      routes:
        - methods: [POST]
          paths: [\"/v1/charges\"]
";

    fn dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        dir
    }

    fn run_to_string(cmd: PolicyCommand) -> (ExitCode, String) {
        let mut out = Vec::new();
        let code = run(cmd, &mut out).unwrap();
        (code, String::from_utf8(out).unwrap())
    }

    fn check_args(dir: &Path, from: &str, to: &str, method: &str, path: &str) -> CheckArgs {
        CheckArgs {
            from: Some(from.into()),
            unauthenticated: false,
            to: to.into(),
            method: method.into(),
            path: path.into(),
            headers: vec![],
            peer_ip: "127.0.0.1".parse().unwrap(),
            policy_dir: dir.to_owned(),
            trust_domain: "palisade.local".into(),
        }
    }

    #[test]
    fn lint_ok_prints_a_summary() {
        let dir = dir_with(&[("payments.yaml", POLICY)]);
        let (code, out) = run_to_string(PolicyCommand::Lint {
            dir: dir.path().into(),
        });
        assert_eq!(code, ExitCode::SUCCESS);
        assert_eq!(
            out,
            "ok: 1 file(s), 1 policy(ies) for 1 service(s), mesh default allowAuthenticated\n"
        );
    }

    #[test]
    fn lint_reports_every_problem_with_its_place() {
        let broken = POLICY
            .replace("callers:", "calers:")
            .replace("[POST]", "[post]");
        let dir = dir_with(&[("payments.yaml", &broken)]);
        let (code, out) = run_to_string(PolicyCommand::Lint {
            dir: dir.path().into(),
        });
        assert_eq!(code, ExitCode::from(EXIT_LINT_FAILED));
        let file = dir.path().join("payments.yaml").display().to_string();
        assert!(out.contains(&format!("{file}:11:7: spec.rules[0]: unknown field `calers`\n    hint: did you mean `callers`?")), "{out}");
        assert!(
            out.contains(&format!(
                "{file}:13:11: spec.rules[0].routes[0].methods[0]: `post` is not an HTTP method"
            )),
            "{out}"
        );
        assert!(
            out.ends_with("2 problem(s) found; nothing was applied\n"),
            "{out}"
        );
    }

    #[test]
    fn check_explains_allow_and_deny() {
        let dir = dir_with(&[("payments.yaml", POLICY)]);
        let orders = "spiffe://palisade.local/ns/shop/sa/orders";
        let (code, out) = run_to_string(PolicyCommand::Check(check_args(
            dir.path(),
            orders,
            "payments",
            "POST",
            "/v1/charges",
        )));
        assert_eq!(code, ExitCode::SUCCESS, "{out}");
        assert!(
            out.starts_with("ALLOW\n  service:    payments.shop (1 policy(ies))\n"),
            "{out}"
        );
        assert!(
            out.contains("decided by: allow rule shop/payments rules[0] (orders-charges) at "),
            "{out}"
        );
        assert!(out.contains("payments.yaml:9"), "{out}");

        let (code, out) = run_to_string(PolicyCommand::Check(check_args(
            dir.path(),
            orders,
            "payments.shop",
            "GET",
            "/v1/charges",
        )));
        assert_eq!(code, ExitCode::from(EXIT_DENIED), "{out}");
        assert!(out.contains("decided by: the default"), "{out}");
        assert!(out.contains("[not_allowed_by_policy]"), "{out}");

        // A service without policy gets the mesh default.
        let (code, out) = run_to_string(PolicyCommand::Check(check_args(
            dir.path(),
            orders,
            "ledger",
            "GET",
            "/",
        )));
        assert_eq!(code, ExitCode::SUCCESS, "{out}");
        assert!(out.contains("[default_allow_authenticated]"), "{out}");
    }

    #[test]
    fn check_refuses_bad_input_clearly() {
        let dir = dir_with(&[("payments.yaml", POLICY)]);
        let mut out = Vec::new();
        let err = run(
            PolicyCommand::Check(check_args(dir.path(), "orders", "payments", "GET", "/")),
            &mut out,
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("--from `orders` is not a SPIFFE ID"),
            "{err:#}"
        );
        let broken = dir_with(&[("payments.yaml", "kind: [")]);
        let err = run(
            PolicyCommand::Check(check_args(
                broken.path(),
                "spiffe://palisade.local/ns/a/sa/b",
                "payments",
                "GET",
                "/",
            )),
            &mut out,
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("run `palisadectl policy lint"),
            "{err:#}"
        );
        assert!(parse_headers(&["no-colon".into()]).is_err());
        assert_eq!(
            parse_headers(&["X-Tenant: acme".into()]).unwrap()["x-tenant"],
            "acme"
        );
    }
}
