//! Unary `Publish` of a request encoded once: the sender keeps the events (or, for
//! generated requests, their drafts) for the ground truth and a retry resends the same
//! bytes, so no request is deep-cloned or re-encoded.
//! The simulator shares the machine with the pipeline in benchmarks, so its cost per event
//! counts against the pipeline's figures.

use bytes::{BufMut, Bytes};
use pipeline::proto::ingest::{PublishRequest, PublishResponse};
use tonic::{
    Request, Status,
    codec::{Codec, EncodeBuf, Encoder},
    codegen::http::uri::PathAndQuery,
    transport::Channel,
};
use tonic_prost::ProstCodec;

const PUBLISH: &str = "/marketplace.ingest.v1.IngestService/Publish";

/// Sends already-encoded `PublishRequest` bytes; decodes the answer with prost.
#[derive(Default)]
struct EncodedCodec(ProstCodec<PublishRequest, PublishResponse>);

struct BytesEncoder;

impl Encoder for BytesEncoder {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Codec for EncodedCodec {
    type Encode = Bytes;
    type Decode = PublishResponse;
    type Encoder = BytesEncoder;
    type Decoder = <ProstCodec<PublishRequest, PublishResponse> as Codec>::Decoder;

    fn encoder(&mut self) -> BytesEncoder {
        BytesEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        self.0.decoder()
    }
}

/// A unary client for encoded requests.
#[derive(Clone)]
pub struct EncodedClient(tonic::client::Grpc<Channel>);

impl EncodedClient {
    pub fn new(channel: Channel) -> EncodedClient {
        EncodedClient(tonic::client::Grpc::new(channel).max_decoding_message_size(16 * 1024 * 1024))
    }

    /// Publishes `encoded`, the protobuf bytes of a `PublishRequest`.
    pub async fn publish(&mut self, encoded: Request<Bytes>) -> Result<PublishResponse, Status> {
        self.0
            .ready()
            .await
            .map_err(|e| Status::unavailable(format!("gateway connection not ready: {e}")))?;
        let path = PathAndQuery::from_static(PUBLISH);
        Ok(self
            .0
            .unary(encoded, path, EncodedCodec::default())
            .await?
            .into_inner())
    }
}
