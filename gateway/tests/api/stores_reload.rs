//! Keys an operator manages, on the real binary: `gateway stores add|rotate|revoke` edit
//! the file, the running gateway reloads it on change and on SIGHUP, a revoked token is
//! refused within 5 s even on a stream opened before, an open stream survives a reload,
//! and a malformed file is refused with a log line while the previous one stays in force.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use pipeline::proto::ingest::PublishRequest;
use tonic::Code;

use crate::helpers::*;

/// `gateway stores ARGS --stores-file FILE`; its stdout.
fn stores_cli(file: &Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .arg("stores")
        .args(args)
        .arg("--stores-file")
        .arg(file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "gateway stores {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The token `add` or `rotate` printed (its last line).
fn printed_token(out: &str) -> String {
    out.lines().last().unwrap().trim().to_owned()
}

/// The gateway binary, killed on drop, logging to `log`.
struct Binary {
    child: Child,
    url: String,
    log: PathBuf,
}

impl Binary {
    fn start(dir: &Path, stores: &Path, extra: &[&str]) -> Binary {
        let port = testkit::free_port();
        let log = dir.join(format!("gateway-{port}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_gateway"))
            .arg("--stores-file")
            .arg(stores)
            .args(["--redis-url", &testkit::shared_redis().url()])
            .args(["--stream-key", &testkit::unique_name("keys")])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(extra)
            .env("RUST_LOG", "info")
            .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
            .spawn()
            .unwrap();
        Binary {
            child,
            url: format!("http://127.0.0.1:{port}"),
            log,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn hangup(&self) {
        let status = Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// A unary Publish of one event with `token`: its status code.
    async fn publish(&self, token: &str) -> Code {
        let Ok(channel) = tonic::transport::Channel::from_shared(self.url.clone())
            .unwrap()
            .connect()
            .await
        else {
            return Code::Unavailable;
        };
        let mut client =
            pipeline::proto::ingest::ingest_service_client::IngestServiceClient::new(channel);
        code_of(
            &client
                .publish(authed(token, request(0, eu_events(1))))
                .await,
        )
    }

    /// Waits until a publish with `token` answers `code`; at most `within`.
    async fn until(&self, token: &str, code: Code, within: Duration) {
        testkit::eventually(within, &format!("publish answering {code:?}"), || async {
            Ok((self.publish(token).await == code).then_some(()))
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\ngateway log:\n{}", self.log()));
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An open PublishStream: send a request, read its answer.
struct OpenStream {
    requests: tokio::sync::mpsc::Sender<PublishRequest>,
    responses: tonic::Streaming<pipeline::proto::ingest::PublishResponse>,
}

impl OpenStream {
    async fn open(url: &str, token: &str) -> OpenStream {
        let (requests, rx) = tokio::sync::mpsc::channel(4);
        requests.send(request(1, eu_events(1))).await.unwrap();
        let channel = tonic::transport::Channel::from_shared(url.to_owned())
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut client =
            pipeline::proto::ingest::ingest_service_client::IngestServiceClient::new(channel);
        let mut responses = client
            .publish_stream(authed(
                token,
                tokio_stream::wrappers::ReceiverStream::new(rx),
            ))
            .await
            .unwrap()
            .into_inner();
        let first = responses.message().await.unwrap().unwrap();
        assert_eq!((first.sequence, first.accepted), (1, 1));
        OpenStream {
            requests,
            responses,
        }
    }

    /// Sends request `sequence`; the answer's status code.
    async fn send(&mut self, sequence: u64) -> Code {
        if self
            .requests
            .send(request(sequence, eu_events(1)))
            .await
            .is_err()
        {
            return Code::Unavailable;
        }
        match self.responses.message().await {
            Ok(Some(r)) if r.sequence == sequence => Code::Ok,
            Ok(_) => Code::Unknown,
            Err(status) => status.code(),
        }
    }
}

const WITHIN: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_rotate_and_revoke_while_the_binary_runs() {
    let dir = tempfile::tempdir().unwrap();
    let stores = dir.path().join("stores.toml");
    let old = printed_token(&stores_cli(
        &stores,
        &["add", "--id", "eu-1", "--region", "europe"],
    ));
    let text = std::fs::read_to_string(&stores).unwrap();
    assert!(
        !text.contains(&old) && text.contains(&gateway::auth::token_sha256(&old)),
        "only the hash is stored"
    );
    let gateway = Binary::start(dir.path(), &stores, &[]);
    gateway.until(&old, Code::Ok, Duration::from_secs(30)).await;
    let mut stream = OpenStream::open(&gateway.url, &old).await;

    // rotation: the new token works within 5 s, the old one still does, the open stream too
    let new = printed_token(&stores_cli(&stores, &["rotate", "--id", "eu-1"]));
    gateway.until(&new, Code::Ok, WITHIN).await;
    assert_eq!(gateway.publish(&old).await, Code::Ok);
    assert_eq!(
        stream.send(2).await,
        Code::Ok,
        "a reload does not drop streams"
    );
    let listed = stores_cli(&stores, &["list"]);
    let keys = listed.split("keys: ").nth(1).unwrap_or_default();
    assert_eq!(keys.split_whitespace().count(), 2, "two keys: {listed}");

    // revocation: the old token is refused within 5 s, on new calls and on the open stream
    let key = &gateway::auth::token_sha256(&old)[..12];
    stores_cli(&stores, &["revoke", "--id", "eu-1", "--key", key]);
    gateway.until(&old, Code::Unauthenticated, WITHIN).await;
    assert_eq!(stream.send(3).await, Code::Unauthenticated);
    assert_eq!(gateway.publish(&new).await, Code::Ok);

    // a malformed file is refused with a log line; the previous file stays in force
    let tmp = dir.path().join("broken.toml");
    std::fs::write(&tmp, "[[store]]\nid = \"eu-1\"\nregion = \"mars\"\n").unwrap();
    std::fs::rename(&tmp, &stores).unwrap();
    testkit::eventually(WITHIN, "the refusal in the log", || async {
        Ok(gateway
            .log()
            .contains("stores file refused; the previous one stays in force")
            .then_some(()))
    })
    .await
    .unwrap();
    assert_eq!(gateway.publish(&new).await, Code::Ok);
    assert_eq!(gateway.publish(&old).await, Code::Unauthenticated);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_stores_file() {
    let dir = tempfile::tempdir().unwrap();
    let stores = dir.path().join("stores.toml");
    let first = printed_token(&stores_cli(
        &stores,
        &["add", "--id", "eu-1", "--region", "europe"],
    ));
    // no polling: only the signal can make the gateway see the change
    let gateway = Binary::start(dir.path(), &stores, &["--stores-reload-interval", "0s"]);
    gateway
        .until(&first, Code::Ok, Duration::from_secs(30))
        .await;
    let second = printed_token(&stores_cli(&stores, &["rotate", "--id", "eu-1"]));
    assert_eq!(gateway.publish(&second).await, Code::Unauthenticated);
    gateway.hangup();
    gateway.until(&second, Code::Ok, WITHIN).await;
    assert!(gateway.log().contains("stores file reloaded"));
}
