//! Fixtures for fastpath's integration tests: namespaces that clean up after themselves, small
//! topologies built from them, and crafted frames.
//!
//! Every test builds its own namespaces with unique names (`fpt-<pid>-<seq>-<tag>`), so tests run
//! in parallel. Guards delete them on drop, also when a test panics; namespaces left by a killed
//! run (whose pid is gone) are removed the next time a fixture is made.

pub mod frames;

use std::{
    net::Ipv4Addr,
    sync::{
        Once,
        atomic::{AtomicU32, Ordering},
    },
};

use control::{
    netns::{self, Netns, OwnedNetns},
    topology::{self, Endpoint},
};

const TEST_PREFIX: &str = "fpt-";

/// Panics with a clear message unless running as root: the tests create devices and load programs.
pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "fastpath's integration tests need root: run them with `cargo xtask test` as root"
    );
}

/// A current-thread runtime: namespaces are per thread, so everything stays on the test's thread.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// A namespace name no other test (in this or a parallel run) uses.
pub fn unique_netns_name(tag: &str) -> String {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    remove_leftovers_of_dead_runs();
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    format!("{TEST_PREFIX}{}-{seq}-{tag}", std::process::id())
}

/// Deletes `fpt-<pid>-…` namespaces whose test process no longer exists.
fn remove_leftovers_of_dead_runs() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        for name in netns::list_with_prefix(TEST_PREFIX).unwrap_or_default() {
            let pid = name[TEST_PREFIX.len()..].split('-').next().unwrap_or("");
            let alive = !pid.is_empty() && std::path::Path::new("/proc").join(pid).exists();
            if !alive {
                let _ = Netns::named(name).delete();
            }
        }
    });
}

/// Two namespaces, `a` and `b`, joined by a veth pair in 198.18.0.0/30 (a = .1, b = .2).
pub struct VethPair {
    pub a: Endpoint,
    pub b: Endpoint,
    _namespaces: [OwnedNetns; 2],
}

impl VethPair {
    pub fn new(rt: &tokio::runtime::Runtime, tag: &str) -> Self {
        require_root();
        let ns_a =
            OwnedNetns::create(unique_netns_name(&format!("{tag}-a"))).expect("create netns a");
        let ns_b =
            OwnedNetns::create(unique_netns_name(&format!("{tag}-b"))).expect("create netns b");
        let a = Endpoint {
            netns: ns_a.netns().clone(),
            dev: "veth-a".into(),
            addr: Ipv4Addr::new(198, 18, 0, 1),
        };
        let b = Endpoint {
            netns: ns_b.netns().clone(),
            dev: "veth-b".into(),
            addr: Ipv4Addr::new(198, 18, 0, 2),
        };
        rt.block_on(async {
            topology::create_namespace(&a.netns)
                .await
                .expect("lo up in a");
            topology::create_namespace(&b.netns)
                .await
                .expect("lo up in b");
            topology::connect(&a, &b, 30)
                .await
                .expect("veth pair a<->b");
        });
        Self {
            a,
            b,
            _namespaces: [ns_a, ns_b],
        }
    }
}
