//! The glue between axum and ruma: request extractors that authenticate according to each
//! endpoint's metadata and parse the ruma request type, a responder for ruma responses, and
//! route registration from each endpoint's path history (so `r0`, `v3` and unstable paths
//! all work without listing them by hand).
//!
//! Parsing is as tolerant as Synapse and real clients need (DESIGN §6):
//! - a JSON body is read as JSON whatever its `Content-Type` says, or without one (curl sends
//!   `application/x-www-form-urlencoded` by default, matrix-js-sdk sends no type without a body);
//! - an empty or absent body of an endpoint whose body is JSON is read as `{}`, so an endpoint
//!   whose body fields are all optional accepts it (matrix-nio's `join` and `room_leave`,
//!   matrix-js-sdk's `logout` and `forget` send none) and one with required fields answers
//!   `M_BAD_JSON`. Endpoints whose body is not JSON (media uploads)
//!   are registered with [`BodyFormat::Raw`] (through [`register`]) and get their bytes
//!   unchanged;
//! - every path is routed with and without a trailing slash (matrix-js-sdk asks for
//!   `/pushrules/`, matrix-nio strips every trailing slash);
//! - the access token may come in the query string (`?access_token=`, deprecated but sent by
//!   matrix-nio on every request).
//!
//! What a JSON body may hold is checked once here for every endpoint
//! ([`crate::http::json_body`]: numbers canonical JSON can hold, bounded nesting, no U+0000),
//! so that whatever Hearth accepts it can store and serve back.
//!
//! Parts: the extractors here, request parsing in [`request`], route registration in [`routes`].

mod request;
mod routes;

pub(crate) use request::*;
pub use routes::*;

use crate::error::{Error, Result};
use crate::state::AppState;
use crate::users::{ClientInfo, Session};
use axum::body::Body;
use axum::extract::{FromRequest, Request};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use ruma::api::auth_scheme::{
    AccessToken, AccessTokenOptional, AppserviceToken, AppserviceTokenOptional, NoAccessToken, NoAuthentication,
};
use ruma::api::{IncomingRequest, OutgoingResponse, OutgoingResponseExt};

/// The longest path parameter a request may have.
pub const MAX_PATH_PARAMETER_BYTES: usize = 255;

/// How an endpoint uses access tokens, derived from its ruma authentication scheme.
pub enum TokenUse {
    Required,
    Optional,
    Ignored,
}

pub trait AuthRequirement {
    const TOKEN: TokenUse;
}
impl AuthRequirement for AccessToken {
    const TOKEN: TokenUse = TokenUse::Required;
}
impl AuthRequirement for AccessTokenOptional {
    const TOKEN: TokenUse = TokenUse::Optional;
}
impl AuthRequirement for AppserviceToken {
    const TOKEN: TokenUse = TokenUse::Required;
}
impl AuthRequirement for AppserviceTokenOptional {
    const TOKEN: TokenUse = TokenUse::Optional;
}
impl AuthRequirement for NoAuthentication {
    const TOKEN: TokenUse = TokenUse::Ignored;
}
impl AuthRequirement for NoAccessToken {
    const TOKEN: TokenUse = TokenUse::Ignored;
}

// Each extractor boxes its parsing (reading the body, authenticating): a handler's future is
// as large as its largest step, and a long-polling handler would otherwise keep room for the
// parsing through its whole wait.

/// A parsed request for an endpoint that does not require an access token (one may still
/// be given, and is then validated).
pub struct Ruma<T> {
    pub body: T,
    pub session: Option<Session>,
    pub client: ClientInfo,
}

/// A parsed request for an endpoint that requires an access token.
pub struct Authed<T> {
    pub body: T,
    pub session: Session,
    pub client: ClientInfo,
}

/// Marks routes guests may use; every other authenticated route refuses guest tokens.
#[derive(Clone, Copy)]
pub struct GuestsAllowed;

impl<T> FromRequest<AppState> for Ruma<T>
where
    T: IncomingRequest + Send,
    T::Authentication: AuthRequirement,
    T::PathBuilder: AllPaths,
{
    type Rejection = Error;

    async fn from_request(request: Request, state: &AppState) -> Result<Self> {
        let (body, session, client, _) = Box::pin(parse::<T>(request, state, |_| Ok(()))).await?;
        Ok(Ruma { body, session, client })
    }
}

impl<T> FromRequest<AppState> for Authed<T>
where
    T: IncomingRequest + Send,
    T::Authentication: AuthRequirement,
    T::PathBuilder: AllPaths,
{
    type Rejection = Error;

    async fn from_request(request: Request, state: &AppState) -> Result<Self> {
        Ok(AuthedWithBody::<T>::from_request(request, state).await?.request)
    }
}

/// [`Authed`], with the request's JSON body kept as well: for endpoints whose ruma type drops
/// fields the spec (or an MSC ruma lags behind) gives them.
pub struct AuthedWithBody<T> {
    pub request: Authed<T>,
    /// The body as checked before parsing (`{}` when the request had none).
    pub json: Bytes,
}

impl<T> FromRequest<AppState> for AuthedWithBody<T>
where
    T: IncomingRequest + Send,
    T::Authentication: AuthRequirement,
    T::PathBuilder: AllPaths,
{
    type Rejection = Error;

    async fn from_request(request: Request, state: &AppState) -> Result<Self> {
        let (body, session, client, json) = Box::pin(parse::<T>(request, state, |_| Ok(()))).await?;
        let session = session.ok_or_else(Error::missing_token)?;
        Ok(AuthedWithBody { request: Authed { body, session, client }, json })
    }
}

/// Checks a request body before ruma parses it, for endpoints whose spec (or Synapse) names
/// sharper errors than a parse failure's `M_BAD_JSON` (e.g. `M_MISSING_PARAM`).
pub trait BodyCheck {
    fn check(body: &[u8]) -> Result<()>;
}

/// [`Authed`], with the body checked by `C` after authentication and before parsing.
pub struct AuthedChecked<T, C> {
    pub request: Authed<T>,
    check: std::marker::PhantomData<C>,
}

impl<T, C> FromRequest<AppState> for AuthedChecked<T, C>
where
    T: IncomingRequest + Send,
    T::Authentication: AuthRequirement,
    T::PathBuilder: AllPaths,
    C: BodyCheck,
{
    type Rejection = Error;

    async fn from_request(request: Request, state: &AppState) -> Result<Self> {
        let (body, session, client, _) = Box::pin(parse::<T>(request, state, C::check)).await?;
        let session = session.ok_or_else(Error::missing_token)?;
        Ok(AuthedChecked { request: Authed { body, session, client }, check: std::marker::PhantomData })
    }
}

/// A ruma response as an axum response.
pub struct RumaResponse<T>(pub T);

impl<T: OutgoingResponse> IntoResponse for RumaResponse<T> {
    fn into_response(self) -> Response {
        match self.0.try_into_http_response::<BytesMut>() {
            Ok(response) => response.map(|body| Body::from(body.freeze())).into_response(),
            Err(error) => Error::internal(format!("could not serialize a response: {error}")).into_response(),
        }
    }
}

impl<T> From<T> for RumaResponse<T> {
    fn from(response: T) -> Self {
        RumaResponse(response)
    }
}
