//! `fastpath bench --quick` end to end: every row × workload has a positive value, IPv6 rows
//! included, and the ratios are taken against the right kernel row (of the row's own family). No
//! timing is asserted: the figures are the report's.

use std::collections::HashMap;

use serde_json::Value;
use tests::fastpath;

/// Every row: its name in the JSON, its group and its family.
const ROWS: [(&str, &str, &str); 20] = [
    ("loopback", "same-node", "ipv4"),
    ("veth", "same-node", "ipv4"),
    ("bridge", "same-node", "ipv4"),
    ("bridge-ipv6", "same-node", "ipv6"),
    ("macvlan", "same-node", "ipv4"),
    ("xdp-same", "same-node", "ipv4"),
    ("xdp-same-ipv6", "same-node", "ipv6"),
    ("tc-same", "same-node", "ipv4"),
    ("tc-same-ipv6", "same-node", "ipv6"),
    ("tc-same-scaled", "same-node", "ipv4"),
    ("tc-same-drop-monitor", "same-node", "ipv4"),
    ("tc-same-trace-monitor", "same-node", "ipv4"),
    ("vxlan", "cross-node", "ipv4"),
    ("vxlan-ipv6", "cross-node", "ipv6"),
    ("xdp-cross", "cross-node", "ipv4"),
    ("xdp-cross-ipv6", "cross-node", "ipv6"),
    ("tc-cross", "cross-node", "ipv4"),
    ("tc-cross-ipv6", "cross-node", "ipv6"),
    ("tc-cross-scaled", "cross-node", "ipv4"),
    ("tun", "cross-node", "ipv4"),
];
/// The IPv6 rows: the kernel path and the fast path, same node and across.
const IPV6_ROWS: usize = 6;
const METRICS: [&str; 10] = [
    "udp-rate",
    "udp-cpu",
    "udp-socket",
    "tcp1",
    "tcp1-cpu",
    "tcp4",
    "rr-rate",
    "rr-p50",
    "rr-p99",
    "rr-p999",
];

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

#[test]
fn quick_bench_measures_every_row_and_workload() {
    tests::require_root();
    let dir = std::env::temp_dir().join(format!("fastpath-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (json, svg) = (dir.join("bench.json"), dir.join("bench.svg"));
    let out = fastpath("fp-", None)
        .args(["bench", "--quick", "--json"])
        .arg(&json)
        .arg("--svg")
        .arg(&svg)
        .output()
        .expect("fastpath bench runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "fastpath bench --quick: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for section in [
        "SAME NODE, IPv4",
        "SAME NODE, IPv6",
        "CROSS NODE, IPv4",
        "CROSS NODE, IPv6",
        "IPv6 AGAINST IPv4",
        "TARGETS",
    ] {
        assert!(stdout.contains(section), "no {section} in: {stdout}");
    }

    let report: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let families: HashMap<&str, &str> = ROWS.iter().map(|&(row, _, f)| (row, f)).collect();
    assert_eq!(
        ROWS.iter().filter(|(_, _, f)| *f == "ipv6").count(),
        IPV6_ROWS
    );
    let rows = report["rows"].as_array().unwrap();
    assert_eq!(rows.len(), ROWS.len(), "{rows:?}");
    for (info, (row, group, family)) in rows.iter().zip(ROWS) {
        assert_eq!(
            (
                info["row"].as_str(),
                info["group"].as_str(),
                info["family"].as_str()
            ),
            (Some(row), Some(group), Some(family)),
            "{info}"
        );
    }
    let mut samples: HashMap<(String, String), Vec<f64>> = HashMap::new();
    for s in report["samples"].as_array().unwrap() {
        let row = s["row"].as_str().unwrap();
        assert_eq!(s["family"].as_str(), Some(families[row]), "{s}");
        samples
            .entry((row.to_string(), s["metric"].as_str().unwrap().to_string()))
            .or_default()
            .push(s["value"].as_f64().unwrap());
    }
    for (row, _, _) in ROWS {
        for metric in METRICS {
            let v = samples
                .get(&(row.to_string(), metric.to_string()))
                .unwrap_or_else(|| panic!("no sample of {metric} on {row}"));
            assert!(
                v.iter().all(|x| x.is_finite() && *x > 0.0),
                "{row} {metric}: {v:?}"
            );
        }
    }
    let groups: HashMap<&str, &str> = ROWS.iter().map(|&(row, g, _)| (row, g)).collect();
    let cells = report["cells"].as_array().unwrap();
    assert_eq!(cells.len(), ROWS.len() * METRICS.len());
    let close = |got: f64, want: f64| (got - want).abs() <= 1e-9 * want.abs().max(1.0);
    for c in cells {
        let (row, metric) = (c["row"].as_str().unwrap(), c["metric"].as_str().unwrap());
        let family = families[row];
        assert_eq!(c["family"].as_str(), Some(family), "{c}");
        // Each family against the kernel path over the same family.
        let kernel = match (groups[row], family) {
            ("same-node", "ipv4") => "bridge",
            ("same-node", _) => "bridge-ipv6",
            (_, "ipv4") => "vxlan",
            _ => "vxlan-ipv6",
        };
        let of = |row: &str| median(samples[&(row.to_string(), metric.to_string())].clone());
        let own = of(row);
        let ratio = c["vs_kernel"].as_f64().unwrap();
        assert!(
            close(ratio, own / of(kernel)),
            "{row} {metric}: ratio {ratio}, want {} against {kernel}",
            own / of(kernel)
        );
        match row.strip_suffix("-ipv6") {
            Some(twin) => {
                let want = own / of(twin);
                let got = c["vs_ipv4"].as_f64().unwrap_or_else(|| panic!("{c}"));
                assert!(
                    close(got, want),
                    "{row} {metric}: {got} against {twin}, want {want}"
                );
            }
            None => assert!(c["vs_ipv4"].is_null(), "{c}"),
        }
    }
    let targets = report["targets"].as_array().unwrap();
    assert_eq!(targets.len(), 12, "every speed target is evaluated");
    // Cost growth: the scaled rows against the same mode with the demo's few entries.
    for (scaled, base) in [
        ("tc-same-scaled", "tc-same"),
        ("tc-cross-scaled", "tc-cross"),
    ] {
        let t = targets
            .iter()
            .find(|t| t["row"] == scaled)
            .unwrap_or_else(|| panic!("a cost-growth target on {scaled}"));
        let udp = |row: &str| median(samples[&(row.to_string(), "udp-rate".to_string())].clone());
        let want = udp(scaled) / udp(base);
        assert!(
            (t["ratio"].as_f64().unwrap() - want).abs() <= 1e-9 * want,
            "{t}"
        );
    }
    // Program run time: every program on a fast-path row's path ran for every packet that
    // reached the receiving pod, so the row's packets really took the fast path.
    assert!(
        report["program_costs_error"].is_null(),
        "the run-time pass failed: {}",
        report["program_costs_error"]
    );
    let costs = report["program_costs"].as_array().unwrap();
    for (row, programs) in [
        ("xdp-same", &["xdp_pod", "bench_sink"][..]),
        ("tc-same", &["tc_pod", "bench_sink"]),
        ("tc-same-scaled", &["tc_pod", "bench_sink"]),
        ("xdp-cross", &["xdp_pod", "tc_underlay", "bench_sink"]),
        ("tc-cross", &["tc_pod", "tc_underlay", "bench_sink"]),
        ("tc-cross-scaled", &["tc_pod", "tc_underlay", "bench_sink"]),
        // IPv6 too takes the fast path, and bench_sink counts it.
        ("xdp-same-ipv6", &["xdp_pod", "bench_sink"]),
        ("tc-same-ipv6", &["tc_pod", "bench_sink"]),
        ("xdp-cross-ipv6", &["xdp_pod", "tc_underlay", "bench_sink"]),
        ("tc-cross-ipv6", &["tc_pod", "tc_underlay", "bench_sink"]),
    ] {
        let measured: Vec<&Value> = costs.iter().filter(|c| c["row"] == row).collect();
        let names: Vec<&str> = measured
            .iter()
            .map(|c| c["program"].as_str().unwrap())
            .collect();
        assert_eq!(names, programs, "the programs on {row}'s path");
        for c in measured {
            let (ns, per_packet) = (
                c["ns_per_run"].as_f64().unwrap(),
                c["runs_per_packet"].as_f64().unwrap(),
            );
            assert!(ns > 0.0, "{c}");
            assert!(per_packet >= 0.99, "every packet passed {c}");
        }
    }
    assert!(
        stdout.contains("PROGRAM RUN TIME"),
        "the table shows the programs' run time: {stdout}"
    );

    // The CNI group: each row's ADD and DEL timed once per pair, medians against the bridge
    // plugin's, in the table and the chart; nothing of its networks left behind.
    let cni = &report["cni"];
    assert!(
        cni["error"].is_null(),
        "the CNI group failed: {}",
        cni["error"]
    );
    let pairs = cni["pairs"].as_u64().unwrap();
    let cni_samples = cni["samples"].as_array().unwrap();
    assert_eq!(cni_samples.len() as u64, pairs * 3 * 2, "{cni}");
    let ms = |row: &str, op: &str| -> Vec<f64> {
        cni_samples
            .iter()
            .filter(|s| s["row"] == row && s["op"] == op)
            .map(|s| s["ms"].as_f64().unwrap())
            .collect()
    };
    for row in ["bridge-plugin", "standalone", "chained"] {
        for op in ["add", "del"] {
            let v = ms(row, op);
            assert_eq!(v.len() as u64, pairs, "{row} {op}");
            assert!(
                v.iter().all(|x| x.is_finite() && *x > 0.0),
                "{row} {op}: {v:?}"
            );
            let cell = cni["cells"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["row"] == row && c["op"] == op)
                .unwrap_or_else(|| panic!("no CNI cell for {row} {op}"));
            let want = median(v) / median(ms("bridge-plugin", op));
            let ratio = cell["vs_bridge_plugin"].as_f64().unwrap();
            assert!((ratio - want).abs() <= 1e-9 * want, "{cell}");
        }
    }
    assert!(
        stdout.contains("\nCNI ("),
        "the table shows the CNI group: {stdout}"
    );
    let cni_pins: Vec<_> = std::fs::read_dir(control::cni::PIN_ROOT)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        !cni_pins
            .iter()
            .any(|n| n.to_string_lossy().starts_with("fpbench-")),
        "the CNI group removed its pins: {cni_pins:?}"
    );

    let chart = std::fs::read_to_string(&svg).unwrap();
    assert!(chart.starts_with("<svg") && chart.trim_end().ends_with("</svg>"));
    assert!(chart.contains("CNI:"), "the chart has the CNI block");
    assert!(
        chart.matches("<rect").count() >= 5 * ROWS.len(),
        "a bar per row and workload"
    );
    assert_eq!(
        chart.matches(" · IPv6</text>").count(),
        5 * IPV6_ROWS,
        "each IPv6 row's bars are named so"
    );
    std::fs::remove_dir_all(&dir).unwrap();
    let left = control::netns::list_with_prefix("fpbench-").unwrap();
    assert!(
        left.is_empty(),
        "the benchmark removed its namespaces: {left:?}"
    );
}
