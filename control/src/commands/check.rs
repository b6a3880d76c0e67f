//! `fastpath check`: one ICMP echo from every pod to every other, per address family both
//! pods have; fails when any echo goes unanswered.

use std::{path::Path, time::Duration};

use anyhow::{Result, bail};

use crate::{reach, report};

pub fn run(prefix: &str, config: Option<&Path>, json: bool) -> Result<()> {
    let cluster = super::load_cluster(config, prefix)?;
    let probes = reach::check_all(&cluster, Duration::from_secs(1));
    let failed = probes.iter().filter(|p| p.rtt_us.is_none()).count();
    if json {
        println!("{}", serde_json::to_string_pretty(&probes)?);
    } else {
        let rows: Vec<Vec<String>> = probes
            .iter()
            .map(|p| {
                let result = match (p.rtt_us, &p.error) {
                    (Some(us), _) => format!("ok {:.3} ms", us as f64 / 1000.0),
                    (None, Some(e)) => format!("FAILED: {e}"),
                    (None, None) => "FAILED: no reply within 1 s".into(),
                };
                vec![
                    p.from.clone(),
                    format!("{} ({})", p.to, p.to_address),
                    result,
                ]
            })
            .collect();
        print!("{}", report::table(&["FROM", "TO", "ICMP ECHO"], &rows, 3));
        let families = if probes.iter().any(|p| p.to_address.is_ipv6()) {
            " (IPv4 and IPv6)"
        } else {
            ""
        };
        println!(
            "{} of {} echoes answered{families}",
            probes.len() - failed,
            probes.len()
        );
    }
    if failed > 0 {
        bail!(
            "{failed} of {} echoes between pods went unanswered",
            probes.len()
        );
    }
    Ok(())
}
