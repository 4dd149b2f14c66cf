//! Drive one session machine by hand: `cargo run -p sandbox --example machine -- STATE_DIR [setup]`.
use std::time::Duration;

use sandbox::{ExecRequest, MachineBackend, SandboxConfig, SessionManager};

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if let Some(code) = sandbox::setup::dispatch_internal(&args) {
        return code;
    }
    let state = args.get(1).cloned().unwrap_or_else(|| "/var/lib/docklab".into());
    if args.get(2).map(String::as_str) == Some("setup") {
        if let Err(e) = sandbox::setup::run(std::path::Path::new(&state), &mut |l| println!("{l}")) {
            eprintln!("setup: {e}");
            return std::process::ExitCode::FAILURE;
        }
        return std::process::ExitCode::SUCCESS;
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let exe = std::env::current_exe().unwrap();
        let m = SessionManager::new(SandboxConfig::new(&state, exe)).unwrap();
        println!("health: {:?}", m.health().await);
        if args.get(2).map(String::as_str) == Some("reap") {
            for id in m.leftovers().await {
                println!("reaping {id}: {:?}", m.reap_orphan(&id));
            }
            return std::process::ExitCode::SUCCESS;
        }
        let info = match m.create("demo1").await {
            Ok(i) => i,
            Err(e) => {
                eprintln!("create: {e}");
                return std::process::ExitCode::FAILURE;
            }
        };
        println!("ready in {:?}: {info:?}", info.start_duration);
        for cmd in [
            vec!["sh", "-c", "id; hostname; cat /proc/self/uid_map; docker run --rm busybox echo hi"],
        ] {
            let out = m
                .exec("demo1", ExecRequest { cmd: cmd.iter().map(|s| s.to_string()).collect(), timeout: Duration::from_secs(60), stdin: None })
                .await;
            println!("{out:?}");
        }
        if args.get(2).map(String::as_str) != Some("keep") {
            println!("destroy: {:?}", m.destroy("demo1").await);
        }
        std::process::ExitCode::SUCCESS
    })
}
