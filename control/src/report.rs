//! Renders counters for people (an aligned table) and for scripts (JSON).

use crate::datapath::CounterRow;

/// An aligned table of counter rows, or a line saying there is nothing yet.
pub fn counters_table(rows: &[CounterRow]) -> String {
    if rows.is_empty() {
        return "no packets counted yet\n".to_string();
    }
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.program.to_string(),
                r.verdict.to_string(),
                r.reason.to_string(),
                r.packets.to_string(),
                r.bytes.to_string(),
            ]
        })
        .collect();
    table(
        &["PROGRAM", "VERDICT", "REASON", "PACKETS", "BYTES"],
        &cells,
        3,
    )
}

/// An aligned table: columns before `numbers_from` left-aligned, the rest right-aligned. Rows
/// may be shorter than the header.
pub fn table(header: &[&str], rows: &[Vec<String>], numbers_from: usize) -> String {
    // Characters, not bytes: cells may hold '×', '–' or 'µ', and format! pads by characters.
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let mut text = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i > 0 {
                text.push_str("  ");
            }
            if i < numbers_from {
                text.push_str(&format!("{cell:<w$}"));
            } else {
                text.push_str(&format!("{cell:>w$}"));
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use datapath_common::reasons;

    #[test]
    fn table_aligns_numbers_right_and_names_every_row() {
        let rows = vec![
            CounterRow {
                program: "xdp_pod",
                reason: reasons::PASS_NO_ENDPOINT,
                verdict: "pass",
                packets: 1200,
                bytes: 98_000,
            },
            CounterRow {
                program: "tc_pod",
                reason: reasons::PASS_ARP,
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
        // Right-aligned last column: every line has the same length.
        assert!(lines.iter().all(|l| l.len() == lines[0].len()), "{table}");
    }

    #[test]
    fn empty_counters_say_so() {
        assert_eq!(counters_table(&[]), "no packets counted yet\n");
    }
}
