//! What building Rust eBPF needs and a fresh machine lacks: the nightly toolchain with rust-src
//! (for `-Z build-std=core`) and bpf-linker built against nightly's own libLLVM, so the LLVM that
//! writes the bitcode and the one that links it are the same version. Each step checks first and
//! does nothing when already done.

use std::{
    env,
    ffi::OsString,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};

const NIGHTLY: &str = "nightly";

pub fn ensure() -> Result<()> {
    if which("rustup").is_none() {
        bail!(
            "rustup is not on PATH: fastpath builds its eBPF programs with rustup's nightly toolchain"
        );
    }
    ensure_nightly()?;
    ensure_rust_src()?;
    ensure_bpf_linker()
}

fn ensure_nightly() -> Result<()> {
    let list = output(Command::new("rustup").args(["toolchain", "list"]))?;
    if list.lines().any(|l| l.starts_with("nightly-")) {
        return Ok(());
    }
    say("installing the nightly toolchain (minimal profile)");
    run(Command::new("rustup").args(["toolchain", "install", NIGHTLY, "--profile", "minimal"]))
}

fn ensure_rust_src() -> Result<()> {
    let installed = output(Command::new("rustup").args([
        "component",
        "list",
        "--installed",
        "--toolchain",
        NIGHTLY,
    ]))?;
    if installed.lines().any(|l| l.starts_with("rust-src")) {
        return Ok(());
    }
    say("adding rust-src to the nightly toolchain (needed for -Z build-std=core)");
    run(Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", NIGHTLY]))
}

/// nightly's LLVM major version, from `rustc +nightly -vV`.
fn nightly_llvm_major() -> Result<String> {
    let vv = output(Command::new("rustup").args(["run", NIGHTLY, "rustc", "-vV"]))?;
    vv.lines()
        .find_map(|l| l.strip_prefix("LLVM version: "))
        .and_then(|v| v.split('.').next())
        .map(str::to_string)
        .context("`rustc +nightly -vV` prints no LLVM version")
}

fn nightly_sysroot() -> Result<PathBuf> {
    let sysroot =
        output(Command::new("rustup").args(["run", NIGHTLY, "rustc", "--print", "sysroot"]))?;
    Ok(PathBuf::from(sysroot.trim()))
}

fn cargo_home() -> PathBuf {
    env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env::var_os("HOME").unwrap_or_else(|| "/root".into())).join(".cargo")
        })
}

/// PATH with `$CARGO_HOME/bin` in front, where `cargo install` puts bpf-linker.
pub fn path_with_cargo_bin() -> OsString {
    let mut dirs = vec![cargo_home().join("bin")];
    if let Some(path) = env::var_os("PATH") {
        dirs.extend(env::split_paths(&path));
    }
    env::join_paths(dirs).expect("PATH entries contain no ':'")
}

/// The first `name` on PATH (with `$CARGO_HOME/bin` first).
pub fn which(name: &str) -> Option<PathBuf> {
    env::split_paths(&path_with_cargo_bin())
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// nightly's own libLLVM (its file name carries the LLVM and toolchain versions).
fn nightly_libllvm() -> Result<PathBuf> {
    let sysroot_lib = nightly_sysroot()?.join("lib");
    std::fs::read_dir(&sysroot_lib)
        .with_context(|| format!("reading {}", sysroot_lib.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("libLLVM.so."))
        })
        .with_context(|| format!("no libLLVM.so.* in {}", sysroot_lib.display()))
}

/// True when bpf-linker runs on its own (so its libLLVM loads) and was built here against
/// `libllvm` (the stamp written after the install says so).
fn bpf_linker_matches(linker: &Path, stamp: &Path, libllvm: &Path) -> bool {
    let runs = Command::new(linker)
        .arg("--version")
        .output()
        .is_ok_and(|out| out.status.success());
    let built_for = std::fs::read_to_string(stamp).unwrap_or_default();
    runs && built_for.trim() == libllvm.display().to_string()
}

fn ensure_bpf_linker() -> Result<()> {
    let llvm_major = nightly_llvm_major()?;
    let libllvm = nightly_libllvm()?;
    // bpf-linker links libLLVM dynamically and records this directory as its run path, so it must
    // stay: it holds links to nightly's own libLLVM under both the link-time and the soname name.
    let prefix = cargo_home()
        .join("fastpath-llvm")
        .join(format!("llvm-{llvm_major}"));
    let stamp = prefix.join("bpf-linker.built-against");
    if let Some(linker) = which("bpf-linker")
        && bpf_linker_matches(&linker, &stamp, &libllvm)
    {
        return Ok(());
    }
    say(&format!(
        "building bpf-linker from crates.io against nightly's {} (a minute or two, once)",
        libllvm.display()
    ));
    let lib = prefix.join("lib");
    std::fs::create_dir_all(&lib).with_context(|| format!("creating {}", lib.display()))?;
    for name in [
        OsString::from("libLLVM.so"),
        libllvm.file_name().unwrap().to_os_string(),
    ] {
        let link = lib.join(name);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&libllvm, &link)
            .with_context(|| format!("linking {} to {}", link.display(), libllvm.display()))?;
    }
    run(Command::new("cargo")
        .args([
            "install",
            "--locked",
            "--force",
            "bpf-linker",
            "--no-default-features",
            "--features",
        ])
        .arg(format!("llvm-{llvm_major}"))
        .env("LLVM_PREFIX", &prefix)
        .env("PATH", path_with_cargo_bin()))?;
    std::fs::write(&stamp, libllvm.display().to_string())
        .with_context(|| format!("writing {}", stamp.display()))?;
    let linker = which("bpf-linker").context("bpf-linker was installed but is not on PATH")?;
    if !bpf_linker_matches(&linker, &stamp, &libllvm) {
        bail!("{} was just built but does not run", linker.display());
    }
    Ok(())
}

fn say(what: &str) {
    eprintln!("xtask: {what}");
}

fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("starting {:?}", cmd.get_program()))?;
    if !out.status.success() {
        bail!(
            "{:?} {:?} failed: {}",
            cmd.get_program(),
            cmd.get_args().collect::<Vec<_>>(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn run(cmd: &mut Command) -> Result<()> {
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
