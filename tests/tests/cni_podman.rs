//! podman (its CNI backend) runs two containers on a network configured with the README's
//! standalone conflist: they reach each other, and fastpath's counters account for their traffic.
//!
//! podman runs inside a namespace the test owns (nsenter --net: `ip netns exec` would remount
//! /sys and hide the cgroup mounts runc needs), with every piece of its state — configuration,
//! storage, runc's state, the containers' cgroup parent — under the test's own names, so nothing
//! of the machine's podman setup is used or changed. No image registry is reachable: the
//! containers run from a busybox-static root filesystem.

use std::{
    net::Ipv4Addr,
    path::{Path, PathBuf},
    process::{Command, Output},
};

use control::datapath::Hook;
use datapath_common::reasons::REDIRECT_SWITCHED;
use serde_json::{Value, json};
use tests::cni::{CniHost, REFERENCE_PLUGINS, plugin_bin};

/// podman with the test's configuration, inside the node namespace.
struct Podman {
    work: PathBuf,
    netns: String,
    /// libcni's result cache, /var/lib/cni (no setting moves it), did not exist before.
    created_cni_cache: bool,
}

impl Podman {
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("timeout");
        cmd.arg("120")
            .arg("nsenter")
            .arg(format!("--net=/run/netns/{}", self.netns))
            .arg("podman")
            .args(args)
            .env_clear()
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .env("HOME", "/root")
            .env("TMPDIR", self.work.join("tmpdir"))
            .env("CONTAINERS_CONF", self.work.join("containers.conf"))
            .env("CONTAINERS_STORAGE_CONF", self.work.join("storage.conf"))
            .env(
                "CONTAINERS_REGISTRIES_CONF",
                self.work.join("registries.conf"),
            );
        cmd
    }

    #[track_caller]
    fn run(&self, args: &[&str]) -> String {
        let out: Output = self.command(args).output().expect("podman runs");
        assert!(
            out.status.success(),
            "podman {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        // Containers a failed test left running; their CNI DEL runs through the plugin.
        let _ = self.command(&["rm", "-a", "-f", "-t", "0"]).output();
        // The cgroup parent (empty once the containers are gone), in every hierarchy.
        let parent = |root: &Path| root.join(&self.netns);
        let mut roots = vec![PathBuf::from("/sys/fs/cgroup")];
        if let Ok(entries) = std::fs::read_dir("/sys/fs/cgroup") {
            roots.extend(entries.flatten().map(|e| e.path()));
        }
        for root in roots {
            remove_empty_dirs(&parent(&root));
        }
        let _ = std::fs::remove_dir_all(&self.work);
        if self.created_cni_cache {
            // Only if empty: what is in it is someone else's.
            let _ = std::fs::remove_dir("/var/lib/cni/results");
            let _ = std::fs::remove_dir("/var/lib/cni");
        }
    }
}

/// rmdir, depth first: cgroup directories can only be removed empty, from the leaves.
fn remove_empty_dirs(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            remove_empty_dirs(&entry.path());
        }
    }
    let _ = std::fs::remove_dir(dir);
}

fn require(binary: &str, package: &str) {
    assert!(
        ["/usr/bin", "/usr/sbin", "/bin", "/sbin"]
            .iter()
            .any(|d| Path::new(d).join(binary).exists()),
        "{binary} is missing: apt-get install --no-install-recommends {package} (.ci/run does)"
    );
}

/// A busybox root filesystem. Relative links: `busybox --install -s` would link to the host's
/// absolute path, which does not exist inside the container.
fn busybox_rootfs(dir: &Path) {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::copy("/bin/busybox", bin.join("busybox")).expect("busybox-static");
    let list = Command::new(bin.join("busybox"))
        .arg("--list")
        .output()
        .unwrap();
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if applet != "busybox" {
            std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
        }
    }
}

/// The README's standalone conflist with this test's name and state directories.
fn readme_standalone(host: &CniHost) -> Value {
    let readme = include_str!("../../README.md");
    let marker = "<!-- conflist: standalone -->";
    let after = &readme[readme.find(marker).expect("marker") + marker.len()..];
    let start = after.find("```json").unwrap() + "```json".len();
    let end = start + after[start..].find("```").unwrap();
    let mut list: Value = serde_json::from_str(&after[start..end]).unwrap();
    list["name"] = json!(host.network);
    list["plugins"][0]["dataDir"] = json!(host.data_dir());
    list["plugins"][0]["ipam"]["dataDir"] = json!(host.ipam_dir());
    list
}

#[test]
fn podman_containers_on_a_fastpath_network_talk_on_the_fast_path() {
    for (binary, package) in [
        ("podman", "podman"),
        ("runc", "runc"),
        ("busybox", "busybox-static"),
        ("catatonit", "catatonit"),
    ] {
        require(binary, package);
    }
    let host = CniHost::new();
    let netns = host.node.name().unwrap().to_string();
    assert!(
        Command::new("ip")
            .args(["-n", &netns, "link", "set", "lo", "up"])
            .status()
            .unwrap()
            .success()
    );
    let work = host.dir.join("podman");
    for d in [
        "net.d", "plugins", "rootfs", "tmp", "tmpdir", "storage", "run", "runc",
    ] {
        std::fs::create_dir_all(work.join(d)).unwrap();
    }
    busybox_rootfs(&work.join("rootfs"));
    std::os::unix::fs::symlink(plugin_bin(), work.join("plugins/fastpath-cni")).unwrap();
    let list = readme_standalone(&host);
    std::fs::write(
        work.join(format!("net.d/{}.conflist", host.network)),
        serde_json::to_vec_pretty(&list).unwrap(),
    )
    .unwrap();
    // runc keeps its state under the test's directory too.
    let runc = work.join("runc-wrapper");
    std::fs::write(
        &runc,
        format!(
            "#!/bin/sh\nexec /usr/sbin/runc --root {} \"$@\"\n",
            work.join("runc").display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&runc, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let w = |p: &str| work.join(p).display().to_string();
    // The settings this VM needs (../shared/CLIENTS.md): runc, not crun; ulimits within root's
    // hard limits; a DNS server inside the test range; the CNI backend on private directories.
    std::fs::write(
        work.join("containers.conf"),
        format!(
            r#"[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
dns_servers = ["198.18.100.1"]

[network]
network_backend = "cni"
cni_plugin_dirs = ["{plugins}", "{REFERENCE_PLUGINS}"]
network_config_dir = "{netd}"
default_network = "{network}"

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "{events}"
lock_type = "file"
tmp_dir = "{tmp}"
static_dir = "{static_dir}"
volume_path = "{volumes}"

[engine.runtimes]
runc = ["{runc}"]
"#,
            plugins = w("plugins"),
            netd = w("net.d"),
            network = host.network,
            events = w("events.log"),
            tmp = w("tmp"),
            static_dir = w("storage/libpod"),
            volumes = w("storage/volumes"),
            runc = runc.display(),
        ),
    )
    .unwrap();
    std::fs::write(
        work.join("storage.conf"),
        format!(
            "[storage]\ndriver = \"vfs\"\ngraphroot = \"{}\"\nrunroot = \"{}\"\n",
            w("storage"),
            w("run")
        ),
    )
    .unwrap();
    std::fs::write(work.join("registries.conf"), "").unwrap();

    let podman = Podman {
        work: work.clone(),
        netns: netns.clone(),
        created_cni_cache: !Path::new("/var/lib/cni").exists(),
    };
    let rootfs = w("rootfs");
    let cgroup_parent = format!("/{netns}");
    let mut ips = Vec::new();
    for name in ["c1", "c2"] {
        // Every option before --rootfs: after it, they would be the container's command.
        podman.run(&[
            "run",
            "-d",
            "--name",
            name,
            "--network",
            &host.network,
            "--init",
            "--cgroup-parent",
            &cgroup_parent,
            "--rootfs",
            &rootfs,
            "sleep",
            "300",
        ]);
        let format = format!(
            "{{{{(index .NetworkSettings.Networks \"{}\").IPAddress}}}}",
            host.network
        );
        let ip: Ipv4Addr = podman
            .run(&["inspect", name, "--format", &format])
            .parse()
            .expect("an IPv4 address");
        ips.push(ip);
    }
    assert_ne!(ips[0], ips[1]);
    assert_eq!(
        host.endpoint_entries().len(),
        2,
        "both containers in the maps"
    );

    let before = host.packets(Hook::Tc, REDIRECT_SWITCHED);
    podman.run(&[
        "exec",
        "c1",
        "ping",
        "-c",
        "3",
        "-W",
        "2",
        &ips[1].to_string(),
    ]);
    podman.run(&[
        "exec",
        "c2",
        "ping",
        "-c",
        "3",
        "-W",
        "2",
        &ips[0].to_string(),
    ]);
    let switched = host.packets(Hook::Tc, REDIRECT_SWITCHED) - before;
    assert!(
        switched >= 12,
        "the containers' pings went veth to veth through tc_pod: {switched} switched"
    );

    // podman rm returns after its CNI DEL: nothing of the network is left.
    podman.run(&["rm", "-f", "-t", "0", "c1", "c2"]);
    host.assert_clean();
    drop(podman);
}
