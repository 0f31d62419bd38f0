//! Media in an S3-compatible object store (`media.backend = "s3"`), through `object_store`.

use super::{ByteStream, Storage};
use crate::config::S3Config;
use crate::error::Result;
use anyhow::Context;
use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjectPath;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt, WriteMultipart};
use std::ops::Range;
use std::path::Path;
use tokio::io::AsyncReadExt;

/// Parts of a multipart upload; S3 wants at least 5 MiB in every part but the last.
const PART_SIZE: usize = 8 * 1024 * 1024;

pub(crate) struct S3Storage {
    store: AmazonS3,
}

impl S3Storage {
    pub(crate) fn new(config: &S3Config) -> anyhow::Result<S3Storage> {
        let region = if config.region.is_empty() { "us-east-1" } else { config.region.as_str() };
        let mut builder = AmazonS3Builder::new().with_bucket_name(&config.bucket).with_region(region);
        if let Some(endpoint) = &config.endpoint {
            // A self-hosted store (MinIO, Garage, Ceph…) is addressed by path, often over
            // plain HTTP on a private network.
            builder = builder.with_endpoint(endpoint).with_allow_http(true).with_virtual_hosted_style_request(false);
        }
        if let Some(key) = &config.access_key_id {
            builder = builder.with_access_key_id(key);
        }
        if let Some(secret) = &config.secret_access_key {
            builder = builder.with_secret_access_key(secret);
        }
        let store = builder.build().context("`media.s3`: cannot configure the object store")?;
        Ok(S3Storage { store })
    }
}

fn is_not_found(error: &object_store::Error) -> bool {
    matches!(error, object_store::Error::NotFound { .. })
}

impl Storage for S3Storage {
    fn put_file<'a>(&'a self, key: &'a str, staged: &'a Path) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let location = ObjectPath::from(key);
            match self.store.head(&location).await {
                Ok(_) => {
                    tokio::fs::remove_file(staged).await.ok();
                    return Ok(());
                }
                Err(error) if is_not_found(&error) => {}
                Err(error) => return Err(anyhow::Error::new(error).context("S3 head").into()),
            }
            let upload = self.store.put_multipart(&location).await.context("S3 start upload")?;
            let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
            let mut file = tokio::fs::File::open(staged).await.context("open staged upload")?;
            let mut buffer = vec![0u8; 256 * 1024];
            loop {
                let read = match file.read(&mut buffer).await {
                    Ok(read) => read,
                    Err(error) => {
                        writer.abort().await.ok();
                        return Err(anyhow::Error::new(error).context("read staged upload").into());
                    }
                };
                if read == 0 {
                    break;
                }
                // Bounds the parts in flight (and so the memory) to two.
                writer.wait_for_capacity(2).await.context("S3 upload part")?;
                writer.write(&buffer[..read]);
            }
            writer.finish().await.context("S3 finish upload")?;
            tokio::fs::remove_file(staged).await.ok();
            Ok(())
        })
    }

    fn put_bytes<'a>(&'a self, key: &'a str, bytes: Bytes) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            self.store.put(&ObjectPath::from(key), bytes.into()).await.context("S3 put")?;
            Ok(())
        })
    }

    fn get<'a>(&'a self, key: &'a str, range: Option<Range<u64>>) -> BoxFuture<'a, Result<Option<ByteStream>>> {
        Box::pin(async move {
            let options = GetOptions { range: range.map(GetRange::Bounded), ..Default::default() };
            match self.store.get_opts(&ObjectPath::from(key), options).await {
                Ok(result) => Ok(Some(result.into_stream().map_err(std::io::Error::other).boxed())),
                Err(error) if is_not_found(&error) => Ok(None),
                Err(error) => Err(anyhow::Error::new(error).context("S3 get").into()),
            }
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            match self.store.delete(&ObjectPath::from(key)).await {
                Ok(()) => Ok(()),
                Err(error) if is_not_found(&error) => Ok(()),
                Err(error) => Err(anyhow::Error::new(error).context("S3 delete").into()),
            }
        })
    }

    fn list_older<'a>(&'a self, prefix: &'a str, before_ms: i64, limit: usize) -> BoxFuture<'a, Result<Vec<String>>> {
        Box::pin(async move {
            let mut listing = self.store.list(Some(&ObjectPath::from(prefix)));
            let mut keys = Vec::new();
            while keys.len() < limit
                && let Some(object) = listing.try_next().await.context("S3 list")?
            {
                if object.last_modified.timestamp_millis() < before_ms {
                    keys.push(object.location.to_string());
                }
            }
            Ok(keys)
        })
    }
}
