//! `palisadectl policy lint DIR` and `palisadectl policy check ...`.
//!
//! Both use `palisade_api::policy`, the same code the proxies enforce with, so that what
//! `check` explains is what a proxy does. `check` decides against a directory
//! (`--policy-dir`) or, without one, asks the running control plane, which decides
//! against the policy it has in force.

use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use palisade_api::wire::{PolicyCheckRequest, PolicyCheckResponse, PATH_ADMIN_POLICY_CHECK};
use palisade_spiffe::{SpiffeId, TrustDomain};

use super::ConnectArgs;
use crate::policy_store::{embedded_rules, PolicyBundle};

/// Exit code of `check` when the request would be denied (allowed: 0; errors: 2).
pub const EXIT_DENIED: u8 = 1;
/// Exit code of `lint` when a file has a problem.
pub const EXIT_LINT_FAILED: u8 = 1;

#[derive(Debug, clap::Subcommand)]
pub enum PolicyCommand {
    /// Check every policy file under DIR (authorization policies, the mesh config and WAF
    /// policies); print each problem with file:line and a hint.
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
    /// The directory of policy files to decide with; without it, the running control
    /// plane decides with the policy it has in force (needs --admin-dir).
    #[arg(long, env = "PALISADE_POLICY_DIR")]
    pub policy_dir: Option<PathBuf>,
    /// The mesh's SPIFFE trust domain (directory mode; the control plane knows its own).
    #[arg(long, env = "PALISADE_TRUST_DOMAIN", default_value = "palisade.local")]
    pub trust_domain: String,
}

/// Runs one `policy` subcommand, writing its report to `out`.
pub async fn run(
    connect: &ConnectArgs,
    cmd: PolicyCommand,
    out: &mut dyn Write,
) -> anyhow::Result<ExitCode> {
    match cmd {
        PolicyCommand::Lint { dir } => lint(&dir, out),
        PolicyCommand::Check(args) => {
            let answer = match &args.policy_dir {
                Some(dir) => check_dir(&args, dir)?,
                None => check_remote(connect, &args).await?,
            };
            write_answer(out, &answer)?;
            Ok(if answer.allowed {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_DENIED)
            })
        }
    }
}

fn lint(dir: &Path, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let known = embedded_rules().context("the embedded WAF rule set does not load")?;
    match PolicyBundle::load_dir(dir, &known) {
        Ok(bundle) => {
            let set = &bundle.set;
            writeln!(
                out,
                "ok: {} file(s), {} policy(ies) for {} service(s), mesh default {}, {} WAF policy(ies)",
                bundle.files,
                set.policies.len(),
                set.services().len(),
                set.mesh.default_action,
                bundle.waf.len()
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

fn request(args: &CheckArgs) -> anyhow::Result<PolicyCheckRequest> {
    let from = match &args.from {
        Some(from) if !args.unauthenticated => {
            SpiffeId::parse(from).with_context(|| format!("--from `{from}` is not a SPIFFE ID"))?;
            Some(from.clone())
        }
        _ => None,
    };
    let headers = parse_headers(&args.headers)?;
    Ok(PolicyCheckRequest {
        from,
        to: args.to.clone(),
        method: args.method.clone(),
        path: args.path.clone(),
        headers,
        peer_ip: args.peer_ip,
    })
}

fn check_dir(args: &CheckArgs, dir: &Path) -> anyhow::Result<PolicyCheckResponse> {
    let trust_domain = TrustDomain::new(&args.trust_domain)
        .with_context(|| format!("--trust-domain `{}`", args.trust_domain))?;
    let request = request(args)?;
    let known = embedded_rules().context("the embedded WAF rule set does not load")?;
    let bundle = PolicyBundle::load_dir(dir, &known).map_err(|problems| {
        anyhow::anyhow!(
            "{problems}\nthe policy directory has {} problem(s); run `palisadectl policy lint {}`",
            problems.0.len(),
            dir.display()
        )
    })?;
    bundle
        .explain(&trust_domain, &request, 0)
        .map_err(|e| anyhow::anyhow!("--to/--header: {e}"))
}

async fn check_remote(
    connect: &ConnectArgs,
    args: &CheckArgs,
) -> anyhow::Result<PolicyCheckResponse> {
    let request = request(args)?;
    let client = connect
        .admin_client()
        .context("`policy check` without --policy-dir asks the running control plane")?;
    Ok(client.post_json(PATH_ADMIN_POLICY_CHECK, &request).await?)
}

fn write_answer(out: &mut dyn Write, a: &PolicyCheckResponse) -> std::io::Result<()> {
    let verdict = |allowed: bool| if allowed { "ALLOW" } else { "DENY" };
    writeln!(out, "{}", verdict(a.allowed))?;
    writeln!(
        out,
        "  service:    {}.{} ({} policy(ies))",
        a.service, a.namespace, a.policies
    )?;
    writeln!(out, "  decided by: {}", a.decided_by)?;
    writeln!(out, "  why:        {} [{}]", a.reason, a.reason_code)?;
    match &a.audit {
        Some(audit) if audit.allowed == a.allowed => {
            writeln!(out, "  audit mode: same verdict ({})", audit.decided_by)?
        }
        Some(audit) => writeln!(
            out,
            "  audit mode: would {} by {}: {}",
            verdict(audit.allowed),
            audit.decided_by,
            audit.reason
        )?,
        None => {}
    }
    if a.policy_version != 0 {
        writeln!(
            out,
            "  policy:     version {} (in force on the control plane)",
            a.policy_version
        )?;
    }
    Ok(())
}

/// `name: value` pairs, each checked as an HTTP header here so that a typo is reported
/// against the flag rather than by the control plane.
fn parse_headers(raw: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    let mut headers = Vec::new();
    for h in raw {
        let Some((name, value)) = h.split_once(':') else {
            bail!("--header `{h}`: write `name: value`");
        };
        let name = http::HeaderName::from_bytes(name.trim().as_bytes())
            .with_context(|| format!("--header `{h}`: bad header name"))?;
        let value = http::HeaderValue::from_str(value.trim())
            .with_context(|| format!("--header `{h}`: bad header value"))?;
        headers.push((
            name.to_string(),
            value.to_str().unwrap_or_default().to_owned(),
        ));
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

    fn connect() -> ConnectArgs {
        ConnectArgs {
            control_plane: "https://127.0.0.1:1".into(),
            admin_dir: None,
        }
    }

    fn run_blocking(cmd: PolicyCommand, out: &mut Vec<u8>) -> anyhow::Result<ExitCode> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(run(&connect(), cmd, out))
    }

    fn run_to_string(cmd: PolicyCommand) -> (ExitCode, String) {
        let mut out = Vec::new();
        let code = run_blocking(cmd, &mut out).unwrap();
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
            policy_dir: Some(dir.to_owned()),
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
            "ok: 1 file(s), 1 policy(ies) for 1 service(s), mesh default allowAuthenticated, 0 WAF policy(ies)\n"
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
    fn lint_checks_waf_policies_too() {
        let waf = "apiVersion: palisade.dev/v1alpha1\nkind: WafPolicy\nmetadata:\n  name: payments-waf\n  namespace: shop\nspec:\n  targetService: payments\n  paranoia: 2\n";
        let dir = dir_with(&[("payments.yaml", POLICY), ("waf.yaml", waf)]);
        let (code, out) = run_to_string(PolicyCommand::Lint {
            dir: dir.path().into(),
        });
        assert_eq!(code, ExitCode::SUCCESS, "{out}");
        assert!(out.ends_with(", 1 WAF policy(ies)\n"), "{out}");

        let broken = waf.replace(
            "paranoia: 2",
            "paranoia: 7\n  exclusions:\n    - rules: [1]",
        );
        let dir = dir_with(&[("waf.yaml", &broken)]);
        let (code, out) = run_to_string(PolicyCommand::Lint {
            dir: dir.path().into(),
        });
        assert_eq!(code, ExitCode::from(EXIT_LINT_FAILED));
        let file = dir.path().join("waf.yaml").display().to_string();
        assert!(
            out.contains(&format!(
                "{file}:8:3: spec.paranoia: 7 is out of range 1..=4"
            )),
            "{out}"
        );
        assert!(
            out.contains(&format!(
                "{file}:10:7: spec.exclusions[0].rules[0]: no WAF rule has id 1"
            )),
            "{out}"
        );
        assert!(
            out.ends_with("2 problem(s) found; nothing was applied\n"),
            "{out}"
        );
    }

    #[test]
    fn check_refuses_bad_input_clearly() {
        let dir = dir_with(&[("payments.yaml", POLICY)]);
        let mut out = Vec::new();
        let err = run_blocking(
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
        let err = run_blocking(
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
            parse_headers(&["X-Tenant: acme".into()]).unwrap(),
            vec![("x-tenant".to_owned(), "acme".to_owned())]
        );
        let mut args = check_args(
            dir.path(),
            "spiffe://palisade.local/ns/a/sa/b",
            "payments",
            "GET",
            "/",
        );
        args.policy_dir = None;
        let err = run_blocking(PolicyCommand::Check(args), &mut out).unwrap_err();
        assert!(format!("{err:#}").contains("--admin-dir"), "{err:#}");
    }
}
