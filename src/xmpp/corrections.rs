//! Last message correction (XEP-0308) ↔ Matrix edits (`m.replace`). A correction names the
//! message it corrects by the id the client knows: the event id for messages that came from
//! Matrix, the client's own message id (its transaction id) for those it sent.

use crate::state::AppState;
use crate::users::Session as MatrixSession;
use minidom::Element;
use ruma::RoomId;
use serde_json::{Value, json};
use xmpp_parsers::message::Message;

const NS_CORRECT: &str = "urn:xmpp:message-correct:0";

/// The content of an `m.room.message` for a message with `body`: an edit of the corrected
/// message when it carries `<replace/>` naming one this user sent in the room, else plain text.
pub(super) async fn content(
    state: &AppState,
    user: &MatrixSession,
    room_id: &RoomId,
    message: &Message,
    body: &str,
) -> crate::Result<Value> {
    let text = json!({ "msgtype": "m.text", "body": body });
    let replaced = message.payloads.iter().find(|payload| payload.is("replace", NS_CORRECT));
    let Some(id) = replaced.and_then(|replace| replace.attr("id")) else { return Ok(text) };
    let target = match id.starts_with('$') {
        true => Some(id.to_owned()),
        false => {
            let (pool, device) = (&state.pool, &user.device_id);
            crate::rooms::transaction_ids::message_sent_with(pool, &user.user_id, device, room_id, id).await?
        }
    };
    let Some(target) = target else { return Ok(text) };
    Ok(json!({
        "msgtype": "m.text",
        "body": format!("* {body}"),
        "m.new_content": text,
        "m.relates_to": { "rel_type": "m.replace", "event_id": target },
    }))
}

/// What a message event says to XMPP: its text, and the event it corrects if it is an edit
/// (then the text is the new content's).
pub(super) fn text_of(content: &Value) -> Option<(&str, Option<&str>)> {
    let relation = &content["m.relates_to"];
    if relation["rel_type"] == "m.replace"
        && let (Some(target), Some(body)) = (relation["event_id"].as_str(), content["m.new_content"]["body"].as_str())
    {
        return Some((body, Some(target)));
    }
    Some((content["body"].as_str()?, None))
}

/// `<replace id='…'/>` for a correction of the message the client knows as `id`.
pub(super) fn replace(id: &str) -> Element {
    Element::builder("replace", NS_CORRECT).attr(rxml::xml_ncname!("id").into(), id).build()
}
