//! The WAF engine: rule files as data, a multi-pattern prefilter, decodings shared by all
//! rules, and anomaly scoring.
//!
//! ```no_run
//! use palisade_waf::{Engine, Request, RuleSet, WafSettings};
//! let engine = Engine::new(RuleSet::embedded().expect("base rules compile"));
//! let req = Request::new("GET", "/search?q=1%27%20OR%201%3D1--").header("host", b"app");
//! let verdict = engine.inspect(&req, &WafSettings::default(), None);
//! println!("{:?} score {}", verdict.action, verdict.score);
//! ```

mod body;
mod classes;
mod decode;
mod detect;
mod engine;
mod error;
mod json;
pub mod raw;
mod request;
mod required;
mod rule;
mod ruleset;
mod scan;
mod settings;
#[doc(hidden)]
pub mod stages;
#[cfg(test)]
mod test_rng;
mod transform;
mod unlisted;
mod util;

pub use engine::{Action, Engine, Match, Verdict, FRAGMENT_MAX, MATCHES_MAX};
pub use error::RuleError;
#[doc(hidden)]
pub use json::scan_for_fuzzing as json_scan_for_fuzzing;
pub use request::Request;
pub use rule::Severity;
pub use ruleset::{ExampleFailure, RuleInfo, RuleSet};
pub use settings::{Exclusion, Mode, OverLimit, RouteSettings, WafSettings};
pub use transform::Transform;
