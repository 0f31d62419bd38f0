//! `PUT /_matrix/federation/v1/send/{txnId}`: thin over `federation::inbound::transaction`.

use crate::error::Result;
use crate::federation::inbound::transaction::{IncomingTransaction, receive};
use crate::http::federation::auth::Federated;
use crate::http::ruma::{RumaResponse, RumaRouter};
use crate::state::AppState;
use axum::Router;
use axum::extract::State;
use ruma::api::federation::transactions::send_transaction_message::v1 as send;

pub(super) fn routes(router: Router<AppState>) -> Router<AppState> {
    router.ruma::<send::Request, _, _>(send_transaction)
}

/// `PUT /_matrix/federation/v1/send/{txnId}`: another server's PDUs and EDUs, each answered.
async fn send_transaction(
    State(state): State<AppState>,
    request: Federated<send::Request>,
) -> Result<RumaResponse<send::Response>> {
    let body = &request.body;
    let txn = IncomingTransaction {
        origin: &request.origin,
        txn_id: body.transaction_id.as_str(),
        claimed_origin: &body.origin,
        pdus: &body.pdus,
        edus: &body.edus,
    };
    Ok(RumaResponse(send::Response::new(receive(state.fed(), txn).await?)))
}
