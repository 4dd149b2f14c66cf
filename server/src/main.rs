//! `docklab`: set up a host, or serve the lab.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::Parser;
use docklab_server::app::{self, AppState};
use docklab_server::cli::{Cli, Command, ImagesArgs, ImagesCommand, ServeArgs};
use sandbox::{SandboxConfig, SessionManager};

fn main() -> ExitCode {
    // The sandbox re-executes this binary for its internal helpers, which must run before any
    // thread exists (they enter namespaces). So: no runtime, no logging thread, nothing, first.
    let argv: Vec<String> = std::env::args_os().map(|a| a.to_string_lossy().into_owned()).collect();
    if let Some(code) = sandbox::setup::dispatch_internal(&argv) {
        return code;
    }

    let cli = Cli::parse();
    tracing_subscriber::fmt()
        // One event, one line, whatever newlines a request or a machine put in a field.
        .with_writer(docklab_server::log_lines::OneLinePerEvent(std::io::stderr))
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,tower_http=info".into()),
        )
        .init();
    let result = match cli.command {
        Command::Setup(args) => sandbox::setup::run(&args.state_dir, &mut |line| println!("{line}"))
            .context("setup failed"),
        Command::Serve(args) => serve(args),
        Command::Images(args) => images(args),
        Command::Reap(args) => reap(args),
        Command::Instructor(args) => instructor(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("docklab: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    if !running_as_root() {
        bail!("`docklab serve` must run as root: it creates user namespaces, cgroups and mounts for session machines");
    }
    let _lock = lock_state_dir(&args.state_dir, args.wait)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting tokio")?;
    // Inside the runtime's context, in case the backend spawns tasks as it starts.
    let _runtime_context = runtime.enter();
    let helper_exe = own_executable();
    let backend = SessionManager::new(SandboxConfig::new(&args.state_dir, helper_exe))
        .context("preparing session machines")?;
    // The machines' bridge and firewall, and the services machines reach on it.
    backend.ensure_network().context("setting up the session network")?;
    let network = backend.config().network.clone();
    let catalog = match &args.lessons_dir {
        Some(dir) => lessons::Catalog::load(dir),
        None => lessons::Catalog::embedded(),
    }
    .context("loading the lessons")?;
    let db = args.state_dir.join("docklab.db");
    let store = docklab_server::store::SqliteStore::open(&db).context("opening the progress database")?;
    let state = AppState::new(Arc::new(backend), Arc::new(catalog), args.server_config()).with_store(Arc::new(store))
        .with_classroom(Arc::new(docklab_server::classroom::Classroom::new(
            docklab_server::store::classroom::ClassStore::open(&db).context("opening the class database")?,
        )));

    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("listening on {}", args.listen))?;
        let options = sandbox::services::ServiceOptions { registry_upstream: args.registry_upstream.clone() };
        let _services = match sandbox::services::spawn_with(&args.state_dir, &network, &options).await {
            Ok(handles) => handles,
            Err(err) => {
                tracing::error!(error = %err, "session machines will have no image registry or package proxy");
                Vec::new()
            }
        };
        tracing::info!(address = %args.listen, "docklab is serving");
        app::serve(listener, state, shutdown_signal()).await.context("serving")
    })?;
    tracing::info!("docklab stopped");
    Ok(())
}

fn images(args: ImagesArgs) -> anyhow::Result<()> {
    use sandbox::images;
    match args.command {
        ImagesCommand::List => {
            let store = images::ImageStore::new(&args.state_dir);
            println!("{:<50} {:>9} {:>9}  {:<19}  RECIPE", "IMAGE", "PULL", "UNPACKED", "DIGEST");
            for recipe in images::CATALOG {
                let stored = store.images().into_iter().find(|i| i.name == recipe.name && i.tags.iter().any(|t| t.tag == recipe.tags[0]));
                let tags = format!("{}:{}", recipe.name, recipe.tags.join(","));
                match stored.as_ref().and_then(|s| s.info.as_ref()) {
                    Some(info) => println!(
                        "{tags:<50} {:>9} {:>9}  {:<19}  {}{}",
                        images::human(info.size),
                        images::human(info.unpacked_size),
                        images::short(&info.manifest_digest),
                        info.recipe,
                        if info.recipe_key == images::recipe_key(recipe) { "" } else { " (recipe changed: rebuild)" }
                    ),
                    None => println!("{tags:<50} {:>9} {:>9}  {:<19}  {}", "-", "-", "not built", images::describe(recipe)),
                }
            }
            Ok(())
        }
        ImagesCommand::Build { names, force, jobs } => {
            if !running_as_root() {
                bail!("`docklab images build` must run as root: mmdebstrap installs packages into the image roots");
            }
            let options = images::BuildOptions { force, jobs: jobs.into() };
            images::build(&args.state_dir, &names, &options, &mut |line| println!("{line}")).context("building images")?;
            Ok(())
        }
    }
}

fn reap(args: docklab_server::cli::ReapArgs) -> anyhow::Result<()> {
    use sandbox::MachineBackend;
    if !running_as_root() {
        bail!("`docklab reap` must run as root");
    }
    // Holding the server's lock makes sure no server is adopting machines meanwhile.
    let _lock = lock_state_dir(&args.state_dir, false)?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting tokio")?;
    let helper_exe = own_executable();
    let manager = SessionManager::new(SandboxConfig::new(&args.state_dir, helper_exe)).context("preparing session machines")?;
    runtime.block_on(async {
        let ids = if args.all {
            std::fs::read_dir(manager.config().sessions_dir())
                .map(|rd| rd.flatten().filter_map(|e| e.file_name().to_str().map(str::to_string)).collect())
                .unwrap_or_default()
        } else {
            manager.leftovers().await
        };
        let mut failed = 0;
        for id in &ids {
            match manager.destroy(id).await.or_else(|_| manager.reap_orphan(id)) {
                Ok(()) => println!("removed session machine {id}"),
                Err(e) => {
                    failed += 1;
                    eprintln!("could not remove {id}: {e}");
                }
            }
        }
        if args.all && failed == 0 {
            manager.remove_network().context("removing docklab's bridge and firewall table")?;
            println!("removed docklab's bridge and firewall table");
        }
        println!("{} session machine(s) removed, {failed} failed", ids.len() - failed);
        if failed > 0 {
            bail!("{failed} session machine(s) could not be removed");
        }
        Ok(())
    })
}

/// One server per state directory: two would adopt, reap and number machines over each other.
/// The lock lasts as long as the returned file is open (the whole of `serve`). With `wait`, block
/// until the other server lets go instead of refusing.
fn lock_state_dir(state_dir: &std::path::Path, wait: bool) -> anyhow::Result<std::fs::File> {
    use std::io::{Read, Seek, Write};
    std::fs::create_dir_all(state_dir).with_context(|| format!("creating {}", state_dir.display()))?;
    // It holds the database (logins, learners), the machines' disks and their records: nobody else
    // may list or write it (0711). Search stays open because a machine's init, root of its user
    // namespace but an ordinary uid on the host, reaches its own root filesystem through this
    // path; every file with a secret in it is 0600 itself.
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(state_dir, std::fs::Permissions::from_mode(0o711))
            .with_context(|| format!("making {} private (mode 0711)", state_dir.display()))?;
    }
    let path = state_dir.join("serve.lock");
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    if wait {
        // SAFETY: flock on a descriptor we own; it only takes an advisory lock.
        if unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&file), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            eprintln!("docklab: another server is serving from {}; waiting for it to stop", state_dir.display());
            // SAFETY: as above; a blocking lock.
            if unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&file), libc::LOCK_EX) } != 0 {
                bail!("waiting for the lock on {}: {}", path.display(), std::io::Error::last_os_error());
            }
        }
    }
    // SAFETY: flock on a descriptor we own; it only takes an advisory lock.
    if unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&file), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let mut pid = String::new();
        let _ = file.read_to_string(&mut pid);
        bail!(
            "another docklab server (pid {}) is already serving from {}: stop it first, or give this one another --state-dir",
            pid.trim(),
            state_dir.display()
        );
    }
    file.set_len(0)?;
    file.rewind()?;
    write!(file, "{}", std::process::id())?;
    Ok(file)
}

/// What starts machine launchers and shells: this very executable, through `/proc/self/exe`, so
/// that they match the running server even after its file on disk has been replaced (an upgrade,
/// a rebuild) — a replaced file's old path no longer exists to start.
fn own_executable() -> std::path::PathBuf {
    std::path::PathBuf::from("/proc/self/exe")
}

fn running_as_root() -> bool {
    // SAFETY: geteuid has no preconditions, cannot fail and touches no memory of ours.
    unsafe { libc::geteuid() == 0 }
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(term) => term,
        Err(err) => {
            tracing::warn!(%err, "cannot watch SIGTERM; only Ctrl-C stops the server");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
}

/// `docklab instructor add NAME`: the password is the first line of standard input.
fn instructor(args: docklab_server::cli::InstructorArgs) -> anyhow::Result<()> {
    let docklab_server::cli::InstructorCommand::Add { name } = args.command;
    let mut password = String::new();
    std::io::stdin().read_line(&mut password).context("reading the password from standard input")?;
    let password = password.trim_end_matches(['\r', '\n']);
    std::fs::create_dir_all(&args.state_dir).with_context(|| format!("creating {}", args.state_dir.display()))?;
    docklab_server::classroom::add_instructor(&args.state_dir.join("docklab.db"), &name, password)?;
    println!("instructor {name} saved");
    Ok(())
}
