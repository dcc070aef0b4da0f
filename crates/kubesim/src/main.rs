//! The simulator binary (being built; see the library).

fn main() {}
