//! Human formatting of durations, sizes and tables.

use std::time::Duration;

/// "3d 4h", "5m 2s", "800ms": the two largest units.
pub fn duration_ms(ms: u64) -> String {
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let text = humantime::format_duration(Duration::from_secs(ms / 1000)).to_string();
    text.split(' ').take(2).collect::<Vec<_>>().join(" ")
}

/// "12.3 MiB".
pub fn bytes(n: u64) -> String {
    bytesize::ByteSize::b(n).display().iec().to_string()
}

/// Left-aligned columns separated by two spaces.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        padded.join("  ").trim_end().to_string()
    };
    let mut out = vec![line(header.to_vec())];
    out.extend(rows.iter().map(|r| line(r.iter().map(String::as_str).collect())));
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_show_two_units() {
        let cases = [(0, "0ms"), (999, "999ms"), (1000, "1s"), (61_500, "1m 1s"), (90_061_000, "1day 1h")];
        for (ms, want) in cases {
            assert_eq!(duration_ms(ms), want, "{ms} ms");
        }
    }

    #[test]
    fn table_aligns_columns() {
        let t = table(&["NAME", "PID"], &[vec!["web".into(), "12".into()], vec!["a".into(), "3456".into()]]);
        assert_eq!(t, "NAME  PID\nweb   12\na     3456");
    }
}
