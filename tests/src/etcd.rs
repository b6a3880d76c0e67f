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
    /// With TLS: clients must present a certificate of the test CA.
    pub pki: Option<Pki>,
}

/// A test CA, a server certificate for 127.0.0.1 and a client certificate (PEM files).
pub struct Pki {
    pub ca: PathBuf,
    pub server: (PathBuf, PathBuf),
    pub client: (PathBuf, PathBuf),
}

impl Pki {
    /// Made with the openssl command line in `dir`: P-256 keys, a day of validity.
    fn make(dir: &std::path::Path) -> Self {
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl")
                .current_dir(dir)
                .args(args)
                .output()
                .expect("openssl runs (Debian package openssl)");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let key = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        let ca = [
            "req",
            "-x509",
            "-days",
            "1",
            "-subj",
            "/CN=fastpath-test-ca",
        ];
        openssl(&[&ca[..], &key, &["-keyout", "ca.key", "-out", "ca.pem"]].concat());
        for (name, usage) in [
            ("server", "serverAuth,clientAuth"),
            ("client", "clientAuth"),
        ] {
            let ext = format!("{name}.ext");
            std::fs::write(
                dir.join(&ext),
                format!("subjectAltName=IP:127.0.0.1\nextendedKeyUsage={usage}\n"),
            )
            .unwrap();
            let (csr, keyfile, pem) = (
                format!("{name}.csr"),
                format!("{name}.key"),
                format!("{name}.pem"),
            );
            let subject = format!("/CN={name}");
            let request = ["req", "-subj", &subject];
            openssl(&[&request[..], &key, &["-keyout", &keyfile, "-out", &csr]].concat());
            openssl(&[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "1",
                "-extfile",
                &ext,
                "-out",
                &pem,
            ]);
        }
        Self {
            ca: dir.join("ca.pem"),
            server: (dir.join("server.pem"), dir.join("server.key")),
            client: (dir.join("client.pem"), dir.join("client.key")),
        }
    }

    /// Client options with the test CA and the client certificate.
    pub fn options(&self) -> etcd_client::ConnectOptions {
        let read = |p: &PathBuf| std::fs::read(p).unwrap();
        etcd_client::ConnectOptions::new().with_tls(
            etcd_client::TlsOptions::new()
                .ca_certificate(etcd_client::Certificate::from_pem(read(&self.ca)))
                .identity(etcd_client::Identity::from_pem(
                    read(&self.client.0),
                    read(&self.client.1),
                )),
        )
    }
}

struct Member {
    name: String,
    client_port: u16,
    args: Vec<String>,
    child: Option<Child>,
}

/// `n` distinct ports nothing listens on now (the kernel's choice, all held until every one is
/// chosen, then released for etcd to bind).
pub fn free_ports(n: usize) -> Vec<u16> {
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
        Self::start_with(size, false)
    }

    /// As [`Self::start`], serving clients over TLS only, to clients with a certificate of the
    /// test CA (`--client-cert-auth`).
    pub fn start_tls(size: usize) -> Self {
        Self::start_with(size, true)
    }

    fn start_with(size: usize, tls: bool) -> Self {
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
        let pki = tls.then(|| Pki::make(&dir));
        let scheme = if tls { "https" } else { "http" };
        let members = ports
            .iter()
            .enumerate()
            .map(|(i, (client, peer))| {
                let name = format!("m{i}");
                let client_url = format!("{scheme}://127.0.0.1:{client}");
                let peer_url = format!("http://127.0.0.1:{peer}");
                let mut args = vec![
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
                if let Some(pki) = &pki {
                    args.extend([
                        format!("--cert-file={}", pki.server.0.display()),
                        format!("--key-file={}", pki.server.1.display()),
                        format!("--trusted-ca-file={}", pki.ca.display()),
                        "--client-cert-auth=true".to_string(),
                    ]);
                }
                Member {
                    name,
                    client_port: *client,
                    args,
                    child: None,
                }
            })
            .collect();
        let mut cluster = Self { members, dir, pki };
        for i in 0..size {
            cluster.start_member(i);
        }
        cluster.wait_writable(Duration::from_secs(20));
        cluster
    }

    /// The client URLs of every member.
    pub fn endpoints(&self) -> Vec<String> {
        let scheme = if self.pki.is_some() { "https" } else { "http" };
        self.members
            .iter()
            .map(|m| format!("{scheme}://127.0.0.1:{}", m.client_port))
            .collect()
    }

    /// A client of the whole cluster (with the test CA's client certificate under TLS).
    pub async fn client(&self) -> Result<etcd_client::Client, etcd_client::Error> {
        self.client_of(&self.endpoints()).await
    }

    async fn client_of(
        &self,
        endpoints: &[String],
    ) -> Result<etcd_client::Client, etcd_client::Error> {
        etcd_client::Client::connect(endpoints, self.pki.as_ref().map(Pki::options)).await
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
                let mut client = self.client_of(std::slice::from_ref(endpoint)).await.ok()?;
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
                let Ok(mut client) = self.client_of(&endpoints).await else {
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
