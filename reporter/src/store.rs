//! Where reports go: the bucket's flags. The client is the shared one, `s3store` (standard
//! AWS variables, path-style addressing, standard retries).

use clap::Args;

pub use s3store::{Store as ReportStore, StoreError};

/// Where reports go. Credentials, region and endpoint come from the standard AWS
/// variables (`AWS_ACCESS_KEY_ID`, `AWS_REGION`, `AWS_ENDPOINT_URL_S3`, ...).
#[derive(Args, Clone, Debug)]
pub struct S3Args {
    /// Bucket that receives the reports
    #[arg(long, env = "S3_BUCKET", default_value = "reports")]
    pub s3_bucket: String,
    /// Address buckets by path (`endpoint/bucket/key`), as self-hosted S3 servers need
    #[arg(long, env = "S3_FORCE_PATH_STYLE", default_value_t = true, action = clap::ArgAction::Set)]
    pub s3_force_path_style: bool,
    /// Create the bucket if it does not exist
    #[arg(long, env = "S3_CREATE_BUCKET", default_value_t = false, action = clap::ArgAction::Set)]
    pub s3_create_bucket: bool,
}

impl S3Args {
    /// The bucket these flags name, for [`ReportStore::connect`].
    pub fn bucket(&self) -> s3store::Bucket {
        s3store::Bucket {
            name: self.s3_bucket.clone(),
            force_path_style: self.s3_force_path_style,
            create: self.s3_create_bucket,
        }
    }
}
