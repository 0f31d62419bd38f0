//! Tips: a member tips a creator in a room they share, the operator's billing webhook approves
//! or declines the charge, and an approved tip appears in the room as a message.
//!
//! Nothing is charged twice and no approved tip is lost, whatever fails, because of the order:
//! 1. the tip is recorded as `pending` in the ledger (committed) before anything else;
//! 2. the webhook is asked while the tip's row is locked, with the tip id as idempotency key,
//!    and its verdict is committed with the row (`approved`, `declined`, or `failed` when it
//!    gave no usable answer); a crash meanwhile leaves the row `pending`;
//! 3. an approved tip's event is appended (idempotently, keyed by the tip id) and noted.
//!
//! A retried request (same device and transaction id) finds its row and continues from where
//! it stands; start-up ([`recover`]) does the same for every tip left unsettled. Either way
//! the webhook is asked again with the same key, so it charges once.

use super::billing::{BillingClient, ChargeRequest, Verdict};
use super::flag::is_creator;
use crate::db;
use crate::db::tips::Tip;
use crate::error::{Error, Result};
use crate::rooms::RoomCtx;
use crate::rooms::build::EventTemplate;
use crate::rooms::send::{Transaction, append};
use ruma::events::MessageLikeEventType;
use ruma::events::room::member::MembershipState;
use ruma::{OwnedEventId, RoomId, UserId};
use serde::Deserialize;
use serde_json::{Value, json};

/// The `msgtype` of a tip's `m.room.message`: a client that does not know it shows `body`
/// (spec: "m.room.message msgtypes"), so standard clients see the tip as a line of text.
pub const TIP_MSGTYPE: &str = "io.hearth.tip";
/// Tries at posting an approved tip's event that the room may refuse (the member left it, say)
/// before it is given up on: otherwise every start-up would try again forever.
const MAX_POST_ATTEMPTS: i32 = 5;
/// Longest message a member may attach to a tip.
const MAX_MESSAGE_CHARS: usize = 500;

/// What tipping needs.
#[derive(Clone, Copy)]
pub struct TipCtx<'a> {
    pub rooms: RoomCtx<'a>,
    /// `None` when tips are off.
    pub billing: Option<&'a BillingClient>,
    /// For the server-notices room a declined tip's notice may need.
    pub default_room_version: &'a ruma::RoomVersionId,
}

/// The body of `PUT /_hearth/client/v1/rooms/{roomId}/tip/{txnId}`.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct TipRequest {
    pub to: ruma::OwnedUserId,
    /// A positive decimal string: at most 12 digits, then at most 3 decimals ("5.00").
    pub amount: String,
    /// ISO 4217: three capital letters ("USD").
    pub currency: String,
    pub message: Option<String>,
}

/// Where a tip ended up, for the member who sent it.
#[derive(Debug)]
pub enum TipOutcome {
    /// Charged, and shown in the room.
    Sent { tip_id: String, event_id: OwnedEventId },
    /// The webhook refused the charge; `billing_url` is where the member can fix that.
    Declined { tip_id: String, billing_url: Option<String> },
    /// The webhook gave no usable answer; the same request again asks it again (same key).
    BillingUnavailable { tip_id: String },
}

/// Tips `request.to` in `room_id` from `sender`'s device, once per transaction id.
pub async fn send_tip(
    ctx: TipCtx<'_>,
    sender: &UserId,
    transaction: Transaction<'_>,
    room_id: &RoomId,
    request: TipRequest,
) -> Result<TipOutcome> {
    if ctx.billing.is_none() {
        return Err(Error::forbidden("Tips are not enabled on this server"));
    }
    let pool = ctx.rooms.pool;
    let (device_id, txn_id) = (transaction.device_id, transaction.txn_id);
    // A retransmission continues the tip it first recorded, whatever this body says (as /send).
    if let Some(tip) = db::tips::by_transaction(pool, sender.as_str(), device_id, txn_id).await? {
        return settle(ctx, &tip.tip_id).await;
    }
    check_amount(&request.amount)?;
    check_currency(&request.currency)?;
    if let Some(message) = &request.message
        && message.chars().count() > MAX_MESSAGE_CHARS
    {
        return Err(Error::invalid_param(format!("A tip's message may be at most {MAX_MESSAGE_CHARS} characters")));
    }
    check_recipient(pool, sender, room_id, &request.to).await?;
    let tip = Tip {
        tip_id: format!("tip_{}", uuid::Uuid::new_v4().simple()),
        from_user: sender.to_string(),
        device_id: device_id.to_owned(),
        txn_id: txn_id.to_owned(),
        to_user: request.to.to_string(),
        room_id: room_id.to_string(),
        amount: request.amount,
        currency: request.currency,
        message: request.message.filter(|message| !message.is_empty()),
        state: "pending".to_owned(),
        charge_id: None,
        billing_url: None,
        event_id: None,
        created_ts: crate::time::now_ms(),
        post_attempts: 0,
        post_error: None,
        post_given_up: false,
    };
    db::tips::insert_pending(pool, &tip).await?;
    // Two racing retransmissions inserted one row between them: continue whichever stands.
    let recorded = db::tips::by_transaction(pool, sender.as_str(), device_id, txn_id)
        .await?
        .ok_or_else(|| Error::internal("a recorded tip cannot be read back"))?;
    settle(ctx, &recorded.tip_id).await
}

/// Settles every tip a crash or a failed webhook call left unsettled (at start-up).
pub async fn recover(ctx: TipCtx<'_>) -> Result<usize> {
    let unsettled = db::tips::unsettled(ctx.rooms.pool).await?;
    for tip_id in &unsettled {
        match settle(ctx, tip_id).await {
            Ok(outcome) => tracing::info!(tip_id, ?outcome, "settled a tip left over from before"),
            Err(error) => tracing::warn!(tip_id, %error, "a tip left over from before is still unsettled"),
        }
    }
    Ok(unsettled.len())
}

/// Takes the tip from where it stands to where it can go: asks the webhook if it has not
/// answered yet, then shows an approved tip in its room.
async fn settle(ctx: TipCtx<'_>, tip_id: &str) -> Result<TipOutcome> {
    let pool = ctx.rooms.pool;
    let mut tx = pool.begin().await?;
    let mut tip = db::tips::lock(&mut tx, tip_id).await?.ok_or_else(|| Error::internal("a tip vanished"))?;
    if tip.state == "pending" || tip.state == "failed" {
        let verdict = match ctx.billing {
            Some(billing) => billing.charge(&charge_request(&tip)).await,
            None => Verdict::Failed("tips are not enabled".to_owned()),
        };
        let (state, charge_id, billing_url) = match verdict {
            Verdict::Approved { charge_id } => ("approved", Some(charge_id), None),
            Verdict::Declined { billing_url } => ("declined", None, billing_url),
            Verdict::Failed(why) => {
                tracing::warn!(tip_id, why, "the billing webhook gave no verdict; the tip waits for a retry");
                ("failed", None, None)
            }
        };
        db::tips::settle(&mut tx, tip_id, state, charge_id.as_deref(), billing_url.as_deref(), crate::time::now_ms())
            .await?;
        tip.state = state.to_owned();
        tip.charge_id = charge_id;
        tip.billing_url = billing_url;
        tx.commit().await?;
        // Told once, when the verdict is recorded: retries answer 402 without a new notice.
        if tip.state == "declined" {
            notify_declined(ctx, &tip).await;
        }
    } else {
        tx.commit().await?;
    }
    match tip.state.as_str() {
        "approved" if tip.post_given_up => Err(Error::forbidden(
            "This tip was charged, but the room refused its message too often; it is in the creator's ledger",
        )),
        "approved" => match show_in_room(ctx.rooms, tip_id).await {
            Ok(event_id) => Ok(TipOutcome::Sent { tip_id: tip.tip_id, event_id }),
            Err(error) => {
                // A refusal (not an outage) counts towards giving up.
                if let Error::Matrix { .. } = error {
                    let now = crate::time::now_ms();
                    if db::tips::post_failed(pool, tip_id, &error.to_string(), MAX_POST_ATTEMPTS, now).await? {
                        tracing::warn!(tip_id, %error, "gave up posting an approved tip's event");
                    }
                }
                Err(error)
            }
        },
        "declined" => Ok(TipOutcome::Declined { tip_id: tip.tip_id, billing_url: tip.billing_url }),
        _ => Ok(TipOutcome::BillingUnavailable { tip_id: tip.tip_id }),
    }
}

/// Tells the member in their server-notices room, with the webhook's link. A failure here is
/// logged, not the member's: they got the 402 with the same link.
async fn notify_declined(ctx: TipCtx<'_>, tip: &Tip) {
    let Ok(member) = UserId::parse(&tip.from_user) else { return };
    let mut body = format!("Your tip of {} {} was declined by the payment provider.", tip.amount, tip.currency);
    if let Some(url) = &tip.billing_url {
        body.push_str(&format!(" To fix your payment method: {url}"));
    }
    if let Err(error) = super::notices::send_notice(ctx.rooms, ctx.default_room_version, &member, &body).await {
        tracing::warn!(tip_id = tip.tip_id, %error, "could not send the declined tip's server notice");
    }
}

fn charge_request(tip: &Tip) -> ChargeRequest<'_> {
    ChargeRequest {
        idempotency_key: &tip.tip_id,
        tip_id: &tip.tip_id,
        from: &tip.from_user,
        to: &tip.to_user,
        room_id: &tip.room_id,
        amount: &tip.amount,
        currency: &tip.currency,
    }
}

/// Appends an approved tip's event once (the row lock orders concurrent settlers; the send
/// path's transaction ids make a repeat after a crash return the first event).
async fn show_in_room(ctx: RoomCtx<'_>, tip_id: &str) -> Result<OwnedEventId> {
    let mut tx = ctx.pool.begin().await?;
    let tip = db::tips::lock(&mut tx, tip_id).await?.ok_or_else(|| Error::internal("a tip vanished"))?;
    if let Some(event_id) = &tip.event_id {
        return OwnedEventId::try_from(event_id.as_str()).map_err(|error| Error::internal(error.to_string()));
    }
    let sender = UserId::parse(&tip.from_user).map_err(|error| Error::internal(error.to_string()))?;
    let room_id = RoomId::parse(&tip.room_id).map_err(|error| Error::internal(error.to_string()))?;
    let content = tip_content(ctx, &tip).await?;
    let template = EventTemplate::message(MessageLikeEventType::RoomMessage, content);
    let txn_id = format!("{TIP_MSGTYPE}/{tip_id}");
    let transaction = Transaction { device_id: &tip.device_id, txn_id: &txn_id };
    let event_id = append(ctx, &room_id, &sender, template, Some(transaction)).await?;
    db::tips::set_event(&mut tx, tip_id, event_id.as_str()).await?;
    tx.commit().await?;
    Ok(event_id)
}

/// The tip as a message: a text fallback for clients that know nothing of tips, a mention
/// that notifies the creator, and the tip's facts for clients that do.
async fn tip_content(ctx: RoomCtx<'_>, tip: &Tip) -> Result<Value> {
    let from = display_name(ctx, &tip.from_user).await?;
    let to = display_name(ctx, &tip.to_user).await?;
    let mut body = format!("{from} tipped {to} {} {}", tip.amount, tip.currency);
    if let Some(message) = &tip.message {
        body.push_str(": ");
        body.push_str(message);
    }
    Ok(json!({
        "msgtype": TIP_MSGTYPE,
        "body": body,
        "m.mentions": {"user_ids": [tip.to_user]},
        TIP_MSGTYPE: {
            "tip_id": tip.tip_id,
            "to": tip.to_user,
            "amount": tip.amount,
            "currency": tip.currency,
            "message": tip.message,
        },
    }))
}

/// A user's display name, or their localpart without one.
async fn display_name(ctx: RoomCtx<'_>, user_id: &str) -> Result<String> {
    let profile = db::users::profile(ctx.pool, user_id).await?.unwrap_or_default();
    let name = profile.get("displayname").and_then(Value::as_str).map(str::to_owned);
    let localpart = || user_id.trim_start_matches('@').split(':').next().unwrap_or(user_id).to_owned();
    Ok(name.unwrap_or_else(localpart))
}

/// The recipient must be a creator other than the sender, both must be in the room, and the
/// creator must not ignore the sender (then the tip is refused: blocking holds here too).
async fn check_recipient(pool: &crate::store::Store, sender: &UserId, room_id: &RoomId, to: &UserId) -> Result<()> {
    if to == sender {
        return Err(Error::forbidden("You cannot tip yourself"));
    }
    if !is_creator(pool, to).await? {
        return Err(Error::forbidden(format!("{to} is not a creator")));
    }
    for user in [sender, to] {
        let membership = db::rooms::membership(pool, room_id.as_str(), user.as_str()).await?;
        if membership.is_none_or(|membership| membership.membership != MembershipState::Join) {
            return Err(Error::forbidden(format!("{user} is not in the room")));
        }
    }
    if crate::users::ignore::ignored_users(pool, to).await?.contains(sender.as_str()) {
        return Err(Error::forbidden(format!("You cannot tip {to}")));
    }
    Ok(())
}

/// A positive decimal: 1 to 12 digits, optionally a point and 1 to 3 digits.
fn check_amount(amount: &str) -> Result<()> {
    let (whole, fraction) = amount.split_once('.').unwrap_or((amount, "1"));
    let digits =
        |part: &str, max: usize| !part.is_empty() && part.len() <= max && part.bytes().all(|b| b.is_ascii_digit());
    let positive = amount.bytes().any(|b| (b'1'..=b'9').contains(&b));
    if digits(whole, 12) && digits(fraction, 3) && positive {
        Ok(())
    } else {
        Err(Error::invalid_param("`amount` must be a positive decimal string such as \"5.00\""))
    }
}

/// An ISO 4217 alphabetic code: three capital letters.
fn check_currency(currency: &str) -> Result<()> {
    if currency.len() == 3 && currency.bytes().all(|b| b.is_ascii_uppercase()) {
        Ok(())
    } else {
        Err(Error::invalid_param("`currency` must be an ISO 4217 code such as \"USD\""))
    }
}

/// One page of the tips a creator received, and their totals per currency.
pub struct Received {
    pub tips: Vec<Tip>,
    pub next_offset: Option<i64>,
    /// (currency, sum, count), by currency.
    pub totals: Vec<(String, String, i64)>,
}

/// The approved tips `creator` received, newest first.
pub async fn received(pool: &crate::store::Store, creator: &UserId, offset: i64, limit: i64) -> Result<Received> {
    if !is_creator(pool, creator).await? {
        return Err(Error::forbidden("Only creators receive tips"));
    }
    let limit = limit.clamp(1, 100);
    let offset = offset.max(0);
    let mut tips = db::tips::received(pool, creator.as_str(), offset, limit + 1).await?;
    let more = tips.len() as i64 > limit;
    tips.truncate(limit as usize);
    let next_offset = more.then_some(offset + limit);
    let totals = db::tips::received_totals(pool, creator.as_str()).await?;
    Ok(Received { tips, next_offset, totals })
}

#[cfg(test)]
mod tests {
    use super::{check_amount, check_currency};

    #[test]
    fn amounts_are_positive_decimals() {
        for good in ["5", "5.00", "0.5", "123456789012.999", "0.001"] {
            assert!(check_amount(good).is_ok(), "{good}");
        }
        for bad in ["", "0", "0.00", "-1", "5.", ".5", "1e3", "5.0001", "1234567890123", " 5", "5,00"] {
            assert!(check_amount(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn currencies_are_iso_4217_codes() {
        assert!(check_currency("USD").is_ok());
        for bad in ["usd", "US", "USDT", "U5D", ""] {
            assert!(check_currency(bad).is_err(), "{bad}");
        }
    }
}
