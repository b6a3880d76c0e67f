//! The Debian packages the build and the integration tests need: installed with apt when missing,
//! so that `cargo xtask build`, `lint` and `test` pass on a fresh machine by themselves. Checked
//! with dpkg first: nothing is installed, and apt is not touched, when everything is there.

use std::process::Command;

use anyhow::{Context as _, Result, bail};

/// Each package the build needs, and what for.
const BUILD_PACKAGES: &[(&str, &str)] = &[
    (
        "protobuf-compiler",
        "protoc, for the etcd client's gRPC code (the agent)",
    ),
    (
        "libprotobuf-dev",
        "the well-known .proto files the etcd client's build includes",
    ),
];

/// Each package, and what the tests use it for.
const TEST_PACKAGES: &[(&str, &str)] = &[
    ("iproute2", "ip and bridge, to look at what fastpath made"),
    ("iputils-ping", "ping between pods"),
    ("util-linux", "nsenter, to send as an unprivileged pod user"),
    ("nftables", "nft, the guard's tables"),
    (
        "containernetworking-plugins",
        "the reference CNI plugins: host-local, bridge",
    ),
    ("podman", "the end-to-end CNI test's container runtime"),
    ("runc", "podman's OCI runtime"),
    ("catatonit", "podman's pause process"),
    ("busybox-static", "the end-to-end test's container image"),
    ("strace", "the bpf(2) calls of a CNI ADD and DEL"),
    (
        "etcd-server",
        "the etcd cluster the agents find each other through",
    ),
    ("openssl", "the certificates of the TLS etcd test"),
    (
        "tcpdump",
        "reads back the pcap files `fastpath monitor` writes",
    ),
    (
        "bpftool",
        "dumps the pinned maps, which must show their fields by name",
    ),
];

/// Each package the agents' demo (`cargo xtask run -- agents`) needs, and what for.
const DEMO_PACKAGES: &[(&str, &str)] = &[
    (
        "etcd-server",
        "the etcd the demo's agents find each other through",
    ),
    ("iproute2", "ip, to show the nodes' routes and addresses"),
    ("iputils-ping", "ping between the demo's pods"),
    ("nftables", "nft, each node's guard"),
];

/// Installs the agents' demo's packages that are missing.
pub fn ensure_demo_packages() -> Result<()> {
    ensure(DEMO_PACKAGES, "the agents demo")
}

/// Installs the build packages that are missing (before anything is compiled).
pub fn ensure_build_packages() -> Result<()> {
    ensure(BUILD_PACKAGES, "the build")
}

/// Installs the test packages that are missing.
pub fn ensure_test_packages() -> Result<()> {
    ensure(TEST_PACKAGES, "the tests")
}

/// Installs the `packages` (name, why) that are missing, for `user` (as root; apt-get without
/// recommends, so that podman's network backend stays CNI rather than netavark).
fn ensure(packages: &[(&str, &str)], user: &str) -> Result<()> {
    let names: Vec<String> = packages.iter().map(|(n, _)| n.to_string()).collect();
    let missing = missing_of(&names, user)?;
    if missing.is_empty() {
        return Ok(());
    }
    let described = describe(packages, &missing);
    if !super::is_root() {
        bail!(
            "Debian packages for {user} are missing: {described}; install them as root (apt-get install {}) or run this as root",
            missing.join(" ")
        );
    }
    if super::toolchain::which("apt-get").is_none() {
        bail!(
            "Debian packages for {user} are missing and there is no apt-get to install them: {described}"
        );
    }
    eprintln!("xtask: installing Debian packages for {user}: {described}");
    super::run_command(Command::new("apt-get").args(["update", "-qq"]))
        .with_context(|| format!("apt-get update, before installing packages for {user}"))?;
    super::run_command(
        Command::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(&missing),
    )
    .with_context(|| format!("installing {}", missing.join(" ")))?;
    let still = missing_of(&missing, user)?;
    if !still.is_empty() {
        bail!(
            "apt-get finished but these are not installed: {}",
            still.join(" ")
        );
    }
    Ok(())
}

/// The packages of `names` dpkg does not list as installed.
fn missing_of(names: &[String], user: &str) -> Result<Vec<String>> {
    if super::toolchain::which("dpkg-query").is_none() {
        bail!(
            "Debian packages for {user} cannot be checked: this machine has no dpkg-query ({})",
            names.join(" ")
        );
    }
    // dpkg-query exits 1 when a name is unknown to it; what it prints for the others still holds.
    let out = Command::new("dpkg-query")
        .args(["-W", "-f", "${Package} ${db:Status-Abbrev}\\n"])
        .args(names)
        .output()
        .context("starting dpkg-query")?;
    let listed = String::from_utf8_lossy(&out.stdout);
    let installed: Vec<&str> = listed
        .lines()
        .filter_map(|l| l.split_once(' '))
        .filter(|(_, status)| status.trim() == "ii")
        .map(|(name, _)| name)
        .collect();
    Ok(names
        .iter()
        .filter(|n| !installed.contains(&n.as_str()))
        .cloned()
        .collect())
}

fn describe(packages: &[(&str, &str)], names: &[String]) -> String {
    names
        .iter()
        .map(|n| {
            let why = packages
                .iter()
                .find(|(p, _)| p == n)
                .map_or("", |(_, why)| *why);
            format!("{n} ({why})")
        })
        .collect::<Vec<_>>()
        .join(", ")
}
