//! The sandbox re-executes its helper binary for `__launch` and `__enter`; in tests this small
//! binary plays the part of `docklab`, so the sandbox can be tested without the server.
fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().collect();
    sandbox::setup::dispatch_internal(&args).unwrap_or_else(|| {
        eprintln!("docklab-test-helper: expected __launch or __enter");
        std::process::ExitCode::from(2)
    })
}
