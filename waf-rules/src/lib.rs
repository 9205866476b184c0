//! The WAF engine: rule files as data, a multi-pattern prefilter, decodings shared by all rules, and anomaly scoring.
