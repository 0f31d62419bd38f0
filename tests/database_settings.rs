//! Settings Hearth applies to its own database connections.

use crate::common;
use hearth::server::{Opener, open_database};

/// `database.synchronous_commit` reaches every connection of the pool Hearth opens from its
/// configuration. The test cluster itself runs with `synchronous_commit = off`, so "on" can only
/// come from Hearth's setting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn synchronous_commit_applies_to_every_pooled_connection() {
    let (database, pool) = common::fresh_database().await;
    pool.close().await;
    let socket_dir = common::cluster_dir();
    for setting in ["on", "off"] {
        let data_dir = tempfile::Builder::new().prefix("hearth-settings-").tempdir_in("/tmp").unwrap();
        let mut config = common::test_config();
        config.data_dir = data_dir.path().to_path_buf();
        config.database.url = Some(format!(
            "postgresql://{}@localhost/{database}?host={}",
            hearth::testing::db::embedded::SUPERUSER,
            socket_dir.display()
        ));
        config.database.synchronous_commit = setting.to_owned();
        config.validate().unwrap();
        let (pool, _guard) = open_database(&config, Opener::Tool).await.unwrap();
        // Two connections held at once, so the second is a new one, not the first reused.
        let mut first = pool.acquire().await.unwrap();
        let mut second = pool.acquire().await.unwrap();
        for connection in [&mut first, &mut second] {
            let shown: String =
                sqlx::query_scalar("SHOW synchronous_commit").fetch_one(&mut **connection).await.unwrap();
            assert_eq!(shown, setting);
        }
        drop((first, second));
        pool.close().await;
    }
}
