//! The pipeline's protobuf contract, generated from `proto/*.proto` at build time.
//!
//! - [`ingest`]: the public API that store backends call (`marketplace.ingest.v1`).
//! - [`queue`]: the payload of one Redis stream entry (`marketplace.queue.v1`), internal.
//! - [`FILE_DESCRIPTOR_SET`]: every descriptor, including `google.rpc` error details, for
//!   gRPC server reflection so grpcurl can render rich errors.

/// Modules nested as the protobuf packages are, which the generated code's paths assume.
pub mod marketplace {
    pub mod ingest {
        pub mod v1 {
            tonic::include_proto!("marketplace.ingest.v1");
        }
    }
    pub mod queue {
        pub mod v1 {
            tonic::include_proto!("marketplace.queue.v1");
        }
    }
}

/// `marketplace.ingest.v1`: the API store backends call.
pub use marketplace::ingest::v1 as ingest;
/// `marketplace.queue.v1`: the stream entry payload shared by gateway and consumer.
pub use marketplace::queue::v1 as queue;

/// The encoded `FileDescriptorSet` of all of the above plus `google.rpc` error details.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/descriptor.bin"));
