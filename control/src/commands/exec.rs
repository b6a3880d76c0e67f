//! `fastpath exec`: a command run inside a pod's network namespace.

use std::os::unix::process::CommandExt as _;

use crate::{netns::Netns, ownership::Ownership};

/// Enters the namespace of `pod` and replaces this process with `command`. Returns only on error.
pub fn run(prefix: &str, pod: &str, command: &[String]) -> anyhow::Error {
    let ownership = Ownership::new(prefix);
    let candidates: Vec<String> = match ownership.claimed_netns() {
        Ok(names) => names
            .into_iter()
            .filter(|n| n.ends_with(&format!("-{pod}")))
            .collect(),
        Err(e) => return anyhow::anyhow!("reading fastpath's ownership records: {e}"),
    };
    let netns = match candidates.as_slice() {
        [one] => Netns::named(one.clone()),
        [] => {
            return anyhow::anyhow!(
                "no pod '{pod}' is up under prefix '{prefix}' (see `fastpath status`)"
            );
        }
        many => return anyhow::anyhow!("pod name '{pod}' is ambiguous: {}", many.join(", ")),
    };
    let guard = match netns.enter() {
        Ok(guard) => guard,
        Err(e) => return e.into(),
    };
    // The guard is never dropped: the process becomes `command` inside the namespace.
    std::mem::forget(guard);
    let err = std::process::Command::new(&command[0])
        .args(&command[1..])
        .exec();
    anyhow::anyhow!("running '{}' in pod {pod}: {err}", command[0])
}
