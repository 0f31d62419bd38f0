"""A new user with matrix-nio: registers, logs in, syncs, finds their room and chats in it,
then joins a public room found in the directory."""

import os
import time

from nio import RoomMessageText, RoomPreset, RoomVisibility

from lib import check, check_equal, logged_in, new_client, ok, scenario

USERNAME = f"newcomer{os.getpid()}"
PASSWORD = "a long enough passphrase"


async def body(t):
    registered = new_client(USERNAME)

    async def register():
        # nio offers m.login.dummy straight away, without a first 401 round.
        answer = ok(await registered.register(USERNAME, PASSWORD, device_name="nio registration"), "register")
        check(answer.user_id.startswith(f"@{USERNAME}:"), "registration returns the new user id", answer.user_id)
        check(registered.access_token, "nio holds the new session's token")
        return answer

    answer = await t.step("register (m.login.dummy)", register())

    async def create_and_greet():
        whoami = ok(await registered.whoami(), "whoami")
        check_equal(whoami.user_id, answer.user_id, "whoami")
        room = ok(await registered.room_create(name="First room", preset=RoomPreset.private_chat), "room_create")
        ok(await registered.room_send(room.room_id, "m.room.message", {"msgtype": "m.text", "body": "hello from registration"}), "room_send")
        ok(await registered.logout(), "logout")
        return room.room_id

    room_id = await t.step("the new account creates a room and says hello", create_and_greet())

    client = new_client(USERNAME)
    login_started = time.monotonic()

    async def login():
        session = ok(await client.login(PASSWORD, device_name="nio login"), "login")
        check_equal(session.user_id, answer.user_id, "login user_id")
        check(session.device_id != answer.device_id, "login creates a new device", session.device_id)

    await t.step("log in with the password", login())

    async def first_sync():
        await client.sync_once(timeout_ms=0, full_state=True)
        t.figure("login_to_first_synced_room_ms", round((time.monotonic() - login_started) * 1000))
        room = client.room(room_id)
        check(room is not None, "the room is in the first sync", list(client.rooms))
        check_equal(room.name, "First room", "room name")
        check_equal([m["body"] for m in client.messages(room_id) if m["type"] == "RoomMessageText"], ["hello from registration"], "messages")
        check(client.user_id in room.users, "the user is a member", list(room.users))

    await t.step("the first sync has the room with its name and message", first_sync())

    async def chat():
        sent = ok(await client.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": "and hello from nio"}), "room_send")
        event = await client.sync_until("the sent message in the timeline", lambda: client.event(room_id, sent.event_id), lambda: client.messages(room_id))
        check(isinstance(event, RoomMessageText) and event.body == "and hello from nio", "the message comes back as sent", repr(event))

    await t.step("a message sent now comes back through /sync", chat())

    async def lobby():
        alice = await logged_in("alice")
        alias_name = f"lobby{os.getpid()}"
        room = ok(await alice.room_create(visibility=RoomVisibility.public, alias=alias_name, name="Lobby",
                                          preset=RoomPreset.public_chat), "room_create")
        ok(await alice.room_send(room.room_id, "m.room.message", {"msgtype": "m.text", "body": "welcome, everyone"}), "room_send")
        directory = ok(await client.list_public_rooms(limit=50), "list_public_rooms")
        listed = next((r for r in directory.public_rooms if r.room_id == room.room_id), None)
        check(listed and (listed.canonical_alias or "").startswith(f"#{alias_name}:"), "the directory lists the room with its alias",
              [(r.room_id, r.canonical_alias) for r in directory.public_rooms])
        ok(await client.join(listed.canonical_alias), "join by alias")
        bodies = lambda: [m["body"] for m in client.messages(room.room_id)]
        await client.sync_until("the joined lobby with alice's welcome", lambda: "welcome, everyone" in bodies(), bodies)

    await t.step("finds alice's public room in the directory and joins it by its alias", lobby())


scenario("newcomer", body)
