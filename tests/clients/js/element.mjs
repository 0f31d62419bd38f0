// Element Web's path for two new users, taken with matrix-js-sdk configured as Element configures
// it (Rust crypto, lazy-loaded members, threads): register, bootstrap cross-signing and secure
// backup at first login, create an encrypted room, invite, and exchange encrypted messages, a
// reaction and a thread reply; then the requests the Notifications and Security settings tabs
// make. Each step checks what the other user's client shows.
import {
    scenario, check, checkEqual, until, sdk, requests, registerWithDummyAuth, sessionClient,
} from "./lib.mjs";

const ENCRYPTION = { type: "m.room.encryption", state_key: "", content: { algorithm: "m.megolm.v1.aes-sha2" } };

// A client like Element's: Rust crypto (no IndexedDB under Node), and the secret-storage key it
// created kept in memory, where Element keeps it for the session.
async function elementClient(session, password) {
    const secretStorageKeys = new Map();
    const client = sessionClient(session, undefined, {
        cryptoCallbacks: {
            getSecretStorageKey: async ({ keys }) => {
                const id = Object.keys(keys).find((keyId) => secretStorageKeys.has(keyId));
                return id ? [id, secretStorageKeys.get(id)] : null;
            },
            cacheSecretStorageKey: (keyId, _info, key) => secretStorageKeys.set(keyId, key),
        },
    });
    await client.initRustCrypto({ useIndexedDB: false });
    client.password = password;
    client.secretStorageKeys = secretStorageKeys;
    return client;
}

async function startLikeElement(client) {
    const states = [];
    client.on(sdk.ClientEvent.Sync, (state) => states.push(state));
    await client.startClient({ initialSyncLimit: 20, lazyLoadMembers: true, threadSupport: true });
    await until("the client to reach PREPARED and SYNCING", () => states.includes("PREPARED") && states.includes("SYNCING"),
        () => ({ sync_states: states }));
}

// Element's first-login set-up: cross-signing keys (uploaded through UIA with the password),
// then secure backup (a secret-storage key and a server-side key backup).
async function bootstrapSecurity(client) {
    const crypto = client.getCrypto();
    await crypto.bootstrapCrossSigning({
        authUploadDeviceSigningKeys: async (makeRequest) => {
            await makeRequest({
                type: "m.login.password",
                identifier: { type: "m.id.user", user: client.getUserId() },
                password: client.password,
            });
        },
    });
    let created;
    await crypto.bootstrapSecretStorage({
        createSecretStorageKey: async () => (created = await crypto.createRecoveryKeyFromPassphrase()),
        setupNewSecretStorage: true,
        setupNewKeyBackup: true,
    });
    return created;
}

const eventIn = (client, roomId, eventId) => {
    const room = client.getRoom(roomId);
    if (!room) return null;
    return room.findEventById(eventId) ?? room.getThreads().map((thread) => thread.findEventById(eventId)).find(Boolean) ?? null;
};

await scenario("element", async (t) => {
    const passwords = { alice: "correct horse battery staple", bob: "tr0ub4dor&3 for bob" };
    const [alice, bob] = await t.step("two new users register and log in to Element", async () => {
        const suffix = Date.now().toString(36);
        return Promise.all(["alice", "bob"].map(async (name) => {
            const username = `${name}-el-${suffix}`;
            const session = await registerWithDummyAuth(username, passwords[name], `Element (${username})`);
            return elementClient(session, passwords[name]);
        }));
    });
    const aliceId = alice.getUserId();
    const bobId = bob.getUserId();
    await t.step("both clients start as Element does (lazy members, threads)", async () => {
        await Promise.all([startLikeElement(alice), startLikeElement(bob)]);
    });

    await t.step("first login: alice and bob bootstrap cross-signing and secure backup", async () => {
        for (const client of [alice, bob]) {
            await bootstrapSecurity(client);
            const status = await client.getCrypto().getCrossSigningStatus();
            check(status.publicKeysOnDevice && status.privateKeysInSecretStorage, "cross-signing set up", status);
            check(await client.getCrypto().isCrossSigningReady(), "cross-signing ready", status);
            // The SDK enables the new backup in the background once it has made it.
            await until("the new key backup to be active", async () => (await client.getCrypto().getActiveSessionBackupVersion()) !== null,
                () => ({ requests: requests.filter((r) => r.path.includes("room_keys")) }), 10000);
        }
        // Each sees the other's cross-signing identity once the keys are queried.
        const aliceSeenByBob = await bob.getCrypto().getUserVerificationStatus(aliceId);
        checkEqual(aliceSeenByBob.isCrossSigningVerified(), false, "alice is known but not verified by bob");
        const identity = await bob.getCrypto().getCrossSigningKeyId(undefined);
        check(identity, "bob's own cross-signing master key id", identity);
    });

    const roomId = await t.step("alice creates an encrypted room and invites bob; bob sees the invitation with names", async () => {
        const { room_id } = await alice.createRoom({
            name: "Secret plans",
            preset: sdk.Preset.PrivateChat,
            invite: [bobId],
            initial_state: [ENCRYPTION],
        });
        await until("bob's client to show the invitation", () => bob.getRoom(room_id)?.getMyMembership() === "invite",
            () => ({ membership: bob.getRoom(room_id)?.getMyMembership() ?? "no room" }));
        return room_id;
    });

    await t.step("bob joins; both clients see an encrypted room with both members", async () => {
        await bob.joinRoom(roomId);
        await until("alice to see bob joined", () => alice.getRoom(roomId)?.getMember(bobId)?.membership === "join",
            () => ({ bob: alice.getRoom(roomId)?.getMember(bobId)?.membership ?? null }));
        for (const client of [alice, bob]) {
            await until(`${client.getUserId()} to see the room as encrypted`,
                async () => await client.getCrypto().isEncryptionEnabledInRoom(roomId));
        }
    });

    const hello = await t.step("alice sends an encrypted message; bob's client decrypts it", async () => {
        const { event_id } = await alice.sendTextMessage(roomId, "the plan is tea at five");
        // What stalled Element's sends: before encrypting, the client loads the member list at
        // its /sync token (`/members?at=...&not_membership=leave`), which must answer.
        const memberLoads = requests.filter((r) => r.path.endsWith("/members") && r.query.includes("at="));
        check(memberLoads.length > 0, "alice's client loaded the members at its sync token", requests.filter((r) => r.path.endsWith("/members")));
        checkEqual(memberLoads.map((r) => r.status), memberLoads.map(() => 200), "/members?at= statuses");
        const event = await until("the message in bob's timeline", () => eventIn(bob, roomId, event_id));
        await bob.decryptEventIfNeeded(event);
        check(event.isEncrypted(), "sent as m.room.encrypted", event.getWireType());
        checkEqual(event.getType(), "m.room.message", "decrypted type");
        checkEqual(event.getContent().body, "the plan is tea at five", "decrypted body");
        return event_id;
    });

    await t.step("bob answers encrypted; alice decrypts it", async () => {
        const { event_id } = await bob.sendTextMessage(roomId, "I will bring biscuits");
        const event = await until("bob's answer in alice's timeline", () => eventIn(alice, roomId, event_id));
        await alice.decryptEventIfNeeded(event);
        checkEqual(event.getContent().body, "I will bring biscuits", "decrypted answer");
    });

    await t.step("bob reacts to alice's message; alice sees the reaction", async () => {
        const { event_id } = await bob.sendEvent(roomId, "m.reaction", {
            "m.relates_to": { rel_type: "m.annotation", event_id: hello, key: "🍵" },
        });
        const reaction = await until("the reaction in alice's room", () => eventIn(alice, roomId, event_id));
        await alice.decryptEventIfNeeded(reaction);
        checkEqual(reaction.getRelation()?.key, "🍵", "reaction key");
        checkEqual(reaction.getRelation()?.event_id, hello, "reaction target");
    });

    await t.step("alice replies in a thread; bob sees the thread with the reply", async () => {
        const { event_id } = await alice.sendMessage(roomId, hello, { msgtype: "m.text", body: "in a thread: which tea?" });
        const reply = await until("the thread reply in bob's client", () => eventIn(bob, roomId, event_id),
            () => ({ threads: bob.getRoom(roomId)?.getThreads().map((thread) => thread.id) }));
        await bob.decryptEventIfNeeded(reply);
        checkEqual(reply.threadRootId, hello, "the reply's thread root");
        checkEqual(reply.getContent().body, "in a thread: which tea?", "decrypted thread reply");
        await until("bob's client to list the thread", () => bob.getRoom(roomId)?.getThread(hello));
    });

    await t.step("the Notifications settings tab loads: push rules, pushers, e-mail addresses", async () => {
        const rules = await alice.getPushRules();
        check(rules.global?.override?.length > 0, "default push rules", rules);
        const { pushers } = await alice.getPushers();
        check(Array.isArray(pushers), "a pusher list", pushers);
        const { threepids } = await alice.getThreePids();
        check(Array.isArray(threepids), "a 3pid list (Element filters it for e-mail addresses)", threepids);
    });

    await t.step("the Security tab loads: devices, cross-signing, key backup", async () => {
        const { devices } = await alice.getDevices();
        check(devices.some((device) => device.device_id === alice.getDeviceId()), "own device listed", devices);
        const info = await alice.getCrypto().getKeyBackupInfo();
        check(info?.version, "the server's key backup", info);
        const trust = await alice.getCrypto().isKeyBackupTrusted(info);
        check(trust.trusted, "the backup is signed by alice's own keys", trust);
        check(await alice.getCrypto().isSecretStorageReady(), "secret storage ready", {});
    });

    await t.step("no request answered with a server error", async () => {
        const failures = requests.filter((r) => r.status >= 500);
        checkEqual(failures, [], "5xx answers");
    });
});
