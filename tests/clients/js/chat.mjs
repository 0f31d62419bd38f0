// Two people chatting with matrix-js-sdk: create, invite, join; send, reply, edit, react,
// redact; typing and read receipts; leave. Each step checks what the *other* client shows.
import { scenario, check, checkEqual, until, aliceAndBob, messages, sdk } from "./lib.mjs";

await scenario("chat", async (t) => {
    const [alice, bob] = await t.step("alice and bob log in and start syncing", aliceAndBob);
    const aliceId = alice.getUserId();
    const bobId = bob.getUserId();
    const aliceRoom = () => alice.getRoom(roomId);
    const bobRoom = () => bob.getRoom(roomId);
    const event = (client, id) => client.getRoom(roomId)?.findEventById(id);

    const roomId = await t.step("alice creates a room and invites bob; bob sees the invitation", async () => {
        const { room_id } = await alice.createRoom({ name: "Tea", preset: sdk.Preset.PrivateChat, invite: [bobId] });
        await until(
            "bob's client to show the invitation",
            () => bob.getRoom(room_id)?.getMyMembership() === "invite",
            () => ({ membership: bob.getRoom(room_id)?.getMyMembership() ?? "no room" }),
        );
        return room_id;
    });

    await t.step("bob joins; alice sees him join", async () => {
        await bob.joinRoom(roomId);
        await until(
            "alice's client to show bob as joined",
            () => aliceRoom()?.getMember(bobId)?.membership === "join",
            () => ({ bob_in_alice_view: aliceRoom()?.getMember(bobId)?.membership ?? null }),
        );
        await until("bob's room to be joined with its name", () => bobRoom()?.getMyMembership() === "join" && bobRoom().name === "Tea",
            () => ({ membership: bobRoom()?.getMyMembership(), name: bobRoom()?.name }));
    });

    const hello = await t.step("alice sends a message; bob reads it", async () => {
        const { event_id } = await alice.sendTextMessage(roomId, "hello bob");
        await until("the message in bob's timeline", () => event(bob, event_id), () => messages(bob, roomId));
        checkEqual(event(bob, event_id).getSender(), aliceId, "sender");
        checkEqual(event(bob, event_id).getContent().body, "hello bob", "body");
        return event_id;
    });

    await t.step("bob replies; alice sees the reply pointing at her message", async () => {
        const { event_id } = await bob.sendMessage(roomId, {
            msgtype: "m.text",
            body: "hi alice",
            "m.relates_to": { "m.in_reply_to": { event_id: hello } },
        });
        const reply = await until("the reply in alice's timeline", () => event(alice, event_id), () => messages(alice, roomId));
        checkEqual(reply.replyEventId, hello, "the reply's target");
        checkEqual(reply.getContent().body, "hi alice", "reply body");
    });

    await t.step("alice edits her message; bob sees the new text", async () => {
        const { event_id } = await alice.sendMessage(roomId, {
            msgtype: "m.text",
            body: "* hello bob, how are you?",
            "m.new_content": { msgtype: "m.text", body: "hello bob, how are you?" },
            "m.relates_to": { rel_type: "m.replace", event_id: hello },
        });
        await until(
            "bob's view of the message to show the edit",
            () => event(bob, hello)?.replacingEventId() === event_id,
            () => ({ original: event(bob, hello)?.getContent(), replacing: event(bob, hello)?.replacingEventId() ?? null }),
        );
        checkEqual(event(bob, hello).getContent().body, "hello bob, how are you?", "edited body as bob sees it");
    });

    await t.step("bob reacts; alice sees the annotation", async () => {
        await bob.sendEvent(roomId, "m.reaction", { "m.relates_to": { rel_type: "m.annotation", event_id: hello, key: "👍" } });
        const annotations = () =>
            aliceRoom()
                ?.relations.getChildEventsForEvent(hello, "m.annotation", "m.reaction")
                ?.getSortedAnnotationsByKey()
                ?.map(([key, events]) => [key, [...events].map((e) => e.getSender())]);
        await until("the reaction on alice's message", () => annotations()?.length, () => annotations() ?? []);
        checkEqual(annotations(), [["👍", [bobId]]], "annotations on alice's message");
    });

    await t.step("alice sends a mistake and redacts it; bob sees it redacted", async () => {
        const { event_id } = await alice.sendTextMessage(roomId, "oops, wrong room");
        await until("the mistake in bob's timeline", () => event(bob, event_id), () => messages(bob, roomId));
        await alice.redactEvent(roomId, event_id, undefined, { reason: "wrong room" });
        await until(
            "bob's view of the mistake to be redacted",
            () => event(bob, event_id)?.isRedacted(),
            () => ({ content: event(bob, event_id)?.getContent(), redacted: event(bob, event_id)?.isRedacted() }),
        );
        checkEqual(event(bob, event_id).getContent(), {}, "content after redaction");
        // The SDK redacts its copy when the redaction arrives; the server's copy must agree.
        const served = await bob.fetchRoomEvent(roomId, event_id);
        checkEqual([served.content, served.unsigned?.redacted_because?.type], [{}, "m.room.redaction"], "the event as the server now serves it");
    });

    await t.step("alice types; bob sees her typing, then stop", async () => {
        await alice.sendTyping(roomId, true, 20000);
        await until("alice typing in bob's view", () => bobRoom().getMember(aliceId)?.typing === true,
            () => ({ typing: bobRoom().getMember(aliceId)?.typing }));
        await alice.sendTyping(roomId, false);
        await until("alice no longer typing in bob's view", () => bobRoom().getMember(aliceId)?.typing === false,
            () => ({ typing: bobRoom().getMember(aliceId)?.typing }));
    });

    await t.step("bob reads alice's latest message; alice sees his read receipt", async () => {
        const { event_id } = await alice.sendTextMessage(roomId, "did you read this?");
        const latest = await until("the question in bob's timeline", () => event(bob, event_id), () => messages(bob, roomId));
        await bob.sendReadReceipt(latest);
        // Ignoring synthesized receipts: only the receipt Hearth delivered counts.
        await until(
            "bob's read receipt in alice's view",
            () => aliceRoom().getEventReadUpTo(bobId, true) === event_id,
            () => ({ bob_read_up_to: aliceRoom().getEventReadUpTo(bobId, true) }),
        );
        check(aliceRoom().hasUserReadEvent(bobId, hello), "reading the latest implies the earlier ones are read");
    });

    await t.step("bob leaves; both clients show it", async () => {
        await bob.leave(roomId);
        await until("alice to see bob leave", () => aliceRoom().getMember(bobId)?.membership === "leave",
            () => ({ bob_in_alice_view: aliceRoom().getMember(bobId)?.membership }));
        await until("bob's room to show him as left", () => bobRoom()?.getMyMembership() === "leave",
            () => ({ membership: bobRoom()?.getMyMembership() ?? "no room" }));
        checkEqual(aliceRoom().getJoinedMemberCount(), 1, "joined members left in alice's view");
    });
});
