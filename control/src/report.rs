//! Renders counters for people (an aligned table) and for scripts (JSON).

use crate::datapath::CounterRow;

/// An aligned table of counter rows, or a line saying there is nothing yet.
pub fn counters_table(rows: &[CounterRow]) -> String {
    if rows.is_empty() {
        return "no packets counted yet\n".to_string();
    }
    let header = ["PROGRAM", "VERDICT", "REASON", "PACKETS", "BYTES"];
    let cells: Vec<[String; 5]> = rows
        .iter()
        .map(|r| {
            [
                r.program.to_string(),
                r.verdict.to_string(),
                r.reason.to_string(),
                r.packets.to_string(),
                r.bytes.to_string(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &cells {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut out = String::new();
    let mut line = |cols: [&str; 5]| {
        // Text columns left-aligned, numbers right-aligned.
        out.push_str(&format!(
            "{:<w0$}  {:<w1$}  {:<w2$}  {:>w3$}  {:>w4$}\n",
            cols[0],
            cols[1],
            cols[2],
            cols[3],
            cols[4],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2],
            w3 = widths[3],
            w4 = widths[4],
        ));
    };
    line(header);
    for row in &cells {
        line([&row[0], &row[1], &row[2], &row[3], &row[4]]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_numbers_right_and_names_every_row() {
        let rows = vec![
            CounterRow {
                program: "xdp_pod",
                reason: "no-endpoint",
                verdict: "pass",
                packets: 1200,
                bytes: 98_000,
            },
            CounterRow {
                program: "tc_pod",
                reason: "arp",
                verdict: "pass",
                packets: 2,
                bytes: 84,
            },
        ];
        let table = counters_table(&rows);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3, "{table}");
        assert!(lines[0].starts_with("PROGRAM"));
        assert!(lines[1].starts_with("xdp_pod") && lines[1].ends_with("98000"));
        assert!(lines[2].starts_with("tc_pod ") && lines[2].ends_with("   84"));
        // Right alignment: every line has the same length.
        assert!(lines.iter().all(|l| l.len() == lines[0].len()), "{table}");
    }

    #[test]
    fn empty_counters_say_so() {
        assert_eq!(counters_table(&[]), "no packets counted yet\n");
    }
}
