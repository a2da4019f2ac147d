//! A private SeaweedFS (`weed server -s3`) on free loopback ports, data in a temp directory
//!
//! Flags that matter for running several instances side by side on one machine:
//! - every gRPC port is set explicitly: weed's default is the HTTP port + 10000, which nobody
//!   checked was free;
//! - the Iceberg (8181) and Lance (9101) side servers of the S3 gateway are off (port 0), or a
//!   second instance would fail to bind them;
//! - the master reads `master.toml` from its working directory (the temp dir); ours makes a new
//!   bucket grow 1 volume instead of 7, which makes a bucket's first write faster;
//! - weed still puts its gRPC unix sockets in /tmp under fixed names, so they are removed on stop.
//!
//! Without an `-s3.config` identities file the gateway accepts any credentials, and also
//! unsigned requests, which the helpers below use. That holds only while weed sees no
//! `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`: it turns them into an admin identity, which
//! switches auth on, so they are removed from its environment.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use tempfile::TempDir;

use crate::http;
use crate::ports::free_ports;
use crate::process::{Supervised, find_program, with_one_retry};

/// Master, volume server, filer and gateway start in sequence (~3.5 s here, 5–8 s on a loaded
/// machine); the rest is slack.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// weed's filer waits up to 15 s for gRPC streams to drain on SIGTERM; nothing a test keeps
/// depends on that, so stop does not wait for it.
const STOP_GRACE: Duration = Duration::from_secs(3);

/// Long enough for a test's largest object.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// One volume per new bucket (weed's default grows 7 at once, ~2 s per new bucket).
const MASTER_TOML: &str =
    "[master.volume_growth]\ncopy_1 = 1\ncopy_2 = 1\ncopy_3 = 1\ncopy_other = 1\n";

/// The ports of one weed server: every component's HTTP and gRPC port.
#[derive(Clone, Copy, Debug)]
struct Ports {
    master: u16,
    master_grpc: u16,
    volume: u16,
    volume_grpc: u16,
    filer: u16,
    filer_grpc: u16,
    s3: u16,
    s3_grpc: u16,
}

impl Ports {
    fn pick() -> Ports {
        let p = free_ports(8);
        Ports {
            master: p[0],
            master_grpc: p[1],
            volume: p[2],
            volume_grpc: p[3],
            filer: p[4],
            filer_grpc: p[5],
            s3: p[6],
            s3_grpc: p[7],
        }
    }

    /// The unix sockets weed creates in /tmp whatever TMPDIR says.
    fn tmp_sockets(&self) -> Vec<PathBuf> {
        [
            ("master", self.master_grpc),
            ("volume", self.volume_grpc),
            ("filer", self.filer_grpc),
            ("s3", self.s3_grpc),
        ]
        .iter()
        .map(|(what, port)| PathBuf::from(format!("/tmp/seaweedfs-{what}-grpc-{port}.sock")))
        .collect()
    }
}

/// A SeaweedFS server with master, volume server, filer and S3 gateway, on 127.0.0.1.
///
/// Dropping it kills the server (SIGKILL) and removes its data directory.
pub struct S3 {
    /// The running server; `None` after `stop`. Declared before `dir` so the server dies
    /// before its directory is removed.
    process: Option<Supervised>,
    ports: Ports,
    /// Holds volumes, the filer's leveldb, master.toml and weed.log.
    dir: TempDir,
}

impl S3 {
    /// Starts weed with its S3 gateway and waits until the master has a volume server, the filer
    /// answers and the gateway answers S3 requests.
    pub fn start() -> Result<S3> {
        with_one_retry("seaweedfs", || {
            let dir = tempfile::Builder::new()
                .prefix("testkit-s3-")
                .tempdir()
                .context("failed to create seaweedfs temp dir")?;
            std::fs::write(dir.path().join("master.toml"), MASTER_TOML)?;
            let mut s3 = S3 {
                process: None,
                ports: Ports::pick(),
                dir,
            };
            s3.spawn()?;
            Ok(s3)
        })
    }

    /// The S3 endpoint: `http://127.0.0.1:S3PORT` (use path-style addressing).
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports.s3)
    }

    /// The S3 gateway's port.
    pub fn port(&self) -> u16 {
        self.ports.s3
    }

    /// The server's directory: volumes, filer metadata and weed.log.
    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// Stops the server (SIGTERM, then SIGKILL after 3 s) and removes its /tmp sockets.
    /// Stopping a stopped server does nothing.
    pub fn stop(&mut self) -> Result<()> {
        if let Some(mut process) = self.process.take() {
            process.terminate(STOP_GRACE)?;
        }
        Ok(())
    }

    /// Starts the server again on the same ports and directory, keeping its buckets and
    /// objects, and waits until it answers. A running server is stopped first.
    pub fn restart(&mut self) -> Result<()> {
        self.stop()?;
        self.spawn()
    }

    /// Creates `bucket` with an unsigned `PUT /bucket`.
    pub fn create_bucket(&self, bucket: &str) -> Result<()> {
        let response = self.request("PUT", &format!("/{bucket}"), &[])?;
        expect_ok(&response, &format!("create bucket {bucket}"))
    }

    /// Stores `body` at `bucket/key` with an unsigned `PUT`. `key` goes into the URL as it is,
    /// so keep it URL-safe (letters, digits, `/`, `-`, `_`, `.`).
    pub fn put_object(&self, bucket: &str, key: &str, body: &[u8]) -> Result<()> {
        let response = self.request("PUT", &format!("/{bucket}/{key}"), body)?;
        expect_ok(&response, &format!("put {bucket}/{key}"))
    }

    /// Reads `bucket/key` with an unsigned `GET`.
    pub fn get_object(&self, bucket: &str, key: &str) -> Result<Vec<u8>> {
        let response = self.request("GET", &format!("/{bucket}/{key}"), &[])?;
        expect_ok(&response, &format!("get {bucket}/{key}"))?;
        Ok(response.body)
    }

    /// The keys in `bucket` (first 1000, in order), from an unsigned ListObjectsV2.
    pub fn list_keys(&self, bucket: &str) -> Result<Vec<String>> {
        let response = self.request("GET", &format!("/{bucket}?list-type=2"), &[])?;
        expect_ok(&response, &format!("list {bucket}"))?;
        Ok(xml_values(&response.text(), "Key"))
    }

    fn request(&self, method: &str, path: &str, body: &[u8]) -> Result<http::Response> {
        http::request(self.ports.s3, method, path, body, REQUEST_TIMEOUT)
    }

    fn spawn(&mut self) -> Result<()> {
        let weed = find_program("weed", &[])
            .ok_or_else(|| anyhow!("weed not found on PATH: run scripts/install.sh"))?;
        let dir = self.dir.path();
        let p = self.ports;
        let mut cmd = Command::new(weed);
        // weed reads any WEED_* variable as configuration: a developer's must not leak in
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("WEED_") {
                cmd.env_remove(name);
            }
        }
        cmd.current_dir(dir)
            // Go's temp files follow TMPDIR; keep them in our directory
            .env("TMPDIR", dir)
            // weed turns these into an admin identity, which switches auth on for everyone else
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env_remove("AWS_SESSION_TOKEN")
            .env_remove("AWS_ACCESS_KEY")
            .env_remove("AWS_SECRET_KEY")
            // glog would otherwise also write log files into /tmp
            .arg("-logtostderr")
            .arg("server")
            .arg(format!("-dir={}", dir.display()))
            .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1"])
            .arg(format!("-master.port={}", p.master))
            .arg(format!("-master.port.grpc={}", p.master_grpc))
            .arg(format!("-volume.port={}", p.volume))
            .arg(format!("-volume.port.grpc={}", p.volume_grpc))
            .arg("-filer")
            .arg(format!("-filer.port={}", p.filer))
            .arg(format!("-filer.port.grpc={}", p.filer_grpc))
            .arg(format!("-filer.localSocket={}/filer.sock", dir.display()))
            .arg("-s3")
            .arg(format!("-s3.port={}", p.s3))
            .arg(format!("-s3.port.grpc={}", p.s3_grpc))
            .arg(format!("-s3.localSocket={}/s3.sock", dir.display()))
            .args(["-s3.port.iceberg=0", "-s3.port.lance=0"])
            // no usage reports leave a test machine
            .arg("-master.telemetry=false")
            // the volume server otherwise waits 10 s before it stops
            .arg("-volume.preStopSeconds=0")
            // a lone master has nobody to elect; the 10 s default delays starts on old state
            .arg("-master.electionTimeout=1s")
            // small volumes and a fixed volume count: one volume per bucket, many buckets
            .args(["-master.volumeSizeLimitMB=64", "-volume.max=1000"]);
        let log = dir.join("weed.log");
        let mut process = Supervised::spawn("seaweedfs", &mut cmd, dir, &log, p.tmp_sockets())?;
        let took = process.wait_ready(READY_TIMEOUT, || {
            // a write needs a registered volume server, the gateway needs the filer
            let status = http::get(p.master, "/dir/status")?;
            if !status.text().contains("\"DataNodes\":[{") {
                return Ok(false);
            }
            if http::get(p.filer, "/")?.status >= 500 {
                return Ok(false);
            }
            Ok(http::get(p.s3, "/")?.status < 500)
        })?;
        if crate::test_log_enabled() {
            eprintln!("testkit: seaweedfs s3 ready on port {} in {took:?}", p.s3);
        }
        self.process = Some(process);
        Ok(())
    }
}

fn expect_ok(response: &http::Response, what: &str) -> Result<()> {
    if !(200..300).contains(&response.status) {
        bail!(
            "{what} failed (http {}): {}",
            response.status,
            response.text()
        );
    }
    Ok(())
}

/// The text of every `<tag>…</tag>` in `xml`, unescaping the few entities S3 keys can contain.
fn xml_values(xml: &str, tag: &str) -> Vec<String> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let mut values = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find(&open) {
        rest = &rest[start + open.len()..];
        let Some(end) = rest.find(&close) else { break };
        values.push(
            rest[..end]
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&quot;", "\"")
                .replace("&#34;", "\"")
                .replace("&apos;", "'")
                .replace("&#39;", "'")
                .replace("&amp;", "&"),
        );
        rest = &rest[end + close.len()..];
    }
    values
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extracts_keys_from_a_listing() {
        let xml = "<ListBucketResult><Contents><Key>a/b.txt</Key></Contents>\
                   <Contents><Key>c&amp;d</Key></Contents></ListBucketResult>";
        assert_eq!(xml_values(xml, "Key"), ["a/b.txt", "c&d"]);
    }

    #[test]
    fn grpc_sockets_are_named_after_the_grpc_ports() {
        let ports = Ports::pick();
        let sockets = ports.tmp_sockets();
        assert_eq!(sockets.len(), 4);
        assert!(
            sockets[0]
                .to_string_lossy()
                .ends_with(&format!("-grpc-{}.sock", ports.master_grpc))
        );
    }
}
