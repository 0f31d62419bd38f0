// What a person sets about themselves with matrix-js-sdk: profile, presence and push rules,
// each checked from another client (bob's, or alice's second device).
import { scenario, check, checkEqual, until, aliceAndBob, loggedIn, start, sdk } from "./lib.mjs";

await scenario("account", async (t) => {
    const [alice, bob] = await t.step("alice and bob log in and start syncing", aliceAndBob);
    const aliceId = alice.getUserId();
    const roomId = await t.step("alice creates a room that bob joins", async () => {
        const { room_id } = await alice.createRoom({ name: "Garden", preset: sdk.Preset.PrivateChat, invite: [bob.getUserId()] });
        await until("bob's invitation", () => bob.getRoom(room_id)?.getMyMembership() === "invite");
        await bob.joinRoom(room_id);
        await until("bob joined", () => bob.getRoom(room_id)?.getMyMembership() === "join");
        return room_id;
    });

    await t.step("alice changes her display name and avatar; bob sees them", async () => {
        await alice.setDisplayName("Alice Liddell");
        await alice.setAvatarUrl("mxc://hearth.test/white-rabbit");
        const profile = await bob.getProfileInfo(aliceId);
        checkEqual(profile, { displayname: "Alice Liddell", avatar_url: "mxc://hearth.test/white-rabbit" }, "alice's profile as bob reads it");
        // Synapse (and so every client) expects the change in each room's member list too.
        const member = () => bob.getRoom(roomId).getMember(aliceId);
        await until(
            "alice's new name and avatar in bob's member list",
            () => member()?.name === "Alice Liddell" && member()?.getMxcAvatarUrl() === "mxc://hearth.test/white-rabbit",
            () => ({ name: member()?.name, avatar: member()?.getMxcAvatarUrl() }),
        );
    });

    await t.step("alice sets her presence; bob sees it through /sync and asks for it", async () => {
        await alice.setPresence({ presence: "online", status_msg: "in the garden" });
        const seen = () => ({ presence: bob.getUser(aliceId)?.presence, status: bob.getUser(aliceId)?.presenceStatusMsg });
        await until("alice online in bob's view", () => seen().presence === "online" && seen().status === "in the garden", seen);
        // Going idle as Element does: the syncs say so too (a sync that says `online`, the
        // default, marks the user online again, as on Synapse).
        await alice.setSyncPresence(sdk.SetPresence.Unavailable);
        await alice.setPresence({ presence: "unavailable", status_msg: "having tea" });
        await until("alice away in bob's view", () => seen().presence === "unavailable" && seen().status === "having tea", seen);
        const asked = await bob.getPresence(aliceId);
        checkEqual([asked.presence, asked.status_msg], ["unavailable", "having tea"], "GET presence");
    });

    const second = await t.step("alice starts a second device; it gets the same push rules", async () => {
        // The SDK fills in default rules a server lacks, so read the server's own answer.
        const served = ruleIds(await alice.http.authedRequest(sdk.Method.Get, "/pushrules/"));
        for (const [kind, id] of [["override", ".m.rule.master"], ["override", ".m.rule.is_user_mention"], ["underride", ".m.rule.message"]]) {
            check(served[kind]?.includes(id), `GET /pushrules/ serves the default rule ${id}`, served);
        }
        const device = await loggedIn("alice");
        await start(device);
        checkEqual(ruleIds(device.pushRules), ruleIds(alice.pushRules), "rule ids on the second device");
        return device;
    });

    await t.step("alice adds a keyword rule; the server and her other device have it", async () => {
        await alice.addPushRule("global", sdk.PushRuleKind.ContentSpecific, "teapot", {
            pattern: "teapot",
            actions: ["notify", { set_tweak: "highlight" }],
        });
        const rules = await alice.getPushRules();
        const rule = rules.global.content.find((r) => r.rule_id === "teapot");
        checkEqual(rule && [rule.pattern, rule.enabled, rule.default], ["teapot", true, false], "the new rule as GET /pushrules/ returns it");
        await until(
            "the rule on alice's other device (m.push_rules account data through /sync)",
            () => second.pushRules?.global?.content?.some((r) => r.rule_id === "teapot"),
            () => ruleIds(second.pushRules),
        );
    });

    await t.step("bob says the keyword; alice's room counts a highlight", async () => {
        await bob.sendTextMessage(roomId, "shall I put the teapot on?");
        const counts = () => ({
            total: alice.getRoom(roomId).getUnreadNotificationCount("total"),
            highlight: alice.getRoom(roomId).getUnreadNotificationCount("highlight"),
        });
        await until("a highlight in alice's unread counts", () => counts().highlight === 1, counts);
    });

    await t.step("alice disables the rule, then deletes it; her other device follows", async () => {
        await alice.setPushRuleEnabled("global", sdk.PushRuleKind.ContentSpecific, "teapot", false);
        const rule = (await alice.getPushRules()).global.content.find((r) => r.rule_id === "teapot");
        checkEqual(rule?.enabled, false, "enabled after disabling");
        await until(
            "the disabled rule on the other device",
            () => second.pushRules.global.content.find((r) => r.rule_id === "teapot")?.enabled === false,
            () => second.pushRules.global.content,
        );
        await alice.deletePushRule("global", sdk.PushRuleKind.ContentSpecific, "teapot");
        const after = await alice.getPushRules();
        check(!after.global.content.some((r) => r.rule_id === "teapot"), "the rule is gone", after.global.content);
        await until(
            "the rule gone from the other device",
            () => !second.pushRules.global.content.some((r) => r.rule_id === "teapot"),
            () => ruleIds(second.pushRules),
        );
    });
});

function ruleIds(rules) {
    return Object.fromEntries(Object.entries(rules?.global ?? {}).map(([kind, list]) => [kind, (list ?? []).map((r) => r.rule_id)]));
}
