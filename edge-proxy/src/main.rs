mod eventlog;
fn main() {}
