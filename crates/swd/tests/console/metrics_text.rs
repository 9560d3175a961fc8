//! A strict reader of the Prometheus text format (0.0.4), enough to check our `/metrics`:
//! every sample belongs to a family declared with `# TYPE` (and `# HELP`), its labels and
//! value parse, and no series appears twice.

use std::collections::{BTreeMap, BTreeSet};

/// One exposition, parsed.
#[derive(Debug)]
pub struct Exposition {
    /// Family name to type.
    pub types: BTreeMap<String, String>,
    /// (name, sorted labels) to value.
    pub samples: BTreeMap<(String, Vec<(String, String)>), f64>,
    /// The text as served.
    pub text: String,
}

impl Exposition {
    /// Parses `text`, panicking at the first line that breaks the format.
    pub fn parse(text: &str) -> Exposition {
        let mut types = BTreeMap::new();
        let mut helped = BTreeSet::new();
        let mut samples = BTreeMap::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let name = rest.split(' ').next().expect("name");
                assert!(helped.insert(name.to_string()), "two HELP lines for {name}");
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest
                    .split_once(' ')
                    .unwrap_or_else(|| panic!("bad TYPE line {line:?}"));
                assert!(
                    ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                    "{line}"
                );
                assert!(helped.contains(name), "TYPE before HELP for {name}");
                assert!(
                    types.insert(name.to_string(), kind.to_string()).is_none(),
                    "two TYPE lines for {name}"
                );
            } else if line.starts_with('#') || line.is_empty() {
                panic!("unexpected line {line:?} (the text format has no {line:?})");
            } else {
                let (series, value) = line
                    .rsplit_once(' ')
                    .unwrap_or_else(|| panic!("bad sample {line:?}"));
                let value: f64 = value.parse().unwrap_or_else(|_| panic!("bad value in {line:?}"));
                let (name, labels) = match series.split_once('{') {
                    Some((name, rest)) => (name, labels(rest.strip_suffix('}').expect("closing brace"))),
                    None => (series, Vec::new()),
                };
                let kind = types
                    .get(name)
                    .unwrap_or_else(|| panic!("{name} has no TYPE line before it"));
                if kind == "counter" {
                    assert!(name.ends_with("_total"), "counter {name} without _total");
                    assert!(value >= 0.0, "{line}");
                }
                let key = (name.to_string(), labels);
                assert!(samples.insert(key, value).is_none(), "{series} twice");
            }
        }
        assert!(!samples.is_empty(), "no samples in {text}");
        Exposition {
            types,
            samples,
            text: text.to_string(),
        }
    }

    /// The value of the series `name` with exactly these labels.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let mut labels: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        labels.sort();
        self.samples.get(&(name.to_string(), labels)).copied()
    }

    /// The sum of every series of `name`.
    pub fn sum(&self, name: &str) -> f64 {
        self.samples
            .iter()
            .filter(|((n, _), _)| n == name)
            .map(|(_, v)| v)
            .sum()
    }
}

/// `a="x",b="y"` (values without escapes, as ours are), sorted by name.
fn labels(text: &str) -> Vec<(String, String)> {
    let mut labels: Vec<(String, String)> = text
        .split("\",")
        .filter(|s| !s.is_empty())
        .map(|pair| {
            let (k, v) = pair
                .split_once("=\"")
                .unwrap_or_else(|| panic!("bad label {pair:?}"));
            (k.to_string(), v.trim_end_matches('"').to_string())
        })
        .collect();
    labels.sort();
    labels
}
