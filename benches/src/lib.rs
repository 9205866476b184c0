//! Criterion benchmarks live in `benches/`; the load harness in `load/`.
