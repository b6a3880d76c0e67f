//! A real etcd cluster for the agent's tests: Debian's `etcd` (etcd-server), N members on
//! 127.0.0.1 ports, each with its own data directory. Members are stopped (by the PIDs started
//! here) and their directories removed when the value is dropped, also when a test panics.

use std::{
    net::TcpListener,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// Where the Debian package puts the server.
const ETCD: &str = "/usr/bin/etcd";

pub struct EtcdCluster {
    members: Vec<Member>,
    dir: PathBuf,
}

struct Member {
    name: String,
    client_port: u16,
    args: Vec<String>,
    child: Option<Child>,
}

/// `n` distinct ports nothing listens on now (the kernel's choice, all held until every one is
/// chosen, then released for etcd to bind).
fn free_ports(n: usize) -> Vec<u16> {
    let held: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("a free port on 127.0.0.1"))
        .collect();
    held.iter()
        .map(|l| l.local_addr().expect("bound").port())
        .collect()
}

impl EtcdCluster {
    /// Starts `size` members and waits until the cluster answers writes.
    pub fn start(size: usize) -> Self {
        assert!(
            std::path::Path::new(ETCD).exists(),
            "{ETCD} is missing: install Debian's etcd-server (`cargo xtask test` does)"
        );
        let dir = std::env::temp_dir().join(format!("{}etcd", crate::unique_prefix()));
        std::fs::create_dir_all(&dir).expect("etcd test directory");
        let free = free_ports(2 * size);
        let ports: Vec<(u16, u16)> = free.chunks(2).map(|p| (p[0], p[1])).collect();
        let initial: Vec<String> = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| format!("m{i}=http://127.0.0.1:{peer}"))
            .collect();
        let token = dir.file_name().unwrap().to_string_lossy().to_string();
        let members = ports
            .iter()
            .enumerate()
            .map(|(i, (client, peer))| {
                let name = format!("m{i}");
                let client_url = format!("http://127.0.0.1:{client}");
                let peer_url = format!("http://127.0.0.1:{peer}");
                let args = vec![
                    format!("--name={name}"),
                    format!("--data-dir={}", dir.join(&name).display()),
                    format!("--listen-client-urls={client_url}"),
                    format!("--advertise-client-urls={client_url}"),
                    format!("--listen-peer-urls={peer_url}"),
                    format!("--initial-advertise-peer-urls={peer_url}"),
                    format!("--initial-cluster={}", initial.join(",")),
                    format!("--initial-cluster-token={token}"),
                    "--initial-cluster-state=new".to_string(),
                    "--logger=zap".to_string(),
                    format!(
                        "--log-outputs={}",
                        dir.join(format!("{name}.log")).display()
                    ),
                ];
                Member {
                    name,
                    client_port: *client,
                    args,
                    child: None,
                }
            })
            .collect();
        let mut cluster = Self { members, dir };
        for i in 0..size {
            cluster.start_member(i);
        }
        cluster.wait_writable(Duration::from_secs(20));
        cluster
    }

    /// The client URLs of every member.
    pub fn endpoints(&self) -> Vec<String> {
        self.members
            .iter()
            .map(|m| format!("http://127.0.0.1:{}", m.client_port))
            .collect()
    }

    /// Starts member `i` again (after [`Self::stop_member`]), on its data directory.
    pub fn start_member(&mut self, i: usize) {
        let member = &mut self.members[i];
        assert!(member.child.is_none(), "{} runs already", member.name);
        let child = Command::new(ETCD)
            .args(&member.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("etcd starts");
        member.child = Some(child);
    }

    /// Kills member `i` (SIGKILL) and reaps it.
    pub fn stop_member(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The index of the member that leads now.
    pub fn leader(&self) -> usize {
        let rt = crate::runtime();
        for (i, endpoint) in self.endpoints().iter().enumerate() {
            if self.members[i].child.is_none() {
                continue;
            }
            let leads = rt.block_on(async {
                let mut client = etcd_client::Client::connect([endpoint], None).await.ok()?;
                let status = client.status().await.ok()?;
                Some(status.header()?.member_id() == status.leader())
            });
            if leads == Some(true) {
                return i;
            }
        }
        panic!(
            "no member of the etcd cluster leads; logs in {}",
            self.dir.display()
        )
    }

    /// Kills every member.
    pub fn stop_all(&mut self) {
        for i in 0..self.members.len() {
            self.stop_member(i);
        }
    }

    /// Starts every stopped member again.
    pub fn start_stopped(&mut self) {
        for i in 0..self.members.len() {
            if self.members[i].child.is_none() {
                self.start_member(i);
            }
        }
    }

    /// Waits until a write through every endpoint list succeeds.
    pub fn wait_writable(&self, within: Duration) {
        let start = Instant::now();
        let rt = crate::runtime();
        loop {
            let endpoints = self.endpoints();
            let ok = rt.block_on(async {
                let Ok(mut client) = etcd_client::Client::connect(&endpoints, None).await else {
                    return false;
                };
                client.put("/fastpath-test/ready", "1", None).await.is_ok()
            });
            if ok {
                return;
            }
            assert!(
                start.elapsed() < within,
                "etcd did not accept a write within {within:?}; logs in {}",
                self.dir.display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        self.stop_all();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
