//! Where the lake is: the bucket's flags. The client is the shared one, `s3store` (standard
//! AWS variables, path-style addressing, standard retries, uploads checked by SHA-256).

use clap::Args;

pub use s3store::{Listed, Store as ArchiveStore, StoreError};

/// Where the archive goes. Credentials, region and endpoint come from the standard AWS
/// variables.
#[derive(Args, Clone, Debug)]
pub struct ArchiveS3Args {
    /// Bucket that holds the archive (the lake)
    #[arg(long, global = true, env = "ARCHIVER_BUCKET", default_value = "lake")]
    pub archive_bucket: String,
    /// Address buckets by path (`endpoint/bucket/key`), as self-hosted S3 servers need
    #[arg(long, global = true, env = "S3_FORCE_PATH_STYLE", default_value_t = true, action = clap::ArgAction::Set)]
    pub s3_force_path_style: bool,
    /// Create the archive bucket if it does not exist
    #[arg(long, global = true, env = "ARCHIVER_CREATE_BUCKET", default_value_t = false, action = clap::ArgAction::Set)]
    pub archive_create_bucket: bool,
}

impl ArchiveS3Args {
    /// The bucket these flags name, for [`ArchiveStore::connect`].
    pub fn bucket(&self) -> s3store::Bucket {
        s3store::Bucket {
            name: self.archive_bucket.clone(),
            force_path_style: self.s3_force_path_style,
            create: self.archive_create_bucket,
        }
    }
}
