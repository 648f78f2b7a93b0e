//! The classic Prometheus text format (0.0.4) for scrapers that do not ask for OpenMetrics
//! (`promtool check metrics`, older agents, `curl` by hand).
//!
//! prometheus-client writes OpenMetrics only. The two formats differ, for what the agent exports, in
//! three things: OpenMetrics names a counter family without its `_total` suffix in `# HELP`/`# TYPE`
//! (the samples carry it), it may have `# UNIT` lines, and it ends with `# EOF`. Everything else
//! (gauges, histograms, label syntax) is the same text.

/// The media type of the classic text format.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// The media type of OpenMetrics, what the agent serves to clients that accept it.
pub const OPENMETRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// True when an `Accept` header asks for OpenMetrics (Prometheus does, preferring it).
pub fn wants_openmetrics(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| a.split(',').any(|part| part.trim().starts_with("application/openmetrics-text")))
}

/// Rewrites an OpenMetrics exposition (as prometheus-client writes it) into the classic text format.
pub fn to_text_format(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> =
        openmetrics.lines().filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter")).collect();
    let mut out = String::with_capacity(openmetrics.len() + 64 * counters.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
            counters.contains(name).then(|| format!("{prefix}{name}_total {tail}"))
        });
        match renamed {
            Some(l) => out.push_str(l.trim_end()),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_take_their_total_name_and_the_eof_goes() {
        let om = "# HELP a_syncs Reconcile passes.\n# TYPE a_syncs counter\na_syncs_total{result=\"success\"} 3\n\
                  # HELP a_files Files.\n# TYPE a_files gauge\na_files{state=\"loaded\"} 2\n\
                  # HELP a_d Wall time.\n# TYPE a_d histogram\n# UNIT a_d seconds\na_d_bucket{le=\"+Inf\"} 1\na_d_sum 0.1\na_d_count 1\n# EOF\n";
        assert_eq!(
            to_text_format(om),
            "# HELP a_syncs_total Reconcile passes.\n# TYPE a_syncs_total counter\na_syncs_total{result=\"success\"} 3\n\
             # HELP a_files Files.\n# TYPE a_files gauge\na_files{state=\"loaded\"} 2\n\
             # HELP a_d Wall time.\n# TYPE a_d histogram\na_d_bucket{le=\"+Inf\"} 1\na_d_sum 0.1\na_d_count 1\n"
        );
    }

    #[test]
    fn prometheus_gets_openmetrics_and_curl_gets_text() {
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert!(wants_openmetrics(Some(prometheus)));
        assert!(!wants_openmetrics(Some("*/*")));
        assert!(!wants_openmetrics(Some("text/plain; version=0.0.4")));
        assert!(!wants_openmetrics(None));
    }
}
