//! Reads Prometheus text exposition (what the sidecar serves on `/metrics`) into samples,
//! so tests can assert on counter deltas. Only the sample lines matter; `# HELP`/`# TYPE`
//! and comments are skipped.

use anyhow::{Context, Result, anyhow};

/// One sample line: `name{label="value",…} number`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Metric name, e.g. `sidecar_bitswap_blocks_sent_total`.
    pub name: String,
    /// Labels in the order they appear.
    pub labels: Vec<(String, String)>,
    /// The value.
    pub value: f64,
}

/// All samples of one scrape.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    /// Samples in exposition order.
    pub samples: Vec<Sample>,
}

impl Metrics {
    /// Parses a Prometheus text exposition.
    pub fn parse(text: &str) -> Result<Metrics> {
        let samples = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| parse_sample(l).with_context(|| format!("bad metrics line {l:?}")))
            .collect::<Result<_>>()?;
        Ok(Metrics { samples })
    }

    /// Sum of all samples named `name` whose labels include every pair in `labels`;
    /// `None` if no sample matches (a metric that does not exist is a failure, not a zero).
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let mut found = None;
        for s in self.samples.iter().filter(|s| s.name == name) {
            let matches = labels
                .iter()
                .all(|(k, v)| s.labels.iter().any(|(sk, sv)| sk == k && sv == v));
            if matches {
                *found.get_or_insert(0.0) += s.value;
            }
        }
        found
    }

    /// Like [`Metrics::sum`] but fails naming the metric when it is absent.
    pub fn require(&self, name: &str, labels: &[(&str, &str)]) -> Result<f64> {
        self.sum(name, labels).ok_or_else(|| {
            let names: std::collections::BTreeSet<&str> =
                self.samples.iter().map(|s| s.name.as_str()).collect();
            anyhow!("metric {name} {labels:?} not exposed; exposed: {names:?}")
        })
    }
}

fn parse_sample(line: &str) -> Result<Sample> {
    let (series, rest) = match line.find('{') {
        Some(_) => {
            let close = line
                .rfind('}')
                .ok_or_else(|| anyhow!("unclosed label set"))?;
            (&line[..close + 1], &line[close + 1..])
        }
        None => line.split_at(line.find(' ').ok_or_else(|| anyhow!("no value"))?),
    };
    let value_text = rest
        .split_whitespace()
        .next()
        .ok_or_else(|| anyhow!("no value"))?;
    let value = match value_text {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().with_context(|| format!("bad value {v:?}"))?,
    };
    let (name, labels) = match series.find('{') {
        Some(open) => (
            &series[..open],
            parse_labels(&series[open + 1..series.len() - 1])?,
        ),
        None => (series, Vec::new()),
    };
    Ok(Sample {
        name: name.trim().to_owned(),
        labels,
        value,
    })
}

fn parse_labels(mut s: &str) -> Result<Vec<(String, String)>> {
    let mut labels = Vec::new();
    loop {
        s = s.trim_start_matches([',', ' ']);
        if s.is_empty() {
            return Ok(labels);
        }
        let eq = s.find('=').ok_or_else(|| anyhow!("label without '='"))?;
        let key = s[..eq].trim().to_owned();
        let after = s[eq + 1..]
            .strip_prefix('"')
            .ok_or_else(|| anyhow!("unquoted label value"))?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c)) => value.push(c),
                    None => return Err(anyhow!("dangling escape")),
                },
                Some((_, c)) => value.push(c),
                None => return Err(anyhow!("unterminated label value")),
            }
        };
        labels.push((key, value));
        s = &after[end + 1..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_counters_by_label() {
        let m = Metrics::parse(
            "# HELP x y\n# TYPE sidecar_bitswap_wants_received counter\n\
             sidecar_bitswap_wants_received_total{kind=\"block\"} 3\n\
             sidecar_bitswap_wants_received_total{kind=\"have\",peer=\"a\\\"b\"} 4\n\
             sidecar_bitswap_dont_haves_sent_total 7\n",
        )
        .unwrap();
        assert_eq!(
            m.sum("sidecar_bitswap_wants_received_total", &[]),
            Some(7.0)
        );
        assert_eq!(
            m.sum("sidecar_bitswap_wants_received_total", &[("kind", "have")]),
            Some(4.0)
        );
        assert_eq!(
            m.sum("sidecar_bitswap_dont_haves_sent_total", &[]),
            Some(7.0)
        );
        assert_eq!(m.sum("absent_total", &[]), None);
    }
}
