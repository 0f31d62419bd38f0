"""What a person sets about themselves with matrix-nio: profile, presence and push rules,
each checked from another client (bob's, or alice's second device)."""

from nio import PushNotify, PushRuleKind, PushSetTweak, RoomPreset

from lib import check, check_equal, logged_in, ok, scenario


async def body(t):
    async def share_a_room():
        alice, bob = await logged_in("alice"), await logged_in("bob")
        for client in (alice, bob):
            await client.sync_once(timeout_ms=0, full_state=True)
        room = ok(await alice.room_create(name="Garden", preset=RoomPreset.private_chat, invite=[bob.user_id]), "room_create")
        await bob.sync_until("bob's invitation", lambda: room.room_id in bob.invited_rooms)
        ok(await bob.join(room.room_id), "join")
        await alice.sync_until("bob joined", lambda: bob.user_id in alice.members(room.room_id))
        await bob.sync_until("the room joined", lambda: bob.room(room.room_id))
        return alice, bob, room.room_id

    alice, bob, room_id = await t.step("alice and bob log in and share a room", share_a_room())

    async def profile():
        ok(await alice.set_displayname("Alice Liddell"), "set_displayname")
        ok(await alice.set_avatar("mxc://hearth.test/white-rabbit"), "set_avatar")
        seen = ok(await bob.get_profile(alice.user_id), "get_profile")
        check_equal((seen.displayname, seen.avatar_url), ("Alice Liddell", "mxc://hearth.test/white-rabbit"), "alice's profile as bob reads it")
        member = lambda: bob.room(room_id).users.get(alice.user_id)
        await bob.sync_until("alice's new name and avatar in bob's member list",
                             lambda: member() and (member().display_name, member().avatar_url) == ("Alice Liddell", "mxc://hearth.test/white-rabbit"),
                             lambda: member() and (member().display_name, member().avatar_url))

    await t.step("alice changes her display name and avatar; bob sees them", profile())

    async def presence():
        member = lambda: bob.room(room_id).users.get(alice.user_id)
        seen = lambda: member() and (member().presence, member().status_msg)
        ok(await alice.set_presence("online", "in the garden"), "set_presence online")
        await bob.sync_until("alice online", lambda: seen() == ("online", "in the garden"), seen)
        ok(await alice.set_presence("unavailable", "having tea"), "set_presence unavailable")
        await bob.sync_until("alice away", lambda: seen() == ("unavailable", "having tea"), seen)
        asked = ok(await bob.get_presence(alice.user_id), "get_presence")
        check_equal((asked.presence, asked.status_msg), ("unavailable", "having tea"), "GET presence")

    await t.step("alice sets her presence; bob sees it through /sync and asks for it", presence())

    async def second_device():
        served = alice.rule_ids()
        check(served is not None, "alice's first sync carried m.push_rules account data")
        for kind, rule_id in (("override", ".m.rule.master"), ("override", ".m.rule.is_user_mention"), ("underride", ".m.rule.message")):
            check(rule_id in served[kind], f"the default rule {rule_id} is served", served)
        device = await logged_in("alice")
        await device.sync_once(timeout_ms=0, full_state=True)
        check_equal(device.rule_ids(), served, "rule ids on the second device")
        return device

    second = await t.step("alice's first sync has the default push rules, and so does her second device", second_device())

    async def add_rule():
        ok(await alice.set_pushrule("global", PushRuleKind.content, "teapot", actions=[PushNotify(), PushSetTweak("highlight", True)],
                                    pattern="teapot"), "set_pushrule")
        rule = await second.sync_until("the keyword rule on alice's other device", lambda: second.rule("content", "teapot"), second.rule_ids)
        check_equal((rule.pattern, rule.enabled, rule.default), ("teapot", True, False), "the new rule")

    await t.step("alice adds a keyword rule; her other device syncs it", add_rule())

    async def highlight():
        ok(await bob.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": "shall I put the teapot on?"}), "room_send")
        counts = lambda: (alice.room(room_id).unread_notifications, alice.room(room_id).unread_highlights)
        await alice.sync_until("a highlight in alice's unread counts", lambda: counts()[1] == 1, counts)

    await t.step("bob says the keyword; alice's room counts a highlight", highlight())

    async def disable_and_delete():
        ok(await alice.enable_pushrule("global", PushRuleKind.content, "teapot", False), "enable_pushrule")
        await second.sync_until("the rule disabled on the other device",
                                lambda: second.rule("content", "teapot") and not second.rule("content", "teapot").enabled, second.rule_ids)
        ok(await alice.delete_pushrule("global", PushRuleKind.content, "teapot"), "delete_pushrule")
        await second.sync_until("the rule gone from the other device", lambda: second.rule("content", "teapot") is None, second.rule_ids)

    await t.step("alice disables the rule, then deletes it; her other device follows", disable_and_delete())


scenario("account", body)
