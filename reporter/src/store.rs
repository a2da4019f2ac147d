//! S3 uploads through aws-sdk-s3, configured by the standard AWS environment variables
//! (`AWS_ENDPOINT_URL_S3` for self-hosted servers) plus path-style addressing.

use aws_sdk_s3::{
    Client,
    config::retry::{RetryConfig, RetryMode},
    primitives::ByteStream,
};

use crate::config::S3Args;

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
    pub async fn connect(args: &S3Args) -> anyhow::Result<ReportStore> {
        ReportStore::new(&aws_config::load_from_env().await, args).await
    }

    /// Builds the client from an explicit AWS configuration (tests, embedding).
    pub async fn new(shared: &aws_config::SdkConfig, args: &S3Args) -> anyhow::Result<ReportStore> {
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
                .map_err(|e| {
                    anyhow::anyhow!(
                        "creating bucket {}: {}",
                        store.bucket,
                        aws_sdk_s3::error::DisplayErrorContext(e)
                    )
                })?;
        }
        Ok(store)
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// Downloads one object; `None` if there is no such key.
    pub async fn get(&self, key: &str) -> anyhow::Result<Option<Vec<u8>>> {
        let response = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await;
        match response {
            Ok(output) => Ok(Some(output.body.collect().await?.into_bytes().to_vec())),
            Err(e) if e.as_service_error().is_some_and(|e| e.is_no_such_key()) => Ok(None),
            Err(e) => Err(anyhow::anyhow!(
                "downloading s3://{}/{key}: {}",
                self.bucket,
                aws_sdk_s3::error::DisplayErrorContext(e)
            )),
        }
    }

    /// Uploads one object.
    pub async fn put(&self, key: &str, body: Vec<u8>, content_type: &str) -> anyhow::Result<()> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "uploading s3://{}/{key}: {}",
                    self.bucket,
                    aws_sdk_s3::error::DisplayErrorContext(e)
                )
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
