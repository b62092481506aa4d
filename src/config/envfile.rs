//! dotenv files (`env_file`): `KEY=value` lines, `#` comments, optional `export ` and quotes.

use std::collections::BTreeMap;
use std::path::Path;

/// Parses dotenv text; an error names the line and what is wrong.
pub fn parse_env_file(text: &str) -> Result<BTreeMap<String, String>, (usize, String)> {
    let mut vars = BTreeMap::new();
    for (index, raw) in text.lines().enumerate() {
        let line_no = index + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line).trim_start();
        let Some((key, value)) = line.split_once('=') else {
            return Err((line_no, format!("expected KEY=value, found {raw:?}")));
        };
        let key = key.trim();
        let key_ok = !key.is_empty()
            && !key.starts_with(|c: char| c.is_ascii_digit())
            && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !key_ok {
            return Err((line_no, format!("invalid variable name {key:?}")));
        }
        vars.insert(key.to_string(), unquote(value.trim()));
    }
    Ok(vars)
}

/// Reads and parses a dotenv file; the error says which file and line.
pub fn read_env_file(path: &Path) -> Result<BTreeMap<String, String>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read env_file {}: {e}", path.display()))?;
    parse_env_file(&text).map_err(|(line, msg)| format!("{}:{line}: {msg}", path.display()))
}

fn unquote(value: &str) -> String {
    let bytes = value.as_bytes();
    if bytes.len() >= 2 && (bytes[0] == b'"' || bytes[0] == b'\'') && bytes[bytes.len() - 1] == bytes[0] {
        let inner = &value[1..value.len() - 1];
        if bytes[0] == b'"' {
            return inner.replace("\\n", "\n").replace("\\\"", "\"");
        }
        return inner.to_string();
    }
    // An unquoted value ends at an inline comment.
    match value.find(" #") {
        Some(at) => value[..at].trim_end().to_string(),
        None => value.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotenv_lines() {
        let text = "# comment\nA=1\nexport B = two words\nC=\"quoted # not a comment\"\nD='single'\nE=x # note\n\n";
        let vars = parse_env_file(text).unwrap();
        let want = [("A", "1"), ("B", "two words"), ("C", "quoted # not a comment"), ("D", "single"), ("E", "x")];
        for (k, v) in want {
            assert_eq!(vars.get(k).map(String::as_str), Some(v), "variable {k}");
        }
        assert_eq!(vars.len(), want.len());
    }

    #[test]
    fn dotenv_errors_name_the_line() {
        let cases = [("A=1\nnonsense\n", 2), ("1X=2", 1), ("=3", 1)];
        for (text, line) in cases {
            assert_eq!(parse_env_file(text).unwrap_err().0, line, "text {text:?}");
        }
    }
}
