//! The lake's S3 side through aws-sdk-s3, configured by the standard AWS environment
//! variables (`AWS_ENDPOINT_URL_S3`, `AWS_ACCESS_KEY_ID`, ...) plus path-style addressing,
//! as the reporter's store is: uploads that are read back and checked, downloads, listings.

use std::collections::HashMap;

use aws_sdk_s3::{
    Client,
    config::retry::{RetryConfig, RetryMode},
    error::DisplayErrorContext,
    primitives::ByteStream,
};
use bytes::Bytes;
use clap::Args;
use sha2::{Digest, Sha256};

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

/// Why an S3 call failed, after the SDK's own retries, with every cause as the SDK renders it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{op} s3://{bucket}/{key}: {message}")]
    S3 {
        op: &'static str,
        bucket: String,
        key: String,
        message: String,
    },
    /// What was read back is not what was written: the upload is not acknowledged.
    #[error("s3://{bucket}/{key} read back with sha256 {found}, written {expected}")]
    Mismatch {
        bucket: String,
        key: String,
        expected: String,
        found: String,
    },
}

/// An object's description in a listing and its user metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed {
    pub key: String,
    pub bytes: u64,
}

/// One bucket of the lake.
#[derive(Clone, Debug)]
pub struct ArchiveStore {
    client: Client,
    bucket: String,
}

impl ArchiveStore {
    /// Builds the client from the standard AWS environment; creates the bucket if asked to.
    pub async fn connect(args: &ArchiveS3Args) -> Result<ArchiveStore, StoreError> {
        ArchiveStore::new(&aws_config::load_from_env().await, args).await
    }

    /// Builds the client from an explicit AWS configuration (tests, embedding).
    pub async fn new(
        shared: &aws_config::SdkConfig,
        args: &ArchiveS3Args,
    ) -> Result<ArchiveStore, StoreError> {
        // The SDK's standard mode, 5 attempts: every call here is an idempotent put or a read.
        let retry = RetryConfig::standard()
            .with_retry_mode(RetryMode::Standard)
            .with_max_attempts(5);
        let config = aws_sdk_s3::config::Builder::from(shared)
            .force_path_style(args.s3_force_path_style)
            .retry_config(retry)
            .build();
        let store = ArchiveStore {
            client: Client::from_conf(config),
            bucket: args.archive_bucket.clone(),
        };
        if args.archive_create_bucket
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
                // another archiver may have created it meanwhile
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
        error: aws_sdk_s3::error::SdkError<E>,
    ) -> StoreError {
        StoreError::S3 {
            op,
            bucket: self.bucket.clone(),
            key: key.to_owned(),
            message: DisplayErrorContext(&error).to_string(),
        }
    }

    /// Uploads one object with its `metadata` (as `x-amz-meta-*`), then reads it back and
    /// compares its SHA-256 with `sha256`: only then is the upload done.
    pub async fn put_verified(
        &self,
        key: &str,
        body: Bytes,
        sha256: &str,
        content_type: &str,
        metadata: &[(&str, String)],
    ) -> Result<(), StoreError> {
        let mut put = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .body(ByteStream::from(body));
        for (name, value) in metadata {
            put = put.metadata(*name, value);
        }
        put.send()
            .await
            .map_err(|e| self.error("uploading", key, e))?;
        let back = self.get(key).await?;
        let found = hex::encode(Sha256::digest(&back));
        if found != sha256 {
            return Err(StoreError::Mismatch {
                bucket: self.bucket.clone(),
                key: key.to_owned(),
                expected: sha256.to_owned(),
                found,
            });
        }
        Ok(())
    }

    /// Downloads one object.
    pub async fn get(&self, key: &str) -> Result<Bytes, StoreError> {
        let output = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| self.error("downloading", key, e))?;
        let body = output.body.collect().await.map_err(|e| StoreError::S3 {
            op: "downloading",
            bucket: self.bucket.clone(),
            key: key.to_owned(),
            message: e.to_string(),
        })?;
        Ok(body.into_bytes())
    }

    /// Whether `key` exists.
    pub async fn exists(&self, key: &str) -> Result<bool, StoreError> {
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(|e| e.is_not_found()) => Ok(false),
            Err(e) => Err(self.error("looking up", key, e)),
        }
    }

    /// An object's user metadata (`x-amz-meta-*`, names without the prefix).
    pub async fn metadata(&self, key: &str) -> Result<HashMap<String, String>, StoreError> {
        let head = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| self.error("looking up", key, e))?;
        Ok(head.metadata().cloned().unwrap_or_default())
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
