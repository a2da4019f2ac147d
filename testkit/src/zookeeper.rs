//! A private ZooKeeper (Debian's 3.8) on a free loopback port, data in a temp directory
//!
//! What ClickHouse's `ReplicatedMergeTree` coordinates through: the replicas of a table agree
//! on its parts, and on the ids of the blocks inserted lately (block deduplication), in
//! ZooKeeper. One standalone server, started with plain `java` on the package's jar (its
//! manifest names every dependency), without the admin HTTP server (port 8080 by default)
//! and with a short tick, so sessions of a killed ClickHouse expire within seconds.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use tempfile::TempDir;

use crate::ports::free_port;
use crate::process::{Supervised, find_program, with_one_retry};

/// Where Debian's zookeeper package puts the server's jar.
const JAR: &str = "/usr/share/java/zookeeper.jar";

/// The JVM starts in ~1-2 s here; the rest is slack for a loaded machine.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// ZooKeeper's time unit: sessions last between 2 and 20 ticks, so a ClickHouse that asks for
/// a 30 s session gets 10 s, and a killed one's ephemeral nodes are gone within that.
const TICK_MS: u64 = 500;

/// A ZooKeeper server child process on 127.0.0.1. Dropping it kills it and removes its data.
pub struct ZooKeeper {
    /// Declared before `dir` so the server dies before its directory is removed.
    process: Option<Supervised>,
    port: u16,
    dir: TempDir,
}

impl ZooKeeper {
    /// Starts a server and waits until it serves clients (`srvr` names its mode; `ruok`
    /// answers `imok` earlier, while a client's handshake still fails).
    pub fn start() -> Result<ZooKeeper> {
        with_one_retry("zookeeper", || {
            let dir = tempfile::Builder::new()
                .prefix("testkit-zookeeper-")
                .tempdir()
                .context("failed to create zookeeper temp dir")?;
            let port = free_port();
            std::fs::write(dir.path().join("zoo.cfg"), config(dir.path(), port))?;
            std::fs::create_dir_all(dir.path().join("data"))?;
            let mut zookeeper = ZooKeeper {
                process: None,
                port,
                dir,
            };
            zookeeper.spawn()?;
            Ok(zookeeper)
        })
    }

    /// The client port, for ClickHouse's `<zookeeper><node>`.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's directory: zoo.cfg, data/ and its log.
    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// Kills the server with SIGKILL and waits for it to exit.
    pub fn kill(&mut self) -> Result<()> {
        if let Some(mut process) = self.process.take() {
            process.kill()?;
        }
        Ok(())
    }

    /// Starts the server again on the same port and data, and waits until it is ready.
    pub fn restart(&mut self) -> Result<()> {
        self.kill()?;
        self.spawn()
    }

    fn spawn(&mut self) -> Result<()> {
        let java = find_program("java", &["/usr/bin"])
            .ok_or_else(|| anyhow!("java not found on PATH: run scripts/install.sh"))?;
        if !Path::new(JAR).is_file() {
            return Err(anyhow!(
                "{JAR} not found: run scripts/install.sh (zookeeper)"
            ));
        }
        let dir = self.dir.path();
        let mut cmd = Command::new(java);
        cmd.current_dir(dir)
            // a test server needs little heap; the JVM's default is a quarter of the RAM
            .args(["-Xms32m", "-Xmx256m", "-XX:+UseSerialGC"])
            .arg("-cp")
            .arg(JAR)
            .arg("org.apache.zookeeper.server.quorum.QuorumPeerMain")
            .arg(dir.join("zoo.cfg"));
        let mut process = Supervised::spawn(
            "zookeeper",
            &mut cmd,
            dir,
            &dir.join("zookeeper.log"),
            vec![],
        )?;
        let port = self.port;
        let took = process.wait_ready(READY_TIMEOUT, || {
            Ok(four_letters(port, "srvr")?.contains("Mode: standalone"))
        })?;
        if crate::test_log_enabled() {
            eprintln!("testkit: zookeeper ready on port {port} in {took:?}");
        }
        self.process = Some(process);
        Ok(())
    }
}

/// zoo.cfg for a standalone server in `dir` on `port`.
fn config(dir: &Path, port: u16) -> String {
    format!(
        "tickTime={TICK_MS}\n\
         dataDir={data}\n\
         clientPort={port}\n\
         clientPortAddress=127.0.0.1\n\
         maxClientCnxns=0\n\
         admin.enableServer=false\n\
         4lw.commands.whitelist=srvr,mntr\n\
         standaloneEnabled=true\n",
        data = dir.join("data").display()
    )
}

/// Sends one of ZooKeeper's four-letter commands and returns the answer.
fn four_letters(port: u16, command: &str) -> Result<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.write_all(command.as_bytes())?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    Ok(answer.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_is_private_and_quick() {
        let cfg = config(Path::new("/t"), 4242);
        assert!(cfg.contains("clientPort=4242\n"));
        assert!(cfg.contains("clientPortAddress=127.0.0.1\n"));
        assert!(cfg.contains("dataDir=/t/data\n"));
        assert!(cfg.contains("admin.enableServer=false"));
        assert!(cfg.contains("srvr"));
    }
}
