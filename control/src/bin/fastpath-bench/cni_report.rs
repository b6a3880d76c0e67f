//! The CNI group's part of the report: medians with min–max per row and command, ratios against
//! the reference `bridge` plugin, the targets, its table and its chart.

use std::fmt::Write as _;

use serde::Serialize;

use super::{
    cni::{CniOp, CniRow, CniSample},
    report::{median, spread},
};

/// One row × command over the pairs, in milliseconds.
#[derive(Clone, Debug, Serialize)]
pub struct CniCell {
    pub row: CniRow,
    pub op: CniOp,
    pub median_ms: f64,
    pub min_ms: f64,
    pub max_ms: f64,
    /// median / the bridge plugin's median for the same command.
    pub vs_bridge_plugin: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct CniReport {
    pub pairs: u32,
    pub samples: Vec<CniSample>,
    pub cells: Vec<CniCell>,
    /// Why there are no samples, when the group failed (the other groups are reported the same).
    pub error: Option<String>,
}

/// fastpath-cni's bound for each command, as a ratio to the bridge plugin's median.
const BOUND: f64 = 1.0;

impl CniReport {
    pub fn new(pairs: u32, measured: Result<Vec<CniSample>, String>) -> Self {
        let (samples, error) = match measured {
            Ok(samples) => (samples, None),
            Err(error) => (Vec::new(), Some(error)),
        };
        let values = |row: CniRow, op: CniOp| -> Vec<f64> {
            samples
                .iter()
                .filter(|s| s.row == row && s.op == op)
                .map(|s| s.ms)
                .collect()
        };
        let mut cells = Vec::new();
        for op in [CniOp::Add, CniOp::Del] {
            let reference = values(CniRow::BridgePlugin, op);
            if reference.is_empty() {
                continue;
            }
            let reference = median(reference);
            for row in CniRow::ALL {
                let (m, min_ms, max_ms) = spread(values(row, op));
                cells.push(CniCell {
                    row,
                    op,
                    median_ms: m,
                    min_ms,
                    max_ms,
                    vs_bridge_plugin: m / reference,
                });
            }
        }
        Self {
            pairs,
            samples,
            cells,
            error,
        }
    }

    fn cell(&self, row: CniRow, op: CniOp) -> Option<&CniCell> {
        self.cells.iter().find(|c| c.row == row && c.op == op)
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "\nCNI (ms a runtime waits per command; {} ADD/DEL pairs per row, interleaved; host-local IPAM; \
             one resident container per network; ratios against the bridge plugin)",
            self.pairs
        );
        if let Some(error) = &self.error {
            let _ = writeln!(out, "  not measured: {error}");
            return out;
        }
        let header = ["ROW", "ADD ms", "DEL ms"];
        let lines: Vec<Vec<String>> = CniRow::ALL
            .iter()
            .map(|&row| {
                let mut line = vec![row.name().to_string()];
                for op in [CniOp::Add, CniOp::Del] {
                    line.push(self.cell(row, op).map_or("-".into(), |c| {
                        format!(
                            "{:.1} ({:.1}–{:.1}) ×{:.2}",
                            c.median_ms, c.min_ms, c.max_ms, c.vs_bridge_plugin
                        )
                    }));
                }
                line
            })
            .collect();
        out.push_str(&control::report::table(&header, &lines, 1));
        for op in [CniOp::Add, CniOp::Del] {
            if let Some(c) = self.cell(CniRow::Standalone, op) {
                let _ = writeln!(
                    out,
                    "  {} fastpath-cni {} p50 vs bridge plugin: {:.2}× (needs ≤ {BOUND:.2}×)",
                    if c.vs_bridge_plugin <= BOUND {
                        "met    "
                    } else {
                        "NOT MET"
                    },
                    op.name(),
                    c.vs_bridge_plugin
                );
            }
        }
        out
    }

    /// The chart's CNI block: each row's median per command as a ratio to the bridge plugin,
    /// starting at `y`; returns the SVG and the height it takes.
    pub fn svg_block(&self, y: f64, label_w: f64, chart_w: f64) -> (String, f64) {
        let bar_h = 14.0;
        let mut s = String::new();
        if self.cells.is_empty() {
            return (s, 0.0);
        }
        let max_ratio = self
            .cells
            .iter()
            .map(|c| c.vs_bridge_plugin)
            .fold(1.0, f64::max)
            .min(20.0);
        let x = |r: f64| label_w + chart_w * r.min(max_ratio) / max_ratio;
        let _ = writeln!(
            s,
            r#"<text x="10" y="{}" font-weight="bold">CNI: ms per command vs the bridge plugin (lower is better)</text>"#,
            y + 12.0
        );
        let one = x(1.0);
        let block_h = self.cells.len() as f64 * bar_h + 30.0;
        let _ = writeln!(
            s,
            r#"<line x1="{one}" y1="{}" x2="{one}" y2="{}" stroke="black" stroke-dasharray="3,3"/>"#,
            y + 16.0,
            y + block_h
        );
        for (i, c) in self.cells.iter().enumerate() {
            let top = y + 20.0 + i as f64 * bar_h;
            let color = match c.row {
                CniRow::BridgePlugin => "#1971c2",
                _ => "#2b8a3e",
            };
            let _ = writeln!(
                s,
                r#"<text x="10" y="{}">{} · {}</text><rect x="{label_w}" y="{top}" width="{:.1}" height="{}" fill="{color}"/><text x="{:.1}" y="{}">{:.2}× ({:.1} ms)</text>"#,
                top + bar_h - 3.0,
                c.op.name(),
                c.row.name(),
                x(c.vs_bridge_plugin) - label_w,
                bar_h - 2.0,
                x(c.vs_bridge_plugin) + 4.0,
                top + bar_h - 3.0,
                c.vs_bridge_plugin,
                c.median_ms
            );
        }
        (s, block_h)
    }
}
