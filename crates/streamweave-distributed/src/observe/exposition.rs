//! From the OpenMetrics text that `prometheus-client` writes to the Prometheus text format
//! (0.0.4), which every Prometheus version scrapes and `promtool check metrics` reads.
//!
//! The two differ in what matters here only in naming: an OpenMetrics counter family `x` has
//! samples `x_total`, while in the older format the family itself is named `x_total`; and
//! OpenMetrics adds `# UNIT` lines and a final `# EOF`, which the older format lacks.

use std::collections::HashSet;

/// The content type of [`to_text_format`]'s output.
pub const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";
/// The content type of what the renderers return.
pub const OPENMETRICS_FORMAT: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Rewrites OpenMetrics text to the Prometheus text format.
///
/// ```
/// use streamweave_distributed::observe::to_text_format;
/// let open = "# HELP x_seconds Time.\n# TYPE x_seconds counter\n# UNIT x_seconds seconds\nx_seconds_total 1.5\n# EOF\n";
/// assert_eq!(
///     to_text_format(open),
///     "# HELP x_seconds_total Time.\n# TYPE x_seconds_total counter\nx_seconds_total 1.5\n"
/// );
/// ```
pub fn to_text_format(openmetrics: &str) -> String {
    let counters: HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let rewritten = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        out.push_str(rewritten.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

/// Whether a scraper's `Accept` header asks for OpenMetrics (else: the text format).
///
/// ```
/// use streamweave_distributed::observe::wants_openmetrics;
/// assert!(wants_openmetrics(Some("application/openmetrics-text;version=1.0.0,text/plain;q=0.5")));
/// assert!(!wants_openmetrics(Some("text/plain")));
/// assert!(!wants_openmetrics(None));
/// ```
pub fn wants_openmetrics(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| a.contains("application/openmetrics-text"))
}
