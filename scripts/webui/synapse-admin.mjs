// Drives the real synapse-admin web UI (etkecc's maintained fork, "Ketesa") in headless Chromium
// against a running Hearth: an operator logs in, lists, creates and deactivates a user, lists
// rooms and deletes one, lists media, lists event reports, and creates and deletes a
// registration token. Every step prints what it checked; a failing step screenshots the page
// into /tmp. The run fails on any 5xx from Hearth.
//
// Environment: lib.mjs's, plus ADMIN_USER / ADMIN_PASSWORD (a server admin's credentials).

import { api, env, hearthUrl, login, newPage, openBrowser, serveApp, step, summary } from "./lib.mjs";

const adminUser = env("ADMIN_USER", "admin");
const adminPassword = env("ADMIN_PASSWORD");
const serverName = new URL(hearthUrl).hostname === "127.0.0.1" ? env("SERVER_NAME", "localhost") : env("SERVER_NAME");
const run = Date.now().toString(36);
const expect = (condition, message) => {
    if (!condition) throw new Error(message);
};

// --- what the UI will show: a member, a room with a message, a report and an upload -----------
const adminToken = await login(adminUser, adminPassword);
const member = `member${run}`;
await api("PUT", `/_synapse/admin/v2/users/${encodeURIComponent(`@${member}:${serverName}`)}`, adminToken, {
    password: "member-password",
    displayname: "Seeded Member",
});
const memberToken = await login(member, "member-password");
const roomName = `Doomed room ${run}`;
const { room_id: roomId } = await api("POST", "/_matrix/client/v3/createRoom", memberToken, {
    name: roomName,
    preset: "public_chat",
});
const { event_id: eventId } = await api("PUT", `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/send/m.room.message/t${run}`, memberToken, {
    msgtype: "m.text",
    body: "a message to report",
});
await api("POST", `/_matrix/client/v3/join/${encodeURIComponent(roomId)}`, adminToken, {});
const reportReason = `report ${run}`;
await api("POST", `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/report/${encodeURIComponent(eventId)}`, adminToken, {
    reason: reportReason,
    score: -100,
});
const { content_uri: contentUri } = await api("POST", "/_matrix/media/v3/upload?filename=seed.txt", memberToken, new TextEncoder().encode("seeded upload"));
const liveRoomName = `Live room ${run}`;
const { room_id: liveRoomId } = await api("POST", "/_matrix/client/v3/createRoom", memberToken, { name: liveRoomName });
console.log(`seeded ${member}, room ${roomId} (${roomName}), report on ${eventId}, media ${contentUri}`);

// --- the app ----------------------------------------------------------------------------------
const app = await serveApp(env("WEBUI_APP_DIR"), { "/config.json": { restrictBaseUrl: hearthUrl } });
const browser = await openBrowser();
const page = await newPage(browser, "admin");
const pages = { admin: page };
/// Waits for a request to Hearth whose path starts with `prefix` and answers it.
const answered = (prefix, method = "GET") =>
    page.waitForResponse((r) => new URL(r.url()).pathname.startsWith(prefix) && r.request().method() === method, { timeout: 20_000 });

try {
    await step("log in as an admin with the login form", pages, async () => {
        await page.goto(`${app.url}/?username=${adminUser}&password=${encodeURIComponent(adminPassword)}`);
        await page.getByRole("button", { name: /sign in/i }).click();
        await page.waitForURL(/#\/(users)?$/, { timeout: 30_000 });
        await page.getByText(/users/i).first().waitFor();
    });

    await step("the user list (v3) shows the seeded member", pages, async () => {
        await page.goto(`${app.url}/#/users`);
        await page.getByText(`@${member}:${serverName}`).first().waitFor({ timeout: 20_000 });
    });

    const created = `created${run}`;
    const createdId = `@${created}:${serverName}`;
    await step("create a user with the create form", pages, async () => {
        await page.goto(`${app.url}/#/users/create`);
        await page.getByLabel(/user id/i).fill(created);
        await page.getByLabel(/^password/i).fill("created-password-1");
        const saved = answered("/_synapse/admin/v2/users/", "PUT");
        await page.getByRole("button", { name: /save/i }).click();
        expect((await saved).status() === 201, `PUT answered ${(await saved).status()}`);
        const account = await api("GET", `/_synapse/admin/v2/users/${encodeURIComponent(createdId)}`, adminToken);
        expect(account.deactivated === false, JSON.stringify(account));
        await login(created, "created-password-1");
    });

    await step("deactivate that user from its page", pages, async () => {
        await page.goto(`${app.url}/#/users/${encodeURIComponent(createdId)}`);
        await page.getByRole("button", { name: /^delete$/i }).first().click();
        const deactivated = answered("/_synapse/admin/v1/deactivate/", "POST");
        await page.getByRole("button", { name: /confirm/i }).click();
        expect((await deactivated).status() === 200, `deactivate answered ${(await deactivated).status()}`);
        const account = await api("GET", `/_synapse/admin/v2/users/${encodeURIComponent(createdId)}`, adminToken);
        expect(account.deactivated === true, JSON.stringify(account));
        const refused = await login(created, "created-password-1").then(() => false, () => true);
        expect(refused, "a deactivated account still logs in");
    });

    await step("the room list shows the seeded room", pages, async () => {
        await page.goto(`${app.url}/#/rooms`);
        await page.getByText(roomName).first().waitFor({ timeout: 20_000 });
    });

    await step("delete the room from its page", pages, async () => {
        await page.goto(`${app.url}/#/rooms/${encodeURIComponent(roomId)}/show`);
        await page.getByText(roomName).first().waitFor({ timeout: 20_000 });
        await page.getByRole("button", { name: /^delete$/i }).first().click();
        const deleted = answered("/_synapse/admin/v2/rooms/", "DELETE");
        await page.getByRole("button", { name: /confirm/i }).click();
        expect((await deleted).status() === 200, `DELETE answered ${(await deleted).status()}`);
        // The deletion runs in the background: the member is out of the room once it is done.
        for (let i = 0; i < 50; i += 1) {
            const { joined_rooms: rooms } = await api("GET", "/_matrix/client/v3/joined_rooms", memberToken);
            if (!rooms.includes(roomId)) return;
            await new Promise((resolve) => setTimeout(resolve, 200));
        }
        throw new Error("the member is still in the deleted room");
    });

    await step("the media statistics list the member's upload", pages, async () => {
        await page.goto(`${app.url}/#/user_media_statistics`);
        await page.getByText(`@${member}:${serverName}`).first().waitFor({ timeout: 20_000 });
    });

    await step("the member's media tab lists the upload", pages, async () => {
        await page.goto(`${app.url}/#/users/${encodeURIComponent(`@${member}:${serverName}`)}`);
        await page.getByRole("tab", { name: /media/i }).first().click();
        await page.getByText(contentUri.split("/").pop()).first().waitFor({ timeout: 20_000 });
    });

    await step("the reported events list shows the report, and its page the reason", pages, async () => {
        await page.goto(`${app.url}/#/reports`);
        await page.getByText(`@${adminUser}:${serverName}`).first().click();
        await page.getByText(reportReason).first().waitFor({ timeout: 20_000 });
    });

    await step("the room list's other pages load (members, state, media of a live room)", pages, async () => {
        await page.goto(`${app.url}/#/rooms/${encodeURIComponent(liveRoomId)}/show`);
        await page.getByText(liveRoomName).first().waitFor({ timeout: 20_000 });
        for (const tab of await page.getByRole("tab").all()) await tab.click();
    });

    const token = `tok${run}`;
    await step("create a registration token with the create form", pages, async () => {
        await page.goto(`${app.url}/#/registration_tokens/create`);
        await page.locator("input[name=token]").fill(token);
        const saved = answered("/_synapse/admin/v1/registration_tokens/new", "POST");
        await page.getByRole("button", { name: /save/i }).click();
        expect((await saved).status() === 200, `new answered ${(await saved).status()}`);
        await page.goto(`${app.url}/#/registration_tokens`);
        await page.getByText(token).first().waitFor({ timeout: 20_000 });
    });

    await step("delete that registration token", pages, async () => {
        await page.goto(`${app.url}/#/registration_tokens/${token}`);
        const deleted = answered(`/_synapse/admin/v1/registration_tokens/${token}`, "DELETE");
        await page.getByRole("button", { name: /^delete$/i }).first().click();
        const confirm = page.getByRole("button", { name: /confirm/i });
        if (await confirm.isVisible().catch(() => false)) await confirm.click();
        expect((await deleted).status() === 200, `DELETE answered ${(await deleted).status()}`);
        const gone = await api("GET", `/_synapse/admin/v1/registration_tokens/${token}`, adminToken).then(() => false, (e) => e.message.includes("404"));
        expect(gone, "the token is still there");
    });

    await step("the app saw no error notification", pages, async () => {
        const errors = await page.locator(".MuiAlert-standardError, .MuiSnackbarContent-root").allTextContents();
        expect(errors.length === 0, `notifications: ${errors.join(" | ")}`);
    });
} finally {
    summary();
    await browser.close();
    app.close();
}
