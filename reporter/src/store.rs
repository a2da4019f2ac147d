//! S3 uploads through aws-sdk-s3, configured by the standard AWS environment variables
//! (`AWS_ENDPOINT_URL_S3` for self-hosted servers) plus path-style addressing.

use aws_sdk_s3::{
    Client,
    config::retry::{RetryConfig, RetryMode},
    error::{DisplayErrorContext, SdkError},
    operation::{
        create_bucket::CreateBucketError, get_object::GetObjectError, put_object::PutObjectError,
    },
    primitives::{ByteStream, ByteStreamError},
};
use clap::Args;

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

/// Why an S3 call failed, after the SDK's own retries. The SDK's error is kept whole, boxed
/// for its size, and shown with every cause, as the SDK's `DisplayErrorContext` renders it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("creating bucket {bucket}: {}", DisplayErrorContext(.error))]
    CreateBucket {
        bucket: String,
        error: Box<SdkError<CreateBucketError>>,
    },
    #[error("downloading s3://{bucket}/{key}: {}", DisplayErrorContext(.error))]
    Get {
        bucket: String,
        key: String,
        error: Box<SdkError<GetObjectError>>,
    },
    #[error("downloading s3://{bucket}/{key}: {error}")]
    Body {
        bucket: String,
        key: String,
        error: ByteStreamError,
    },
    #[error("uploading s3://{bucket}/{key}: {}", DisplayErrorContext(.error))]
    Put {
        bucket: String,
        key: String,
        error: Box<SdkError<PutObjectError>>,
    },
}

/// The SDK's standard retry mode (exponential backoff with jitter, a retry token bucket,
/// throttling and transient errors retried) with five attempts in all: uploads are
/// idempotent puts, so retrying one is always safe.
pub fn retry_config() -> RetryConfig {
    RetryConfig::standard()
        .with_retry_mode(RetryMode::Standard)
        .with_max_attempts(5)
}

/// Writes report objects to one bucket.
#[derive(Clone, Debug)]
pub struct ReportStore {
    client: Client,
    bucket: String,
}

impl ReportStore {
    /// Builds the client from the standard AWS environment; creates the bucket if asked to.
    pub async fn connect(args: &S3Args) -> Result<ReportStore, StoreError> {
        ReportStore::new(&aws_config::load_from_env().await, args).await
    }

    /// Builds the client from an explicit AWS configuration (tests, embedding).
    pub async fn new(
        shared: &aws_config::SdkConfig,
        args: &S3Args,
    ) -> Result<ReportStore, StoreError> {
        let config = aws_sdk_s3::config::Builder::from(shared)
            .force_path_style(args.s3_force_path_style)
            .retry_config(retry_config())
            .build();
        let store = ReportStore {
            client: Client::from_conf(config),
            bucket: args.s3_bucket.clone(),
        };
        if args.s3_create_bucket
            && store
                .client
                .head_bucket()
                .bucket(&store.bucket)
                .send()
                .await
                .is_err()
        {
            store
                .client
                .create_bucket()
                .bucket(&store.bucket)
                .send()
                .await
                .map_err(|error| StoreError::CreateBucket {
                    bucket: store.bucket.clone(),
                    error: Box::new(error),
                })?;
        }
        Ok(store)
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// Downloads one object; `None` if there is no such key.
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let response = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await;
        match response {
            Ok(output) => match output.body.collect().await {
                Ok(body) => Ok(Some(body.into_bytes().to_vec())),
                Err(error) => Err(StoreError::Body {
                    bucket: self.bucket.clone(),
                    key: key.to_owned(),
                    error,
                }),
            },
            Err(e) if e.as_service_error().is_some_and(|e| e.is_no_such_key()) => Ok(None),
            Err(error) => Err(StoreError::Get {
                bucket: self.bucket.clone(),
                key: key.to_owned(),
                error: Box::new(error),
            }),
        }
    }

    /// Uploads one object.
    pub async fn put(
        &self,
        key: &str,
        body: Vec<u8>,
        content_type: &str,
    ) -> Result<(), StoreError> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|error| StoreError::Put {
                bucket: self.bucket.clone(),
                key: key.to_owned(),
                error: Box::new(error),
            })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_client_retries_in_standard_mode_with_five_attempts() {
        let shared = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .build();
        let args = S3Args {
            s3_bucket: "b".into(),
            s3_force_path_style: true,
            s3_create_bucket: false,
        };
        let store = ReportStore::new(&shared, &args).await.unwrap();
        let c = store
            .client
            .config()
            .retry_config()
            .expect("retry config set");
        assert_eq!(c.mode(), RetryMode::Standard);
        assert_eq!(c.max_attempts(), 5);
    }
}
