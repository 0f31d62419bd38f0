//! Media in a directory under `data_dir` (`media.backend = "local"`, the default).

use super::{ByteStream, Storage};
use crate::error::{Error, Result};
use anyhow::Context;
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use std::io::SeekFrom;
use std::ops::Range;
use std::path::{Path, PathBuf};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

pub(crate) struct LocalStorage {
    root: PathBuf,
}

impl LocalStorage {
    pub(crate) fn new(root: PathBuf) -> LocalStorage {
        LocalStorage { root }
    }

    /// Keys are made by this module's caller from hex digests and numbers, never from what a
    /// client sent; refusing anything else keeps a future mistake from escaping the root.
    fn path(&self, key: &str) -> Result<PathBuf> {
        let safe = key.split('/').all(|part| {
            !part.is_empty()
                && part != "."
                && part != ".."
                && part.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        });
        if !safe {
            return Err(Error::internal(format!("unsafe media storage key {key:?}")));
        }
        Ok(self.root.join(key))
    }
}

async fn ensure_parent(path: &Path) -> Result<()> {
    if let Some(parent) = path.parent() {
        tokio::fs::create_dir_all(parent).await.with_context(|| format!("create {}", parent.display()))?;
    }
    Ok(())
}

impl Storage for LocalStorage {
    fn put_file<'a>(&'a self, key: &'a str, staged: &'a Path) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let target = self.path(key)?;
            if tokio::fs::try_exists(&target).await.unwrap_or(false) {
                tokio::fs::remove_file(staged).await.ok();
                return Ok(());
            }
            ensure_parent(&target).await?;
            // The staging directory is under the same root, so this is an atomic rename: a
            // reader never sees half a file.
            tokio::fs::rename(staged, &target).await.with_context(|| format!("store {}", target.display()))?;
            Ok(())
        })
    }

    fn put_bytes<'a>(&'a self, key: &'a str, bytes: Bytes) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let target = self.path(key)?;
            ensure_parent(&target).await?;
            // Written aside and renamed, so a concurrent reader sees all or nothing.
            let partial = target.with_extension(format!("partial-{}", uuid::Uuid::new_v4().simple()));
            tokio::fs::write(&partial, &bytes).await.with_context(|| format!("write {}", partial.display()))?;
            tokio::fs::rename(&partial, &target).await.with_context(|| format!("store {}", target.display()))?;
            Ok(())
        })
    }

    fn get<'a>(&'a self, key: &'a str, range: Option<Range<u64>>) -> BoxFuture<'a, Result<Option<ByteStream>>> {
        Box::pin(async move {
            let path = self.path(key)?;
            let mut file = match tokio::fs::File::open(&path).await {
                Ok(file) => file,
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(error) => return Err(anyhow::Error::new(error).context(format!("open {}", path.display())).into()),
            };
            let stream: ByteStream = match range {
                Some(range) => {
                    file.seek(SeekFrom::Start(range.start))
                        .await
                        .with_context(|| format!("seek {}", path.display()))?;
                    let limited = file.take(range.end.saturating_sub(range.start));
                    tokio_util_stream(limited)
                }
                None => tokio_util_stream(file),
            };
            Ok(Some(stream))
        })
    }

    fn list_older<'a>(&'a self, prefix: &'a str, before_ms: i64, limit: usize) -> BoxFuture<'a, Result<Vec<String>>> {
        Box::pin(async move {
            let mut keys = Vec::new();
            // Directories still to read, with their keys' prefix.
            let mut pending =
                vec![(self.root.join(prefix.trim_end_matches('/')), prefix.trim_end_matches('/').to_owned())];
            while let Some((dir, dir_key)) = pending.pop() {
                let mut entries = match tokio::fs::read_dir(&dir).await {
                    Ok(entries) => entries,
                    Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(error) => {
                        return Err(anyhow::Error::new(error).context(format!("list {}", dir.display())).into());
                    }
                };
                while let Some(entry) = entries.next_entry().await.with_context(|| format!("list {}", dir.display()))? {
                    let key = format!("{dir_key}/{}", entry.file_name().to_string_lossy());
                    let Ok(metadata) = entry.metadata().await else { continue };
                    if metadata.is_dir() {
                        pending.push((entry.path(), key));
                    } else if modified_ms(&metadata).is_some_and(|modified| modified < before_ms) {
                        keys.push(key);
                        if keys.len() >= limit {
                            return Ok(keys);
                        }
                    }
                }
            }
            Ok(keys)
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let path = self.path(key)?;
            match tokio::fs::remove_file(&path).await {
                Ok(()) => Ok(()),
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(error) => Err(anyhow::Error::new(error).context(format!("delete {}", path.display())).into()),
            }
        })
    }
}

/// When a file was last written, in Unix milliseconds.
pub(crate) fn modified_ms(metadata: &std::fs::Metadata) -> Option<i64> {
    let since_epoch = metadata.modified().ok()?.duration_since(std::time::UNIX_EPOCH).ok()?;
    i64::try_from(since_epoch.as_millis()).ok()
}

/// A reader as a stream of 64 KiB pieces.
fn tokio_util_stream(reader: impl tokio::io::AsyncRead + Send + Unpin + 'static) -> ByteStream {
    futures_util::stream::unfold(reader, |mut reader| async move {
        let mut buffer = vec![0u8; 64 * 1024];
        match reader.read(&mut buffer).await {
            Ok(0) => None,
            Ok(read) => {
                buffer.truncate(read);
                Some((Ok(Bytes::from(buffer)), reader))
            }
            Err(error) => Some((Err(error), reader)),
        }
    })
    .boxed()
}
