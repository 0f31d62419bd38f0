//! Reading a request: body, path parameters, access token, and the ruma request type, with
//! the tolerance the module doc describes.

use super::routes::{AllPaths, BodyFormat};
use super::{AuthRequirement, GuestsAllowed, MAX_PATH_PARAMETER_BYTES, TokenUse};
use crate::config::LimitsConfig;
use crate::error::{Error, Result};
use crate::http::json_body;
use crate::state::AppState;
use crate::users::{ClientInfo, Session, sessions};
use axum::body::Body;
use axum::extract::{ConnectInfo, FromRequestParts, RawPathParams, Request};
use bytes::{Bytes, BytesMut};
use http::request::Parts;
use http::{HeaderMap, Method};
use http_body_util::BodyExt;
use ruma::api::auth_scheme::{ExtractTokenError, extract_bearer_or_query_token};
use ruma::api::error::{DeserializationError, FromHttpRequestError};
use ruma::api::{IncomingRequest, IncomingRequestExt, Metadata};
use std::net::SocketAddr;
use std::time::Duration;
pub(crate) async fn parse<T>(
    request: Request,
    state: &AppState,
    check: fn(&[u8]) -> Result<()>,
) -> Result<(T, Option<Session>, ClientInfo, Bytes)>
where
    T: IncomingRequest,
    T::Authentication: AuthRequirement,
    T::PathBuilder: AllPaths,
{
    let (parts, body) = request.into_parts();
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

    let (parts, path_args, bytes) = read_request::<T>(parts, body, state, check).await?;
    let body = parse_request::<T>(parts, &path_args, &bytes)?;
    Ok((body, session, client, bytes))
}

/// A request's path arguments and body, checked as every endpoint needs (no U+0000, bounded
/// sizes, JSON Hearth can store), before the endpoint's parser sees them. Authentication
/// schemes other than access tokens (`X-Matrix`, in `http::federation::auth`) start here too.
pub(crate) async fn read_request<T>(
    mut parts: Parts,
    body: Body,
    state: &AppState,
    check: fn(&[u8]) -> Result<()>,
) -> Result<(Parts, Vec<String>, Bytes)>
where
    T: Metadata,
    T::PathBuilder: AllPaths,
{
    let path_args = read_path_args::<T>(&mut parts, state).await?;
    let bytes = read_body(&parts.headers, body, &state.config.limits).await?;
    let bytes = as_endpoint_body(&parts, bytes)?;
    check(&bytes)?;
    Ok((parts, path_args, bytes))
}

/// The body as the endpoint reads it: for JSON endpoints, empty means `{}`, and the JSON must
/// be what Hearth can store.
pub(crate) fn as_endpoint_body(parts: &Parts, bytes: Bytes) -> Result<Bytes> {
    Ok(match parts.extensions.get::<BodyFormat>().copied().unwrap_or_default() {
        BodyFormat::Json => {
            let bytes = empty_as_object(bytes);
            check_json_body(&parts.method, &bytes)?;
            bytes
        }
        BodyFormat::Raw => bytes,
    })
}

/// The path's arguments, checked: UTF-8, no U+0000 (there or in the query), bounded length.
pub(crate) async fn read_path_args<T>(parts: &mut Parts, state: &AppState) -> Result<Vec<String>>
where
    T: Metadata,
    T::PathBuilder: AllPaths,
{
    let mut path_args: Vec<String> = match RawPathParams::from_request_parts(parts, state).await {
        Ok(params) => params.iter().map(|(_, value)| value.to_owned()).collect(),
        Err(_) => return Err(Error::invalid_param("A path parameter is not valid UTF-8")),
    };
    // A trailing empty state key may be left out of the path (see `register`).
    let expected = T::PATH_BUILDER.all_paths().first().map_or(0, |path| path.matches('{').count());
    while path_args.len() < expected {
        path_args.push(String::new());
    }
    check_path_args(parts, &path_args)?;
    Ok(path_args)
}

/// What every path argument and query string must be, whoever parses them next.
pub(crate) fn check_path_args(parts: &Parts, path_args: &[String]) -> Result<()> {
    // PostgreSQL text and jsonb cannot hold U+0000: refuse it here, as the client's mistake,
    // rather than fail at the database with an internal error.
    if path_args.iter().any(|arg| arg.contains('\0')) || parts.uri.query().is_some_and(query_holds_nul) {
        return Err(Error::invalid_param("Parameters may not contain U+0000"));
    }
    // Every identifier a path names (room, event and user ids, event types, state keys,
    // transaction ids, backup sessions…) is at most 255 bytes by the spec or by any sane
    // client; longer ones used to reach PostgreSQL's index row limit as internal errors.
    if path_args.iter().any(|arg| arg.len() > MAX_PATH_PARAMETER_BYTES) {
        return Err(Error::invalid_param(format!("Path parameters may be at most {MAX_PATH_PARAMETER_BYTES} bytes")));
    }
    Ok(())
}

/// Parses what [`read_request`] read into the endpoint's request type.
pub(crate) fn parse_request<T: IncomingRequest>(parts: Parts, path_args: &[String], bytes: &[u8]) -> Result<T> {
    let request = http::Request::from_parts(parts, bytes);
    let path_args: Vec<&str> = path_args.iter().map(String::as_str).collect();
    parse_without_panicking(|| T::try_from_http_request(request, &path_args))
}

/// Runs ruma's parser, turning a panic into `M_BAD_JSON`: some of ruma's hand-written
/// deserializers index JSON objects and panic on a missing key (`POST /login` with a body
/// without `type` did, dropping the connection without an answer). Parsing is synchronous
/// and owns nothing shared, so nothing is left half-done by the unwinding.
fn parse_without_panicking<T>(parse: impl FnOnce() -> Result<T, FromHttpRequestError>) -> Result<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(parse)) {
        Ok(parsed) => parsed.map_err(request_error),
        Err(_) => {
            tracing::warn!("ruma panicked parsing a request; answered as bad JSON");
            Err(Error::bad_json("The JSON body does not fit this endpoint"))
        }
    }
}

/// Reads a request body of at most `limits.max_request_size` bytes. A body declared larger is
/// refused before any of it is read; one that grows past the limit (chunked) is refused as
/// soon as it does. Either way the unread rest is left to [`crate::http::linger`], so that the
/// client gets to read the 413. A body that pauses longer than `limits.body_timeout_secs`
/// between two pieces is refused too: a slow upload goes on, a stalled one does not hold the
/// request (and its connection) open.
pub(crate) async fn read_body(headers: &HeaderMap, body: Body, limits: &LimitsConfig) -> Result<Bytes> {
    let limit = limits.max_request_size;
    let too_large = || Error::too_large(format!("The request body exceeds {limit} bytes"));
    let declared = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<usize>().ok());
    if declared.is_some_and(|length| length > limit) {
        return Err(too_large());
    }
    let pause = Duration::from_secs(limits.body_timeout_secs);
    let mut body = http_body_util::Limited::new(body, limit);
    let mut bytes = BytesMut::new();
    loop {
        let frame = match tokio::time::timeout(pause, body.frame()).await {
            Err(_) => return Err(Error::unknown(format!("The request body paused for more than {pause:?}"))),
            Ok(None) => return Ok(bytes.freeze()),
            Ok(Some(frame)) => frame,
        };
        match frame {
            Ok(frame) => {
                if let Ok(data) = frame.into_data() {
                    bytes.extend_from_slice(&data);
                }
            }
            Err(error) if error.is::<http_body_util::LengthLimitError>() => return Err(too_large()),
            Err(error) => return Err(Error::bad_json(format!("Could not read the request body: {error}"))),
        }
    }
}

/// An empty JSON body means `{}`, as Synapse reads it: clients leave the body out where
/// every field is optional. (A body of only whitespace is not empty: it is not JSON.)
pub(crate) fn empty_as_object(body: Bytes) -> Bytes {
    if body.is_empty() { Bytes::from_static(b"{}") } else { body }
}

/// Whether a query string holds U+0000: percent-encoded, or as the JSON escape `\u0000` in a
/// value that is JSON (`filter=`), which PostgreSQL would get as U+0000 in a string. (Skipping
/// two bytes at every backslash keeps `\\u0000`, an escaped backslash and text, from matching;
/// a value that is not JSON and holds that text is nonsense for every parameter anyway.)
fn query_holds_nul(query: &str) -> bool {
    let bytes = query.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        let escaped = (bytes[at] == b'%')
            .then(|| bytes.get(at + 1..at + 3))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                decoded.push(byte);
                at += 3;
            }
            None => {
                decoded.push(bytes[at]);
                at += 1;
            }
        }
    }
    let mut at = 0;
    while at < decoded.len() {
        match decoded[at] {
            0 => return true,
            b'\\' if decoded.get(at + 1..at + 6) == Some(b"u0000") => return true,
            b'\\' => at += 2,
            _ => at += 1,
        }
    }
    false
}

/// Refuses a JSON body holding what Hearth could not store or serve back (see
/// [`crate::http::json_body`]). `GET` and `HEAD` bodies are ignored, as every endpoint of those
/// methods ignores them; a body that is not JSON is left to the endpoint's parser, which
/// answers `M_NOT_JSON` if it reads a body at all.
pub(crate) fn check_json_body(method: &Method, bytes: &[u8]) -> Result<()> {
    if *method == Method::GET || *method == Method::HEAD {
        return Ok(());
    }
    match json_body::check(bytes) {
        Err(json_body::Refusal::Unacceptable(message)) => Err(Error::bad_json(message)),
        Ok(()) | Err(json_body::Refusal::NotJson(_)) => Ok(()),
    }
}

pub(crate) async fn authenticate(
    parts: &Parts,
    state: &AppState,
    client: &ClientInfo,
    required: bool,
) -> Result<Option<Session>> {
    match access_token(parts)? {
        Some(token) => Ok(Some(sessions::authenticate(&state.pool, &token, client).await?)),
        None if required => Err(Error::missing_token()),
        None => Ok(None),
    }
}

/// The access token a request carries (`Authorization: Bearer` or `?access_token=`), if any.
pub(crate) fn access_token(parts: &Parts) -> Result<Option<String>> {
    let probe = http::Request::builder().uri(parts.uri.clone()).body(()).map_err(|e| Error::internal(e.to_string()))?;
    let mut probe = probe;
    *probe.headers_mut() = parts.headers.clone();
    match extract_bearer_or_query_token(&probe) {
        Ok(token) => Ok(token),
        Err(ExtractTokenError::FromQuery(error)) => {
            Err(Error::invalid_param(format!("The query string holds no single access token: {error}")))
        }
        Err(_) => Err(Error::unknown_token("The Authorization header must use the Bearer scheme")),
    }
}

pub(crate) fn client_info(parts: &Parts) -> ClientInfo {
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
        FromHttpRequestError::MethodMismatch { .. } => Error::unrecognized("Method not allowed for this endpoint"),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_empty_body_is_an_empty_object() {
        assert_eq!(empty_as_object(Bytes::new()), Bytes::from_static(b"{}"));
        assert_eq!(empty_as_object(Bytes::from_static(b" ")), Bytes::from_static(b" "));
        assert_eq!(empty_as_object(Bytes::from_static(b"[]")), Bytes::from_static(b"[]"));
    }

    #[test]
    fn nul_in_a_query_string_is_found_encoded_or_escaped() {
        assert!(query_holds_nul("kind=gu%00est"));
        assert!(query_holds_nul("filter=%7B%22types%22%3A%5B%22a%5Cu0000%22%5D%7D"));
        assert!(!query_holds_nul("filter=%7B%22types%22%3A%5B%22a%5C%5Cu0000%22%5D%7D"));
        assert!(!query_holds_nul("from=s1_2&dir=b&limit=10%"));
    }

    #[test]
    fn a_panicking_parser_is_bad_json() {
        let error =
            parse_without_panicking::<()>(|| panic!("no entry found for key")).err().map(|error| error.errcode());
        assert_eq!(error.as_deref(), Some("M_BAD_JSON"));
    }
}
