//! `Publish` and `PublishStream` of requests encoded once ([`crate::Batch`]): the codec
//! writes the bytes as they are and decodes answers with prost, so no request is cloned or
//! encoded again however often it is sent.

use bytes::{BufMut, Bytes};
use pipeline::proto::ingest::{PublishRequest, PublishResponse};
use tonic::{
    Request, Response, Status, Streaming,
    codec::{Codec, CompressionEncoding, EncodeBuf, Encoder},
    codegen::http::uri::PathAndQuery,
    transport::Channel,
};
use tonic_prost::ProstCodec;

const PUBLISH: &str = "/marketplace.ingest.v1.IngestService/Publish";
const PUBLISH_STREAM: &str = "/marketplace.ingest.v1.IngestService/PublishStream";

/// Answers are small (a count and the rejections), but a batch of invalid events can list
/// many violations; 16 MiB bounds what a confused server can make us buffer.
const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;

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

/// A client for encoded requests on one channel.
#[derive(Clone)]
pub struct EncodedClient(tonic::client::Grpc<Channel>);

impl EncodedClient {
    /// A client compressing requests with `compression`, if any.
    pub fn new(channel: Channel, compression: Option<CompressionEncoding>) -> EncodedClient {
        let mut grpc = tonic::client::Grpc::new(channel)
            .max_decoding_message_size(MAX_RESPONSE_BYTES)
            .accept_compressed(CompressionEncoding::Gzip)
            .accept_compressed(CompressionEncoding::Zstd);
        if let Some(encoding) = compression {
            grpc = grpc.send_compressed(encoding);
        }
        EncodedClient(grpc)
    }

    async fn ready(&mut self) -> Result<(), Status> {
        self.0
            .ready()
            .await
            .map_err(|e| Status::unavailable(format!("gateway connection not ready: {e}")))
    }

    /// Publishes `encoded`, the protobuf bytes of a `PublishRequest`.
    pub async fn publish(&mut self, encoded: Request<Bytes>) -> Result<PublishResponse, Status> {
        self.ready().await?;
        let path = PathAndQuery::from_static(PUBLISH);
        Ok(self
            .0
            .unary(encoded, path, EncodedCodec::default())
            .await?
            .into_inner())
    }

    /// Opens a `PublishStream` call sending what `requests` yields.
    pub async fn publish_stream<S>(
        &mut self,
        requests: Request<S>,
    ) -> Result<Response<Streaming<PublishResponse>>, Status>
    where
        S: futures::Stream<Item = Bytes> + Send + 'static,
    {
        self.ready().await?;
        let path = PathAndQuery::from_static(PUBLISH_STREAM);
        self.0
            .streaming(requests, path, EncodedCodec::default())
            .await
    }
}
