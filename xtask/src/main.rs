//! `cargo xtask`: fastpath's developer tasks. Everything a fresh machine lacks to build the eBPF
//! programs is installed here, on demand, so the README's commands work on a clean checkout.

mod agents_demo;
mod packages;
mod toolchain;

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "fastpath's build, run and test tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what is missing (nightly rust-src, bpf-linker), then build the eBPF programs and
    /// the `fastpath` binary.
    Build {
        /// Build with the release profile.
        #[arg(long)]
        release: bool,
    },
    /// Build, then run `fastpath` as root: by default `fastpath up` (the demo cluster), `fastpath
    /// check` (every pod pings every other) and `fastpath stats`. Arguments after `--` run that
    /// command instead (e.g. `cargo xtask run -- status`, `cargo xtask run -- down`);
    /// `cargo xtask run -- agents` is the node agents' demo: a local etcd and three simulated
    /// nodes, each with its own agent, finding each other (everything removed at the end).
    Run {
        #[arg(long)]
        release: bool,
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Install the Debian packages the tests use when missing (iproute2, nftables, the reference
    /// CNI plugins, podman, …), build, then run every unit and integration test (the integration
    /// tests need root). Arguments after `--` go to `cargo test`.
    Test {
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Build with the release profile, then run `fastpath bench` as root: every datapath side by
    /// side, same node and across nodes. Writes target/bench/bench.json and bench.svg unless
    /// arguments say otherwise; arguments after `--` go to `fastpath bench` (e.g.
    /// `cargo xtask bench -- --quick`, `-- --json bench.json --svg bench.svg`).
    Bench {
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// rustfmt check and clippy (warnings are errors) over every crate, the eBPF one included.
    Lint,
}

fn main() {
    if let Err(e) = run(Cli::parse()) {
        eprintln!("xtask: error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.task {
        Task::Build { release } => build(release, false),
        Task::Run { release, args } => {
            // aya-build replays the eBPF build's whole log as cargo warnings on every build: keep
            // the demo's output readable, and show the log only when the build fails.
            if build(release, true).is_err() {
                build(release, false)?;
            }
            let binary = workspace_root()
                .join("target")
                .join(if release { "release" } else { "debug" })
                .join("fastpath");
            if args == ["agents"] {
                if !is_root() {
                    bail!("the agents demo creates namespaces and starts etcd: run it as root");
                }
                packages::ensure_demo_packages()?;
                return agents_demo::run(&binary);
            }
            if !args.is_empty() {
                return run_command(as_root(&binary)?.args(&args));
            }
            // The demo: bring the cluster up, prove every pod reaches every other, and show
            // what the programs counted doing it.
            run_command(as_root(&binary)?.arg("up"))?;
            println!();
            run_command(as_root(&binary)?.arg("check"))?;
            println!();
            run_command(as_root(&binary)?.arg("stats"))
        }
        Task::Test { args } => {
            if !is_root() {
                bail!(
                    "the integration tests create namespaces and load eBPF programs: run `cargo xtask test` as root"
                );
            }
            packages::ensure_test_packages()?;
            build(false, false)?;
            let mut cmd = cargo();
            cmd.arg("test").args(&args);
            run_command(&mut cmd)
        }
        Task::Bench { args } => {
            if build(true, true).is_err() {
                build(true, false)?;
            }
            let binary = workspace_root().join("target/release/fastpath");
            let mut args = args;
            let mut written = Vec::new();
            for (flag, file) in [("--json", "bench.json"), ("--svg", "bench.svg")] {
                if !args.iter().any(|a| a == flag) {
                    let path = workspace_root().join("target/bench").join(file);
                    std::fs::create_dir_all(path.parent().expect("a directory"))?;
                    args.extend([flag.to_string(), path.display().to_string()]);
                    written.push(path.display().to_string());
                }
            }
            run_command(as_root(&binary)?.arg("bench").args(&args))?;
            if !written.is_empty() {
                println!("written: {}", written.join(", "));
            }
            Ok(())
        }
        Task::Lint => {
            toolchain::ensure()?;
            packages::ensure_build_packages()?;
            run_command(cargo().args(["fmt", "--all", "--check"]))?;
            run_command(cargo().args(["clippy", "--all-targets", "--", "-D", "warnings"]))?;
            // The eBPF crate only builds for the BPF target, so it gets its own clippy run.
            run_command(
                Command::new("rustup")
                    .current_dir(workspace_root().join("datapath-ebpf"))
                    .env("PATH", toolchain::path_with_cargo_bin())
                    .args(["run", "nightly", "cargo", "clippy", "--release"])
                    .args(["--target", "bpfel-unknown-none", "-Z", "build-std=core"])
                    .args(["--", "-D", "warnings"]),
            )
        }
    }
}

fn build(release: bool, quiet: bool) -> Result<()> {
    toolchain::ensure()?;
    packages::ensure_build_packages()?;
    let mut cmd = cargo();
    cmd.arg("build");
    if quiet {
        cmd.arg("--quiet");
    }
    if release {
        cmd.arg("--release");
    }
    run_command(&mut cmd)
}

/// The workspace's root (xtask lives one level below it).
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask has a parent directory")
        .to_path_buf()
}

/// `cargo` from the stable toolchain, in the workspace, with the installed tools on PATH.
fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(workspace_root());
    cmd.env("PATH", toolchain::path_with_cargo_bin());
    cmd
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc_geteuid() == 0 }
}

unsafe extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

/// `binary`, run directly as root, or through sudo when we are not root.
fn as_root(binary: &Path) -> Result<Command> {
    if is_root() {
        return Ok(Command::new(binary));
    }
    if toolchain::which("sudo").is_none() {
        bail!("fastpath needs root and there is no sudo: run `cargo xtask run` as root");
    }
    let mut cmd = Command::new("sudo");
    cmd.arg("-E").arg(binary);
    Ok(cmd)
}

fn run_command(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("starting {:?}", cmd.get_program()))?;
    if !status.success() {
        bail!(
            "{:?} {:?} failed: {status}",
            cmd.get_program(),
            cmd.get_args().collect::<Vec<_>>()
        );
    }
    Ok(())
}
