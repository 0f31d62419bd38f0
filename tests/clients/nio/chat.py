"""Two people chatting with matrix-nio: create, invite, join; send, reply, edit, react,
redact; typing and read receipts; leave and forget. Each step checks what the *other* client's
syncs show."""

from nio import ReactionEvent, RedactedEvent, RedactionEvent, RoomGetEventResponse, RoomMessageText, RoomPreset

from lib import check, check_equal, logged_in, ok, scenario


def text(body, **extra):
    return {"msgtype": "m.text", "body": body, **extra}


async def body(t):
    async def log_in_both():
        clients = [await logged_in("alice"), await logged_in("bob")]
        for client in clients:
            await client.sync_once(timeout_ms=0, full_state=True)
        return clients

    alice, bob = await t.step("alice and bob log in and sync", log_in_both())

    async def create_and_invite():
        room = ok(await alice.room_create(name="Tea", preset=RoomPreset.private_chat, invite=[bob.user_id]), "room_create")
        await bob.sync_until("bob's invitation", lambda: room.room_id in bob.invited_rooms, lambda: list(bob.invited_rooms))
        return room.room_id

    room_id = await t.step("alice creates a room and invites bob; bob's sync shows the invitation", create_and_invite())

    async def join():
        ok(await bob.join(room_id), "join")
        await alice.sync_until("bob as a member in alice's room", lambda: bob.user_id in alice.members(room_id),
                               lambda: alice.members(room_id))
        await bob.sync_until("the joined room with its name", lambda: bob.room(room_id) and bob.room(room_id).name == "Tea",
                             lambda: {"rooms": list(bob.rooms), "invited": list(bob.invited_rooms)})

    await t.step("bob joins; alice sees him join", join())

    async def say_hello():
        sent = ok(await alice.room_send(room_id, "m.room.message", text("hello bob")), "room_send")
        event = await bob.sync_until("the message in bob's timeline", lambda: bob.event(room_id, sent.event_id), lambda: bob.messages(room_id))
        check(isinstance(event, RoomMessageText), "a text message", type(event).__name__)
        check_equal((event.sender, event.body), (alice.user_id, "hello bob"), "sender and body")
        return sent.event_id

    hello = await t.step("alice sends a message; bob reads it", say_hello())

    async def reply():
        sent = ok(await bob.room_send(room_id, "m.room.message", text("hi alice", **{"m.relates_to": {"m.in_reply_to": {"event_id": hello}}})), "reply")
        event = await alice.sync_until("the reply in alice's timeline", lambda: alice.event(room_id, sent.event_id), lambda: alice.messages(room_id))
        check_equal(event.source["content"]["m.relates_to"], {"m.in_reply_to": {"event_id": hello}}, "the reply's relation")

    await t.step("bob replies; alice sees the reply pointing at her message", reply())

    async def edit():
        content = text("* hello bob, how are you?", **{
            "m.new_content": text("hello bob, how are you?"),
            "m.relates_to": {"rel_type": "m.replace", "event_id": hello},
        })
        sent = ok(await alice.room_send(room_id, "m.room.message", content), "edit")
        event = await bob.sync_until("the edit in bob's timeline", lambda: bob.event(room_id, sent.event_id), lambda: bob.messages(room_id))
        check_equal(event.source["content"]["m.new_content"]["body"], "hello bob, how are you?", "the new text")
        # Fetching the original, bob gets the edit bundled with it (what a client renders).
        original = ok(await bob.room_get_event(room_id, hello), "room_get_event")
        relations = original.event.source.get("unsigned", {}).get("m.relations", {})
        check_equal(relations.get("m.replace", {}).get("event_id"), sent.event_id, "the edit bundled with the original")

    await t.step("alice edits her message; bob sees the edit", edit())

    async def react():
        ok(await bob.room_send(room_id, "m.reaction", {"m.relates_to": {"rel_type": "m.annotation", "event_id": hello, "key": "👍"}}), "reaction")
        reactions = lambda: [(e.sender, e.reacts_to, e.key) for e in alice.timelines.get(room_id, []) if isinstance(e, ReactionEvent)]
        await alice.sync_until("the reaction in alice's timeline", reactions, reactions)
        check_equal(reactions(), [(bob.user_id, hello, "👍")], "reactions alice sees")

    await t.step("bob reacts; alice sees the annotation", react())

    async def redact():
        mistake = ok(await alice.room_send(room_id, "m.room.message", text("oops, wrong room")), "room_send").event_id
        await bob.sync_until("the mistake in bob's timeline", lambda: bob.event(room_id, mistake), lambda: bob.messages(room_id))
        ok(await alice.room_redact(room_id, mistake, reason="wrong room"), "room_redact")
        redactions = lambda: [e.redacts for e in bob.timelines.get(room_id, []) if isinstance(e, RedactionEvent)]
        await bob.sync_until("the redaction in bob's timeline", lambda: mistake in redactions(), redactions)
        fetched = ok(await bob.room_get_event(room_id, mistake), "room_get_event")
        check(isinstance(fetched, RoomGetEventResponse) and isinstance(fetched.event, RedactedEvent),
              "the mistake, fetched again, is redacted", repr(fetched.event))
        check_equal(fetched.event.source["content"], {}, "content after redaction")

    await t.step("alice sends a mistake and redacts it; bob sees it redacted", redact())

    async def typing():
        ok(await alice.room_typing(room_id, True, timeout=20000), "typing on")
        await bob.sync_until("alice typing", lambda: alice.user_id in bob.room(room_id).typing_users, lambda: bob.room(room_id).typing_users)
        ok(await alice.room_typing(room_id, False), "typing off")
        await bob.sync_until("alice no longer typing", lambda: alice.user_id not in bob.room(room_id).typing_users,
                             lambda: bob.room(room_id).typing_users)

    await t.step("alice types; bob sees her typing, then stop", typing())

    async def receipt():
        question = ok(await alice.room_send(room_id, "m.room.message", text("did you read this?")), "room_send").event_id
        await bob.sync_until("the question in bob's timeline", lambda: bob.event(room_id, question), lambda: bob.messages(room_id))
        ok(await bob.update_receipt_marker(room_id, question), "update_receipt_marker")
        # nio sends the receipt for the main timeline (`thread_id: main`).
        seen = lambda: {
            "unthreaded": getattr(alice.room(room_id).read_receipts.get(bob.user_id), "event_id", None),
            "threaded": {k: r.event_id for k, r in alice.room(room_id).threaded_read_receipts.get(bob.user_id, {}).items()},
        }
        await alice.sync_until("bob's receipt in alice's room", lambda: seen()["threaded"].get("main") == question, seen)
        ok(await bob.room_read_markers(room_id, fully_read_event=question, read_event=question), "room_read_markers")
        await alice.sync_until("bob's unthreaded receipt too", lambda: seen()["unthreaded"] == question, seen)

    await t.step("bob reads alice's latest message; alice sees his read receipts", receipt())

    async def leave():
        ok(await bob.room_leave(room_id), "room_leave")
        await alice.sync_until("bob gone from alice's member list", lambda: bob.user_id not in alice.members(room_id),
                               lambda: alice.members(room_id))
        await bob.sync_until("the room in bob's left rooms", lambda: room_id in bob.left_rooms, lambda: sorted(bob.left_rooms))
        ok(await bob.room_forget(room_id), "room_forget")
        joined = ok(await bob.joined_rooms(), "joined_rooms")
        check(room_id not in joined.rooms, "the room is no longer among bob's joined rooms", joined.rooms)

    await t.step("bob leaves and forgets the room; both clients show it", leave())


scenario("chat", body)
