//! The Grafana dashboards in deploy/grafana/dashboards query what the pipeline really has:
//! every ClickHouse panel and variable query, with its Grafana macros and the dashboard
//! variables (region, store, seller) expanded, both for "All" and for one concrete value each,
//! runs on ClickHouse 18.16 over simulated data and returns rows, and runs on a current engine
//! (chdb); every Prometheus panel asks only for metrics the services export; every data
//! source is a provisioned one.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::PathBuf,
};

use pipeline::{
    proto::ingest::event::Payload,
    region::Region,
    rows::{CommerceRow, EventRow, ProbeRow, RejectSource, RejectedRow},
    validate::{Accepted, Context, Limits, check_batch},
};
use serde_json::Value;

/// The metrics the dashboards may use, each exported by a service (checked against the
/// sources by `prometheus_panels_use_only_exported_metrics`), and each shown by some panel.
const METRICS: &[&str] = &[
    "gateway_events_accepted_total",
    "gateway_events_rejected_total",
    "gateway_stream_backlog_entries",
    "gateway_redis_used_memory_bytes",
    "gateway_redis_max_memory_bytes",
    "gateway_requests_refused_total",
    "gateway_requests_shed_total",
    "gateway_store_requests_total",
    "gateway_rpc_duration_seconds",
    "consumer_rows_inserted_total",
    "consumer_insert_duration_seconds",
    "consumer_insert_failures_total",
    "consumer_dead_letters_total",
    "consumer_redis_full_skips_total",
    "consumer_group_backlog_entries",
    "consumer_load_delay_seconds",
    "reporter_runs_total",
    "reporter_last_success_timestamp_seconds",
    "prober_target_up",
];

/// Where the services name their metrics.
const METRIC_SOURCES: &[&str] = &["gateway/src", "consumer/src", "reporter/src", "prober/src"];

/// Whether some service source names `metric` as a string literal (`counter!("…")` …).
fn exported(metric: &str) -> bool {
    fn walk(dir: &std::path::Path, needle: &str) -> bool {
        std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| {
                let path = e.path();
                if path.is_dir() {
                    walk(&path, needle)
                } else {
                    path.extension().is_some_and(|x| x == "rs")
                        && std::fs::read_to_string(&path).is_ok_and(|text| text.contains(needle))
                }
            })
    }
    let root = testkit::repo_root();
    let needle = format!("\"{metric}\"");
    METRIC_SOURCES
        .iter()
        .any(|dir| walk(&root.join(dir), &needle))
}

/// Series Prometheus derives from a histogram (telemetry.rs gives `_seconds` metrics buckets).
const HISTOGRAM_SERIES: &[&str] = &["_bucket", "_sum", "_count"];

/// One query of a dashboard, named by the dashboard file and the panel (or annotation, or
/// variable) title.
pub(crate) struct Query {
    pub(crate) name: String,
    pub(crate) text: String,
    /// The variables its dashboard defines.
    defined: BTreeSet<String>,
}

fn dashboard_files() -> Vec<PathBuf> {
    let dir = testkit::repo_root().join("deploy/grafana/dashboards");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    files
}

fn dashboards() -> Vec<(String, Value)> {
    dashboard_files()
        .into_iter()
        .map(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(&path).unwrap();
            let json = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{name} is not valid json: {e}"));
            (name, json)
        })
        .collect()
}

/// Every string under one of `keys`, anywhere in the dashboard (panels, rows' nested panels,
/// annotations), named after the nearest enclosing title.
fn collect(node: &Value, keys: &[&str], title: &str, out: &mut Vec<Query>) {
    match node {
        Value::Object(map) => {
            let title = map
                .get("title")
                .or_else(|| map.get("name"))
                .and_then(Value::as_str)
                .unwrap_or(title);
            for key in keys {
                if let Some(Value::String(text)) = map.get(*key) {
                    out.push(Query {
                        name: title.to_owned(),
                        text: text.clone(),
                        defined: BTreeSet::new(),
                    });
                }
            }
            for value in map.values() {
                collect(value, keys, title, out);
            }
        }
        Value::Array(items) => {
            for item in items {
                collect(item, keys, title, out);
            }
        }
        _ => {}
    }
}

fn queries(keys: &[&str]) -> Vec<Query> {
    let mut out = Vec::new();
    for (file, json) in dashboards() {
        let mut found = Vec::new();
        collect(&json, keys, "", &mut found);
        let defined: BTreeSet<String> = json["templating"]["list"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v["name"].as_str().map(str::to_owned))
            .collect();
        out.extend(found.into_iter().map(|q| Query {
            name: format!("{file}: {}", q.name),
            text: q.text,
            defined: defined.clone(),
        }));
    }
    out
}

/// The time range and interval the Grafana macros stand for.
#[derive(Clone, Copy)]
pub(crate) struct Range {
    pub(crate) from: i64,
    pub(crate) to: i64,
    pub(crate) interval_s: u64,
}

/// What a dashboard variable is set to, as Grafana holds it: every value ("All", which the
/// dashboards' variables offer without a custom all value), or the values picked.
#[derive(Clone, Debug)]
enum Selection {
    All,
    Values(Vec<String>),
}

/// The dashboard variables a query may use, and what each is set to.
#[derive(Clone, Debug)]
pub(crate) struct Variables(BTreeMap<&'static str, Selection>);

/// The variables the dashboards define (checked by
/// `every_variable_a_query_uses_is_defined_and_filters_every_panel`).
const VARIABLES: &[&str] = &["region", "store", "seller"];

impl Variables {
    /// Every variable at "All", as the dashboards open.
    pub(crate) fn all() -> Variables {
        Variables(VARIABLES.iter().map(|v| (*v, Selection::All)).collect())
    }

    /// `self` with `name` set to `values`.
    fn with(mut self, name: &'static str, values: &[&str]) -> Variables {
        assert!(VARIABLES.contains(&name), "no variable {name}");
        self.0.insert(
            name,
            Selection::Values(values.iter().map(|v| (*v).to_owned()).collect()),
        );
        self
    }

    fn get(&self, name: &str) -> Result<&Selection, String> {
        self.0
            .get(name)
            .ok_or_else(|| format!("unhandled macro or variable ${name}"))
    }

    /// `${name:format}` as Grafana writes it. Only `singlequote` (a quoted, comma-separated
    /// list, Grafana escaping `'` as `\'`) is safe in SQL; "All" only inside
    /// `$__conditionalAll`, since Grafana would substitute every value of the list.
    fn substitute(&self, name: &str, format: Option<&str>) -> Result<String, String> {
        match (self.get(name)?, format) {
            (Selection::All, _) => Err(format!(
                "${name} at All: wrap its condition in $__conditionalAll(…, ${name}), or Grafana \
                 substitutes every value of the list"
            )),
            (Selection::Values(values), Some("singlequote")) => Ok(values
                .iter()
                .map(|v| format!("'{}'", v.replace('\'', "\\'")))
                .collect::<Vec<_>>()
                .join(",")),
            (_, format) => Err(format!(
                "${name} with format {format:?}: use ${{{name}:singlequote}}, the format that \
                 quotes each value"
            )),
        }
    }
}

/// Splits a macro's argument list at its top-level commas, as the plugin does (it counts
/// parentheses only).
fn split_arguments(text: &str) -> Vec<&str> {
    let mut depth = 0;
    let mut start = 0;
    let mut out = Vec::new();
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&text[start..]);
    out
}

/// Expands the grafana-clickhouse-datasource macros as the plugin does (in meaning; the
/// plugin writes the same bounds with millisecond arithmetic), and the dashboard variables as
/// Grafana does: `$__conditionalAll(condition, $var)` is `1=1` when `var` is at "All", else
/// the condition, whose `${var:singlequote}` is the quoted list of the values picked. Any
/// other `$` (an unknown macro or variable, a variable without the quoting format, "All"
/// outside `$__conditionalAll`) is an error: the test would not know what it stands for.
pub(crate) fn expand(sql: &str, range: Range, vars: &Variables) -> Result<String, String> {
    let Range {
        from,
        to,
        interval_s,
    } = range;
    let mut out = String::with_capacity(sql.len());
    let mut rest = sql;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        rest = &rest[at + 1..];
        if let Some(braced) = rest.strip_prefix('{') {
            let end = braced
                .find('}')
                .ok_or_else(|| format!("${{{braced} is not closed"))?;
            let (name, format) = match braced[..end].split_once(':') {
                Some((name, format)) => (name, Some(format)),
                None => (&braced[..end], None),
            };
            out.push_str(&vars.substitute(name, format)?);
            rest = &braced[end + 1..];
            continue;
        }
        let name_len = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        let name = &rest[..name_len];
        rest = &rest[name_len..];
        let mut argument = || -> Result<String, String> {
            let inner = rest
                .strip_prefix('(')
                .ok_or_else(|| format!("${name} needs an argument"))?;
            let mut depth = 1;
            let end = inner
                .char_indices()
                .find_map(|(i, c)| {
                    match c {
                        '(' => depth += 1,
                        ')' => depth -= 1,
                        _ => {}
                    }
                    (depth == 0).then_some(i)
                })
                .ok_or_else(|| format!("${name}( is not closed"))?;
            let arg = inner[..end].trim().to_owned();
            rest = &inner[end + 1..];
            Ok(arg)
        };
        match name {
            "__timeFilter" => {
                let c = argument()?;
                out.push_str(&format!(
                    "{c} >= toDateTime({from}) AND {c} <= toDateTime({to})"
                ));
            }
            "__timeInterval" => {
                let c = argument()?;
                out.push_str(&format!(
                    "toStartOfInterval({c}, INTERVAL {interval_s} second)"
                ));
            }
            "__conditionalAll" => {
                let args = argument()?;
                let [condition, variable] = split_arguments(&args)[..] else {
                    return Err(format!("$__conditionalAll({args}) needs two arguments"));
                };
                let variable = variable.trim();
                let var_name = variable
                    .strip_prefix("${")
                    .and_then(|v| v.strip_suffix('}'))
                    .or_else(|| variable.strip_prefix('$'))
                    .filter(|v| v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
                    .ok_or_else(|| {
                        format!("$__conditionalAll's second argument {variable:?} must be $name")
                    })?;
                match vars.get(var_name)? {
                    Selection::All => out.push_str("1=1"),
                    Selection::Values(_) => out.push_str(&expand(condition.trim(), range, vars)?),
                }
            }
            "__fromTime" => out.push_str(&format!("toDateTime({from})")),
            "__toTime" => out.push_str(&format!("toDateTime({to})")),
            "__interval_s" => out.push_str(&interval_s.to_string()),
            "" => return Err(format!("a lone $ before {:?}", &rest[..rest.len().min(10)])),
            other => out.push_str(&vars.substitute(other, None)?),
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[test]
fn the_expander_knows_every_macro_and_refuses_the_rest() {
    let range = Range {
        from: 100,
        to: 200,
        interval_s: 60,
    };
    let all = Variables::all();
    assert_eq!(
        expand(
            "SELECT $__timeInterval(t) AS time, $__interval_s FROM x WHERE $__timeFilter(toDateTime(t)) AND t < $__toTime AND t > $__fromTime",
            range,
            &all
        )
        .unwrap(),
        "SELECT toStartOfInterval(t, INTERVAL 60 second) AS time, 60 FROM x WHERE toDateTime(t) >= toDateTime(100) AND toDateTime(t) <= toDateTime(200) AND t < toDateTime(200) AND t > toDateTime(100)"
    );
    assert!(expand("WHERE $__dateFilter(d)", range, &all).is_err());
    assert!(expand("WHERE $__timeFilter(t", range, &all).is_err());
    assert!(expand("WHERE region = ${nope:singlequote}", range, &all).is_err());
    assert!(expand("WHERE x = $ 1", range, &all).is_err());

    // the dashboards' filters: All is 1=1, picked values are a quoted list
    let filters = "WHERE $__conditionalAll(toString(region) IN (${region:singlequote}), $region) \
                   AND $__conditionalAll(store_id IN (${store:singlequote}), ${store})";
    assert_eq!(expand(filters, range, &all).unwrap(), "WHERE 1=1 AND 1=1");
    let picked = Variables::all()
        .with("region", &["europe", "asia"])
        .with("store", &["o'brien"]);
    assert_eq!(
        expand(filters, range, &picked).unwrap(),
        "WHERE toString(region) IN ('europe','asia') AND store_id IN ('o\\'brien')"
    );
    // a variable outside $__conditionalAll at All, or without the quoting format, is refused
    assert!(expand("WHERE region IN (${region:singlequote})", range, &all).is_err());
    assert!(expand("WHERE region = $region", range, &picked).is_err());
    assert!(expand("WHERE region IN (${region})", range, &picked).is_err());
    assert!(expand("WHERE region IN (${region:csv})", range, &picked).is_err());
    assert!(expand("WHERE $__conditionalAll(region = 'x')", range, &picked).is_err());
    assert!(
        expand(
            "WHERE $__conditionalAll(region = 'x', region)",
            range,
            &picked
        )
        .is_err()
    );
}

#[test]
fn dashboards_use_only_provisioned_data_sources() {
    let provisioned = std::fs::read_to_string(
        testkit::repo_root().join("deploy/grafana/provisioning/datasources/datasources.yaml"),
    )
    .unwrap();
    let uids: BTreeSet<&str> = provisioned
        .lines()
        .filter_map(|l| l.trim().strip_prefix("uid:"))
        .map(str::trim)
        .collect();
    assert!(
        uids.contains("clickhouse") && uids.contains("prometheus"),
        "{uids:?}"
    );
    let mut titles = BTreeSet::new();
    let mut dashboard_uids = BTreeSet::new();
    for (file, json) in dashboards() {
        titles.insert(json["title"].as_str().unwrap().to_owned());
        assert!(
            dashboard_uids.insert(json["uid"].as_str().unwrap().to_owned()),
            "{file}: duplicate dashboard uid"
        );
        let mut used = BTreeSet::new();
        datasource_uids(&json, &mut used);
        assert!(!used.is_empty(), "{file}: no data source");
        for uid in used {
            assert!(
                uids.contains(uid.as_str()) || uid == "-- Grafana --",
                "{file}: data source uid {uid:?} is not provisioned"
            );
        }
    }
    for expected in [
        "Store stability by region",
        "Products & categories",
        "Pipeline health",
    ] {
        assert!(
            titles.contains(expected),
            "no dashboard {expected:?}: {titles:?}"
        );
    }
}

/// The uid of every `datasource` object in a dashboard.
fn datasource_uids(node: &Value, out: &mut BTreeSet<String>) {
    match node {
        Value::Object(map) => {
            if let Some(uid) = map
                .get("datasource")
                .and_then(|d| d.get("uid"))
                .and_then(Value::as_str)
            {
                out.insert(uid.to_owned());
            }
            map.values().for_each(|v| datasource_uids(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| datasource_uids(v, out)),
        _ => {}
    }
}

/// The metric names a PromQL expression selects: identifiers outside label matchers, ranges,
/// strings and `by`/`without` lists that are not functions or keywords.
fn metric_names(expr: &str) -> Vec<String> {
    const KEYWORDS: &[&str] = &[
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "bool",
        "offset",
        "and",
        "or",
        "unless",
        "sum",
        "min",
        "max",
        "avg",
        "count",
        "group",
        "stddev",
        "stdvar",
        "topk",
        "bottomk",
        "quantile",
        "count_values",
        "limitk",
    ];
    let mut cleaned = String::new();
    let mut closing: Vec<char> = Vec::new();
    let mut chars = expr.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, closing.last()) {
            ('{', _) => closing.push('}'),
            ('[', _) => closing.push(']'),
            ('"', _) => {
                for c in chars.by_ref() {
                    if c == '"' {
                        break;
                    }
                }
            }
            (c, Some(&end)) if c == end => {
                closing.pop();
            }
            (_, Some(_)) => {}
            (c, None) => cleaned.push(c),
        }
    }
    // `by (le)` / `without (instance)` name labels, not metrics.
    let mut names = Vec::new();
    let mut skip_group = false;
    let mut rest = cleaned.as_str();
    while !rest.is_empty() {
        let start = rest
            .find(|c: char| c.is_ascii_alphabetic() || c == '_' || c == ':' || c == '(' || c == '$')
            .unwrap_or(rest.len());
        rest = &rest[start..];
        if rest.is_empty() {
            break;
        }
        if let Some(after) = rest.strip_prefix('(') {
            if skip_group {
                let end = after.find(')').unwrap_or(after.len());
                rest = after.get(end + 1..).unwrap_or("");
                skip_group = false;
            } else {
                rest = after;
            }
            continue;
        }
        let len = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':' || c == '$'))
            .unwrap_or(rest.len());
        let word = &rest[..len];
        rest = &rest[len..];
        let is_call = rest.trim_start().starts_with('(');
        if word == "by" || word == "without" {
            skip_group = true;
        } else if !(is_call || KEYWORDS.contains(&word) || word.starts_with('$')) {
            names.push(word.to_owned());
        }
    }
    names
}

#[test]
fn prometheus_panels_use_only_exported_metrics() {
    assert_eq!(
        metric_names(
            "histogram_quantile(0.99, sum by (le) (rate(consumer_insert_duration_seconds_bucket{job=\"consumer\"}[$__rate_interval])))"
        ),
        ["consumer_insert_duration_seconds_bucket"]
    );
    let exprs = queries(&["expr"]);
    assert!(!exprs.is_empty(), "no prometheus panels");
    let allowed = |name: &str| {
        METRICS.contains(&name)
            || HISTOGRAM_SERIES.iter().any(|suffix| {
                name.strip_suffix(suffix)
                    .is_some_and(|base| METRICS.contains(&base) && base.ends_with("_seconds"))
            })
    };
    let mut used = BTreeSet::new();
    for q in &exprs {
        let names = metric_names(&q.text);
        assert!(!names.is_empty(), "{}: no metric in {:?}", q.name, q.text);
        for name in names {
            assert!(
                allowed(&name),
                "{}: unknown metric {name} in {:?}",
                q.name,
                q.text
            );
            used.insert(
                HISTOGRAM_SERIES
                    .iter()
                    .find_map(|s| name.strip_suffix(s))
                    .unwrap_or(&name)
                    .to_owned(),
            );
        }
    }
    for metric in METRICS {
        assert!(used.contains(*metric), "no panel shows {metric}");
        assert!(exported(metric), "no service exports {metric}");
    }
}

/// The ReplacingMergeTree tables the dashboards read.
const REPLACING_TABLES: &[&str] = &[
    "commerce_events",
    "probe_results",
    "commerce_hourly",
    "probe_hourly",
    "rollup_hour_builds",
    "arrivals_minutes",
    "category_hourly",
    "commerce_daily",
    "rollup_builds",
    "conflicts_daily",
];

/// The panels that read an event table without `FINAL` because what they compute is the same
/// with or without the copies, with the reason; each is compared with its `FINAL` query in
/// `panels_over_built_rollups_and_the_events_equal_the_events_alone`, copies received later
/// included.
const BLIND_TO_COPIES: &[(&str, &str)] = &[
    (
        "pipeline-health.json: Freshness by region (received → queryable)",
        "max(received_at) per region: the copies of an event share its region and store, and \
         FINAL keeps the copy received last, so the newest received_at is the same",
    ),
    (
        "products-categories.json: Conversion funnel by region",
        "distinct sessions (uniqExact) per region and type: a copy repeats the session, region, \
         type, store, seller and occurred_at of its event, so it adds no session",
    ),
];

#[test]
fn clickhouse_panels_read_replacing_tables_with_final() {
    let sql = queries(&["rawSql", "queryText"]);
    assert!(
        sql.len() >= 20,
        "expected the dashboards' queries, found {}",
        sql.len()
    );
    let mut read = BTreeSet::new();
    for q in &sql {
        let words: Vec<&str> = q.text.split_whitespace().collect();
        for pair in words.windows(3) {
            // the event tables (copies of an event) and the rollups (a row per build of a
            // group, the latest wins)
            if pair[0].eq_ignore_ascii_case("FROM") && REPLACING_TABLES.contains(&pair[1]) {
                let blind = BLIND_TO_COPIES.iter().any(|(name, _)| *name == q.name)
                    && ["commerce_events", "probe_results"].contains(&pair[1]);
                // (a subquery may end right after it: `FINAL)),`)
                assert!(
                    blind || pair[2].trim_end_matches([')', ',']) == "FINAL",
                    "{}: reads {} without FINAL, so duplicates would count twice",
                    q.name,
                    pair[1]
                );
                read.insert(pair[1]);
            }
        }
    }
    assert_eq!(
        read,
        REPLACING_TABLES.iter().copied().collect(),
        "every table is read"
    );
}

/// What `load_simulated_data` loaded.
struct Loaded {
    /// Distinct probe results.
    probes: u64,
    /// The European store whose probes failed at `base`: the concrete store the variables
    /// are set to, where every panel has rows.
    outage_store: String,
}

/// Simulated events, every row inserted twice (as a redelivered entry would be), plus an
/// outage in europe and rejected rows from both sources (one of them of the outage's store).
async fn load_simulated_data(client: &clickhouse::Client, base: i64) -> Loaded {
    let fleet = simulator::fleet::fleet(2, "dashboards");
    let mut generator = simulator::generate::Generator::new(5, base);
    let mut events = Vec::new();
    for store in &fleet {
        events.extend(
            generator
                .batch(store, 400)
                .into_iter()
                .map(|e| (e, store.region)),
        );
    }
    // An outage: a run of failed probes in one minute, so availability there drops below 99%.
    let outage: Vec<_> = events
        .iter()
        .filter(|pair| {
            pair.1 == Region::Europe && matches!(pair.0.payload, Some(Payload::Probe(_)))
        })
        .take(20)
        .cloned()
        .collect();
    let outage_store = outage[0].0.store_id.clone();
    for (i, (mut event, region)) in outage.into_iter().enumerate() {
        event.event_id = format!("00000000-0000-4000-8000-{i:012}");
        if let Some(t) = &mut event.occurred_at {
            t.seconds = base;
        }
        if let Some(Payload::Probe(p)) = &mut event.payload {
            p.up = false;
            p.status_code = 503;
        }
        events.push((event, region));
    }

    // Rows are made of validated events only; the simulated clock may run past `base`.
    let limits = Limits {
        max_future_skew: std::time::Duration::from_secs(86_400),
        ..Limits::default()
    };
    let ctx = Context {
        limits: &limits,
        now_unix: base,
        sender: None,
    };
    let events: Vec<(Accepted, Region)> = events
        .into_iter()
        .map(|(event, region)| {
            let mut checked = check_batch(&ctx, vec![event]);
            assert!(checked.is_clean(), "{:?}", checked.rejected);
            (checked.accepted.remove(0), region)
        })
        .collect();
    let received_at = pipeline::rows::datetime(base + 2);
    let mut distinct_probes = 0;
    for _copy in 0..2 {
        let mut commerce = client
            .insert::<CommerceRow<'_>>(pipeline::rows::COMMERCE_TABLE)
            .await
            .unwrap();
        let mut probes = client
            .insert::<ProbeRow<'_>>(pipeline::rows::PROBE_TABLE)
            .await
            .unwrap();
        distinct_probes = 0;
        for (event, _) in &events {
            match pipeline::rows::event_row(event, received_at) {
                EventRow::Commerce(row) => commerce.write(&row).await.unwrap(),
                EventRow::Probe(row) => {
                    distinct_probes += 1;
                    probes.write(&row).await.unwrap()
                }
            }
        }
        commerce.end().await.unwrap();
        probes.end().await.unwrap();
    }

    let mut rejected = client
        .insert::<RejectedRow<'_>>(pipeline::rows::REJECTED_TABLE)
        .await
        .unwrap();
    for (source, reason, region, store_id) in [
        (
            RejectSource::Gateway,
            "events[0].commerce.price.units: must not be negative",
            Region::Asia,
            "asia-1",
        ),
        (
            RejectSource::Consumer,
            "undecodable stream entry: unknown format",
            Region::Asia,
            "asia-1",
        ),
        (
            RejectSource::Gateway,
            "events[0].commerce.quantity: must be at least 1",
            Region::Europe,
            outage_store.as_str(),
        ),
    ] {
        rejected
            .write(&RejectedRow {
                event_id: "rejected-1",
                occurred_at: pipeline::rows::datetime(base),
                received_at,
                region: region.ch_code(),
                store_id,
                source: source as i8,
                reason,
                raw: b"\x00\x01",
                delivery_count: 1,
                stream_entry_id: "1-0",
            })
            .await
            .unwrap();
    }
    rejected.end().await.unwrap();

    // purchases at the largest line total the rules accept: revenue panels must sum them
    // without `Decimal math overflow`
    let at = time::OffsetDateTime::from_unix_timestamp(base).unwrap();
    let at = format!(
        "{} {:02}:{:02}:{:02}",
        at.date(),
        at.hour(),
        at.minute(),
        at.second()
    );
    client
        .query(&crate::helpers::largest_lines_insert(&at, 1_000))
        .execute()
        .await
        .unwrap();
    Loaded {
        probes: distinct_probes,
        outage_store,
    }
}

/// The dashboards' ClickHouse queries (panels and variables), expanded for `range` and `vars`.
pub(crate) fn expanded_queries(range: Range, vars: &Variables) -> Vec<Query> {
    queries(&["rawSql", "queryText"])
        .into_iter()
        .map(|q| {
            let text = expand(&q.text, range, vars).unwrap_or_else(|e| panic!("{}: {e}", q.name));
            Query { text, ..q }
        })
        .collect()
}

/// The names of every variable a query's text uses (`$name`, `${name…}`, macros aside).
fn variables_used(text: &str) -> BTreeSet<String> {
    let mut used = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        rest = &rest[at + 1..];
        let rest_name = rest.strip_prefix('{').unwrap_or(rest);
        let len = rest_name
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest_name.len());
        let name = &rest_name[..len];
        if !name.is_empty() && !name.starts_with("__") {
            used.insert(name.to_owned());
        }
    }
    used
}

#[test]
fn every_variable_a_query_uses_is_defined_and_filters_every_panel() {
    let sql = queries(&["rawSql", "queryText"]);
    let mut filtered = BTreeSet::new();
    for q in &sql {
        let used = variables_used(&q.text);
        for name in &used {
            assert!(
                q.defined.contains(name),
                "{}: uses ${name}, which its dashboard does not define ({:?})",
                q.name,
                q.defined
            );
        }
        // On the ClickHouse-only dashboards every panel follows every variable (a variable's
        // own query follows those before it).
        let file = q.name.split(':').next().unwrap();
        let is_variable = q.defined.iter().any(|v| q.name == format!("{file}: {v}"));
        if !is_variable && ["store-stability.json", "products-categories.json"].contains(&file) {
            assert_eq!(
                &used, &q.defined,
                "{}: not filtered by every variable",
                q.name
            );
        }
        filtered.extend(used.into_iter().map(|v| format!("{file}: {v}")));
    }
    for expected in [
        "store-stability.json: region",
        "store-stability.json: store",
        "products-categories.json: region",
        "products-categories.json: store",
        "products-categories.json: seller",
        "pipeline-health.json: region",
        "pipeline-health.json: store",
    ] {
        assert!(filtered.contains(expected), "no query uses {expected}");
    }
}

/// The values a variable's query offers (TabSeparated, one per line).
fn offered(db: &str, queries: &[Query], variable: &str) -> Vec<String> {
    let q = queries
        .iter()
        .find(|q| q.name == variable)
        .unwrap_or_else(|| panic!("no variable query {variable}"));
    testkit::shared_clickhouse()
        .query_with_settings(&q.text, &[("database", db)])
        .unwrap_or_else(|e| panic!("{} fails on 18.16: {e:#}\n{}", q.name, q.text))
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The concrete selection the panels are checked with: region europe, the outage's store,
/// and a seller with a purchase there in the range, each found through the variables' own
/// queries (which must offer them, and filter by the variables before them).
fn concrete_selection(db: &str, range: Range, loaded: &Loaded) -> Variables {
    let all = expanded_queries(range, &Variables::all());
    for dashboard in ["store-stability.json", "products-categories.json"] {
        assert_eq!(
            offered(db, &all, &format!("{dashboard}: region")),
            ["america", "asia", "europe"]
        );
    }
    let every_store = offered(db, &all, "store-stability.json: store");
    let europe = Variables::all().with("region", &["europe"]);
    let european = expanded_queries(range, &europe);
    let european_stores = offered(db, &european, "store-stability.json: store");
    assert!(
        european_stores.contains(&loaded.outage_store) && european_stores.len() < every_store.len(),
        "the store variable follows the region: {european_stores:?} of {every_store:?}"
    );
    let selling = offered(db, &european, "products-categories.json: store");
    assert!(
        selling.contains(&loaded.outage_store),
        "the outage's store sells too: {selling:?}"
    );
    let store = europe.with("store", &[loaded.outage_store.as_str()]);
    let sellers = offered(
        db,
        &expanded_queries(range, &store),
        "products-categories.json: seller",
    );
    let Range { from, to, .. } = range;
    let seller = testkit::shared_clickhouse()
        .query_with_settings(
            &format!(
                "SELECT toString(seller_id) FROM commerce_events FINAL \
                 WHERE store_id = '{}' AND type = 'purchase' \
                 AND occurred_at BETWEEN toDateTime({from}) AND toDateTime({to}) \
                 ORDER BY seller_id LIMIT 1",
                loaded.outage_store
            ),
            &[("database", db)],
        )
        .unwrap()
        .trim()
        .to_owned();
    assert!(
        sellers.contains(&seller),
        "the seller variable offers {seller}: {sellers:?}"
    );
    store.with("seller", &[seller.as_str()])
}

#[tokio::test]
async fn every_clickhouse_panel_returns_rows_on_clickhouse_18_16() {
    let (db, client) = crate::helpers::fresh_database("dash").await;
    pipeline::schema::migrate(&client, &db).await.unwrap();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let base = now - 300;
    let loaded = load_simulated_data(&client, base).await;
    let range = Range {
        from: base - 3600,
        to: now + 60,
        interval_s: 60,
    };

    let concrete = concrete_selection(&db, range, &loaded);
    for vars in [Variables::all(), concrete.clone()] {
        for q in &expanded_queries(range, &vars) {
            let rows: u64 = client
                .query(&format!("SELECT count() FROM ({})", q.text))
                .fetch_one()
                .await
                .unwrap_or_else(|e| panic!("{} fails on 18.16: {e}\n{}", q.name, q.text));
            assert!(
                rows >= 1,
                "{} returns no rows ({vars:?}):\n{}",
                q.name,
                q.text
            );
        }
    }

    // Every row was inserted twice; FINAL must count each probe once.
    let summary = |vars: &Variables| {
        expanded_queries(range, vars)
            .into_iter()
            .find(|q| q.name.ends_with("Regions over the range"))
            .expect("the stability summary panel")
    };
    // The vantage panel counts every probe; the summary only those taken inside the store's
    // region (the store's own and its region's prober), as the reports do.
    let every_probe = expanded_queries(range, &Variables::all())
        .into_iter()
        .find(|q| q.name.ends_with("From each vantage to each store region"))
        .expect("the vantage panel");
    let sum_probes = |sql: String| {
        let client = &client;
        async move {
            client
                .query(&format!("SELECT toUInt64(sum(probes)) FROM ({sql})"))
                .fetch_one::<u64>()
                .await
                .unwrap()
        }
    };
    let probes = sum_probes(every_probe.text).await;
    assert_eq!(probes, loaded.probes, "duplicates inflate the probe count");
    let in_region = sum_probes(summary(&Variables::all()).text).await;
    let expected_in_region: u64 = client
        .query(
            "SELECT count() FROM probe_results FINAL \
             WHERE vantage_region = 'unspecified' OR toString(vantage_region) = toString(region)",
        )
        .fetch_one()
        .await
        .unwrap();
    assert!(
        0 < in_region && in_region < probes,
        "the summary leaves out probes from other regions: {in_region} of {probes}"
    );
    assert_eq!(in_region, expected_in_region);

    // The variables filter: one region, one store.
    let filtered = testkit::shared_clickhouse()
        .query_with_settings(
            &format!("SELECT region, stores FROM ({})", summary(&concrete).text),
            &[("database", db.as_str())],
        )
        .unwrap();
    assert_eq!(filtered.trim(), "europe\t1");
}

#[test]
fn every_clickhouse_panel_runs_on_a_current_clickhouse() {
    let range = Range {
        from: 1_767_225_600,
        to: 1_767_312_000,
        interval_s: 60,
    };
    // chdb starts empty: the tables first, then the panels' queries.
    let mut statements: Vec<serde_json::Value> = crate::helpers::migration_statements()
        .into_iter()
        .map(|(name, sql)| serde_json::json!({ "name": name, "sql": sql }))
        .collect();
    // purchases at the largest line total: revenue panels must sum them without overflow
    statements.push(serde_json::json!({
        "name": "largest lines",
        "sql": crate::helpers::largest_lines_insert("2026-01-01 12:00:00", 1_000),
    }));
    // the day's commerce rollup and its record, as the reporter builds them: the panels that
    // read built days read it at All
    statements.push(serde_json::json!({
        "name": "daily rollup",
        "sql": reporter::rollup::render(reporter::rollup::BUILD_COMMERCE, 1, "2026-01-01"),
    }));
    statements.push(serde_json::json!({
        "name": "daily rollup record",
        "sql": reporter::rollup::record("2026-01-01", Default::default(), 1, 0),
    }));
    // the hour of those purchases built and recorded too: the panels that read built hours
    // read the hourly rollups with whole-hour buckets
    let hour = "2026-01-01 12:00:00";
    for (name, sql) in reporter::rollup::BUILD_HOUR {
        statements.push(serde_json::json!({
            "name": name,
            "sql": reporter::rollup::render(sql, 1, hour),
        }));
    }
    statements.push(serde_json::json!({
        "name": "hourly rollup record",
        "sql": reporter::rollup::record_hours(&[(hour.to_owned(), Default::default())], 1),
    }));
    let migrations = statements.len();
    let concrete = Variables::all()
        .with("region", &["asia"])
        .with("store", &["asia-1"])
        .with("seller", &["1"]);
    for (selection, vars) in [("All", Variables::all()), ("asia-1", concrete)] {
        // minute buckets, whole hours (the hourly rollups read) and whole days (the daily
        // rollup read)
        for interval_s in [60, 3600, 86_400] {
            let range = Range {
                interval_s,
                ..range
            };
            for q in expanded_queries(range, &vars) {
                let name = format!("{} ({selection}, {} s)", q.name, range.interval_s);
                statements.push(serde_json::json!({ "name": name, "sql": q.text }));
            }
        }
    }
    let (version, results) = crate::helpers::run_on_chdb(&statements);
    let results = &results;
    assert!(results.len() > migrations, "no dashboard queries were sent");
    let failed: Vec<_> = results.iter().filter(|r| r["ok"] != true).collect();
    assert!(
        failed.is_empty(),
        "dashboard queries failing on ClickHouse {version}: {failed:#?}"
    );
}

/// Copies of the rows `load_simulated_data` loaded (both copies of each), `back` seconds
/// earlier and under other ids (their first 8 hex digits `prefix`), as events of another hour.
async fn shifted_copy(client: &clickhouse::Client, base: i64, prefix: &str, back: i64) {
    let id = format!("toUUID(concat('{prefix}', substring(toString(event_id), 9)))");
    for (table, rest) in [
        (
            "commerce_events",
            "received_at, region, store_id, type, product_id, category_id, category_code, \
             brand, seller_id, currency, price, quantity, user_id, session_id",
        ),
        (
            "probe_results",
            "received_at, region, store_id, target, up, status_code, response_time_ms, \
             network_latency_ms, bandwidth_bytes_per_second, cpu_load, vantage_region, \
             tls_handshake_ms, time_to_first_byte_ms",
        ),
    ] {
        client
            .query(&format!(
                "INSERT INTO {table} (event_id, occurred_at, {rest}) \
                 SELECT {id}, occurred_at - {back}, {rest} FROM {table} \
                 WHERE occurred_at >= toDateTime({base})"
            ))
            .execute()
            .await
            .unwrap();
    }
}

/// Retried copies of the rows of both event tables that match `which`, received `later`
/// seconds after the rows they copy: `FINAL` keeps these, so the events move to the minute
/// they were received last.
async fn later_copies(client: &clickhouse::Client, which: &str, later: i64) {
    for (table, rest) in [
        (
            "commerce_events",
            "region, store_id, type, product_id, category_id, category_code, brand, seller_id, \
             currency, price, quantity, user_id, session_id",
        ),
        (
            "probe_results",
            "region, store_id, target, up, status_code, response_time_ms, network_latency_ms, \
             bandwidth_bytes_per_second, cpu_load, vantage_region, tls_handshake_ms, \
             time_to_first_byte_ms",
        ),
    ] {
        client
            .query(&format!(
                "INSERT INTO {table} (event_id, occurred_at, received_at, {rest}) \
                 SELECT event_id, occurred_at, received_at + {later}, {rest} FROM {table} \
                 WHERE {which}"
            ))
            .execute()
            .await
            .unwrap();
    }
}

/// Brings the daily rollups of `days` (the first, then the second) up to date, as `reporter
/// serve` does: what it did for the first.
async fn ensure_days(
    client: &clickhouse::Client,
    days: (time::Date, time::Date),
) -> reporter::rollup::Outcome {
    let first = reporter::rollup::ensure(client, days.0).await.unwrap();
    reporter::rollup::ensure(client, days.1).await.unwrap();
    first
}

/// Issue #19: the panels that read the hourly rollups (migrations 7 to 9) for the hours the
/// reporter built, and those that read the daily rollup (`commerce_daily`, migration 4) for
/// the whole days it built when every store is selected, and the events for the rest of their
/// range (the open hour, the range's partial first hour and day, hours and days not built, any
/// store picked; any seller picked for the category rollup), answer as they did reading the
/// events alone (`events_only_panels`), every row loaded twice; again after late rows and
/// copies reached built hours and a built day and these were rebuilt. With whole-day buckets
/// (the daily rollup read, and the hourly ones for the built hours of days not built),
/// whole-hour buckets (the hourly ones read) and minute buckets (the events read), at All, at
/// one concrete value of each variable, and at one store with every seller. Freshness and the conversion funnel, read without `FINAL`
/// (`BLIND_TO_COPIES`), equal their `FINAL` queries the same way, retried copies received
/// later included.
#[tokio::test]
async fn panels_over_built_rollups_and_the_events_equal_the_events_alone() {
    let (db, client) = crate::helpers::fresh_database("dash_hours").await;
    pipeline::schema::migrate(&client, &db).await.unwrap();
    let now = time::OffsetDateTime::now_utc();
    // every row is received at `base + 2`: the middle of a minute, so that the ranges below
    // can start and end inside it
    let base = now.unix_timestamp() - 300;
    let base = base - (base + 2).rem_euclid(60) + 30;
    let loaded = load_simulated_data(&client, base).await;
    // the same events today, 3 hours earlier, yesterday and the two days before: closed
    // hours and whole days with rows
    shifted_copy(&client, base, "aaaaaaaa", 3 * 3600).await;
    shifted_copy(&client, base, "bbbbbbbb", 26 * 3600).await;
    shifted_copy(&client, base, "dddddddd", 2 * 86_400).await;
    shifted_copy(&client, base, "eeeeeeee", 3 * 86_400).await;
    let first = now - time::Duration::days(2);
    // the days the reporter built: two days ago and yesterday, not the day before (a whole
    // day of the range read from the events) nor today (the open day)
    let today = now.date();
    let built_days = (
        today - time::Duration::days(2),
        today - time::Duration::days(1),
    );
    let two_days_ago = ensure_days(&client, built_days).await;
    assert!(
        matches!(two_days_ago, reporter::rollup::Outcome::Built(_)),
        "two days ago is built: {two_days_ago:?}"
    );
    let built = reporter::rollup::ensure_hours(&client, first, now)
        .await
        .unwrap();
    assert!(
        built >= 48,
        "every closed hour since {first} is recorded: {built}"
    );
    for table in ["commerce_hourly", "probe_hourly", "category_hourly"] {
        let rows: u64 = client
            .query(&format!("SELECT count() FROM {table} FINAL"))
            .fetch_one()
            .await
            .unwrap();
        assert!(rows > 0, "{table} holds the built hours");
    }
    let database = [("database", db.as_str())];
    // a partial first hour and day, read from the events, and a whole day not built; for the
    // panels over received_at also ranges that start or end inside the minute rows were
    // received in (their partial minutes are read from the events), and buckets of 30 s (the
    // events only)
    let (wide_from, wide_to) = (
        (now - time::Duration::days(4)).unix_timestamp() + 1234,
        now.unix_timestamp() + 60,
    );
    let mut ranges: Vec<(i64, i64, u64)> = [86_400, 3600, 60]
        .into_iter()
        .map(|interval_s| (wide_from, wide_to, interval_s))
        .collect();
    for interval_s in [3600, 60, 30] {
        ranges.extend([
            (base - 8, wide_to, interval_s),
            (wide_from, base + 7, interval_s),
        ]);
    }
    let compare = |round: &str| {
        for &(from, to, interval_s) in &ranges {
            let range = Range {
                from,
                to,
                interval_s,
            };
            let wide = (from, to) == (wide_from, wide_to) && interval_s % 60 == 0;
            let concrete = concrete_selection(&db, range, &loaded);
            // one store at every seller: the category rollup is read (it has no seller), the
            // daily rollup is not (it has no store)
            let one_store = Variables::all().with("store", &[loaded.outage_store.as_str()]);
            for vars in [Variables::all(), concrete, one_store] {
                let panels = expanded_queries(range, &vars);
                for (name, events_only) in crate::events_only_panels::EVENTS_ONLY {
                    if !wide && !name.starts_with("pipeline-health.json") {
                        continue;
                    }
                    let panel = panels
                        .iter()
                        .find(|q| q.name == *name)
                        .unwrap_or_else(|| panic!("no query {name}"));
                    let events_only = expand(events_only, range, &vars).unwrap();
                    // (Freshness reads `now()`: both as of one instant)
                    let asked_at = now.unix_timestamp();
                    let (panel_text, events_only) = (
                        at_a_fixed_now(&panel.text, asked_at),
                        at_a_fixed_now(&events_only, asked_at),
                    );
                    let run = |sql: &str| {
                        testkit::shared_clickhouse()
                            .query_with_settings(sql, &database)
                            .unwrap_or_else(|e| panic!("{name} fails: {e:#}\n{sql}"))
                    };
                    let (new, old) = (run(&panel_text), run(&events_only));
                    assert!(
                        same_answer(&new, &old),
                        "{round}, {from}..={to}, {interval_s} s buckets, {vars:?}: {name} differs\n\
                         over the rollups:\n{new}\nfrom the events:\n{old}"
                    );
                }
            }
        }
    };
    compare("built");

    // as hours built before migrations 8 and 9 are: recorded (revision 0) without arrival or
    // category rows; the category and arrival panels read them from the events, the others
    // from their rollups still
    for sql in [
        "INSERT INTO rollup_hour_builds \
         (hour, base_rows, base_received, version, built_at, revision) \
         SELECT hour, base_rows, base_received, version + 1, built_at, 0 \
         FROM rollup_hour_builds FINAL",
        "TRUNCATE TABLE category_hourly",
        "TRUNCATE TABLE arrivals_minutes",
    ] {
        client.query(sql).execute().await.unwrap();
    }
    compare("built before migrations 8 and 9");

    // late rows in a built hour and a built day, copies of rows of another hour, and retried
    // copies received later (some after the range's end): the hours and the days are rebuilt
    // (every event of one store moves: its groups of the minute it left are empty now)
    later_copies(&client, "cityHash64(toString(event_id)) % 3 = 0", 90).await;
    later_copies(&client, "cityHash64(toString(event_id)) % 7 = 0", 1800).await;
    let store = format!("store_id = '{}'", loaded.outage_store);
    later_copies(&client, &store, 60).await;
    shifted_copy(&client, base, "cccccccc", 3 * 3600 + 1800).await;
    shifted_copy(&client, base, "ffffffff", 2 * 86_400 + 60).await;
    client
        .query(&format!(
            "INSERT INTO commerce_events SELECT * FROM commerce_events \
             WHERE occurred_at < toDateTime({}) AND occurred_at >= toDateTime({})",
            base - 20 * 3600,
            base - 27 * 3600
        ))
        .execute()
        .await
        .unwrap();
    let rebuilt = reporter::rollup::ensure_hours(&client, first, now)
        .await
        .unwrap();
    assert!(
        rebuilt >= 2,
        "the hours late rows and copies reached are rebuilt"
    );
    let two_days_ago = ensure_days(&client, built_days).await;
    assert!(
        matches!(two_days_ago, reporter::rollup::Outcome::Built(_)),
        "the day late rows reached is rebuilt: {two_days_ago:?}"
    );
    compare("rebuilt");
}

/// Whether two result texts (TabSeparated, rows in any order) are the same answer: equal
/// fields, numbers equal up to the rounding a different summation order gives.
fn same_answer(a: &str, b: &str) -> bool {
    let rows = |text: &str| {
        let mut rows: Vec<String> = text.lines().map(str::to_owned).collect();
        rows.sort();
        rows
    };
    let (a, b) = (rows(a), rows(b));
    a.len() == b.len()
        && a.iter().zip(&b).all(|(x, y)| {
            let (x, y): (Vec<&str>, Vec<&str>) = (x.split('\t').collect(), y.split('\t').collect());
            x.len() == y.len()
                && x.iter().zip(&y).all(|(p, q)| {
                    p == q
                        || matches!((p.parse::<f64>(), q.parse::<f64>()),
                            (Ok(p), Ok(q)) if (p - q).abs() <= 1e-9 * p.abs().max(q.abs()).max(1.0))
                })
        })
}

/// Issue #9: "report and dashboard queries give the same answers on one server and on the
/// cluster". The same simulated data (every row twice) goes into one 18.16 server and into
/// the two-shard cluster through its Distributed tables; every ClickHouse panel then returns
/// the same rows from both.
#[tokio::test]
async fn every_clickhouse_panel_gives_the_same_answer_on_the_cluster() {
    let (db, single) = crate::helpers::fresh_database("dash_one").await;
    pipeline::schema::migrate(&single, &db).await.unwrap();
    let cluster = testkit::ClickHouseCluster::start().unwrap();
    let shard_clients: Vec<clickhouse::Client> = cluster
        .shards()
        .iter()
        .map(|s| crate::helpers::clickhouse(&s.url(), "default"))
        .collect();
    pipeline::schema::migrate_cluster(&shard_clients, &db, cluster.name())
        .await
        .unwrap();
    let distributed = crate::helpers::clickhouse(&cluster.shards()[0].url(), &db)
        .with_setting("insert_distributed_sync", "1");

    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    // the data five minutes before this hour began: in a closed hour, whose rollups are
    // built below on both and which the panels then read. Data in the open hour only, as
    // before, left the cluster's hourly builds of hours with rows untested but in the first
    // minutes of an hour, when they failed (an arrivals build's text constant in a UNION ALL
    // over Distributed tables, 18.16 code 171)
    let base = now - now.rem_euclid(3600) - 300;
    let one = load_simulated_data(&single, base).await;
    let many = load_simulated_data(&distributed, base).await;
    // the closed hours built on both, as `reporter serve` builds them: the panels read the
    // rollups for those and the events for the open hour
    let now_at = time::OffsetDateTime::now_utc();
    for client in [&single, &distributed] {
        reporter::rollup::ensure_hours(client, now_at - time::Duration::hours(2), now_at)
            .await
            .unwrap();
    }
    assert_eq!(
        (one.probes, &one.outage_store),
        (many.probes, &many.outage_store),
        "the same data on both"
    );
    for shard in cluster.shards() {
        let local = shard
            .query(&format!("SELECT count() FROM {db}.probe_results_local"))
            .unwrap();
        assert_ne!(local.trim(), "0", "both shards hold rows");
    }

    let range = Range {
        from: base - 3600,
        to: now + 60,
        interval_s: 60,
    };
    let database = [("database", db.as_str())];
    let concrete = concrete_selection(&db, range, &one);
    let selections = [Variables::all(), concrete];
    // No later than 45 minutes into this hour: the data was received five minutes before
    // the hour began, and Freshness reads the last hour's rows, so a run in an hour's last
    // minutes found none (CI at 11:59, 2026-12-06).
    let asked_at = time::OffsetDateTime::now_utc()
        .unix_timestamp()
        .min(base + 3000);
    for mut q in selections
        .iter()
        .flat_map(|vars| expanded_queries(range, vars))
    {
        // Both servers answer as of one instant: a panel that reads `now()` (Freshness's
        // seconds since the last row) otherwise differs by a second whenever the two
        // queries straddle a second's edge.
        q.text = at_a_fixed_now(&q.text, asked_at);
        let one = testkit::shared_clickhouse()
            .query_with_settings(&q.text, &database)
            .unwrap_or_else(|e| panic!("{} fails on one server: {e:#}", q.name));
        // Through the node the data was not inserted into: any node answers for all.
        let many = cluster.shards()[1]
            .query_with_settings(&q.text, &database)
            .unwrap_or_else(|e| panic!("{} fails on the cluster: {e:#}", q.name));
        assert!(!one.trim().is_empty(), "{} returns no rows", q.name);
        assert!(
            same_answer(&one, &many),
            "{} differs on the cluster\none server:\n{one}\ncluster:\n{many}",
            q.name
        );
    }
}

/// `text` with every `now()` replaced by the instant `unix_seconds`, so that two servers
/// asked one after the other answer as of the same second.
fn at_a_fixed_now(text: &str, unix_seconds: i64) -> String {
    text.replace("now()", &format!("toDateTime({unix_seconds})"))
}

#[test]
fn a_fixed_now_replaces_every_now() {
    let fixed = at_a_fixed_now("SELECT now() - 3600, max(x) FROM t WHERE t >= now()", 17);
    assert_eq!(
        fixed,
        "SELECT toDateTime(17) - 3600, max(x) FROM t WHERE t >= toDateTime(17)"
    );
}

#[test]
fn answers_compare_as_sets_of_rows_with_rounding() {
    assert!(same_answer("a\t1\nb\t2\n", "b\t2\na\t1\n"));
    assert!(same_answer("x\t0.30000000000000004", "x\t0.3"));
    assert!(!same_answer("x\t0.31", "x\t0.3"));
    assert!(!same_answer("a\t1\n", "a\t1\nb\t2\n"));
    assert!(!same_answer("a\tb", "a\tc"));
}
