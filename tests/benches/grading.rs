//! Placeholder until the grading benchmark lands.
fn main() {}
