//! The one S3 client of the services that write objects (the reporter's reports, the
//! archiver's lake): aws-sdk-s3 configured by the standard AWS environment variables
//! (`AWS_ENDPOINT_URL_S3` for self-hosted servers, `AWS_ACCESS_KEY_ID`, ...) plus path-style
//! addressing and the SDK's standard retries; uploads (optionally read back and checked by
//! SHA-256), downloads, lookups and listings, with one error type.
//!
//! Each service keeps its own flags for which bucket (`S3_BUCKET`, `ARCHIVER_BUCKET`) and
//! hands them over as a [`Bucket`]; nothing here reads the environment but the SDK's own
//! configuration loader.

use std::collections::HashMap;

use aws_sdk_s3::{
    Client,
    config::retry::{RetryConfig, RetryMode},
    error::{DisplayErrorContext, SdkError},
    operation::head_object::HeadObjectOutput,
    primitives::ByteStream,
    types::ChecksumMode,
};
use base64::{Engine, prelude::BASE64_STANDARD};
use bytes::Bytes;
use sha2::{Digest, Sha256};

/// Which bucket, and how to reach it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bucket {
    pub name: String,
    /// Address buckets by path (`endpoint/bucket/key`), as self-hosted S3 servers need.
    pub force_path_style: bool,
    /// Create the bucket if it does not exist.
    pub create: bool,
}

/// Why an S3 call failed, after the SDK's own retries, with every cause as the SDK renders
/// it (`DisplayErrorContext`).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{op} s3://{bucket}/{key}: {message}")]
    S3 {
        op: &'static str,
        bucket: String,
        key: String,
        message: String,
    },
    /// What the store holds (its kept digest and length, or the bytes read back) is not what
    /// was written: the upload does not count.
    #[error("s3://{bucket}/{key} holds sha256 {found}, written {expected}")]
    Mismatch {
        bucket: String,
        key: String,
        expected: String,
        found: String,
    },
    #[error("s3://{bucket}/{key} does not exist")]
    Missing { bucket: String, key: String },
}

/// An object as a listing describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed {
    pub key: String,
    pub bytes: u64,
}

/// The SDK's standard retry mode (exponential backoff with jitter, a retry token bucket,
/// throttling and transient errors retried) with five attempts in all: every call here is
/// an idempotent put or a read, so retrying one is always safe.
pub fn retry_config() -> RetryConfig {
    RetryConfig::standard()
        .with_retry_mode(RetryMode::Standard)
        .with_max_attempts(5)
}

/// One bucket.
#[derive(Clone, Debug)]
pub struct Store {
    client: Client,
    bucket: String,
}

impl Store {
    /// Builds the client from the standard AWS environment; creates the bucket if asked to.
    pub async fn connect(bucket: &Bucket) -> Result<Store, StoreError> {
        Store::new(&aws_config::load_from_env().await, bucket).await
    }

    /// Builds the client from an explicit AWS configuration (tests, embedding).
    pub async fn new(shared: &aws_config::SdkConfig, bucket: &Bucket) -> Result<Store, StoreError> {
        let config = aws_sdk_s3::config::Builder::from(shared)
            .force_path_style(bucket.force_path_style)
            .retry_config(retry_config())
            .build();
        let store = Store {
            client: Client::from_conf(config),
            bucket: bucket.name.clone(),
        };
        if bucket.create
            && store
                .client
                .head_bucket()
                .bucket(&store.bucket)
                .send()
                .await
                .is_err()
        {
            let created = store
                .client
                .create_bucket()
                .bucket(&store.bucket)
                .send()
                .await;
            if let Err(e) = created {
                // another process may have created it meanwhile
                let exists = e.as_service_error().is_some_and(|e| {
                    e.is_bucket_already_owned_by_you() || e.is_bucket_already_exists()
                });
                if !exists {
                    return Err(store.error("creating bucket", "", e));
                }
            }
        }
        Ok(store)
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    fn error<E: std::error::Error + 'static>(
        &self,
        op: &'static str,
        key: &str,
        error: SdkError<E>,
    ) -> StoreError {
        StoreError::S3 {
            op,
            bucket: self.bucket.clone(),
            key: key.to_owned(),
            message: DisplayErrorContext(&error).to_string(),
        }
    }

    /// Uploads one object with its `metadata` (as `x-amz-meta-*`).
    pub async fn put(
        &self,
        key: &str,
        body: impl Into<Bytes>,
        content_type: &str,
        metadata: &[(&str, String)],
    ) -> Result<(), StoreError> {
        self.put_object(key, body.into(), content_type, metadata, None)
            .await
    }

    async fn put_object(
        &self,
        key: &str,
        body: Bytes,
        content_type: &str,
        metadata: &[(&str, String)],
        checksum_sha256: Option<String>,
    ) -> Result<(), StoreError> {
        let mut put = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .set_checksum_sha256(checksum_sha256)
            .body(ByteStream::from(body));
        for (name, value) in metadata {
            put = put.metadata(*name, value);
        }
        put.send()
            .await
            .map_err(|e| self.error("uploading", key, e))?;
        Ok(())
    }

    /// Uploads one object whose SHA-256 is `sha256` (lowercase hex), and makes sure the store
    /// holds exactly those bytes: only then is the upload done.
    ///
    /// The upload carries the digest (`x-amz-checksum-sha256`), which S3 checks against the
    /// body it receives, refusing the object if they differ (`BadDigest`), and keeps with the
    /// object; SeaweedFS does both (test
    /// `uploads_downloads_listings_and_missing_keys_on_a_real_s3`). The upload is then checked
    /// by [`Store::verify`]: a `HEAD` that returns the stored digest and length, so the bytes are
    /// not read back. A store that keeps no digest is read back whole.
    pub async fn put_verified(
        &self,
        key: &str,
        body: Bytes,
        sha256: &str,
        content_type: &str,
        metadata: &[(&str, String)],
    ) -> Result<(), StoreError> {
        let length = body.len() as u64;
        let checksum = hex::decode(sha256).ok().map(|d| BASE64_STANDARD.encode(d));
        self.put_object(key, body, content_type, metadata, checksum)
            .await?;
        self.verify(key, sha256, length).await
    }

    /// Checks that `key` holds `length` bytes whose SHA-256 is `sha256` (lowercase hex): by the
    /// digest and length the store keeps with the object when it has one (a `HEAD` with
    /// `x-amz-checksum-mode: ENABLED`), else by reading the object back and hashing it.
    pub async fn verify(&self, key: &str, sha256: &str, length: u64) -> Result<(), StoreError> {
        let head = self
            .head(key, Some(ChecksumMode::Enabled))
            .await?
            .ok_or_else(|| self.missing(key))?;
        let stored = head
            .checksum_sha256()
            .and_then(|c| BASE64_STANDARD.decode(c).ok())
            .map(hex::encode);
        let (found, found_length) = match stored {
            Some(digest) => (digest, head.content_length().map(|l| l.max(0) as u64)),
            None => {
                let back = self.get(key).await?;
                (hex::encode(Sha256::digest(&back)), Some(back.len() as u64))
            }
        };
        if found != sha256 || found_length != Some(length) {
            return Err(StoreError::Mismatch {
                bucket: self.bucket.clone(),
                key: key.to_owned(),
                expected: format!("{sha256} ({length} bytes)"),
                found: format!("{found} ({} bytes)", found_length.unwrap_or(0)),
            });
        }
        Ok(())
    }

    /// Downloads one object; `None` if there is no such key.
    pub async fn get_if_exists(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        let response = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await;
        let output = match response {
            Ok(output) => output,
            Err(e) if e.as_service_error().is_some_and(|e| e.is_no_such_key()) => return Ok(None),
            Err(e) => return Err(self.error("downloading", key, e)),
        };
        let body = output.body.collect().await.map_err(|e| StoreError::S3 {
            op: "downloading",
            bucket: self.bucket.clone(),
            key: key.to_owned(),
            message: e.to_string(),
        })?;
        Ok(Some(body.into_bytes()))
    }

    /// Downloads one object that must exist.
    pub async fn get(&self, key: &str) -> Result<Bytes, StoreError> {
        self.get_if_exists(key)
            .await?
            .ok_or_else(|| self.missing(key))
    }

    /// An object's user metadata (`x-amz-meta-*`, names without the prefix); `None` if
    /// there is no such key.
    pub async fn metadata_if_exists(
        &self,
        key: &str,
    ) -> Result<Option<HashMap<String, String>>, StoreError> {
        Ok(self
            .head(key, None)
            .await?
            .map(|head| head.metadata().cloned().unwrap_or_default()))
    }

    /// The `HEAD` of `key`, with the kept digests when `checksum_mode` asks for them; `None`
    /// if there is no such key.
    async fn head(
        &self,
        key: &str,
        checksum_mode: Option<ChecksumMode>,
    ) -> Result<Option<HeadObjectOutput>, StoreError> {
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .set_checksum_mode(checksum_mode)
            .send()
            .await
        {
            Ok(head) => Ok(Some(head)),
            Err(e) if e.as_service_error().is_some_and(|e| e.is_not_found()) => Ok(None),
            Err(e) => Err(self.error("looking up", key, e)),
        }
    }

    fn missing(&self, key: &str) -> StoreError {
        StoreError::Missing {
            bucket: self.bucket.clone(),
            key: key.to_owned(),
        }
    }

    /// Whether `key` exists.
    pub async fn exists(&self, key: &str) -> Result<bool, StoreError> {
        Ok(self.metadata_if_exists(key).await?.is_some())
    }

    /// The user metadata of an object that must exist.
    pub async fn metadata(&self, key: &str) -> Result<HashMap<String, String>, StoreError> {
        self.metadata_if_exists(key)
            .await?
            .ok_or_else(|| self.missing(key))
    }

    /// Every object below `prefix`, in key order.
    pub async fn list(&self, prefix: &str) -> Result<Vec<Listed>, StoreError> {
        let mut out = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.error("listing", prefix, e))?;
            for object in page.contents() {
                if let Some(key) = object.key() {
                    out.push(Listed {
                        key: key.to_owned(),
                        bytes: object.size().unwrap_or(0).max(0) as u64,
                    });
                }
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
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
        let bucket = Bucket {
            name: "b".into(),
            force_path_style: true,
            create: false,
        };
        let store = Store::new(&shared, &bucket).await.unwrap();
        let c = store
            .client
            .config()
            .retry_config()
            .expect("retry config set");
        assert_eq!(c.mode(), RetryMode::Standard);
        assert_eq!(c.max_attempts(), 5);
    }
}
