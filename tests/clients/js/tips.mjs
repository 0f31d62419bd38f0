// A member tips a creator (bob, made one by the operator) in a room they share, through
// Hearth's tip API, as a client with a tip button would. The creator's client is matrix-js-sdk
// as Element runs it: it knows nothing of tips, and must show the tip as a message with its
// text (a `m.room.message` whose unknown msgtype falls back to its `body`).
import { scenario, checkEqual, until, aliceAndBob, messages, sdk, baseUrl } from "./lib.mjs";

await scenario("tips", async (t) => {
    const [alice, bob] = await t.step("alice and bob log in and start syncing", aliceAndBob);
    const roomId = await t.step("bob opens a public room; alice joins it", async () => {
        const { room_id } = await bob.createRoom({ name: "Live", preset: sdk.Preset.PublicChat });
        await alice.joinRoom(room_id);
        await until(
            "bob's client to show alice as joined",
            () => bob.getRoom(room_id)?.getMember(alice.getUserId())?.membership === "join",
            () => ({ alice_in_bob_view: bob.getRoom(room_id)?.getMember(alice.getUserId())?.membership ?? null }),
        );
        return room_id;
    });

    await t.step("alice tips bob 5.00 USD; bob's client shows the tip's text", async () => {
        const response = await fetch(`${baseUrl}/_hearth/client/v1/rooms/${encodeURIComponent(roomId)}/tip/js-tip-1`, {
            method: "PUT",
            headers: { Authorization: `Bearer ${alice.getAccessToken()}`, "Content-Type": "application/json" },
            body: JSON.stringify({ to: bob.getUserId(), amount: "5.00", currency: "USD", message: "great stream!" }),
        });
        const answer = await response.json();
        checkEqual([response.status, typeof answer.event_id, typeof answer.tip_id], [200, "string", "string"],
            `the tip's answer ${JSON.stringify(answer)}`);
        const shown = await until(
            "the tip in bob's timeline",
            () => bob.getRoom(roomId)?.findEventById(answer.event_id),
            () => messages(bob, roomId),
        );
        checkEqual(shown.getType(), "m.room.message", "the tip's event type");
        checkEqual(shown.getSender(), alice.getUserId(), "who tipped");
        checkEqual(shown.getContent().body, "alice tipped bob 5.00 USD: great stream!", "the text bob's client shows");
    });
});
