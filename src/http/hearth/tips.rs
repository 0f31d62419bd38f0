//! Tips: `PUT /_hearth/client/v1/rooms/{roomId}/tip/{txnId}` and
//! `GET /_hearth/client/v1/tips/received`.

use super::extract::Member;
use crate::creators::tips::{self, TipOutcome, TipRequest};
use crate::error::{Error, Result};
use crate::http::plain::{Args, Json, Query, route};
use crate::rooms::send::Transaction;
use crate::state::AppState;
use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use http::{Method, StatusCode};
use ruma::RoomId;
use serde::Deserialize;
use serde_json::{Map, Value, json};

pub(super) fn routes(router: Router<AppState>) -> Router<AppState> {
    let router = route(router, "/_hearth/client/v1/rooms/{room_id}/tip/{txn_id}", &[Method::PUT], put(tip));
    route(router, "/_hearth/client/v1/tips/received", &[Method::GET], get(received))
}

/// Tips a creator. Answers 200 `{event_id, tip_id}`, or 402 `HEARTH_TIP_DECLINED` with the
/// webhook's `billing_url`, or 503 `HEARTH_BILLING_UNAVAILABLE` (retry with the same txnId).
async fn tip(
    State(state): State<AppState>,
    Member(session): Member,
    args: Args,
    Json(request): Json<TipRequest>,
) -> Result<Response> {
    let room_id = RoomId::parse(args.get(0)?).map_err(|error| Error::invalid_param(format!("Bad room id: {error}")))?;
    let transaction = Transaction { device_id: session.device_id.as_str(), txn_id: args.get(1)? };
    let outcome = tips::send_tip(state.tips(), &session.user_id, transaction, &room_id, request).await?;
    Ok(match outcome {
        TipOutcome::Sent { tip_id, event_id } => {
            axum::Json(json!({"event_id": event_id, "tip_id": tip_id})).into_response()
        }
        TipOutcome::Declined { tip_id, billing_url } => failure(
            StatusCode::PAYMENT_REQUIRED,
            "HEARTH_TIP_DECLINED",
            "The payment for this tip was declined",
            json!({"tip_id": tip_id, "billing_url": billing_url}),
        ),
        TipOutcome::BillingUnavailable { tip_id } => failure(
            StatusCode::SERVICE_UNAVAILABLE,
            "HEARTH_BILLING_UNAVAILABLE",
            "The billing service did not answer; retry with the same transaction id (the tip is charged at most once)",
            json!({"tip_id": tip_id}),
        ),
    })
}

/// An error in the spec's shape (`errcode`, `error`) with Hearth's extra fields.
fn failure(status: StatusCode, errcode: &str, message: &str, extra: Value) -> Response {
    let mut body = Map::new();
    body.insert("errcode".to_owned(), json!(errcode));
    body.insert("error".to_owned(), json!(message));
    if let Value::Object(extra) = extra {
        body.extend(extra);
    }
    (status, axum::Json(Value::Object(body))).into_response()
}

#[derive(Deserialize)]
struct Page {
    /// The `next_batch` of the previous page.
    from: Option<String>,
    limit: Option<i64>,
}

/// The tips the caller (a creator) received, newest first, with totals per currency.
async fn received(
    State(state): State<AppState>,
    Member(session): Member,
    Query(page): Query<Page>,
) -> Result<Response> {
    let offset = match page.from.as_deref() {
        None => 0,
        Some(from) => from.parse().map_err(|_| Error::invalid_param("`from` is not a token this server gave"))?,
    };
    let received = tips::received(&state.pool, &session.user_id, offset, page.limit.unwrap_or(20)).await?;
    let chunk: Vec<Value> = received
        .tips
        .iter()
        .map(|tip| {
            json!({
                "tip_id": tip.tip_id,
                "from": tip.from_user,
                "room_id": tip.room_id,
                "amount": tip.amount,
                "currency": tip.currency,
                "message": tip.message,
                "event_id": tip.event_id,
                "charge_id": tip.charge_id,
                "origin_server_ts": tip.created_ts,
                // Charged, but its message could not be posted (given up after retries).
                "post_error": tip.post_given_up.then_some(&tip.post_error),
            })
        })
        .collect();
    let totals: Map<String, Value> = received
        .totals
        .into_iter()
        .map(|(currency, amount, count)| (currency, json!({"amount": amount, "count": count})))
        .collect();
    let mut body = json!({"chunk": chunk, "totals": totals});
    if let Some(next) = received.next_offset {
        body["next_batch"] = json!(next.to_string());
    }
    Ok(axum::Json(body).into_response())
}
