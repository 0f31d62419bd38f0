"""Sync across a restart with matrix-nio: alice's client stores its session and sync token
in a file and closes; bob sends while she is away; a new client restored from the file syncs
from the stored token and gets exactly the missed messages, once each."""

import json
import os

from nio import RoomPreset

from lib import STATE_DIR, check_equal, logged_in, new_client, ok, scenario

SAVED = os.path.join(STATE_DIR, "alice-session.json")


async def body(t):
    bob = await t.step("bob logs in", logged_in("bob"))

    async def first_run():
        alice = await logged_in("alice")
        await alice.sync_once(timeout_ms=0, full_state=True)
        room = ok(await alice.room_create(name="Letters", preset=RoomPreset.trusted_private_chat, invite=[bob.user_id]), "room_create")
        ok(await bob.join(room.room_id), "join")
        for text in ("before 1", "before 2"):
            ok(await alice.room_send(room.room_id, "m.room.message", {"msgtype": "m.text", "body": text}), "room_send")
        bodies = lambda: [m["body"] for m in alice.messages(room.room_id) if m["type"] == "RoomMessageText"]
        await alice.sync_until("both messages and bob's join in alice's sync",
                               lambda: bodies() == ["before 1", "before 2"] and bob.user_id in alice.members(room.room_id), bodies)
        with open(SAVED, "w") as file:
            json.dump({"user_id": alice.user_id, "device_id": alice.device_id, "access_token": alice.access_token,
                       "next_batch": alice.next_batch, "room_id": room.room_id}, file)
        await alice.close()
        return room.room_id

    room_id = await t.step("alice's first run: a room with bob and two messages, then close", first_run())

    async def send_while_away():
        sent = []
        for text in ("while away 1", "while away 2", "while away 3"):
            sent.append(ok(await bob.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": text}), "room_send").event_id)
        return sent

    missed = await t.step("bob sends three messages while alice is away", send_while_away())

    async def second_run():
        with open(SAVED) as file:
            saved = json.load(file)
        alice = new_client(saved["user_id"], device_id=saved["device_id"])
        alice.restore_login(saved["user_id"], saved["device_id"], saved["access_token"])
        alice.next_batch = saved["next_batch"]
        delivered = lambda: [event_id for batch in alice.synced_batches for event_id in batch.get(room_id, [])]
        await alice.sync_until("the missed messages", lambda: set(missed) <= set(delivered()), delivered)
        check_equal(delivered(), missed, "timeline events /sync delivered after the restart (exactly bob's three, once each)")
        check_equal([m["body"] for m in alice.messages(room_id)], ["while away 1", "while away 2", "while away 3"], "what alice reads")

    await t.step("alice's new client resumes from the stored token and gets exactly the missed messages", second_run())


scenario("restart", body)
