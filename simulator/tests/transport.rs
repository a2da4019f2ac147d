//! The sender against in-process fake gateways: `--streaming` uses PublishStream where
//! the gateway has it and falls back to unary Publish where it answers UNIMPLEMENTED, and
//! refusals with RESOURCE_EXHAUSTED are retried with the same event ids.

use std::{
    collections::BTreeSet,
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
};

use clap::Parser;
use futures::{Stream, StreamExt};
use pipeline::proto::ingest::{
    PublishRequest, PublishResponse,
    ingest_service_server::{IngestService, IngestServiceServer},
};
use tonic::{Request, Response, Status};
use tonic_types::StatusExt as _;

/// A gateway that accepts everything, optionally lacks streaming, and refuses the first
/// `refuse_first` unary calls with RESOURCE_EXHAUSTED.
#[derive(Clone, Default)]
struct Fake {
    streaming: bool,
    refuse_first: usize,
    unary_calls: Arc<AtomicUsize>,
    stream_calls: Arc<AtomicUsize>,
    ids: Arc<Mutex<Vec<String>>>,
}

impl Fake {
    fn accept(&self, request: &PublishRequest) -> PublishResponse {
        let mut ids = self.ids.lock().unwrap();
        ids.extend(request.events.iter().map(|e| e.event_id.clone()));
        PublishResponse {
            sequence: request.sequence,
            accepted: request.events.len() as u32,
            rejected: Vec::new(),
        }
    }
}

type Responses = Pin<Box<dyn Stream<Item = Result<PublishResponse, Status>> + Send>>;

#[tonic::async_trait]
impl IngestService for Fake {
    async fn publish(
        &self,
        request: Request<PublishRequest>,
    ) -> Result<Response<PublishResponse>, Status> {
        if self.unary_calls.fetch_add(1, Ordering::SeqCst) < self.refuse_first {
            // as the real gateway does: RESOURCE_EXHAUSTED is retriable only with RetryInfo
            return Err(Status::with_error_details(
                tonic::Code::ResourceExhausted,
                "queue is full",
                tonic_types::ErrorDetails::with_retry_info(Some(std::time::Duration::from_millis(
                    10,
                ))),
            ));
        }
        Ok(Response::new(self.accept(request.get_ref())))
    }

    type PublishStreamStream = Responses;

    async fn publish_stream(
        &self,
        request: Request<tonic::Streaming<PublishRequest>>,
    ) -> Result<Response<Responses>, Status> {
        if !self.streaming {
            return Err(Status::unimplemented("no streaming here"));
        }
        self.stream_calls.fetch_add(1, Ordering::SeqCst);
        let me = self.clone();
        let responses = request.into_inner().map(move |r| r.map(|r| me.accept(&r)));
        Ok(Response::new(Box::pin(responses)))
    }
}

async fn serve(fake: Fake) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(IngestServiceServer::new(fake))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    format!("http://{addr}")
}

async fn run(gateway: &str, extra: &[&str]) -> simulator::truth::Truth {
    let mut args = vec![
        "simulator",
        "run",
        "--gateway",
        gateway,
        "--total",
        "2000",
        "--batch-size",
        "100",
        "--rate",
        "0",
        "--concurrency",
        "4",
        "--quiet",
    ];
    args.extend_from_slice(extra);
    let simulator::config::Command::Run(args) =
        simulator::Settings::try_parse_from(args).unwrap().command
    else {
        unreachable!()
    };
    simulator::send::run(&args).await.unwrap()
}

#[tokio::test]
async fn streaming_is_used_where_the_gateway_has_it() {
    let fake = Fake {
        streaming: true,
        ..Fake::default()
    };
    let truth = run(&serve(fake.clone()).await, &["--streaming"]).await;
    assert_eq!(truth.accepted, 2000);
    assert_eq!(fake.unary_calls.load(Ordering::SeqCst), 0);
    assert!(fake.stream_calls.load(Ordering::SeqCst) > 0);
    assert_eq!(fake.ids.lock().unwrap().len(), 2000);
}

#[tokio::test]
async fn streaming_falls_back_to_unary_on_unimplemented() {
    let fake = Fake::default();
    let truth = run(&serve(fake.clone()).await, &["--streaming"]).await;
    assert_eq!((truth.accepted, truth.failed), (2000, 0));
    assert_eq!(
        fake.unary_calls.load(Ordering::SeqCst),
        20,
        "every request, once"
    );
    assert_eq!(truth.retried_requests, 0, "the fallback is not a retry");
}

#[tokio::test]
async fn refused_requests_are_retried_with_the_same_ids() {
    let fake = Fake {
        refuse_first: 3,
        ..Fake::default()
    };
    let truth = run(&serve(fake.clone()).await, &[]).await;
    assert_eq!((truth.accepted, truth.retried_requests), (2000, 3));
    let ids = fake.ids.lock().unwrap();
    assert_eq!(ids.len(), 2000, "refused requests were not half-accepted");
    let sent: BTreeSet<_> = truth.accepted_ids.iter().collect();
    assert_eq!(ids.iter().collect::<BTreeSet<_>>(), sent);
}

#[tokio::test]
async fn reused_requests_beyond_what_memory_holds_are_refused_before_sending() {
    let args = [
        "simulator",
        "run",
        "--gateway",
        "http://127.0.0.1:9",
        "--reuse-requests",
        "501",
        "--batch-size",
        "2000",
        "--quiet",
    ];
    let simulator::config::Command::Run(args) =
        simulator::Settings::try_parse_from(args).unwrap().command
    else {
        unreachable!()
    };
    let err = simulator::send::run(&args).await.unwrap_err().to_string();
    assert!(
        err.contains("--reuse-requests 501 of --batch-size 2000 would hold 1002000 events in memory; at most 1000000"),
        "{err}"
    );
}
