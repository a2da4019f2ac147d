//! A private redis-server on a free loopback port, with its AOF in a temporary directory

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use tempfile::TempDir;

use crate::ports::free_port;
use crate::process::{Supervised, find_program, with_one_retry};

/// Redis loads its AOF before it answers PING, so a restart with a big AOF needs some slack.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// How long `stop` waits for SHUTDOWN to finish writing before it kills the server.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Settings that tests vary; everything else is fixed by [`Redis::start_with`].
#[derive(Clone, Debug, Default)]
pub struct RedisOptions {
    /// `appendfsync always` instead of `everysec`: every acknowledged write survives a SIGKILL,
    /// which is what crash tests that kill the server want to rely on.
    pub appendfsync_always: bool,
    /// A memory limit such as `"20mb"`, with `maxmemory-policy noeviction`, so that writes fail
    /// with an OOM error instead of silently evicting stream entries (overload tests).
    pub maxmemory: Option<String>,
    /// An ACL file (`--aclfile`), e.g. deploy/redis/users.acl rendered by deploy/redis/acl.sh.
    /// When it turns the `default` user off, [`Redis::stop`], [`Redis::restart`] and
    /// [`Redis::cli`] (which log in as `default`) cannot be used; dropping still kills.
    pub acl_file: Option<PathBuf>,
    /// Serve TLS only (`--tls-port`, no plaintext port) with these certificates; clients
    /// are not asked for certificates. [`Redis::url`] is then `rediss://127.0.0.1:PORT`.
    pub tls: Option<crate::tls::Certificates>,
}

/// A redis-server child process on 127.0.0.1 with AOF persistence (`appendonly yes`).
///
/// Dropping it kills the server (SIGKILL) and removes its directory.
pub struct Redis {
    /// The running server; `None` between `stop`/`kill` and `restart`. Declared before `dir` so
    /// the server dies before its directory is removed.
    process: Option<Supervised>,
    /// Fixed for the life of the struct so that clients can reconnect after a restart.
    port: u16,
    /// Kept to start the server again with the same settings.
    opts: RedisOptions,
    /// More `redis-server` arguments, e.g. the cluster mode settings of a [`RedisCluster`] node.
    ///
    /// [`RedisCluster`]: crate::RedisCluster
    extra_args: Vec<String>,
    /// Holds the AOF across restarts; removed on drop.
    dir: TempDir,
}

impl Redis {
    /// Starts a server with default options: AOF on, `appendfsync everysec`, no memory limit.
    pub fn start() -> Result<Redis> {
        Redis::start_with(RedisOptions::default())
    }

    /// Starts a server with `opts`, waiting until it answers PING.
    pub fn start_with(opts: RedisOptions) -> Result<Redis> {
        with_one_retry("redis", || {
            let dir = tempfile::Builder::new()
                .prefix("testkit-redis-")
                .tempdir()
                .context("failed to create redis temp dir")?;
            let mut redis = Redis {
                process: None,
                port: free_port(),
                opts: opts.clone(),
                extra_args: Vec::new(),
                dir,
            };
            redis.spawn()?;
            Ok(redis)
        })
    }

    /// Starts a cluster-mode node (`cluster-enabled yes`, node table in `nodes.conf` in its
    /// directory) on `port`, whose bus port `port + 10000` must be free too, and waits until it
    /// answers PING. The node owns no slots until `redis-cli --cluster create` assigns them.
    /// No retry: the caller picks new ports for the whole cluster when a start fails.
    pub(crate) fn start_cluster_node(port: u16, node_timeout: Duration) -> Result<Redis> {
        let dir = tempfile::Builder::new()
            .prefix("testkit-redis-cluster-")
            .tempdir()
            .context("failed to create redis cluster node temp dir")?;
        let nodes_conf = dir.path().join("nodes.conf");
        let mut redis = Redis {
            process: None,
            port,
            opts: RedisOptions::default(),
            extra_args: vec![
                "--cluster-enabled".into(),
                "yes".into(),
                "--cluster-config-file".into(),
                nodes_conf.display().to_string(),
                "--cluster-node-timeout".into(),
                node_timeout.as_millis().to_string(),
            ],
            dir,
        };
        redis
            .spawn()
            .with_context(|| format!("failed to start redis cluster node on port {port}"))?;
        Ok(redis)
    }

    /// Starts a node of a [`RedisSentinel`] group on a free port with `appendfsync always`,
    /// as a replica of `replica_of` if given.
    ///
    /// [`RedisSentinel`]: crate::RedisSentinel
    pub(crate) fn start_replicated_node(replica_of: Option<u16>) -> Result<Redis> {
        with_one_retry("redis", || {
            let dir = tempfile::Builder::new()
                .prefix("testkit-redis-ha-")
                .tempdir()
                .context("failed to create redis temp dir")?;
            let mut redis = Redis {
                process: None,
                port: free_port(),
                opts: RedisOptions {
                    appendfsync_always: true,
                    ..RedisOptions::default()
                },
                extra_args: replicated_args(replica_of),
                dir,
            };
            redis.spawn()?;
            Ok(redis)
        })
    }

    /// Starts a killed or stopped node again as a replica of `primary_port`, the way an
    /// operator brings a failed primary back after a failover: its own data is replaced by a
    /// full sync from the primary.
    pub(crate) fn restart_as_replica_of(&mut self, primary_port: u16) -> Result<()> {
        self.stop()?;
        self.extra_args = replicated_args(Some(primary_port));
        self.spawn()
    }

    /// Freezes the server with SIGSTOP: it keeps its connections but answers nothing, as a
    /// primary cut off by a network partition. [`Redis::resume`] lets it run again.
    pub fn pause(&self) -> Result<()> {
        self.signal("-STOP")
    }

    /// Lets a server frozen by [`Redis::pause`] run again (SIGCONT).
    pub fn resume(&self) -> Result<()> {
        self.signal("-CONT")
    }

    fn signal(&self, signal: &str) -> Result<()> {
        let Some(process) = &self.process else {
            bail!("redis on port {} is not running", self.port);
        };
        process.signal(signal)
    }

    /// Whether the server process is running (started and neither stopped nor killed since).
    pub fn is_running(&self) -> bool {
        self.process.is_some()
    }

    /// The URL clients connect to: `redis://127.0.0.1:PORT` (`rediss://` with TLS).
    pub fn url(&self) -> String {
        let scheme = if self.opts.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// The TCP port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's data directory (the AOF lives in `appendonlydir/` below it).
    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// Stops the server gracefully with SHUTDOWN, which flushes the AOF, and waits for it to
    /// exit. Stopping a stopped server does nothing.
    pub fn stop(&mut self) -> Result<()> {
        let Some(mut process) = self.process.take() else {
            return Ok(());
        };
        // SHUTDOWN closes the connection instead of replying, so errors here are expected;
        // whether the process exits is what counts
        let _ = send_command(self.port, &["SHUTDOWN"]);
        if !process.wait_exit(SHUTDOWN_GRACE)? {
            process.kill()?;
            bail!("redis did not shut down within {SHUTDOWN_GRACE:?} and was killed");
        }
        Ok(())
    }

    /// Kills the server with SIGKILL, as a crash would, and waits for it to exit. Writes that
    /// were not yet fsynced to the AOF are lost (none with `appendfsync_always`).
    pub fn kill(&mut self) -> Result<()> {
        if let Some(mut process) = self.process.take() {
            process.kill()?;
        }
        Ok(())
    }

    /// Starts the server again on the same port and directory, so it reloads its AOF, and waits
    /// until it answers PING. A running server is stopped gracefully first.
    pub fn restart(&mut self) -> Result<()> {
        self.stop()?;
        self.spawn()
    }

    /// Makes the server refuse every write with `MISCONF`, as it does once a save failed
    /// because its disk is full: a save rule is set, and a save fails (a directory stands
    /// where `dump.rdb` goes, which stops root too). Reads that write nothing still work;
    /// [`Redis::write_again`] undoes it.
    pub fn refuse_writes(&self) -> Result<()> {
        std::fs::create_dir_all(self.dir().join("dump.rdb").join("in-the-way"))?;
        self.cli(&["CONFIG", "SET", "save", "3600 1"])?;
        self.save_ending("err")?;
        match self.cli(&["SET", "testkit:probe", "v"]) {
            Err(e) if format!("{e:#}").contains("MISCONF") => Ok(()),
            other => bail!("redis did not refuse a write: {other:?}"),
        }
    }

    /// Undoes [`Redis::refuse_writes`]: a save succeeds, and the server writes again.
    pub fn write_again(&self) -> Result<()> {
        std::fs::remove_dir_all(self.dir().join("dump.rdb"))?;
        self.save_ending("ok")?;
        self.cli(&["CONFIG", "SET", "save", ""])?;
        self.cli(&["SET", "testkit:probe", "v"])?;
        Ok(())
    }

    /// Starts a save (`BGSAVE`) and waits until it ended with `status`, `ok` or `err`.
    fn save_ending(&self, status: &str) -> Result<()> {
        let ended = format!("rdb_last_bgsave_status:{status}");
        let mut started = false;
        for _ in 0..100 {
            // refused while another save runs
            started = started || self.cli(&["BGSAVE"]).is_ok();
            let info = self.cli(&["INFO", "persistence"])?;
            if started && info.contains("rdb_bgsave_in_progress:0") && info.contains(&ended) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!("no save ended with {status} within 10 s")
    }

    /// Runs `redis-cli -p PORT args...` and returns its stdout, trimmed. An error reply from the
    /// server is an `Err` carrying the reply text.
    pub fn cli(&self, args: &[&str]) -> Result<String> {
        redis_cli(&["-p", &self.port.to_string()], args)
    }

    fn spawn(&mut self) -> Result<()> {
        let server = find_program("redis-server", &["/usr/sbin"])
            .ok_or_else(|| anyhow!("redis-server not found on PATH: run scripts/install.sh"))?;
        let dir = self.dir.path();
        let mut cmd = Command::new(server);
        let port = self.port.to_string();
        cmd.current_dir(dir).args(["--bind", "127.0.0.1"]);
        match &self.opts.tls {
            None => cmd.args(["--port", &port]),
            Some(certs) => cmd
                .args([
                    "--port",
                    "0",
                    "--tls-port",
                    &port,
                    "--tls-auth-clients",
                    "no",
                ])
                .arg("--tls-cert-file")
                .arg(&certs.cert)
                .arg("--tls-key-file")
                .arg(&certs.key)
                .arg("--tls-ca-cert-file")
                .arg(&certs.ca),
        };
        if let Some(acl) = &self.opts.acl_file {
            cmd.arg("--aclfile").arg(acl);
        }
        cmd.arg("--dir")
            .arg(dir)
            .args(["--daemonize", "no", "--logfile", ""])
            .args(["--appendonly", "yes", "--appendfsync"])
            .arg(if self.opts.appendfsync_always {
                "always"
            } else {
                "everysec"
            })
            // no RDB snapshots: what survives a restart is exactly what the AOF holds
            .args(["--save", ""])
            .args(&self.extra_args);
        if let Some(limit) = &self.opts.maxmemory {
            cmd.args(["--maxmemory", limit, "--maxmemory-policy", "noeviction"]);
        }
        let log = dir.join("redis.log");
        let mut process = Supervised::spawn("redis", &mut cmd, dir, &log, Vec::new())?;
        let port = self.port;
        let tls = self.opts.tls.clone();
        // NOAUTH is an answer too: with `user default off` nothing else comes before a login
        let answered = |reply: &str| reply.starts_with("+PONG") || reply.contains("NOAUTH");
        let took = process.wait_ready(READY_TIMEOUT, || match &tls {
            None => Ok(answered(&send_command(port, &["PING"])?)),
            Some(certs) => {
                let ca = certs.ca.display().to_string();
                let port = port.to_string();
                Ok(
                    match redis_cli(&["--tls", "--cacert", &ca, "-p", &port], &["PING"]) {
                        Ok(reply) => answered(&format!("+{reply}")),
                        Err(err) => answered(&err.to_string()),
                    },
                )
            }
        })?;
        if crate::test_log_enabled() {
            eprintln!("testkit: redis ready on port {port} in {took:?}");
        }
        self.process = Some(process);
        Ok(())
    }
}

/// The arguments of a replicated node: diskless replication, so that a replica (re)joining
/// syncs in milliseconds, and `--replicaof` when it starts as a replica.
fn replicated_args(replica_of: Option<u16>) -> Vec<String> {
    let mut args: Vec<String> = [
        "--repl-diskless-sync",
        "yes",
        "--repl-diskless-sync-delay",
        "0",
    ]
    .map(String::from)
    .to_vec();
    if let Some(port) = replica_of {
        args.extend(["--replicaof".into(), "127.0.0.1".into(), port.to_string()]);
    }
    args
}

/// Runs `redis-cli -e -h 127.0.0.1 flags... args...` and returns its stdout, trimmed; an error
/// reply is an `Err` carrying the reply text. `flags` name the port and e.g. `-c`.
pub(crate) fn redis_cli(flags: &[&str], args: &[&str]) -> Result<String> {
    let cli = find_program("redis-cli", &[])
        .ok_or_else(|| anyhow!("redis-cli not found on PATH: run scripts/install.sh"))?;
    // -e makes redis-cli exit non-zero on an error reply instead of printing it as data
    let output = Command::new(cli)
        .args(["-e", "-h", "127.0.0.1"])
        .args(flags)
        .args(args)
        .output()
        .context("failed to run redis-cli")?;
    if !output.status.success() {
        bail!(
            "redis-cli {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
}

/// Connects to the Redis on `port` and writes one RESP command; the reply is left to read.
fn send(port: u16, args: &[&str]) -> Result<TcpStream> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut request = format!("*{}\r\n", args.len());
    for arg in args {
        request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
    }
    stream.write_all(request.as_bytes())?;
    Ok(stream)
}

/// Sends one RESP command and returns the first reply line; enough for PING and SHUTDOWN
/// without spawning redis-cli on every readiness poll.
pub(crate) fn send_command(port: u16, args: &[&str]) -> Result<String> {
    let mut stream = send(port, args)?;
    let mut reply = [0u8; 256];
    let n = stream.read(&mut reply)?;
    Ok(String::from_utf8_lossy(&reply[..n])
        .lines()
        .next()
        .unwrap_or_default()
        .to_string())
}

/// Sends one RESP command whose reply is a bulk string (e.g. `CLUSTER INFO`) and returns that
/// string; any other reply (an error, say) comes back as its first line.
pub(crate) fn send_command_bulk(port: u16, args: &[&str]) -> Result<String> {
    let mut stream = send(port, args)?;
    let mut reply = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            bail!("connection closed in the middle of a reply");
        }
        reply.extend_from_slice(&chunk[..n]);
        let Some(header_end) = reply.windows(2).position(|w| w == b"\r\n") else {
            continue;
        };
        let header = String::from_utf8_lossy(&reply[..header_end]).into_owned();
        let Some(len) = header.strip_prefix('$') else {
            return Ok(header);
        };
        let len: usize = len
            .parse()
            .with_context(|| format!("bad bulk length in reply header {header:?}"))?;
        let body = header_end + 2;
        if reply.len() >= body + len {
            return Ok(String::from_utf8_lossy(&reply[body..body + len]).into_owned());
        }
    }
}
