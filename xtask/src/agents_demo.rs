//! `cargo xtask run -- agents`: a local etcd (Debian's etcd-server, on 127.0.0.1), and three
//! simulated nodes on one underlay segment, each brought up by its own `fastpath agent` that is
//! told only about its own node. Shows them lease their subnets, find each other and pass
//! traffic, then removes everything it started (also when a step fails).

use std::{
    io::{Read as _, Write as _},
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

const PREFIX: &str = "fp-agents-";
const NODES: [(&str, u8); 3] = [("a", 1), ("b", 2), ("c", 3)];
/// The cluster network the nodes lease their pod subnets from (the benchmarking range).
const NETWORK: &str = "198.18.64.0/20";
const ETCD: &str = "/usr/bin/etcd";

/// Everything the demo started; stopped and removed on drop.
struct Demo {
    fastpath: PathBuf,
    dir: PathBuf,
    etcd: Option<Child>,
    agents: Vec<Child>,
}

impl Drop for Demo {
    fn drop(&mut self) {
        for agent in &mut self.agents {
            terminate(agent);
        }
        if let Some(etcd) = &mut self.etcd {
            let _ = etcd.kill();
            let _ = etcd.wait();
        }
        let _ = Command::new(&self.fastpath)
            .args(["--prefix", PREFIX, "down"])
            .stdout(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

unsafe extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

/// SIGTERM (the agent leaves its datapath, which `down` removes next), then reaps it.
fn terminate(child: &mut Child) {
    const SIGTERM: i32 = 15;
    // SAFETY: kill has no memory preconditions; the pid is this process's own child, not yet
    // reaped, so it names no other process.
    unsafe {
        libc_kill(child.id() as i32, SIGTERM);
    }
    let _ = child.wait();
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// GET `path` on 127.0.0.1:`port`: the status line and the body.
fn http_get(port: u16, path: &str) -> Result<(String, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    Ok((
        head.lines().next().unwrap_or_default().to_string(),
        body.to_string(),
    ))
}

fn wait_for(what: &str, within: Duration, mut done: impl FnMut() -> bool) -> Result<()> {
    let start = Instant::now();
    while !done() {
        if start.elapsed() > within {
            bail!("{what}: not within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// `ip` run in namespace `netns`, its output.
fn ip_in(netns: &str, args: &[&str]) -> String {
    Command::new("ip")
        .args(["-n", netns])
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

pub fn run(fastpath: &Path) -> Result<()> {
    if !Path::new(ETCD).exists() {
        bail!("{ETCD} is missing: the agents demo runs Debian's etcd-server");
    }
    let dir = std::env::temp_dir().join(format!("fastpath-agents-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut demo = Demo {
        fastpath: fastpath.to_path_buf(),
        dir: dir.clone(),
        etcd: None,
        agents: Vec::new(),
    };
    // Whatever an earlier, interrupted demo left under the prefix.
    Command::new(fastpath)
        .args(["--prefix", PREFIX, "down"])
        .stdout(Stdio::null())
        .status()?;

    let (client, peer) = (free_port()?, free_port()?);
    let client_url = format!("http://127.0.0.1:{client}");
    let peer_url = format!("http://127.0.0.1:{peer}");
    println!(
        "etcd: one member at {client_url} (data in {})",
        dir.display()
    );
    demo.etcd = Some(
        Command::new(ETCD)
            .arg("--name=demo")
            .arg(format!("--data-dir={}", dir.join("etcd").display()))
            .arg(format!("--listen-client-urls={client_url}"))
            .arg(format!("--advertise-client-urls={client_url}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster=demo={peer_url}"))
            .arg("--logger=zap")
            .arg(format!("--log-outputs={}", dir.join("etcd.log").display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting etcd")?,
    );
    wait_for("etcd healthy", Duration::from_secs(20), || {
        http_get(client, "/health").is_ok_and(|(_, body)| body.contains("true"))
    })?;

    let mut metrics_ports = Vec::new();
    for (name, i) in NODES {
        let file = dir.join(format!("{name}.toml"));
        std::fs::write(
            &file,
            format!(
                "mode = \"tc\"\n\n[[node]]\nname = \"{name}\"\nsimulated = true\n\
                 underlay = {{ device = \"fp-ul0\", address = \"198.18.0.{i}/24\", mtu = 1500 }}\n\
                 pods = [{{ name = \"{name}1\" }}]\n\n\
                 [[underlay_segment]]\nname = \"lan\"\nnodes = [\"{name}\"]\n"
            ),
        )?;
        let port = free_port()?;
        metrics_ports.push(port);
        let log = std::fs::File::create(dir.join(format!("{name}.log")))?;
        println!(
            "node {name}: fastpath agent --config {} --etcd {client_url} --prefix {PREFIX} --network {NETWORK} --metrics 127.0.0.1:{port}",
            file.display()
        );
        demo.agents.push(
            Command::new(fastpath)
                .arg("agent")
                .arg("--config")
                .arg(&file)
                .args([
                    "--etcd",
                    &client_url,
                    "--prefix",
                    PREFIX,
                    "--network",
                    NETWORK,
                ])
                .args(["--metrics", &format!("127.0.0.1:{port}")])
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .context("starting fastpath agent")?,
        );
    }

    // Each node routes to the two others through its VXLAN device once it has their records.
    for (name, _) in NODES {
        let netns = format!("{PREFIX}{name}");
        wait_for(
            &format!("node {name} to learn its peers"),
            Duration::from_secs(30),
            || {
                ip_in(&netns, &["route", "show", "dev", "fp-vxlan"])
                    .lines()
                    .count()
                    == 2
            },
        )
        .with_context(|| format!("see {}", dir.join(format!("{name}.log")).display()))?;
    }
    println!();
    let mut pods = Vec::new();
    for (name, _) in NODES {
        let pod_ns = format!("{PREFIX}{name}-{name}1");
        let addr = ip_in(&pod_ns, &["-4", "-o", "addr", "show", "eth0"])
            .split_whitespace()
            .skip_while(|w| *w != "inet")
            .nth(1)
            .unwrap_or_default()
            .to_string();
        let routes = ip_in(
            &format!("{PREFIX}{name}"),
            &["route", "show", "dev", "fp-vxlan"],
        );
        println!("node {name}: pod {name}1 at {addr}; routes to its peers:");
        for route in routes.lines() {
            println!("    {route}");
        }
        pods.push((
            format!("{name}1"),
            pod_ns,
            addr.split('/').next().unwrap_or("").to_string(),
        ));
    }

    println!("\nFROM  TO               ICMP ECHO");
    let mut failed = 0;
    for (from, from_ns, _) in &pods {
        for (to, _, to_addr) in pods.iter().filter(|(to, _, _)| to != from) {
            let ok = Command::new("ip")
                .args([
                    "netns", "exec", from_ns, "ping", "-c", "1", "-W", "2", to_addr,
                ])
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            failed += usize::from(!ok);
            println!(
                "{from:<5} {:<16} {}",
                format!("{to} ({to_addr})"),
                if ok { "ok" } else { "no reply" }
            );
        }
    }

    let (_, health) = http_get(metrics_ports[0], "/healthz")?;
    let (_, metrics) = http_get(metrics_ports[0], "/metrics")?;
    println!("\nnode a's agent: /healthz {}", health.trim());
    for line in metrics.lines().filter(|l| {
        l.starts_with("fastpath_peers ")
            || l.starts_with("fastpath_etcd_connected ")
            || (l.starts_with("fastpath_datapath_packets_total") && l.contains("encapsulated"))
    }) {
        println!("    {line}");
    }
    println!(
        "\nstopping the agents and etcd, removing the nodes (fastpath --prefix {PREFIX} down)"
    );
    drop(demo);
    if failed > 0 {
        bail!("{failed} pod pairs did not reach each other");
    }
    Ok(())
}
