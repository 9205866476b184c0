//! Layer-7 authorization policy: the language, its checker, compiler and evaluator.
//!
//! The proxy (enforcement) and `palisadectl policy check` (explanation) must decide with
//! exactly the same code, and the proxy never links the control plane, so all of it
//! lives here.
//!
//! ```text
//! files ──parse_file / PolicySet::load_dir──▶ PolicySet (typed, validated)
//!       ──PolicySet::compile_service / ServicePolicy::compile──▶ ServicePolicy
//!       ──ServicePolicy::evaluate(&RequestFacts)──▶ Decision
//! ```
//!
//! The language is documented for developers in `docs/policy.md`.

mod compile;
mod diagnostic;
mod eval;
mod fields;
mod files;
mod lines;
mod load;
mod model;
mod pattern;
mod set;
mod waf_policy;

pub use compile::ServicePolicy;
pub use diagnostic::{Diagnostic, Diagnostics};
pub use eval::{AuditVerdict, DecidedBy, Decision, Reason, RequestFacts, RuleRef};
pub use files::{policy_files, read_policy_file, PolicyFiles, MAX_FILES, MAX_FILE_BYTES};
pub use load::{parse_file, Resource};
pub use model::{
    Action, AuthorizationPolicy, Caller, DefaultAction, HeaderCondition, HeaderKey, HeaderMatch,
    HeaderRegex, MeshConfig, Mode, Route, Rule, Source, API_VERSION, DEFAULT_NAMESPACE,
    KIND_AUTHORIZATION_POLICY, KIND_MESH_CONFIG,
};
pub use pattern::{LeafError, PathPattern, PathSegment, SpiffeIdPattern, MAX_PATH_PARAMS};
pub use set::PolicySet;
pub use waf_policy::{parse_waf_file, KnownRules, WafPolicy, KIND_WAF_POLICY, MAX_BODY_LIMIT};
