//! Synapse's offset paging of admin listings, read once for every listing: `from` (an offset),
//! `limit` and `dir` (`f` forwards, `b` backwards) in the query string; the next page's offset
//! goes back as `next_token` (or `next_batch` for rooms).

use super::extract::Query;
use crate::admin::users::Paging;
use crate::error::{Error, Result};
use crate::state::AppState;
use axum::extract::FromRequestParts;
use http::request::Parts;
use serde::Deserialize;
use serde_json::{Value, json};

/// Listings return this many items unless asked otherwise (Synapse's default).
const DEFAULT_LIMIT: i64 = 100;

/// A listing's paging parameters, checked: negative numbers and unknown directions are
/// `M_INVALID_PARAM`.
pub(super) struct Paged {
    pub paging: Paging,
    /// `dir`, when given: whether it asks for descending order.
    direction: Option<bool>,
}

#[derive(Deserialize)]
struct PagingParams {
    from: Option<i64>,
    limit: Option<i64>,
    dir: Option<String>,
}

impl FromRequestParts<AppState> for Paged {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self> {
        let Query(params) = Query::<PagingParams>::from_request_parts(parts, state).await?;
        let paging = Paging::new(params.from, params.limit, DEFAULT_LIMIT)?;
        let direction = params.dir.as_deref().map(|dir| descending(Some(dir))).transpose()?;
        Ok(Paged { paging, direction })
    }
}

impl Paged {
    /// Whether the listing goes in descending order (ascending unless `dir=b`).
    pub(super) fn descending(&self) -> bool {
        self.direction.unwrap_or(false)
    }

    /// Like [`Paged::descending`] for listings that are newest first unless `dir=f`.
    pub(super) fn descending_unless_forwards(&self) -> bool {
        self.direction.unwrap_or(true)
    }
}

/// `f` (forwards, the default) or `b`: whether to go in descending order.
pub(super) fn descending(dir: Option<&str>) -> Result<bool> {
    match dir.unwrap_or("f") {
        "f" => Ok(false),
        "b" => Ok(true),
        other => Err(Error::invalid_param(format!("Unknown direction: {other}"))),
    }
}

/// Adds the next page's offset as Synapse's `next_token` (a string) when there is more.
pub(super) fn add_next_token(answer: &mut Value, next: Option<i64>) {
    if let Some(next) = next {
        answer["next_token"] = json!(next.to_string());
    }
}
