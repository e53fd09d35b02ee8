//! Shared helpers for weir's cross-crate tests. The tests themselves live in `tests/tests/`.
