//! `kotodama` binary.
fn main() {}
