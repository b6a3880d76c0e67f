//! Address management by delegation: the plugin named in the configuration's `ipam.type` (the
//! reference host-local, for one) is found in CNI_PATH and run with this invocation's
//! environment and configuration, as the specification's delegation section describes.

use std::{
    io::Write as _,
    path::PathBuf,
    process::{Command as Process, Stdio},
};

use serde_json::Value;

use super::spec::{CniError, CniResult, Code, Env, SUPPORTED_VERSIONS};

/// The IPAM plugin of a network and the configuration it is given.
pub struct Ipam {
    plugin: String,
    binary: PathBuf,
    conf: Value,
}

impl Ipam {
    /// Finds `ipam.type` of `raw_conf` in CNI_PATH. `None` when the configuration has no ipam.
    pub fn find(env: &Env, raw_conf: &Value) -> Result<Option<Self>, CniError> {
        let Some(ipam) = raw_conf.get("ipam") else {
            return Ok(None);
        };
        let plugin = ipam
            .get("type")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty() && !t.contains('/'))
            .ok_or_else(|| {
                CniError::new(
                    Code::InvalidConfig,
                    "ipam.type must name an IPAM plugin (e.g. \"host-local\")",
                )
            })?
            .to_string();
        let binary = env
            .path
            .iter()
            .map(|dir| dir.join(&plugin))
            .find(|p| p.is_file())
            .ok_or_else(|| {
                CniError::new(
                    Code::InvalidConfig,
                    format!(
                        "IPAM plugin '{plugin}' is not in CNI_PATH ({})",
                        env.path
                            .iter()
                            .map(|p| p.display().to_string())
                            .collect::<Vec<_>>()
                            .join(":")
                    ),
                )
            })?;
        Ok(Some(Self {
            plugin,
            binary,
            conf: raw_conf.clone(),
        }))
    }

    /// Runs `command` (ADD, DEL, CHECK) with the network's configuration. A plugin that refuses
    /// its cniVersion (code 1: host-local of Debian's plugins 1.1.1 knows only 1.0.0) is asked
    /// which versions it speaks and gets the configuration again in the newest one both know;
    /// results of 1.0.0 and 1.1.0 are the same. Asking only then spares every ADD and DEL an
    /// extra run of the plugin.
    fn call(&self, env: &Env, command: &str, conf: &Value) -> Result<Option<Value>, CniError> {
        let refused = match self.exec(env, command, conf) {
            Err(e) if e.code == Code::IncompatibleVersion as u32 => e,
            other => return other,
        };
        let version = self.negotiate_version(env, conf)?;
        if version == conf["cniVersion"] {
            return Err(refused);
        }
        let mut conf = conf.clone();
        conf["cniVersion"] = version;
        self.exec(env, command, &conf)
    }

    /// Runs STATUS or GC, which came with 1.1.0, when the plugin speaks 1.1.0 (asked first: an
    /// older plugin takes them for another command and fails). `None` when it does not.
    fn call_1_1(&self, env: &Env, command: &str, conf: &Value) -> Result<Option<Value>, CniError> {
        if conf["cniVersion"] != "1.1.0" || self.negotiate_version(env, conf)? != "1.1.0" {
            return Ok(None);
        }
        self.exec(env, command, conf)
    }

    /// The newest version both this plugin and the IPAM plugin speak, preferring the network's.
    fn negotiate_version(&self, env: &Env, conf: &Value) -> Result<Value, CniError> {
        let wanted = conf["cniVersion"].as_str().unwrap_or_default();
        let reply = self.exec(env, "VERSION", &serde_json::json!({ "cniVersion": wanted }))?;
        let theirs: Vec<&str> = reply
            .as_ref()
            .and_then(|r| r.get("supportedVersions"))
            .and_then(Value::as_array)
            .map(|v| v.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if theirs.contains(&wanted) {
            return Ok(Value::String(wanted.to_string()));
        }
        match SUPPORTED_VERSIONS.iter().rev().find(|v| theirs.contains(v)) {
            Some(v) => Ok(Value::String(v.to_string())),
            None => Err(CniError::new(
                Code::IncompatibleVersion,
                format!(
                    "IPAM plugin '{}' supports none of {} (it supports {})",
                    self.plugin,
                    SUPPORTED_VERSIONS.join(", "),
                    theirs.join(", ")
                ),
            )),
        }
    }

    pub fn add(&self, env: &Env) -> Result<CniResult, CniError> {
        let out = self.call(env, "ADD", &self.conf)?.ok_or_else(|| {
            CniError::new(
                Code::Failed,
                format!("IPAM plugin '{}' returned no result", self.plugin),
            )
        })?;
        CniResult::from_value(
            &out,
            &format!("the result of IPAM plugin '{}'", self.plugin),
        )
    }

    /// Releases what ADD allocated for `env`'s container and interface; idempotent.
    pub fn del(&self, env: &Env) -> Result<(), CniError> {
        self.call(env, "DEL", &self.conf).map(drop)
    }

    /// The plugin's STATUS (when it has one): its unavailability is the network's.
    pub fn status(&self, env: &Env) -> Result<(), CniError> {
        self.call_1_1(env, "STATUS", &self.conf).map(drop)
    }

    /// Passes GC on, with the same valid attachments, so the plugin releases what it holds for
    /// attachments this plugin has no record of.
    pub fn gc(&self, env: &Env, valid_attachments: &Value) -> Result<(), CniError> {
        let mut conf = self.conf.clone();
        conf["cni.dev/valid-attachments"] = valid_attachments.clone();
        self.call_1_1(env, "GC", &conf).map(drop)
    }

    pub fn check(&self, env: &Env, prev_result: &Value) -> Result<(), CniError> {
        let mut conf = self.conf.clone();
        conf["prevResult"] = prev_result.clone();
        self.call(env, "CHECK", &conf).map(drop)
    }

    /// Runs the plugin; its error object, if it fails, comes back with its code and the plugin's
    /// name in the message.
    fn exec(&self, env: &Env, command: &str, conf: &Value) -> Result<Option<Value>, CniError> {
        let path = env
            .path
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(":");
        let args = env
            .args
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(";");
        let mut child = Process::new(&self.binary)
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", &env.container_id)
            .env(
                "CNI_NETNS",
                env.netns
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
            )
            .env("CNI_IFNAME", &env.ifname)
            .env("CNI_ARGS", args)
            .env("CNI_PATH", path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                CniError::new(
                    Code::Failed,
                    format!("cannot run IPAM plugin {}: {e}", self.binary.display()),
                )
            })?;
        let stdin = serde_json::to_vec(conf).expect("configurations serialize");
        match child.stdin.take().expect("piped stdin").write_all(&stdin) {
            // It exited without reading all of it: its exit status and output say why.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
            Err(e) => {
                return Err(CniError::new(
                    Code::Failed,
                    format!("cannot write to IPAM plugin '{}': {e}", self.plugin),
                ));
            }
            Ok(()) => {}
        }
        let out = child.wait_with_output().map_err(|e| {
            CniError::new(
                Code::Failed,
                format!("IPAM plugin '{}' did not finish: {e}", self.plugin),
            )
        })?;
        // What it said on stderr is passed on, as the specification asks of delegating plugins.
        let _ = std::io::stderr().write_all(&out.stderr);
        let parsed: Option<Value> = serde_json::from_slice(&out.stdout).ok();
        if !out.status.success() {
            let code = parsed
                .as_ref()
                .and_then(|v| v["code"].as_u64())
                .unwrap_or(Code::Failed as u64);
            let msg = parsed
                .as_ref()
                .and_then(|v| v["msg"].as_str())
                .map(str::to_string)
                .unwrap_or_else(|| String::from_utf8_lossy(&out.stderr).trim().to_string());
            let mut e = CniError::new(
                Code::Failed,
                format!("IPAM plugin '{}' {command} failed: {msg}", self.plugin),
            );
            e.code = u32::try_from(code).unwrap_or(Code::Failed as u32);
            if let Some(details) = parsed.as_ref().and_then(|v| v["details"].as_str()) {
                e.details = details.to_string();
            }
            return Err(e);
        }
        Ok(parsed)
    }
}
