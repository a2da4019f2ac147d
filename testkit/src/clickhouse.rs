//! A private ClickHouse server (Debian's 18.16) on free loopback ports, data in a temp directory
//!
//! The configuration is Debian's /etc/clickhouse-server/config.xml rewritten for a private
//! instance: comments stripped first (its default `listen_host`, `https_port` and
//! `tcp_port_secure` lines sit inside comments, so editing them in place changes nothing), paths
//! moved into the temp directory, our ports set, and memory-hungry caches shrunk.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use tempfile::TempDir;

use crate::http;
use crate::ports::free_ports;
use crate::process::{Supervised, find_program, with_one_retry};

/// ClickHouse answers within ~2 s here; the rest is slack for a loaded CI machine.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// SIGTERM makes ClickHouse wait for running queries (it took ~3 s here); past this we kill it.
const STOP_GRACE: Duration = Duration::from_secs(20);

/// Long enough for the biggest INSERT … SELECT a test would run.
const QUERY_TIMEOUT: Duration = Duration::from_secs(120);

/// Where Debian's clickhouse-server package puts the configuration we start from.
const CONFIG_DIR: &str = "/etc/clickhouse-server";

/// The ports one server listens on.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ports {
    pub(crate) http: u16,
    pub(crate) tcp: u16,
    /// Used only for replication, but ClickHouse binds it anyway, so it must be free too.
    pub(crate) interserver: u16,
}

impl Ports {
    /// Three free loopback ports.
    pub(crate) fn free() -> Ports {
        let [http, tcp, interserver] = free_ports(3)[..] else {
            unreachable!("free_ports returns as many ports as asked for")
        };
        Ports {
            http,
            tcp,
            interserver,
        }
    }
}

/// A clickhouse-server child process on 127.0.0.1.
///
/// Dropping it kills the server (SIGKILL) and removes its data directory.
pub struct ClickHouse {
    /// The running server; `None` between `stop`/`kill` and `restart`. Declared before `dir` so
    /// the server dies before its directory is removed.
    process: Option<Supervised>,
    /// Fixed for the life of the struct so that clients can reconnect after a restart.
    ports: Ports,
    /// Holds config.xml, users.xml, data/ and log/; kept across restarts.
    dir: TempDir,
}

impl ClickHouse {
    /// Starts a server and waits until it answers `SELECT 1` over HTTP.
    pub fn start() -> Result<ClickHouse> {
        with_one_retry("clickhouse", || {
            let mut clickhouse = ClickHouse::prepare(Ports::free(), &[])?;
            clickhouse.spawn()?;
            Ok(clickhouse)
        })
    }

    /// A server that is configured but not started yet: its temp dir with config.xml for
    /// `ports`, in which each top-level element of `elements` (tag, the XML inside it), e.g.
    /// `<remote_servers>`, `<zookeeper>` or `<macros>`, replaces Debian's. Start it with
    /// [`launch`](Self::launch) and [`wait_ready`](Self::wait_ready), or with `restart`.
    pub(crate) fn prepare(ports: Ports, elements: &[(&str, String)]) -> Result<ClickHouse> {
        let dir = tempfile::Builder::new()
            .prefix("testkit-clickhouse-")
            .tempdir()
            .context("failed to create clickhouse temp dir")?;
        write_config(dir.path(), ports, elements)?;
        Ok(ClickHouse {
            process: None,
            ports,
            dir,
        })
    }

    /// The HTTP endpoint: `http://127.0.0.1:HTTP_PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports.http)
    }

    /// The HTTP interface port (what the `clickhouse` crate talks to).
    pub fn http_port(&self) -> u16 {
        self.ports.http
    }

    /// The native protocol port (what `clickhouse-client --port` talks to).
    pub fn tcp_port(&self) -> u16 {
        self.ports.tcp
    }

    /// The server's directory: config.xml, users.xml, data/ and log/.
    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// Stops the server with SIGTERM and waits for it to exit (killing it after 20 s).
    /// Stopping a stopped server does nothing.
    pub fn stop(&mut self) -> Result<()> {
        if let Some(mut process) = self.process.take() {
            process.terminate(STOP_GRACE)?;
        }
        Ok(())
    }

    /// Kills the server with SIGKILL, as a crash would, and waits for it to exit.
    pub fn kill(&mut self) -> Result<()> {
        if let Some(mut process) = self.process.take() {
            process.kill()?;
        }
        Ok(())
    }

    /// Freezes the server with SIGSTOP: its connections stay open (the kernel even accepts
    /// new ones) but nothing is answered, as a server cut off by a network partition or
    /// stalled. [`ClickHouse::resume`] lets it run again.
    pub fn pause(&self) -> Result<()> {
        self.signal("-STOP")
    }

    /// Lets a server frozen by [`ClickHouse::pause`] run again (SIGCONT).
    pub fn resume(&self) -> Result<()> {
        self.signal("-CONT")
    }

    fn signal(&self, signal: &str) -> Result<()> {
        let Some(process) = &self.process else {
            bail!("clickhouse on port {} is not running", self.ports.http);
        };
        process.signal(signal)
    }

    /// Starts the server again with the same ports and data directory and waits until it is
    /// ready. A running server is stopped first.
    pub fn restart(&mut self) -> Result<()> {
        self.stop()?;
        self.spawn()
    }

    /// Runs one statement over HTTP and returns its output (TabSeparated), trimmed. A failed
    /// statement is an `Err` carrying the server's message, e.g. `Code: 62, … Syntax error`.
    pub fn query(&self, sql: &str) -> Result<String> {
        self.query_with_settings(sql, &[])
    }

    /// What the server counted for the statements of query id `query_id` (run with
    /// `log_queries=1`) whose text starts with `start`: the parts they wrote
    /// (`MergeTreeDataWriterBlocks`) and how many of those came already sorted by the table's
    /// key, so that the server did not sort them (`MergeTreeDataWriterBlocksAlreadySorted`).
    ///
    /// A statement whose client already has the answer was once not in the log yet, even
    /// after `SYSTEM FLUSH LOGS` (the server may log its end after answering): this asks
    /// again for up to 10 s until it is.
    pub fn parts_written(&self, query_id: &str, start: &str) -> Result<(u64, u64)> {
        let counted = |event: &str| {
            format!("sum(ProfileEvents.Values[indexOf(ProfileEvents.Names, '{event}')])")
        };
        let sql = format!(
            "SELECT count(), {}, {} FROM system.query_log \
             WHERE query_id = '{query_id}' AND type = 2 AND query LIKE '{start}%'",
            counted("MergeTreeDataWriterBlocks"),
            counted("MergeTreeDataWriterBlocksAlreadySorted"),
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            self.query("SYSTEM FLUSH LOGS")?;
            let text = self.query(&sql)?;
            let fields: Vec<&str> = text.split('\t').collect();
            let [logged, parts, sorted] = fields[..] else {
                bail!("unexpected answer: {text}");
            };
            if logged != "0" {
                return Ok((parts.parse()?, sorted.parse()?));
            }
            if Instant::now() >= deadline {
                bail!("query {query_id} is not in system.query_log after 10 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Like [`query`](Self::query), with ClickHouse settings for this statement only, sent as
    /// URL parameters, e.g. `&[("insert_distributed_sync", "1")]`. Names and values must be
    /// URL-safe as they are (settings are identifiers and numbers).
    pub fn query_with_settings(&self, sql: &str, settings: &[(&str, &str)]) -> Result<String> {
        let path = if settings.is_empty() {
            "/".to_string()
        } else {
            let params: Vec<String> = settings
                .iter()
                .map(|(name, value)| format!("{name}={value}"))
                .collect();
            format!("/?{}", params.join("&"))
        };
        let response = http::request(
            self.ports.http,
            "POST",
            &path,
            sql.as_bytes(),
            QUERY_TIMEOUT,
        )
        .with_context(|| format!("clickhouse query failed: {sql}"))?;
        let text = response.text();
        if response.status != 200 {
            bail!(
                "clickhouse query failed (http {}): {}\nquery: {sql}",
                response.status,
                text.trim()
            );
        }
        Ok(text.trim().to_string())
    }

    fn spawn(&mut self) -> Result<()> {
        let process = self.launch()?;
        self.wait_ready(process)
    }

    /// Starts the server process without waiting for it, so that several servers can start in
    /// parallel; hand the result to [`wait_ready`](Self::wait_ready).
    pub(crate) fn launch(&self) -> Result<Supervised> {
        let dir = self.dir.path();
        let config = dir.join("config.xml");
        let mut cmd = server_command()?;
        cmd.current_dir(dir)
            .arg(format!("--config-file={}", config.display()));
        let mut process =
            Supervised::spawn("clickhouse", &mut cmd, dir, &dir.join("stdout.log"), vec![])?;
        process.add_log(dir.join("log/clickhouse-server.err.log"));
        Ok(process)
    }

    /// Waits until the `process` from [`launch`](Self::launch) answers `SELECT 1`, then owns it.
    pub(crate) fn wait_ready(&mut self, mut process: Supervised) -> Result<()> {
        let port = self.ports.http;
        let took = process.wait_ready(READY_TIMEOUT, || {
            let response = http::get(port, "/?query=SELECT%201")?;
            Ok(response.status == 200 && response.text().trim() == "1")
        })?;
        if crate::test_log_enabled() {
            eprintln!("testkit: clickhouse ready on http port {port} in {took:?}");
        }
        self.process = Some(process);
        Ok(())
    }
}

/// `clickhouse-server`, or the single `clickhouse` binary of newer releases with `server`.
fn server_command() -> Result<Command> {
    let extra = ["/usr/sbin", "/usr/bin", "/usr/local/bin"];
    if let Some(server) = find_program("clickhouse-server", &extra) {
        return Ok(Command::new(server));
    }
    if let Some(binary) = find_program("clickhouse", &extra) {
        let mut cmd = Command::new(binary);
        cmd.arg("server");
        return Ok(cmd);
    }
    Err(anyhow!(
        "clickhouse-server not found on PATH or in /usr/sbin: run scripts/install.sh"
    ))
}

/// Writes config.xml, users.xml and an empty include file into `dir`.
fn write_config(dir: &Path, ports: Ports, elements: &[(&str, String)]) -> Result<()> {
    let read = |name: &str| {
        let path = Path::new(CONFIG_DIR).join(name);
        std::fs::read_to_string(&path).with_context(|| {
            format!(
                "cannot read {}: is clickhouse-server installed? run scripts/install.sh",
                path.display()
            )
        })
    };
    let config = render_config(&read("config.xml")?, dir, ports, elements);
    std::fs::write(dir.join("config.xml"), config)?;
    std::fs::write(dir.join("users.xml"), read("users.xml")?)?;
    // substitutions otherwise come from /etc/metrika.xml, which would let a developer's
    // system-wide cluster or ZooKeeper settings leak into the private server
    std::fs::write(
        dir.join("metrika.xml"),
        "<?xml version=\"1.0\"?>\n<yandex/>\n",
    )?;
    for sub in ["data", "log"] {
        std::fs::create_dir_all(dir.join(sub))?;
    }
    Ok(())
}

/// Rewrites Debian's config.xml for a private server in `dir` listening on `ports`; each of
/// `elements` (tag, content) replaces Debian's element of that tag (its example clusters in
/// `<remote_servers>`, its `<zookeeper incl=…/>` and `<macros incl=…/>` placeholders).
fn render_config(template: &str, dir: &Path, ports: Ports, elements: &[(&str, String)]) -> String {
    let dir = dir.display();
    let mut xml = strip_comments(template)
        .replace("/var/lib/clickhouse/", &format!("{dir}/data/"))
        .replace("/var/log/clickhouse-server/", &format!("{dir}/log/"));
    let settings = [
        ("http_port", ports.http.to_string()),
        ("tcp_port", ports.tcp.to_string()),
        ("interserver_http_port", ports.interserver.to_string()),
        // the defaults (::1 and 127.0.0.1) would also bind IPv6 loopback
        ("listen_host", "127.0.0.1".to_string()),
        ("include_from", format!("{dir}/metrika.xml")),
        // 8 GiB and 5 GiB by default: allocated on demand, but a test never needs that much
        ("uncompressed_cache_size", (64u64 << 20).to_string()),
        ("mark_cache_size", (64u64 << 20).to_string()),
        (
            "logger",
            format!(
                "<level>warning</level><log>{dir}/log/clickhouse-server.log</log>\
                 <errorlog>{dir}/log/clickhouse-server.err.log</errorlog>\
                 <size>10M</size><count>1</count>"
            ),
        ),
    ];
    // TLS ports need certificates that a private server does not have
    for tag in ["https_port", "tcp_port_secure"] {
        xml = remove_element(&xml, tag);
    }
    for (tag, value) in settings {
        xml = remove_element(&xml, tag);
        xml = insert_before_root_end(&xml, &format!("    <{tag}>{value}</{tag}>\n"));
    }
    for (tag, content) in elements {
        xml = remove_element(&xml, tag);
        xml = insert_before_root_end(&xml, &format!("    <{tag}>{content}</{tag}>\n"));
    }
    xml
}

/// Removes every `<!-- … -->` comment.
fn strip_comments(xml: &str) -> String {
    let mut out = String::with_capacity(xml.len());
    let mut rest = xml;
    while let Some(start) = rest.find("<!--") {
        out.push_str(&rest[..start]);
        match rest[start..].find("-->") {
            Some(end) => rest = &rest[start + end + 3..],
            None => return out,
        }
    }
    out.push_str(rest);
    out
}

/// Removes every `<tag …>…</tag>` and `<tag …/>` element; only used for top-level tags that do
/// not nest inside themselves.
fn remove_element(xml: &str, tag: &str) -> String {
    let open = format!("<{tag}");
    let close = format!("</{tag}>");
    let mut out = String::with_capacity(xml.len());
    let mut rest = xml;
    while let Some(start) = find_tag(rest, &open) {
        out.push_str(&rest[..start]);
        let after = &rest[start..];
        let Some(head_end) = after.find('>') else {
            return out;
        };
        rest = if after[..head_end].ends_with('/') {
            &after[head_end + 1..]
        } else {
            match after.find(&close) {
                Some(end) => &after[end + close.len()..],
                None => "",
            }
        };
    }
    out.push_str(rest);
    out
}

/// Finds `<tag` followed by `>`, `/` or whitespace, so `<tcp_port` does not match
/// `<tcp_port_secure`.
fn find_tag(xml: &str, open: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(pos) = xml[from..].find(open) {
        let at = from + pos;
        match xml[at + open.len()..].chars().next() {
            Some(c) if c == '>' || c == '/' || c.is_whitespace() => return Some(at),
            _ => from = at + open.len(),
        }
    }
    None
}

/// Inserts `element` before the closing root tag (`</yandex>` in 18.16, `</clickhouse>` later).
fn insert_before_root_end(xml: &str, element: &str) -> String {
    let end = ["</yandex>", "</clickhouse>"]
        .iter()
        .filter_map(|root| xml.rfind(root))
        .max()
        .unwrap_or(xml.len());
    format!("{}{element}{}", &xml[..end], &xml[end..])
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEMPLATE: &str = r#"<?xml version="1.0"?>
<yandex>
    <logger><level>trace</level><log>/var/log/clickhouse-server/x.log</log></logger>
    <http_port>8123</http_port>
    <tcp_port>9000</tcp_port>
    <!--
    <https_port>8443</https_port>
    <listen_host>::</listen_host>
    -->
    <tcp_port_secure>9440</tcp_port_secure>
    <path>/var/lib/clickhouse/</path>
    <distributed_ddl><path>/clickhouse/task_queue/ddl</path></distributed_ddl>
    <remote_servers><x><shard><replica><port>9000</port></replica></shard></x></remote_servers>
</yandex>
"#;

    fn render() -> String {
        let ports = Ports {
            http: 1,
            tcp: 2,
            interserver: 3,
        };
        render_config(TEMPLATE, Path::new("/t"), ports, &[])
    }

    #[test]
    fn replaces_remote_servers_when_given() {
        let ports = Ports {
            http: 1,
            tcp: 2,
            interserver: 3,
        };
        let xml = render_config(
            TEMPLATE,
            Path::new("/t"),
            ports,
            &[("remote_servers", "<c><shard/></c>".to_string())],
        );
        assert_eq!(xml.matches("<remote_servers>").count(), 1, "{xml}");
        assert!(xml.contains("<remote_servers><c><shard/></c></remote_servers>"));
        assert!(!xml.contains("<x>"), "{xml}");
    }

    #[test]
    fn sets_ports_and_listens_on_ipv4_loopback_only() {
        let xml = render();
        assert!(xml.contains("<http_port>1</http_port>"), "{xml}");
        assert!(xml.contains("<tcp_port>2</tcp_port>"), "{xml}");
        assert!(xml.contains("<interserver_http_port>3</interserver_http_port>"));
        assert_eq!(xml.matches("<listen_host>").count(), 1);
        assert!(xml.contains("<listen_host>127.0.0.1</listen_host>"));
        assert!(!xml.contains("8123") && !xml.contains("https_port"));
        assert!(!xml.contains("tcp_port_secure"), "{xml}");
        assert!(xml.trim_end().ends_with("</yandex>"));
    }

    #[test]
    fn moves_paths_into_the_temp_dir_and_keeps_unrelated_elements() {
        let xml = render();
        assert!(xml.contains("<path>/t/data/</path>"));
        assert!(xml.contains("<log>/t/log/clickhouse-server.log</log>"));
        assert!(!xml.contains("/var/"), "{xml}");
        assert!(xml.contains("<path>/clickhouse/task_queue/ddl</path>"));
        assert!(xml.contains("<port>9000</port>"));
        assert_eq!(xml.matches("<logger>").count(), 1);
    }

    #[test]
    fn removes_self_closing_elements() {
        assert_eq!(remove_element("a<x y=\"1\"/>b<x>c</x>d", "x"), "abd");
    }
}
