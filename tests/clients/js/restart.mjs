// Sync across a restart with matrix-js-sdk: alice's client keeps its sync in a file (as
// Element keeps it in IndexedDB), stops; bob sends while she is away; a new client started
// from that file resumes from its stored `next_batch` and gets exactly the missed messages.
import { scenario, check, checkEqual, until, passwordLogin, sessionClient, loggedIn, start, messages, FileStore, stateDir, sdk } from "./lib.mjs";
import { join } from "node:path";

const storePath = join(stateDir, "alice-sync.json");

await scenario("restart", async (t) => {
    const session = await t.step("alice logs in", () => passwordLogin("alice"));
    const bob = await t.step("bob logs in", () => loggedIn("bob"));

    const roomId = await t.step("alice's first run: a room with bob and two messages, then stop", async () => {
        const alice = sessionClient(session, new FileStore(storePath));
        await start(alice);
        const { room_id } = await alice.createRoom({ name: "Letters", preset: sdk.Preset.TrustedPrivateChat, invite: [bob.getUserId()] });
        await bob.joinRoom(room_id);
        await alice.sendTextMessage(room_id, "before 1");
        await alice.sendTextMessage(room_id, "before 2");
        await until(
            "alice's client to have synced both messages and bob's join",
            () =>
                messages(alice, room_id).filter((m) => !m.id.startsWith("~")).length === 2 &&
                alice.getRoom(room_id).getMember(bob.getUserId())?.membership === "join" &&
                alice.store.accumulator.getJSON().roomsData.join[room_id]?.timeline?.events?.some((e) => e.content?.body === "before 2"),
            () => messages(alice, room_id),
        );
        alice.stopClient();
        await alice.store.save();
        return room_id;
    });

    const missed = await t.step("bob sends three messages while alice is away", async () => {
        const sent = [];
        for (const body of ["while away 1", "while away 2", "while away 3"]) {
            sent.push((await bob.sendTextMessage(roomId, body)).event_id);
        }
        return sent;
    });

    await t.step("alice's new client restores from the file and /sync delivers exactly the missed messages", async () => {
        const store = new FileStore(storePath);
        const saved = await store.getSavedSyncToken();
        check(saved, "the file holds a sync token");
        const alice = sessionClient(session, store);
        await start(alice);
        await until(
            "the missed messages in alice's timeline",
            () => missed.every((id) => alice.getRoom(roomId)?.findEventById(id)),
            () => ({ timeline: messages(alice, roomId) }),
        );
        // What the server's /sync answers (not the cache) delivered to this client.
        const delivered = store.networkSyncs.flatMap((sync) =>
            (sync.rooms?.join?.[roomId]?.timeline?.events ?? []).map((e) => ({ id: e.event_id, type: e.type, body: e.content?.body })),
        );
        checkEqual(
            delivered.map((e) => e.id),
            missed,
            "timeline events /sync delivered after the restart (exactly bob's three, once each)",
        );
        const bodies = messages(alice, roomId).map((m) => m.body);
        checkEqual(bodies, ["before 1", "before 2", "while away 1", "while away 2", "while away 3"], "alice's timeline after the restart");
    });
});
