//! `--key value` arguments.

use std::collections::HashMap;
use std::str::FromStr;

/// The `--key value` pairs (and bare `--flag`s, as "true") after the subcommand.
#[derive(Debug, Default, Clone)]
pub struct Args(HashMap<String, String>);

impl Args {
    /// Parses `--key value` pairs; a `--flag` followed by another `--key` (or nothing)
    /// is "true".
    pub fn parse(raw: impl IntoIterator<Item = String>) -> Args {
        let mut map = HashMap::new();
        let mut it = raw.into_iter().peekable();
        while let Some(a) = it.next() {
            let Some(key) = a.strip_prefix("--") else {
                eprintln!("unexpected argument {a}");
                std::process::exit(2);
            };
            let value = match it.peek() {
                Some(v) if !v.starts_with("--") => it.next().unwrap(),
                _ => "true".into(),
            };
            map.insert(key.to_string(), value);
        }
        Args(map)
    }

    /// An optional value; a malformed one exits 2.
    pub fn opt<T: FromStr>(&self, key: &str) -> Option<T> {
        self.0.get(key).map(|v| {
            v.parse().unwrap_or_else(|_| {
                eprintln!("bad value for --{key}: {v}");
                std::process::exit(2)
            })
        })
    }

    /// A required value; missing or malformed exits 2.
    pub fn req<T: FromStr>(&self, key: &str) -> T {
        self.opt(key).unwrap_or_else(|| {
            eprintln!("missing --{key}");
            std::process::exit(2)
        })
    }

    /// Whether `--key` was given.
    pub fn flag(&self, key: &str) -> bool {
        self.0.contains_key(key)
    }
}

#[cfg(test)]
mod tests {
    use super::Args;

    #[test]
    fn pairs_and_flags() {
        let a = Args::parse(["--quick", "--runs", "3", "--only", "w1,w3"].map(String::from));
        assert!(a.flag("quick"));
        assert_eq!(a.opt::<usize>("runs"), Some(3));
        assert_eq!(a.req::<String>("only"), "w1,w3");
        assert_eq!(a.opt::<u32>("credit"), None);
    }
}
