//! The database as the domain sees it: the connection pool, and what this process has
//! learned from the database and keeps in memory (a room's version, what a state snapshot
//! holds, push rule sets, which members a device was sent, unread counts).
//!
//! Each running Hearth holds one [`Store`] in its `AppState`, so its caches live and die with
//! it: one process serving several databases (the tests do) has one store per database, and
//! nothing needs to carry the database in its cache keys. Domain code takes `&Store` where it
//! takes the database; `db/` functions take the pool, which `&Store` dereferences to.
//!
//! The store knows none of the caches: each domain module defines its own cache type and asks
//! for it with [`Store::cache`], so the arrows keep pointing down (domains → store → `db/`).
//! Only facts the process may keep without asking the database again belong there: immutable
//! facts, or facts whose owner invalidates them (see each cache's documentation).

use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use sqlx::postgres::{PgQueryResult, PgRow, PgStatement, PgTypeInfo};
use sqlx::{Either, PgPool};
use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::ops::Deref;
use std::sync::{Arc, RwLock};

/// The pool and this process's caches of what is in the database. Cheap to clone.
#[derive(Clone)]
pub struct Store(Arc<Inner>);

struct Inner {
    pool: PgPool,
    caches: RwLock<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>,
}

impl Store {
    /// A store with empty caches over `pool`.
    pub fn new(pool: PgPool) -> Store {
        Store(Arc::new(Inner { pool, caches: RwLock::default() }))
    }

    /// The connection pool, for code that needs the pool itself (spawning a task that owns it).
    pub fn pool(&self) -> &PgPool {
        &self.0.pool
    }

    /// This store's cache of type `C`, made empty on first use.
    pub fn cache<C: Default + Send + Sync + 'static>(&self) -> Arc<C> {
        let id = TypeId::of::<C>();
        let known = self.0.caches.read().unwrap_or_else(|poisoned| poisoned.into_inner()).get(&id).cloned();
        let cache = match known {
            Some(cache) => cache,
            None => self
                .0
                .caches
                .write()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .entry(id)
                .or_insert_with(|| Arc::new(C::default()))
                .clone(),
        };
        // The map holds a `C` under `TypeId::of::<C>()` and nothing else, so this never fails;
        // should it, an empty cache only costs a database read.
        cache.downcast::<C>().unwrap_or_default()
    }
}

impl Deref for Store {
    type Target = PgPool;
    fn deref(&self) -> &PgPool {
        &self.0.pool
    }
}

/// `&Store` runs queries wherever `&PgPool` does (each takes a pooled connection), so `db/`
/// functions generic over an executor accept either.
impl<'p> sqlx::Executor<'p> for &Store {
    type Database = sqlx::Postgres;

    fn fetch_many<'e, 'q: 'e, E>(self, query: E) -> BoxStream<'e, sqlx::Result<Either<PgQueryResult, PgRow>>>
    where
        'p: 'e,
        E: 'q + sqlx::Execute<'q, sqlx::Postgres>,
    {
        self.pool().fetch_many(query)
    }

    fn fetch_optional<'e, 'q: 'e, E>(self, query: E) -> BoxFuture<'e, sqlx::Result<Option<PgRow>>>
    where
        'p: 'e,
        E: 'q + sqlx::Execute<'q, sqlx::Postgres>,
    {
        self.pool().fetch_optional(query)
    }

    fn prepare_with<'e>(
        self,
        sql: sqlx::SqlStr,
        parameters: &'e [PgTypeInfo],
    ) -> BoxFuture<'e, sqlx::Result<PgStatement>>
    where
        'p: 'e,
    {
        self.pool().prepare_with(sql, parameters)
    }

    fn describe<'e>(self, sql: sqlx::SqlStr) -> BoxFuture<'e, sqlx::Result<sqlx::Describe<sqlx::Postgres>>>
    where
        'p: 'e,
    {
        self.pool().describe(sql)
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_tuple("Store").field(&self.0.pool).finish()
    }
}

impl From<PgPool> for Store {
    fn from(pool: PgPool) -> Store {
        Store::new(pool)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[derive(Default)]
    struct Counter(AtomicUsize);

    #[tokio::test]
    async fn each_store_has_its_own_caches_and_keeps_them() {
        let options = sqlx::postgres::PgPoolOptions::new();
        let one = Store::new(options.clone().connect_lazy("postgres://localhost/one").unwrap());
        let other = Store::new(options.connect_lazy("postgres://localhost/other").unwrap());
        one.cache::<Counter>().0.fetch_add(1, Ordering::Relaxed);
        one.clone().cache::<Counter>().0.fetch_add(1, Ordering::Relaxed);
        assert_eq!(one.cache::<Counter>().0.load(Ordering::Relaxed), 2);
        assert_eq!(other.cache::<Counter>().0.load(Ordering::Relaxed), 0);
    }
}
