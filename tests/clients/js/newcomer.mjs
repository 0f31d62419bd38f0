// A new user with matrix-js-sdk: registers, logs in, starts the client (PREPARED, then
// SYNCING), finds their room and chats, then joins a public room found in the directory;
// figures: login to first synced room.
import { scenario, check, checkEqual, until, registerWithDummyAuth, sessionClient, passwordLogin, loggedIn, start, messages, sdk } from "./lib.mjs";
import { performance } from "node:perf_hooks";

const username = `newcomer${process.pid}`;
const secret = "a long enough passphrase";

await scenario("newcomer", async (t) => {
    const registered = await t.step("register through user-interactive auth (m.login.dummy)", async () => {
        return registerWithDummyAuth(username, secret, "js-sdk registration");
    });

    const roomId = await t.step("the new account creates a room and says hello", async () => {
        const client = sessionClient(registered);
        const whoami = await client.whoami();
        checkEqual(whoami.user_id, registered.user_id, "whoami");
        const { room_id } = await client.createRoom({ name: "First room", preset: sdk.Preset.PrivateChat });
        await client.sendTextMessage(room_id, "hello from registration");
        await client.logout(true);
        return room_id;
    });

    let loginStarted;
    const client = await t.step("log in with the password", async () => {
        loginStarted = performance.now();
        const session = await passwordLogin(username, secret);
        checkEqual(session.user_id, registered.user_id, "login user_id");
        check(session.device_id !== registered.device_id, "login creates a new device", session);
        return sessionClient(session);
    });

    await t.step("startClient reaches PREPARED and SYNCING", async () => {
        const loggedIn = performance.now();
        const states = await start(client);
        checkEqual(states.slice(0, 2), ["PREPARED", "SYNCING"], "first sync states");
        t.figure("start_to_syncing_ms", Math.round(performance.now() - loggedIn));
    });

    await t.step("the room is there with its name and message", async () => {
        await until(
            "the room with its message",
            () => client.getRoom(roomId)?.name === "First room" && messages(client, roomId).length === 1,
            () => ({ rooms: client.getRooms().map((r) => r.name), messages: messages(client, roomId) }),
        );
        t.figure("login_to_first_synced_room_ms", Math.round(performance.now() - loginStarted));
        checkEqual(messages(client, roomId)[0].body, "hello from registration", "first message");
        checkEqual(client.getRoom(roomId).getMyMembership(), "join", "membership");
    });

    await t.step("a message sent now comes back through /sync", async () => {
        const { event_id } = await client.sendTextMessage(roomId, "and hello from the new device");
        await until(
            "the sent message as a remote echo",
            () => client.getRoom(roomId).findEventById(event_id)?.status === null,
            () => messages(client, roomId),
        );
        checkEqual(messages(client, roomId).map((m) => m.body), ["hello from registration", "and hello from the new device"], "timeline");
    });

    await t.step("finds alice's public room in the directory and joins it by its alias", async () => {
        const alice = await loggedIn("alice");
        const aliasName = `lobby${process.pid}`;
        const { room_id } = await alice.createRoom({
            name: "Lobby",
            preset: sdk.Preset.PublicChat,
            visibility: sdk.Visibility.Public,
            room_alias_name: aliasName,
        });
        await alice.sendTextMessage(room_id, "welcome, everyone");
        const directory = await client.publicRooms({ limit: 50 });
        const listed = directory.chunk.find((room) => room.room_id === room_id);
        check(listed?.canonical_alias?.startsWith(`#${aliasName}:`), "the directory lists the room with its alias", directory.chunk);
        await client.joinRoom(listed.canonical_alias);
        await until(
            "the joined lobby with alice's welcome",
            () => client.getRoom(room_id)?.getMyMembership() === "join" && messages(client, room_id).some((m) => m.body === "welcome, everyone"),
            () => ({ membership: client.getRoom(room_id)?.getMyMembership(), messages: messages(client, room_id) }),
        );
    });
});
