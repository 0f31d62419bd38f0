//! Notifications from the push rules: every new event is evaluated against the push rules of
//! each local member of its room (spec: "Push Rules"), with ruma's evaluation, and what
//! notifies or highlights is written to `event_push_actions` in the event's own transaction —
//! nothing is lost on a crash, and `/sync`, `/notifications` and the pushers read the same rows.
//!
//! Big rooms cost no database round trip per member: a room's members, their display names
//! and their rule sets come from at most three statements per batch of events, and display
//! names (by member event) and rule sets (by user and version) are kept in process between
//! batches. A rule set's version is the stream position of the user's last change to it, read
//! with the members, so a change made by any process is seen at the next event.

use crate::cache::FactCache;
use crate::db;
use crate::db::push_actions::{NewEvent, PushAction, PushContext, Recipient};
use crate::error::{Error, Result};
use crate::push::ruleset::assemble;
use crate::store::Store;
use ruma::events::AnySyncTimelineEvent;
use ruma::events::room::power_levels::{RoomPowerLevels, RoomPowerLevelsEventContent, RoomPowerLevelsSource};
use ruma::push::{Action, FlattenedJson, PushConditionPowerLevelsCtx, PushConditionRoomCtx, Ruleset};
use ruma::serde::Raw;
use ruma::{OwnedUserId, RoomId, RoomVersionId, ServerName, UInt, UserId};
use serde::Deserialize;
use sqlx::PgConnection;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// A user and the version of their rules (`None`: the server defaults, never changed).
type RulesKey = (String, Option<i64>);

/// What evaluating push rules keeps in the store (see [`Store::cache`]).
struct PushFacts {
    /// Rule sets by (user, version): a version's rule set never changes, so nothing is
    /// invalidated — a change makes a new version, and the old entry ages out.
    rulesets: FactCache<RulesKey, Arc<Ruleset>>,
    /// Display names by member event (events are immutable).
    display_names: FactCache<i64, Option<String>>,
}

impl Default for PushFacts {
    fn default() -> PushFacts {
        PushFacts { rulesets: FactCache::new(50_000), display_names: FactCache::new(200_000) }
    }
}

/// The thread an event is in: the root of its `m.thread` relation, or the main timeline.
pub(crate) const MAIN_TIMELINE: &str = "main";

/// Evaluates `events`, just stored in the timeline (in the transaction `conn`, before it
/// commits), for the local users of their rooms, and stores what notifies or highlights. The
/// writer hands over what it stored rather than have it read back. `pool` is the database
/// `conn` belongs to: it scopes the in-process caches. Returns how many rows it stored: with
/// none, push delivery has nothing new to look for.
pub async fn record_notifications(
    conn: &mut PgConnection,
    pool: &Store,
    server_name: &ServerName,
    events: Vec<NewEvent>,
) -> Result<usize> {
    if events.is_empty() {
        return Ok(0);
    }
    let mut by_room: Vec<(String, Vec<NewEvent>)> = Vec::new();
    for event in events {
        match by_room.iter_mut().find(|(room, _)| *room == event.room_id) {
            Some((_, events)) => events.push(event),
            None => by_room.push((event.room_id.clone(), vec![event])),
        }
    }
    // One statement reads every room's members (and one each, at most, their display names
    // and rule sets): a batch of new rooms costs what one room does.
    let mut senders: Vec<String> =
        by_room.iter().flat_map(|(_, events)| events.iter().map(|e| e.sender.clone())).collect();
    senders.sort_unstable();
    senders.dedup();
    let local_suffix = format!(":{server_name}");
    let room_ids: Vec<&str> = by_room.iter().map(|(room_id, _)| room_id.as_str()).collect();
    let contexts = db::push_actions::push_contexts(&mut *conn, &room_ids, &local_suffix, &senders).await?;
    // Only those who may hear of some event need their rules: when that is nobody (a sender
    // alone with their own messages), no rule set, power levels or flattened event is built.
    let mut rooms = Vec::with_capacity(by_room.len());
    let mut recipients = Vec::new();
    for (index, ((room_id, events), mut context)) in by_room.into_iter().zip(contexts).enumerate() {
        context.recipients.retain(|user| events.iter().any(|event| may_hear(user, event)));
        recipients.extend(context.recipients.drain(..).map(|recipient| (index, recipient)));
        rooms.push((room_id, events, context));
    }
    if recipients.is_empty() {
        return Ok(0);
    }
    let mut listeners_of: Vec<Vec<Listener>> = rooms.iter().map(|_| Vec::new()).collect();
    for (index, listener) in listeners(conn, pool, recipients).await? {
        if let Some(listeners) = listeners_of.get_mut(index) {
            listeners.push(listener);
        }
    }
    let shared = Shared::new(server_name)?;
    let mut rows = Vec::new();
    for ((room_id, events, context), listeners) in rooms.into_iter().zip(listeners_of) {
        if listeners.is_empty() {
            continue;
        }
        let room_id = RoomId::parse(&room_id).map_err(|e| Error::internal(format!("stored room id: {e}")))?;
        rows.extend(evaluate_room(&shared, &room_id, &events, &context, &listeners).await?);
    }
    db::push_actions::insert(conn, &rows).await?;
    Ok(rows.len())
}

/// One local user who may hear of the room's events, with what their rules need.
struct Listener {
    user_id: OwnedUserId,
    recipient: Recipient,
    display_name: String,
    ruleset: Arc<Ruleset>,
    /// The user has never changed their rules (see [`Shared`]), and the lowercase form of
    /// their id, to look for it in events.
    on_defaults: bool,
    lowercase_id: String,
}

/// One evaluation of the server-default rules stands for every user on them whom the event
/// does not name. Those rules depend on the user only through their id (`invite_for_me`
/// matches it against the state key, `is_user_mention` looks for it in `m.mentions`; no
/// default rule reads the display name — a unit test holds ruma to that): where the id is
/// nowhere in the event, the result is the same for every such user. Matching is
/// case-insensitive in places, so the event is searched in lowercase; an id that JSON would
/// escape is never shared.
struct Shared {
    placeholder: OwnedUserId,
    ruleset: Ruleset,
}

impl Shared {
    fn new(server_name: &ServerName) -> Result<Shared> {
        let placeholder = UserId::parse(format!("@_hearth_push_rules:{server_name}"))
            .map_err(|e| Error::internal(format!("placeholder user id: {e}")))?;
        let ruleset = Ruleset::server_default(&placeholder);
        Ok(Shared { placeholder, ruleset })
    }

    fn covers(listener: &Listener, lowercase_event: &str) -> bool {
        listener.on_defaults
            && !listener.lowercase_id.contains(['"', '\\'])
            && !lowercase_event.contains(&listener.lowercase_id)
    }
}

/// What the events of one room notify, for each of its `listeners` (local members who may
/// hear of some of them).
async fn evaluate_room(
    shared: &Shared,
    room_id: &RoomId,
    events: &[NewEvent],
    room: &PushContext,
    listeners: &[Listener],
) -> Result<Vec<PushAction>> {
    let member_count = UInt::try_from(room.joined_members.max(0)).unwrap_or_default();
    let power_levels = power_levels(room.create_json.as_deref(), room.power_levels_json.as_deref());
    let mut context =
        PushConditionRoomCtx::new(room_id.to_owned(), member_count, shared.placeholder.clone(), String::new());
    if let Some(power_levels) = power_levels {
        context = context.with_power_levels(power_levels);
    }
    let mut rows = Vec::new();
    for event in events {
        let facts: EventFacts = serde_json::from_str(&event.json).unwrap_or_default();
        let invitee = facts.invitee(&event.event_type);
        // An invitee hears only of their own invite.
        let hears = |user: &Recipient| {
            may_hear(user, event) && (user.membership == "join" || invitee == Some(user.user_id.as_str()))
        };
        // Rules are evaluated only for an event someone hears of: of a new room's first events
        // (create, power levels, rules, the invite, a first message) the invitee hears of one.
        if !listeners.iter().any(|listener| hears(&listener.recipient)) {
            continue;
        }
        let Ok(raw) = serde_json::value::RawValue::from_string(event.json.clone()) else { continue };
        let raw: Raw<AnySyncTimelineEvent> = Raw::from_json(raw);
        let flattened = FlattenedJson::from_raw(&raw);
        let thread_id = facts.thread_root().unwrap_or(MAIN_TIMELINE).to_owned();
        let lowercase_event = event.json.to_lowercase();
        let shared_actions = match lowercase_event.contains(&shared.placeholder.as_str().to_lowercase()) {
            true => None,
            false => {
                context.user_id.clone_from(&shared.placeholder);
                context.user_display_name.clear();
                Some(Decision::of(first_match(&shared.ruleset, &flattened, &context).await)?)
            }
        };
        for listener in listeners {
            let user = &listener.recipient;
            if !hears(user) {
                continue;
            }
            let own;
            let decision = match &shared_actions {
                Some(decision) if Shared::covers(listener, &lowercase_event) => decision,
                _ => {
                    context.user_id.clone_from(&listener.user_id);
                    context.user_display_name.clone_from(&listener.display_name);
                    own = Decision::of(first_match(&listener.ruleset, &flattened, &context).await)?;
                    &own
                }
            };
            if !decision.notify && !decision.highlight {
                continue;
            }
            rows.push(PushAction {
                user_id: user.user_id.clone(),
                room_id: room_id.to_string(),
                event_nid: event.event_nid,
                event_id: event.event_id.clone(),
                stream_position: event.stream_position,
                sender: event.sender.clone(),
                thread_id: thread_id.clone(),
                notify: decision.notify,
                highlight: decision.highlight,
                actions: decision.actions.clone(),
                ts: event.origin_server_ts,
            });
        }
    }
    Ok(rows)
}

/// Whether `user` may hear of `event`, all but the invitee's condition (which needs the
/// event's content). Spec: no notification for one's own events; none from ignored users
/// either ("Ignoring Users": their events are not sent to the client); a member hears of
/// events since their latest join.
fn may_hear(user: &Recipient, event: &NewEvent) -> bool {
    user.user_id != event.sender
        && !user.ignored_senders.contains(&event.sender)
        && (user.membership != "join" || user.joined_position <= event.stream_position)
}

/// What a rule's actions mean for the rows.
struct Decision {
    notify: bool,
    highlight: bool,
    actions: serde_json::Value,
}

impl Decision {
    fn of(actions: &[Action]) -> Result<Decision> {
        let notify = actions.iter().any(Action::should_notify);
        let highlight = actions.iter().any(Action::is_highlight);
        let actions = match notify || highlight {
            true => serde_json::to_value(actions).map_err(|e| Error::internal(format!("push actions: {e}")))?,
            false => serde_json::Value::Null,
        };
        Ok(Decision { notify, highlight, actions })
    }
}

/// The actions of the first rule that applies (ruma's `Ruleset::get_actions`, with the event
/// flattened once for all members rather than once per member).
async fn first_match<'a>(ruleset: &'a Ruleset, event: &FlattenedJson, context: &PushConditionRoomCtx) -> &'a [Action] {
    for rule in ruleset {
        if rule.applies(event, context).await {
            return rule.actions();
        }
    }
    &[]
}

/// The recipients with their display names and rule sets, from the caches where they are
/// there and in one statement each where not.
async fn listeners(
    conn: &mut PgConnection,
    pool: &Store,
    recipients: Vec<(usize, Recipient)>,
) -> Result<Vec<(usize, Listener)>> {
    let facts = pool.cache::<PushFacts>();
    let mut names: HashMap<i64, Option<String>> = HashMap::new();
    let mut missing_names = Vec::new();
    for (_, recipient) in &recipients {
        match facts.display_names.get(&recipient.member_event_nid) {
            Some(name) => {
                names.insert(recipient.member_event_nid, name);
            }
            None => missing_names.push(recipient.member_event_nid),
        }
    }
    if !missing_names.is_empty() {
        let found: HashMap<i64, Option<String>> =
            db::push_actions::display_names(&mut *conn, &missing_names).await?.into_iter().collect();
        for nid in missing_names {
            let name = found.get(&nid).cloned().flatten();
            facts.display_names.insert(nid, name.clone());
            names.insert(nid, name);
        }
    }

    // A user in several of the rooms is one rule set.
    let mut rulesets: HashMap<String, Arc<Ruleset>> = HashMap::new();
    let mut missing_rules = HashSet::new();
    for (_, recipient) in &recipients {
        match facts.rulesets.get(&(recipient.user_id.clone(), recipient.rules_version)) {
            Some(ruleset) => {
                rulesets.insert(recipient.user_id.clone(), ruleset);
            }
            None => {
                missing_rules.insert(recipient.user_id.clone());
            }
        }
    }
    if !missing_rules.is_empty() {
        // Users who never changed their rules have none stored: only the others are read.
        let mut changed: Vec<String> = recipients
            .iter()
            .filter(|(_, r)| r.rules_version.is_some() && missing_rules.contains(&r.user_id))
            .map(|(_, r)| r.user_id.clone())
            .collect();
        changed.sort_unstable();
        changed.dedup();
        let mut stored: HashMap<String, Vec<db::push_rules::StoredRule>> = HashMap::new();
        if !changed.is_empty() {
            for row in db::push_rules::for_users(&mut *conn, &changed).await? {
                stored.entry(row.user_id).or_default().push(row.stored);
            }
        }
        for (_, recipient) in recipients.iter().filter(|(_, r)| missing_rules.contains(&r.user_id)) {
            if rulesets.contains_key(&recipient.user_id) {
                continue;
            }
            let Ok(user_id) = UserId::parse(&recipient.user_id) else { continue };
            let ruleset =
                Arc::new(assemble(&user_id, stored.get(&recipient.user_id).map(Vec::as_slice).unwrap_or_default()));
            facts.rulesets.insert((recipient.user_id.clone(), recipient.rules_version), ruleset.clone());
            rulesets.insert(recipient.user_id.clone(), ruleset);
        }
    }

    Ok(recipients
        .into_iter()
        .filter_map(|(index, recipient)| {
            let user_id = UserId::parse(&recipient.user_id).ok()?;
            let ruleset = rulesets.get(&recipient.user_id)?.clone();
            let display_name = names.get(&recipient.member_event_nid).cloned().flatten().unwrap_or_default();
            let on_defaults = recipient.rules_version.is_none();
            let lowercase_id = recipient.user_id.to_lowercase();
            Some((index, Listener { user_id, recipient, display_name, ruleset, on_defaults, lowercase_id }))
        })
        .collect())
}

/// The room's power levels as the `sender_notification_permission` condition needs them
/// (`None` when the state does not parse: such conditions then never apply).
fn power_levels(create_json: Option<&str>, power_levels_json: Option<&str>) -> Option<PushConditionPowerLevelsCtx> {
    let create: serde_json::Value = serde_json::from_str(create_json?).ok()?;
    let version = create["content"]["room_version"].as_str().unwrap_or("1");
    let rules = RoomVersionId::try_from(version).ok()?.rules()?;
    let mut creators: Vec<OwnedUserId> =
        create["sender"].as_str().and_then(|s| UserId::parse(s).ok()).into_iter().collect();
    if rules.authorization.explicitly_privilege_room_creators {
        let additional = create["content"]["additional_creators"].as_array().into_iter().flatten();
        creators.extend(additional.filter_map(|user| user.as_str().and_then(|s| UserId::parse(s).ok())));
    }
    let source = match power_levels_json {
        Some(json) => {
            let event: PowerLevelsEvent = serde_json::from_str(json).ok()?;
            RoomPowerLevelsSource::Original(event.content)
        }
        None => RoomPowerLevelsSource::None,
    };
    Some(RoomPowerLevels::new(source, &rules.authorization, creators).into())
}

#[derive(Deserialize)]
struct PowerLevelsEvent {
    content: RoomPowerLevelsEventContent,
}

/// The few fields of an event that decide who hears of it and in which thread.
#[derive(Default, Deserialize)]
struct EventFacts {
    #[serde(default)]
    state_key: Option<String>,
    #[serde(default)]
    content: FactsContent,
}

#[derive(Default, Deserialize)]
struct FactsContent {
    #[serde(default)]
    membership: Option<String>,
    #[serde(rename = "m.relates_to", default)]
    relates_to: Option<Relation>,
}

#[derive(Deserialize)]
struct Relation {
    #[serde(default)]
    rel_type: Option<String>,
    #[serde(default)]
    event_id: Option<String>,
}

impl EventFacts {
    /// The user an invite is for.
    fn invitee(&self, event_type: &str) -> Option<&str> {
        let is_invite = event_type == "m.room.member" && self.content.membership.as_deref() == Some("invite");
        self.state_key.as_deref().filter(|_| is_invite)
    }

    fn thread_root(&self) -> Option<&str> {
        let relation = self.content.relates_to.as_ref()?;
        relation.event_id.as_deref().filter(|_| relation.rel_type.as_deref() == Some("m.thread"))
    }
}

#[cfg(test)]
mod tests {
    use ruma::push::Ruleset;
    use ruma::user_id;

    /// What [`super::Shared`] relies on: of the server-default rules only these two name the
    /// user, and none reads the display name. A ruma upgrade that changes this fails here.
    #[test]
    fn default_rules_depend_on_the_user_only_through_their_id_in_two_rules() {
        let user = user_id!("@someone:example.org");
        let rules = serde_json::to_value(Ruleset::server_default(user)).expect("rules serialise");
        let mut naming = Vec::new();
        for rule in
            rules.as_object().expect("kinds").values().flat_map(|kind| kind.as_array().cloned().unwrap_or_default())
        {
            let text = rule.to_string();
            assert!(!text.contains("contains_display_name"), "{rule}");
            if text.contains(user.as_str()) {
                naming.push(rule["rule_id"].as_str().expect("rule_id").to_owned());
            }
        }
        assert_eq!(naming, [".m.rule.invite_for_me", ".m.rule.is_user_mention"]);
    }
}
