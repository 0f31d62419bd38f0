//! The glue between axum and ruma: request extractors that authenticate according to each
//! endpoint's metadata and parse the ruma request type, a responder for ruma responses, and
//! route registration from each endpoint's path history (so `r0`, `v3` and unstable paths
//! all work without listing them by hand).

use crate::error::{Error, Result};
use crate::state::AppState;
use crate::users::{ClientInfo, Session, sessions};
use axum::body::Body;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, RawPathParams, Request};
use axum::handler::Handler;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, on};
use axum::{Extension, Router};
use bytes::BytesMut;
use http::StatusCode;
use http::request::Parts;
use ruma::api::auth_scheme::{
    AccessToken, AccessTokenOptional, AppserviceToken, AppserviceTokenOptional, NoAccessToken, NoAuthentication,
    extract_bearer_or_query_token,
};
use ruma::api::error::{DeserializationError, FromHttpRequestError};
use ruma::api::path_builder::{SinglePath, VersionHistory};
use ruma::api::{IncomingRequest, IncomingRequestExt, Metadata, OutgoingResponse, OutgoingResponseExt};
use std::net::SocketAddr;

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
        let (body, session, client) = parse::<T>(request, state, |_| Ok(())).await?;
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
        let (body, session, client) = parse::<T>(request, state, |_| Ok(())).await?;
        let session = session.ok_or_else(Error::missing_token)?;
        Ok(Authed { body, session, client })
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
        let (body, session, client) = parse::<T>(request, state, C::check).await?;
        let session = session.ok_or_else(Error::missing_token)?;
        Ok(AuthedChecked { request: Authed { body, session, client }, check: std::marker::PhantomData })
    }
}

async fn parse<T>(
    request: Request,
    state: &AppState,
    check: fn(&[u8]) -> Result<()>,
) -> Result<(T, Option<Session>, ClientInfo)>
where
    T: IncomingRequest,
    T::Authentication: AuthRequirement,
    T::PathBuilder: AllPaths,
{
    let (mut parts, body) = request.into_parts();
    let client = client_info(&parts);

    let session = match <T::Authentication as AuthRequirement>::TOKEN {
        TokenUse::Ignored => None,
        TokenUse::Required => Some(authenticate(&parts, state, &client, true).await?.ok_or_else(Error::missing_token)?),
        TokenUse::Optional => authenticate(&parts, state, &client, false).await?,
    };
    if let Some(session) = &session {
        tracing::Span::current().record("user", session.user_id.as_str());
        if session.is_guest && parts.extensions.get::<GuestsAllowed>().is_none() {
            return Err(Error::guest_access_forbidden("Guest accounts cannot use this endpoint"));
        }
    }

    let mut path_args: Vec<String> = match RawPathParams::from_request_parts(&mut parts, state).await {
        Ok(params) => params.iter().map(|(_, value)| value.to_owned()).collect(),
        Err(_) => return Err(Error::invalid_param("A path parameter is not valid UTF-8")),
    };
    // A trailing empty state key may be left out of the path (see `register`).
    let expected = T::PATH_BUILDER.all_paths().first().map_or(0, |path| path.matches('{').count());
    while path_args.len() < expected {
        path_args.push(String::new());
    }
    // PostgreSQL text and jsonb cannot hold U+0000: refuse it here, as the client's mistake,
    // rather than fail at the database with an internal error.
    if path_args.iter().any(|arg| arg.contains('\0')) || parts.uri.query().is_some_and(|query| query.contains("%00")) {
        return Err(Error::invalid_param("Parameters may not contain U+0000"));
    }
    let limit = state.config.limits.max_request_size;
    let bytes = read_body(&parts, body, limit).await?;
    if contains_escaped_nul(&bytes) {
        return Err(Error::bad_json("Strings may not contain U+0000"));
    }
    check(&bytes)?;
    let request = http::Request::from_parts(parts, bytes.as_ref());
    let path_args: Vec<&str> = path_args.iter().map(String::as_str).collect();
    let body = T::try_from_http_request(request, &path_args).map_err(request_error)?;
    Ok((body, session, client))
}

async fn read_body(parts: &Parts, body: Body, limit: usize) -> Result<bytes::Bytes> {
    let too_large = || Error::too_large(format!("The request body exceeds {limit} bytes"));
    let declared = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<usize>().ok());
    if declared.is_some_and(|length| length > limit) {
        return Err(too_large());
    }
    axum::body::to_bytes(body, limit).await.map_err(|error| {
        let is_limit =
            std::error::Error::source(&error).is_some_and(|source| source.is::<http_body_util::LengthLimitError>());
        if is_limit { too_large() } else { Error::bad_json(format!("Could not read the request body: {error}")) }
    })
}

/// Whether a JSON text holds U+0000 in a string. JSON can only write it as the escape
/// `\u0000` (raw control characters are invalid), so a scan suffices; skipping two bytes at
/// every backslash keeps `\\u0000` (an escaped backslash, then text) from matching.
fn contains_escaped_nul(json: &[u8]) -> bool {
    let mut i = 0;
    while i < json.len() {
        if json[i] == b'\\' {
            if json.get(i + 1..i + 6) == Some(b"u0000") {
                return true;
            }
            i += 2;
        } else {
            i += 1;
        }
    }
    false
}

async fn authenticate(parts: &Parts, state: &AppState, client: &ClientInfo, required: bool) -> Result<Option<Session>> {
    let probe = http::Request::builder().uri(parts.uri.clone()).body(()).map_err(|e| Error::internal(e.to_string()))?;
    let mut probe = probe;
    *probe.headers_mut() = parts.headers.clone();
    let token = match extract_bearer_or_query_token(&probe) {
        Ok(token) => token,
        Err(_) => return Err(Error::unknown_token("The Authorization header must use the Bearer scheme")),
    };
    match token {
        Some(token) => Ok(Some(sessions::authenticate(&state.pool, &token, client).await?)),
        None if required => Err(Error::missing_token()),
        None => Ok(None),
    }
}

fn client_info(parts: &Parts) -> ClientInfo {
    let ip = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(address)| address.ip().to_string());
    let user_agent = parts
        .headers
        .get(http::header::USER_AGENT)
        .and_then(|value| value.to_str().ok())
        .map(|agent| agent.chars().take(512).collect());
    ClientInfo { ip, user_agent }
}

/// Maps ruma's parse failures onto the spec's error codes: unparseable JSON is `M_NOT_JSON`,
/// JSON of the wrong shape is `M_BAD_JSON`, bad query strings, headers and identifiers are
/// `M_INVALID_PARAM`.
fn request_error(error: FromHttpRequestError) -> Error {
    match error {
        FromHttpRequestError::MethodMismatch { .. } => {
            Error::unrecognized(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed for this endpoint")
        }
        FromHttpRequestError::Deserialization(error) => match error {
            DeserializationError::Json(error) if error.is_syntax() || error.is_eof() => {
                Error::not_json(format!("The body is not valid JSON: {error}"))
            }
            DeserializationError::Json(error) => {
                Error::bad_json(format!("The JSON body does not fit this endpoint: {error}"))
            }
            DeserializationError::Utf8(error) => Error::not_json(format!("The body is not UTF-8: {error}")),
            DeserializationError::Query(error) => Error::invalid_param(format!("Invalid query parameters: {error}")),
            DeserializationError::Ident(error) => Error::invalid_param(format!("Invalid identifier: {error}")),
            DeserializationError::Header(error) => Error::invalid_param(format!("Invalid header: {error}")),
            other => Error::bad_json(format!("Could not parse the request: {other}")),
        },
        other => Error::bad_json(format!("Could not parse the request: {other}")),
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

/// Every path an endpoint has ever had: unstable, `r0`, `v3`, `v1`…
pub trait AllPaths {
    fn all_paths(&self) -> Vec<&'static str>;
}

impl AllPaths for VersionHistory {
    fn all_paths(&self) -> Vec<&'static str> {
        let mut paths: Vec<&'static str> =
            self.unstable_paths().map(|(_, path)| path).chain(self.stable_paths().map(|(_, path)| path)).collect();
        paths.sort_unstable();
        paths.dedup();
        paths
    }
}

impl AllPaths for SinglePath {
    fn all_paths(&self) -> Vec<&'static str> {
        vec![self.path()]
    }
}

pub trait RumaRouter {
    /// Routes every path of endpoint `T` (for its method) to `handler`.
    fn ruma<T, H, X>(self, handler: H) -> Self
    where
        T: Metadata,
        T::PathBuilder: AllPaths,
        H: Handler<X, AppState>,
        X: 'static;

    /// Like [`RumaRouter::ruma`], for endpoints the spec opens to guest accounts.
    fn ruma_guest<T, H, X>(self, handler: H) -> Self
    where
        T: Metadata,
        T::PathBuilder: AllPaths,
        H: Handler<X, AppState>,
        X: 'static;
}

impl RumaRouter for Router<AppState> {
    fn ruma<T, H, X>(self, handler: H) -> Self
    where
        T: Metadata,
        T::PathBuilder: AllPaths,
        H: Handler<X, AppState>,
        X: 'static,
    {
        register::<T, H, X>(self, handler, false)
    }

    fn ruma_guest<T, H, X>(self, handler: H) -> Self
    where
        T: Metadata,
        T::PathBuilder: AllPaths,
        H: Handler<X, AppState>,
        X: 'static,
    {
        register::<T, H, X>(self, handler, true)
    }
}

fn register<T, H, X>(mut router: Router<AppState>, handler: H, guests: bool) -> Router<AppState>
where
    T: Metadata,
    T::PathBuilder: AllPaths,
    H: Handler<X, AppState>,
    X: 'static,
{
    let filter = match MethodFilter::try_from(T::METHOD) {
        Ok(filter) => filter,
        Err(error) => panic!("endpoint method {} cannot be routed: {error}", T::METHOD),
    };
    for path in T::PATH_BUILDER.all_paths() {
        // The spec lets clients leave an empty state key out: `…/state/{type}/` and
        // `…/state/{type}` mean the state key "". Paths cannot match an empty segment, so
        // those shapes get routes of their own.
        let mut shapes = vec![path.to_owned()];
        if let Some(prefix) = path.strip_suffix("/{state_key}") {
            shapes.push(format!("{prefix}/"));
            shapes.push(prefix.to_owned());
        }
        for shape in shapes {
            let mut method_router = on(filter, handler.clone());
            if guests {
                method_router = method_router.layer(Extension(GuestsAllowed));
            }
            router = router.route(&shape, method_router);
        }
    }
    router
}
