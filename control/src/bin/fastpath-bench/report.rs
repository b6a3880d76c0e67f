//! The benchmark's report: medians with min–max per row and metric, ratios against the kernel
//! row of the group and family (and, for an IPv6 row, against the same datapath over IPv4), the
//! speed targets, a table for people, JSON for scripts, an SVG chart. Every JSON record that
//! names a row also names its family ("ipv4" or "ipv6").

use std::fmt::Write as _;

use serde::Serialize;

use super::{
    cni_report::CniReport,
    cost::ProgramCost,
    metric::{Metric, Sample},
    rows::{self, Family, Group, Kind, Row},
    run::Durations,
    system::Host,
};

#[derive(Clone, Debug, Serialize)]
pub struct RowInfo {
    pub row: Row,
    pub name: &'static str,
    pub group: Group,
    pub family: Family,
    pub kind: Kind,
    pub path: &'static str,
}

/// One row × metric over the rounds.
#[derive(Clone, Debug, Serialize)]
pub struct Cell {
    pub row: Row,
    pub family: Family,
    pub metric: Metric,
    pub unit: &'static str,
    pub median: f64,
    pub min: f64,
    pub max: f64,
    /// median / the median of the kernel row of the group and family (kernel bridge or kernel
    /// vxlan, over the row's own family).
    pub vs_kernel: f64,
    /// For an IPv6 row: median / the median of the same datapath's IPv4 row; null for IPv4 rows.
    pub vs_ipv4: Option<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Target {
    pub what: &'static str,
    /// The row it was measured on (the best fast-path row where the target says "best mode").
    pub row: Row,
    pub family: Family,
    pub ratio: f64,
    /// The bound: at least (higher-is-better targets) or at most.
    pub bound: f64,
    pub at_least: bool,
    pub met: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub host: Host,
    pub quick: bool,
    pub rounds: u32,
    pub durations: Durations,
    pub rows: Vec<RowInfo>,
    pub samples: Vec<Sample>,
    pub cells: Vec<Cell>,
    pub targets: Vec<Target>,
    /// Each fast-path row's programs: run time per run and runs per packet.
    pub program_costs: Vec<ProgramCost>,
    /// Why `program_costs` is empty, when its pass failed (the rounds are reported all the same).
    pub program_costs_error: Option<String>,
    /// How long CNI commands take: fastpath-cni against the reference bridge plugin.
    pub cni: CniReport,
}

/// The median, minimum and maximum of `v`.
pub(super) fn spread(v: Vec<f64>) -> (f64, f64, f64) {
    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (median(v), min, max)
}

pub(super) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The kernel row the ratios of a group's rows of a family are against.
pub fn kernel_row(group: Group, family: Family) -> Row {
    match (group, family) {
        (Group::SameNode, Family::Ipv4) => Row::Bridge,
        (Group::SameNode, Family::Ipv6) => Row::BridgeIpv6,
        (Group::CrossNode, Family::Ipv4) => Row::Vxlan,
        (Group::CrossNode, Family::Ipv6) => Row::VxlanIpv6,
    }
}

/// Every row × metric measured: median, min–max, and the ratios.
fn cells(samples: &[Sample]) -> Vec<Cell> {
    let values = |row: Row, metric: Metric| -> Vec<f64> {
        samples
            .iter()
            .filter(|s| s.row == row && s.metric == metric)
            .map(|s| s.value)
            .collect()
    };
    let mut cells = Vec::new();
    for row in Row::ALL {
        for metric in Metric::ALL {
            let v = values(row, metric);
            if v.is_empty() {
                continue;
            }
            let kernel = median(values(kernel_row(row.group(), row.family()), metric));
            let ipv4 = match row.family() {
                Family::Ipv4 => None,
                Family::Ipv6 => Some(median(values(row.ipv4(), metric))),
            };
            let (m, min, max) = spread(v);
            cells.push(Cell {
                row,
                family: row.family(),
                metric,
                unit: metric.unit(),
                median: m,
                min,
                max,
                vs_kernel: m / kernel,
                vs_ipv4: ipv4.map(|ipv4| m / ipv4),
            });
        }
    }
    cells
}

impl Report {
    pub fn new(
        host: Host,
        quick: bool,
        rounds: u32,
        durations: Durations,
        samples: Vec<Sample>,
        program_costs: Result<Vec<ProgramCost>, String>,
        cni: CniReport,
    ) -> Self {
        let (program_costs, program_costs_error) = match program_costs {
            Ok(costs) => (costs, None),
            Err(error) => (Vec::new(), Some(error)),
        };
        let cells = cells(&samples);
        let mut report = Self {
            host,
            quick,
            rounds,
            durations,
            rows: Row::ALL
                .iter()
                .map(|&row| RowInfo {
                    row,
                    name: row.name(),
                    group: row.group(),
                    family: row.family(),
                    kind: row.kind(),
                    path: rows::describe(row),
                })
                .collect(),
            samples,
            cells,
            targets: Vec::new(),
            program_costs,
            program_costs_error,
            cni,
        };
        report.targets = report.evaluate_targets();
        report
    }

    pub fn median(&self, row: Row, metric: Metric) -> Option<f64> {
        self.cells
            .iter()
            .find(|c| c.row == row && c.metric == metric)
            .map(|c| c.median)
    }

    /// Of `candidates`, the one with the best median of `metric`.
    fn best(&self, candidates: &[Row], metric: Metric) -> Option<(Row, f64)> {
        candidates
            .iter()
            .filter_map(|&r| self.median(r, metric).map(|m| (r, m)))
            .max_by(|a, b| {
                let ord = a.1.total_cmp(&b.1);
                if metric.higher_is_better() {
                    ord
                } else {
                    ord.reverse()
                }
            })
    }

    /// The speed targets, each as measured in this run.
    fn evaluate_targets(&self) -> Vec<Target> {
        TARGETS
            .iter()
            .filter_map(|spec| {
                let (row, value) = self.best(spec.candidates, spec.metric)?;
                let ratio = value / self.median(spec.reference, spec.metric)?;
                Some(Target {
                    what: spec.what,
                    row,
                    family: row.family(),
                    ratio,
                    bound: spec.bound,
                    at_least: spec.at_least,
                    met: if spec.at_least {
                        ratio >= spec.bound
                    } else {
                        ratio <= spec.bound
                    },
                })
            })
            .collect()
    }

    /// The table, per group: median (min–max) and the ratio to the kernel row.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let h = &self.host;
        let _ = writeln!(
            out,
            "fastpath bench · kernel {} · {} CPUs ({}) · bridge netfilter: {}",
            h.kernel, h.cpus, h.cpu_model, h.bridge_netfilter
        );
        let _ = writeln!(
            out,
            "{} round(s), interleaved; UDP {} ms, TCP {} ms, RR {} ms per row and round; median (min–max), ×kernel row{}",
            self.rounds,
            self.durations.udp_ms,
            self.durations.tcp_ms,
            self.durations.rr_ms,
            if self.quick {
                "; --quick: one round, short runs, not for comparisons"
            } else {
                ""
            }
        );
        let _ = writeln!(
            out,
            "Limits: loopback is the generator's own ceiling (no device between sender and receiver): a \
             row near it is generator-bound. UDP sock is one reading socket's ceiling."
        );
        let _ = writeln!(
            out,
            "IPv6 rows: the kernel path and the fast path between the same pods' IPv6 addresses, the \
             same UDP datagrams (80-byte frames for IPv4's 60); ratios against the kernel row over IPv6."
        );
        for group in [Group::SameNode, Group::CrossNode] {
            for family in Family::ALL {
                let rows: Vec<Row> = Row::ALL
                    .into_iter()
                    .filter(|r| r.group() == group && r.family() == family)
                    .collect();
                let kernel = kernel_row(group, family);
                let _ = writeln!(
                    out,
                    "\n{}, {} (ratios against {} over {})",
                    match group {
                        Group::SameNode => "SAME NODE",
                        Group::CrossNode => "CROSS NODE",
                    },
                    family.name(),
                    kernel.name(),
                    family.name()
                );
                // Two tables per section, so a line fits a terminal: rates, then latency.
                let (rates, latency) = Metric::ALL.split_at(6);
                for metrics in [rates, latency] {
                    out.push_str(&self.render_table(
                        &rows,
                        metrics,
                        |row| format!("{} ({})", row.name(), kind_name(row.kind())),
                        |c| Some(cell_text(c)),
                    ));
                    out.push('\n');
                }
            }
        }
        out.push_str(&self.render_ipv6_against_ipv4());
        out.push_str(&self.render_program_costs());
        out.push_str(&self.cni.render());
        let _ = writeln!(out, "\nTARGETS (best fast-path mode, medians)");
        for t in &self.targets {
            let _ = writeln!(
                out,
                "  {} {}: {:.2}× ({} {} {:.2}×) [{}]",
                if t.met { "met    " } else { "NOT MET" },
                t.what,
                t.ratio,
                t.row.name(),
                if t.at_least { "needs ≥" } else { "needs ≤" },
                t.bound,
                t.row.group().name()
            );
        }
        out
    }

    /// One line per row, named by `label`, one column per metric, each cell as `text` shows it
    /// ("-" where nothing was measured).
    fn render_table(
        &self,
        rows: &[Row],
        metrics: &[Metric],
        label: fn(Row) -> String,
        text: fn(&Cell) -> Option<String>,
    ) -> String {
        let header: Vec<&str> = std::iter::once("ROW")
            .chain(metrics.iter().map(|m| m.label()))
            .collect();
        let lines: Vec<Vec<String>> = rows
            .iter()
            .map(|&row| {
                std::iter::once(label(row))
                    .chain(metrics.iter().map(|&metric| {
                        self.cells
                            .iter()
                            .find(|c| c.row == row && c.metric == metric)
                            .and_then(text)
                            .unwrap_or_else(|| "-".into())
                    }))
                    .collect()
            })
            .collect();
        control::report::table(&header, &lines, 1)
    }

    /// What IPv6 costs each datapath: every IPv6 row's medians as ratios to its IPv4 twin's.
    fn render_ipv6_against_ipv4(&self) -> String {
        let rows: Vec<Row> = Row::ALL
            .into_iter()
            .filter(|r| r.family() == Family::Ipv6)
            .collect();
        let metrics = [
            Metric::UdpRate,
            Metric::UdpCpu,
            Metric::UdpSocket,
            Metric::Tcp1,
            Metric::Tcp4,
            Metric::RrP50,
            Metric::RrP99,
        ];
        format!(
            "\nIPv6 AGAINST IPv4 (each IPv6 row's median / the same datapath's over IPv4, same run)\n{}",
            self.render_table(
                &rows,
                &metrics,
                |row| format!("{} ({})", row.name(), row.group().name()),
                |c| c.vs_ipv4.map(|ratio| format!("×{ratio:.2}")),
            )
        )
    }

    /// Each fast-path row's programs: run time, runs per packet, and their share of the row's CPU
    /// time per packet.
    fn render_program_costs(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "\nPROGRAM RUN TIME (fast-path rows: UDP again, with the kernel's BPF run-time statistics on)"
        );
        if let Some(error) = &self.program_costs_error {
            let _ = writeln!(out, "  not measured: {error}");
            return out;
        }
        let header = ["ROW", "PROGRAM", "ns/run", "runs/pkt", "of CPU/pkt"];
        let lines: Vec<Vec<String>> = self
            .program_costs
            .iter()
            .map(|c| {
                let share = self
                    .median(c.row, Metric::UdpCpu)
                    .map_or("-".into(), |cpu| {
                        format!("{:.1}%", 100.0 * c.ns_per_run * c.runs_per_packet / cpu)
                    });
                vec![
                    c.row.label(),
                    c.program.clone(),
                    format!("{:.0}", c.ns_per_run),
                    format!("{:.2}", c.runs_per_packet),
                    share,
                ]
            })
            .collect();
        out.push_str(&control::report::table(&header, &lines, 2));
        let _ = writeln!(
            out,
            "\nEach run includes part of the statistics' own clock reads; bench_sink (three header \
             checks and a counter) bounds that from above. The share is an upper bound too: run \
             time with the statistics on, CPU/pkt from the rounds, without. The rest of a packet's \
             CPU time is the kernel's (sockets, veth, redirect, IP)."
        );
        out
    }

    /// A bar chart of each row's ratio to the kernel row of its group and family, per metric;
    /// IPv6 rows are lighter and named so.
    pub fn svg(&self) -> String {
        let metrics = [
            Metric::UdpRate,
            Metric::UdpSocket,
            Metric::Tcp1,
            Metric::Tcp4,
            Metric::RrRate,
        ];
        let rows: Vec<Row> = Row::ALL.to_vec();
        let (bar_h, gap, label_w, chart_w) = (14.0, 6.0, 210.0, 420.0);
        let block_h = rows.len() as f64 * bar_h + 30.0;
        let (cni_block, cni_h) = self.cni.svg_block(
            40.0 + metrics.len() as f64 * (block_h + gap),
            label_w,
            chart_w,
        );
        let height = 60.0 + metrics.len() as f64 * (block_h + gap) + cni_h;
        let max_ratio = self
            .cells
            .iter()
            .filter(|c| metrics.contains(&c.metric))
            .map(|c| c.vs_kernel)
            .fold(1.0, f64::max)
            .min(20.0);
        let x = |r: f64| label_w + chart_w * r.min(max_ratio) / max_ratio;
        let mut s = String::new();
        let _ = writeln!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{height}" font-family="sans-serif" font-size="11">"#,
            label_w + chart_w + 80.0
        );
        let _ = writeln!(
            s,
            r#"<text x="10" y="20" font-size="14">fastpath bench: median ratio to the kernel row (bridge same node, VXLAN cross node); kernel {}, {} CPUs</text>"#,
            xml(&self.host.kernel),
            self.host.cpus
        );
        let _ = writeln!(
            s,
            r#"<text x="10" y="34">IPv6 rows (lighter) against the kernel row over IPv6, IPv4 rows against the one over IPv4</text>"#
        );
        let mut y = 40.0;
        for metric in metrics {
            let _ = writeln!(
                s,
                r#"<text x="10" y="{}" font-weight="bold">{} (higher is better)</text>"#,
                y + 12.0,
                xml(metric.label())
            );
            let one = x(1.0);
            let _ = writeln!(
                s,
                r#"<line x1="{one}" y1="{}" x2="{one}" y2="{}" stroke="black" stroke-dasharray="3,3"/>"#,
                y + 16.0,
                y + block_h
            );
            for (i, row) in rows.iter().enumerate() {
                let Some(c) = self
                    .cells
                    .iter()
                    .find(|c| c.row == *row && c.metric == metric)
                else {
                    continue;
                };
                let top = y + 20.0 + i as f64 * bar_h;
                let color = match row.kind() {
                    Kind::FastPath => "#2b8a3e",
                    Kind::Kernel => "#495057",
                    Kind::Limit => "#adb5bd",
                    Kind::Reference => "#1971c2",
                    Kind::Baseline => "#e8590c",
                };
                let group = match row.group() {
                    Group::SameNode => "same",
                    Group::CrossNode => "cross",
                };
                let (family, opacity) = match row.family() {
                    Family::Ipv4 => ("", 1.0),
                    Family::Ipv6 => (" · IPv6", 0.55),
                };
                let _ = writeln!(
                    s,
                    r#"<text x="10" y="{}">{} · {}{family}</text><rect x="{label_w}" y="{top}" width="{:.1}" height="{}" fill="{color}" fill-opacity="{opacity}"/><text x="{:.1}" y="{}">{:.2}×</text>"#,
                    top + bar_h - 3.0,
                    group,
                    xml(row.name()),
                    x(c.vs_kernel) - label_w,
                    bar_h - 2.0,
                    x(c.vs_kernel) + 4.0,
                    top + bar_h - 3.0,
                    c.vs_kernel
                );
            }
            y += block_h + gap;
        }
        s.push_str(&cni_block);
        s.push_str("</svg>\n");
        s
    }
}

/// A speed target: the best of `candidates` on `metric`, as a ratio to `reference`, against a bound.
struct TargetSpec {
    what: &'static str,
    candidates: &'static [Row],
    metric: Metric,
    reference: Row,
    bound: f64,
    at_least: bool,
}

const SAME: &[Row] = &[Row::XdpSame, Row::TcSame];
const CROSS: &[Row] = &[Row::XdpCross, Row::TcCross];

const fn target(
    what: &'static str,
    candidates: &'static [Row],
    metric: Metric,
    reference: Row,
    bound: f64,
    at_least: bool,
) -> TargetSpec {
    TargetSpec {
        what,
        candidates,
        metric,
        reference,
        bound,
        at_least,
    }
}

const TARGETS: [TargetSpec; 12] = [
    target(
        "same node, best mode: UDP rate vs single veth",
        SAME,
        Metric::UdpRate,
        Row::Veth,
        0.95,
        true,
    ),
    target(
        "same node, best mode: UDP rate vs kernel bridge",
        SAME,
        Metric::UdpRate,
        Row::Bridge,
        1.40,
        true,
    ),
    target(
        "same node, best mode: TCP single stream vs single veth",
        SAME,
        Metric::Tcp1,
        Row::Veth,
        0.98,
        true,
    ),
    target(
        "same node, best mode: RR p50 vs single veth",
        SAME,
        Metric::RrP50,
        Row::Veth,
        1.02,
        false,
    ),
    target(
        "same node, xdp: UDP rate vs kernel bridge (a C devmap prototype: 0.89)",
        &[Row::XdpSame],
        Metric::UdpRate,
        Row::Bridge,
        0.89,
        true,
    ),
    target(
        "cross node, best mode: UDP rate vs kernel vxlan",
        CROSS,
        Metric::UdpRate,
        Row::Vxlan,
        1.5,
        true,
    ),
    target(
        "cross node, best mode: TCP single stream vs single veth",
        CROSS,
        Metric::Tcp1,
        Row::Veth,
        0.95,
        true,
    ),
    target(
        "cross node, best mode: RR p50 vs kernel vxlan",
        CROSS,
        Metric::RrP50,
        Row::Vxlan,
        0.85,
        false,
    ),
    target(
        "cross node, best mode: TCP single stream vs tun tunnel",
        CROSS,
        Metric::Tcp1,
        Row::Tun,
        13.0,
        true,
    ),
    target(
        "cost growth, same node: UDP rate with 10k entries vs with the demo's",
        &[Row::TcSameScaled],
        Metric::UdpRate,
        Row::TcSame,
        0.97,
        true,
    ),
    target(
        "monitor cost, same node: UDP rate with a drop monitor vs with none",
        &[Row::TcSameDropMonitor],
        Metric::UdpRate,
        Row::TcSame,
        0.97,
        true,
    ),
    target(
        "cost growth, cross node: UDP rate with 10k entries vs with the demo's",
        &[Row::TcCrossScaled],
        Metric::UdpRate,
        Row::TcCross,
        0.97,
        true,
    ),
];

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Limit => "limit",
        Kind::Kernel => "kernel",
        Kind::Reference => "reference",
        Kind::FastPath => "fast path",
        Kind::Baseline => "baseline",
    }
}

fn cell_text(c: &Cell) -> String {
    let d = |v: f64| {
        let v = c.metric.display(v);
        if v >= 100.0 {
            format!("{v:.0}")
        } else if v >= 10.0 {
            format!("{v:.1}")
        } else {
            format!("{v:.2}")
        }
    };
    let ratio = if matches!(c.metric, Metric::UdpRate | Metric::Tcp1 | Metric::RrP50) {
        format!(" ×{:.2}", c.vs_kernel)
    } else {
        String::new()
    };
    if c.min == c.max {
        format!("{}{ratio}", d(c.median))
    } else {
        format!("{} ({}–{}){ratio}", d(c.median), d(c.min), d(c.max))
    }
}

fn xml(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn udp_rate(row: Row, value: f64) -> Sample {
        Sample {
            round: 0,
            row,
            family: row.family(),
            metric: Metric::UdpRate,
            value,
        }
    }

    #[test]
    fn ipv6_rows_are_against_the_kernel_over_ipv6_and_their_ipv4_twin() {
        let samples = [
            (Row::Bridge, 100.0),
            (Row::TcSame, 150.0),
            (Row::BridgeIpv6, 80.0),
            (Row::TcSameIpv6, 120.0),
            (Row::Vxlan, 50.0),
            (Row::TcCross, 125.0),
            (Row::VxlanIpv6, 40.0),
            (Row::TcCrossIpv6, 100.0),
        ]
        .map(|(row, value)| udp_rate(row, value));
        let cells = cells(&samples);
        let cell = |row| cells.iter().find(|c| c.row == row).unwrap();
        assert_eq!(cell(Row::TcSame).vs_kernel, 1.5);
        assert_eq!(cell(Row::TcSame).vs_ipv4, None);
        assert_eq!(cell(Row::TcSameIpv6).vs_kernel, 1.5);
        assert_eq!(cell(Row::TcSameIpv6).vs_ipv4, Some(0.8));
        assert_eq!(cell(Row::TcCrossIpv6).vs_kernel, 2.5);
        assert_eq!(cell(Row::TcCrossIpv6).vs_ipv4, Some(0.8));
        assert_eq!(cell(Row::BridgeIpv6).family, Family::Ipv6);
        assert_eq!(cell(Row::Bridge).family, Family::Ipv4);
    }

    #[test]
    fn every_ipv6_row_runs_beside_its_ipv4_twin_and_kernel_row() {
        let ipv6: Vec<Row> = Row::ALL
            .into_iter()
            .filter(|r| r.family() == Family::Ipv6)
            .collect();
        assert_eq!(ipv6.len(), 6);
        for row in ipv6 {
            let twin = row.ipv4();
            assert_eq!(twin.family(), Family::Ipv4, "{row:?}");
            assert!(Row::ALL.contains(&twin), "{row:?}");
            assert_eq!(
                (twin.name(), twin.group(), twin.kind()),
                (row.name(), row.group(), row.kind())
            );
            assert!(Row::ALL.contains(&kernel_row(row.group(), Family::Ipv6)));
            assert!(row.label().ends_with(", IPv6)"), "{}", row.label());
        }
    }
}
