//! Generates the ingest service's server stubs with the gateway's codec (`src/codec.rs`):
//! the same service and routes as `proto/marketplace/ingest/v1/ingest.proto`, but each
//! request reaches the handler as a `wire::RawRequest`, which keeps the bytes of its events
//! (ARCHITECTURE.md, "Queued as sent").

use tonic_build::manual::{Builder, Method, Service};

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let method = |name: &str, route: &str| {
        Method::builder()
            .name(name)
            .route_name(route)
            .input_type("crate::wire::RawRequest")
            .output_type("pipeline::proto::ingest::PublishResponse")
            .codec_path("crate::codec::IngestCodec")
    };
    let service = Service::builder()
        .name("IngestService")
        .package("marketplace.ingest.v1")
        .comment("IngestService receives typed events from store backends (ingest.proto).")
        .method(
            method("publish", "Publish")
                .comment("Publish queues one batch of events and reports, per event, what was rejected.")
                .build(),
        )
        .method(
            method("publish_stream", "PublishStream")
                .comment("PublishStream is Publish over one bidirectional stream: every request gets exactly one response with the same sequence, in order.")
                .client_streaming()
                .server_streaming()
                .build(),
        )
        .build();
    Builder::new().build_client(false).compile(&[service]);
}
