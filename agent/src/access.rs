//! How the agent reaches etcd: its endpoints, and TLS when it is told to use it (a CA to check
//! the members' certificates against, and a client certificate when etcd asks for one).

use std::path::PathBuf;

use anyhow::{Context as _, Result, bail};
use etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions};

pub struct EtcdAccess {
    pub endpoints: Vec<String>,
    pub tls: Option<Tls>,
}

pub struct Tls {
    /// PEM: the CA that signed the members' certificates.
    pub ca: PathBuf,
    /// PEM: this agent's certificate and key, for etcd's --client-cert-auth.
    pub client: Option<(PathBuf, PathBuf)>,
}

impl EtcdAccess {
    /// Checks the endpoints against the TLS settings and reads the TLS files; errors name the
    /// endpoint or the file.
    pub fn options(&self) -> Result<Option<ConnectOptions>> {
        let Some(tls) = &self.tls else {
            if let Some(e) = self.endpoints.iter().find(|e| e.starts_with("https://")) {
                bail!(
                    "--etcd {e}: an https endpoint needs --etcd-cacert (the CA of etcd's certificates)"
                );
            }
            return Ok(None);
        };
        if let Some(e) = self.endpoints.iter().find(|e| !e.starts_with("https://")) {
            bail!("--etcd {e}: with --etcd-cacert every endpoint is https://");
        }
        let read = |path: &PathBuf| {
            std::fs::read(path).with_context(|| format!("reading {}", path.display()))
        };
        let mut options = TlsOptions::new().ca_certificate(Certificate::from_pem(read(&tls.ca)?));
        if let Some((cert, key)) = &tls.client {
            options = options.identity(Identity::from_pem(read(cert)?, read(key)?));
        }
        Ok(Some(ConnectOptions::new().with_tls(options)))
    }

    pub async fn connect(
        &self,
        options: &Option<ConnectOptions>,
    ) -> Result<Client, etcd_client::Error> {
        Client::connect(&self.endpoints, options.clone()).await
    }

    pub fn describe(&self) -> String {
        self.endpoints.join(",")
    }
}
