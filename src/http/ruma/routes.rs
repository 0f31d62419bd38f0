//! Route registration from each endpoint's path history, and the record of every route the
//! router holds (the route audit tests walk it).

use super::GuestsAllowed;
use crate::state::AppState;
use axum::handler::Handler;
use axum::routing::{MethodFilter, on};
use axum::{Extension, Router};
use http::Method;
use ruma::api::Metadata;
use ruma::api::path_builder::{SinglePath, VersionHistory};
use std::cell::RefCell;
/// Every path an endpoint has ever had: unstable, `r0`, `v3`, `v1`…
pub trait AllPaths {
    fn all_paths(&self) -> Vec<&'static str>;

    /// The path the spec names today: the newest stable one, else the newest unstable one.
    fn current_path(&self) -> &'static str;
}

impl AllPaths for VersionHistory {
    fn all_paths(&self) -> Vec<&'static str> {
        let mut paths: Vec<&'static str> =
            self.unstable_paths().map(|(_, path)| path).chain(self.stable_paths().map(|(_, path)| path)).collect();
        paths.sort_unstable();
        paths.dedup();
        paths
    }

    fn current_path(&self) -> &'static str {
        let stable = self.stable_paths().map(|(_, path)| path).last();
        stable.or_else(|| self.unstable_paths().map(|(_, path)| path).last()).unwrap_or_default()
    }
}

impl AllPaths for SinglePath {
    fn all_paths(&self) -> Vec<&'static str> {
        vec![self.path()]
    }

    fn current_path(&self) -> &'static str {
        self.path()
    }
}

/// What an endpoint's request body holds; see the module documentation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BodyFormat {
    /// A JSON object (or nothing): an empty body is read as `{}`.
    #[default]
    Json,
    /// Bytes given to the endpoint as they came (e.g. a media upload, where empty is empty).
    Raw,
}

/// One registered endpoint (or plain route), as [`crate::http::route_table`] lists them.
#[derive(Clone, Debug)]
pub struct Route {
    pub method: Method,
    /// The path the spec names today, with `{placeholders}`.
    pub path: &'static str,
    /// Every path the route answers on: each version's, with and without a trailing slash.
    pub shapes: Vec<String>,
    pub body: BodyFormat,
}

thread_local! {
    /// Set while [`recording`] runs; every registration adds its route.
    static RECORDED: RefCell<Option<Vec<Route>>> = const { RefCell::new(None) };
}

/// Runs `build` (which builds routers) and returns every route it registered.
pub fn recording(build: impl FnOnce()) -> Vec<Route> {
    RECORDED.set(Some(Vec::new()));
    build();
    RECORDED.take().unwrap_or_default()
}

/// Lists a route registered without this module (e.g. one with a Synapse-specific body).
pub fn record_route(method: Method, path: &'static str, body: BodyFormat) {
    record(Route { method, path, shapes: vec![path.to_owned()], body });
}

fn record(route: Route) {
    RECORDED.with_borrow_mut(|recorded| {
        if let Some(recorded) = recorded {
            recorded.push(route);
        }
    });
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
        register::<T, H, X>(self, handler, false, BodyFormat::Json)
    }

    fn ruma_guest<T, H, X>(self, handler: H) -> Self
    where
        T: Metadata,
        T::PathBuilder: AllPaths,
        H: Handler<X, AppState>,
        X: 'static,
    {
        register::<T, H, X>(self, handler, true, BodyFormat::Json)
    }
}

/// Routes every path of endpoint `T` to `handler`; what [`RumaRouter`]'s methods do. Called
/// directly for endpoints whose body is not JSON ([`BodyFormat::Raw`]).
pub fn register<T, H, X>(mut router: Router<AppState>, handler: H, guests: bool, body: BodyFormat) -> Router<AppState>
where
    T: Metadata,
    T::PathBuilder: AllPaths,
    H: Handler<X, AppState>,
    X: 'static,
{
    let filter = match MethodFilter::try_from(T::METHOD) {
        Ok(filter) => filter,
        // Endpoint methods are constants of ruma's metadata, and the router is built once at
        // start-up: this can only fire for a programming error, before any request is served.
        #[allow(clippy::panic)]
        Err(error) => panic!("endpoint method {} cannot be routed: {error}", T::METHOD),
    };
    let shapes = route_shapes(&T::PATH_BUILDER.all_paths());
    for shape in &shapes {
        let mut method_router = on(filter, handler.clone());
        if guests {
            method_router = method_router.layer(Extension(GuestsAllowed));
        }
        if body != BodyFormat::default() {
            method_router = method_router.layer(Extension(body));
        }
        router = router.route(shape, method_router);
    }
    record(Route { method: T::METHOD, path: T::PATH_BUILDER.current_path(), shapes, body });
    router
}

/// The paths an endpoint is routed on, from the paths its metadata lists.
fn route_shapes(paths: &[&'static str]) -> Vec<String> {
    let mut shapes = Vec::new();
    for path in paths {
        // The spec lets clients leave an empty state key out: `…/state/{type}/` and
        // `…/state/{type}` mean the state key "". Paths cannot match an empty segment, so
        // those shapes get routes of their own.
        let mut forms = vec![(*path).to_owned()];
        if let Some(prefix) = path.strip_suffix("/{state_key}") {
            forms.push(format!("{prefix}/"));
        }
        for form in forms {
            // Clients differ on trailing slashes (ruma's metadata has `/pushrules/`, matrix-nio
            // strips every trailing slash) and a slash cannot change what is meant: both forms
            // are routed.
            let other = match form.strip_suffix('/') {
                Some(without) => without.to_owned(),
                None => format!("{form}/"),
            };
            shapes.push(form);
            shapes.push(other);
        }
    }
    let mut seen = std::collections::HashSet::new();
    shapes.retain(|shape| seen.insert(shape.clone()));
    shapes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_path_is_routed_with_and_without_a_trailing_slash() {
        assert_eq!(
            route_shapes(&["/_matrix/client/v3/account/whoami"]),
            ["/_matrix/client/v3/account/whoami", "/_matrix/client/v3/account/whoami/"]
        );
        // ruma's metadata carries some paths with the slash only.
        assert_eq!(
            route_shapes(&["/_matrix/client/r0/pushrules/", "/_matrix/client/v3/pushrules/"]),
            [
                "/_matrix/client/r0/pushrules/",
                "/_matrix/client/r0/pushrules",
                "/_matrix/client/v3/pushrules/",
                "/_matrix/client/v3/pushrules"
            ]
        );
    }

    #[test]
    fn a_trailing_state_key_may_be_left_out() {
        assert_eq!(
            route_shapes(&["/_matrix/client/v3/rooms/{room_id}/state/{event_type}/{state_key}"]),
            [
                "/_matrix/client/v3/rooms/{room_id}/state/{event_type}/{state_key}",
                "/_matrix/client/v3/rooms/{room_id}/state/{event_type}/{state_key}/",
                "/_matrix/client/v3/rooms/{room_id}/state/{event_type}/",
                "/_matrix/client/v3/rooms/{room_id}/state/{event_type}"
            ]
        );
    }
}
