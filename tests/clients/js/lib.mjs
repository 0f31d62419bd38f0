// Shared plumbing for the matrix-js-sdk scenarios that tests/real_clients.rs runs against Hearth.
//
// The Rust test passes, in the environment:
//   HEARTH_URL           the homeserver's base URL
//   HEARTH_ACCOUNTS      JSON {"alice": "password", ...} of accounts it created
//   HEARTH_NODE_MODULES  the node_modules directory it installed (under target/, not beside us,
//                        so the SDK is imported by path rather than by bare name)
//   HEARTH_STATE_DIR     a scratch directory for what a client keeps on disk
// A scenario prints one line `HEARTH-RESULT {json}` on stdout: the steps it passed and, on
// failure, the step that failed, the error, what the client saw and the HTTP answers that were
// not 2xx. The SDK's own log goes to a ring buffer that is written to stderr only on failure.

import { readFileSync, writeFileSync, existsSync, renameSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { performance } from "node:perf_hooks";
import { isDeepStrictEqual } from "node:util";

const env = (name) => {
    const value = process.env[name];
    if (!value) throw new Error(`${name} is not set (run through tests/real_clients.rs)`);
    return value;
};

const modules = env("HEARTH_NODE_MODULES");
export const sdk = await import(pathToFileURL(join(modules, "matrix-js-sdk/lib/index.js")).href);
export const baseUrl = env("HEARTH_URL");
export const stateDir = env("HEARTH_STATE_DIR");
const accounts = JSON.parse(env("HEARTH_ACCOUNTS"));

// --- logs -------------------------------------------------------------------------------------
// The SDK logs through `console` at debug level; keep the tail for a failure report.
const logTail = [];
const keepLog = (level) => (...args) => {
    const line = args.map((a) => (typeof a === "string" ? a : safeJson(a))).join(" ");
    logTail.push(`${level} ${line}`.slice(0, 600));
    if (logTail.length > 300) logTail.shift();
};
for (const level of ["log", "info", "debug", "warn", "error", "trace"]) console[level] = keepLog(level);

function safeJson(value) {
    if (value instanceof Error) return `${value.name}: ${value.message}`;
    try {
        return JSON.stringify(value);
    } catch {
        return String(value);
    }
}

// --- HTTP -------------------------------------------------------------------------------------
// Every client gets this fetch: it records answers that were not 2xx, so a failure names the
// endpoint, the request and Hearth's answer.
const httpErrors = [];
export const requests = [];
export async function recordingFetch(input, init = {}) {
    const url = new URL(input instanceof Request ? input.url : String(input));
    const method = init.method ?? "GET";
    const response = await fetch(input, init);
    requests.push({ method, path: url.pathname, query: url.search, status: response.status });
    if (!response.ok) {
        const body = await response.clone().text().catch(() => "");
        const entry = {
            method,
            path: url.pathname,
            request: typeof init.body === "string" ? init.body.slice(0, 300) : init.body ? "(binary)" : null,
            status: response.status,
            answer: body.slice(0, 300),
        };
        // A client that retries repeats itself: count the repeats instead of listing them.
        const last = httpErrors.at(-1);
        const { times: _, ...previous } = last ?? {};
        if (last && isDeepStrictEqual(previous, entry)) last.times = (last.times ?? 1) + 1;
        else httpErrors.push(entry);
        if (httpErrors.length > 30) httpErrors.shift();
    }
    return response;
}

// --- a scenario and its steps -------------------------------------------------------------------
export class Failure extends Error {
    constructor(message, saw) {
        super(message);
        this.saw = saw;
    }
}

/** Throws a `Failure` carrying what the client saw unless `condition` holds. */
export function check(condition, message, saw) {
    if (!condition) throw new Failure(message, saw);
}

export function checkEqual(actual, expected, what) {
    if (!isDeepStrictEqual(actual, expected)) {
        throw new Failure(`${what}: expected ${safeJson(expected)}, got ${safeJson(actual)}`, actual);
    }
}

/**
 * Waits until `probe()` returns a truthy value (polled every 50 ms, so it reads whatever the
 * client's sync has put in its model), and returns it; on timeout fails with `saw()`.
 */
export async function until(what, probe, saw = () => undefined, timeoutMs = 30000) {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
        const value = await probe();
        if (value) return value;
        if (performance.now() > deadline) throw new Failure(`timed out after ${timeoutMs} ms waiting for ${what}`, saw());
        await new Promise((resolve) => setTimeout(resolve, 50));
    }
}

const clients = [];

export async function scenario(name, body) {
    const steps = [];
    const figures = {};
    let current = "(setup)";
    const t = {
        async step(stepName, fn) {
            current = stepName;
            const started = performance.now();
            const value = await fn();
            steps.push({ step: stepName, ms: Math.round(performance.now() - started) });
            return value;
        },
        figure(figureName, value) {
            figures[figureName] = value;
        },
    };
    let result;
    try {
        await body(t);
        result = { client: "matrix-js-sdk", scenario: name, ok: true, steps, figures };
    } catch (error) {
        result = {
            client: "matrix-js-sdk",
            scenario: name,
            ok: false,
            failed_step: current,
            error: describeError(error),
            saw: error?.saw ?? null,
            http_errors: httpErrors,
            steps,
            figures,
        };
        process.stderr.write(`--- last matrix-js-sdk log lines ---\n${logTail.join("\n")}\n`);
    }
    for (const client of clients) client.stopClient();
    process.stdout.write(`HEARTH-RESULT ${JSON.stringify(result)}\n`);
    // The SDK keeps timers (keep-alives, retries): leave without waiting for them.
    process.exit(result.ok ? 0 : 1);
}

function describeError(error) {
    if (!error) return String(error);
    const parts = [`${error.name ?? "Error"}: ${error.message}`];
    if (error.httpStatus) parts.push(`HTTP ${error.httpStatus}`);
    if (error.errcode) parts.push(error.errcode);
    if (error.url) parts.push(`at ${error.url}`);
    if (error.data && Object.keys(error.data).length) parts.push(safeJson(error.data));
    return parts.join(" | ");
}

// --- clients ------------------------------------------------------------------------------------
export function password(name) {
    const value = accounts[name];
    if (!value) throw new Error(`no account ${name} in HEARTH_ACCOUNTS`);
    return value;
}

/** A client that is not logged in (for registration and login). */
export function anonymousClient() {
    return sdk.createClient({ baseUrl, fetchFn: recordingFetch });
}

/**
 * Registers through user-interactive auth as clients do on an open server: the first request
 * offers no auth and must get 401 with the flows and a session, then the `m.login.dummy` stage.
 * Returns the registration answer (a session).
 */
export async function registerWithDummyAuth(username, secret, deviceName) {
    const anonymous = anonymousClient();
    const body = { username, password: secret, initial_device_display_name: deviceName };
    const challenge = await anonymous.registerRequest(body).then(
        (answer) => {
            throw new Error(`registration without auth succeeded: ${JSON.stringify(answer)}`);
        },
        (error) => error,
    );
    check(challenge.httpStatus === 401, "the first /register answers 401 with flows", challenge.data);
    const flows = challenge.data?.flows ?? [];
    check(flows.some((f) => f.stages?.includes("m.login.dummy")), "a flow with m.login.dummy is offered", flows);
    const answer = await anonymous.registerRequest({ ...body, auth: { type: "m.login.dummy", session: challenge.data.session } });
    check(answer.access_token && answer.user_id.startsWith(`@${username}:`), "registration returns a session", answer);
    return answer;
}

/** Logs in with a password the way Element does, and returns the login answer. */
export async function passwordLogin(name, secret = password(name)) {
    return anonymousClient().loginRequest({
        type: "m.login.password",
        identifier: { type: "m.id.user", user: name },
        password: secret,
        initial_device_display_name: `hearth test (${name})`,
    });
}

/**
 * A client for a session (the answer of a login or a registration); `options` adds to what
 * `createClient` gets (e.g. `cryptoCallbacks`).
 */
export function sessionClient(session, store = undefined, options = {}) {
    const client = sdk.createClient({
        baseUrl,
        userId: session.user_id,
        accessToken: session.access_token,
        deviceId: session.device_id,
        fetchFn: recordingFetch,
        timelineSupport: true,
        store,
        ...options,
    });
    clients.push(client);
    return client;
}

export async function loggedIn(name, store = undefined) {
    return sessionClient(await passwordLogin(name), store);
}

/** `alice` and `bob`, logged in and syncing. */
export async function aliceAndBob() {
    const clients = [await loggedIn("alice"), await loggedIn("bob")];
    await Promise.all(clients.map((client) => start(client)));
    return clients;
}

/**
 * Starts the client and waits until its first sync is processed (PREPARED) and it is
 * syncing live (SYNCING); returns the states it went through.
 */
export async function start(client, options = {}) {
    const states = [];
    client.on(sdk.ClientEvent.Sync, (state) => states.push(state));
    await client.startClient({ initialSyncLimit: 20, ...options });
    await until(
        "the client to reach PREPARED and then SYNCING",
        () => states.includes("PREPARED") && states.includes("SYNCING"),
        () => ({ sync_states: states }),
    );
    return states;
}

/** The live timeline of a room as a user would read it: type, sender, body, relations. */
export function timeline(client, roomId) {
    const room = client.getRoom(roomId);
    if (!room) return null;
    return room
        .getLiveTimeline()
        .getEvents()
        .map((event) => ({
            id: event.getId(),
            type: event.getType(),
            sender: event.getSender(),
            body: event.getContent()?.body,
            redacted: event.isRedacted(),
        }));
}

export function messages(client, roomId) {
    return (timeline(client, roomId) ?? []).filter((e) => e.type === "m.room.message");
}

// --- a store that survives a restart ----------------------------------------------------------
/**
 * What IndexedDBStore does in a browser, kept in one JSON file: the SDK accumulates every
 * sync into it and, on the next start, restores its rooms from it and resumes `/sync` from its
 * `next_batch`. `networkSyncs` records what each /sync answer (not the cache) delivered.
 */
export class FileStore extends sdk.MemoryStore {
    constructor(path) {
        super();
        this.path = path;
        this.accumulator = new sdk.SyncAccumulator();
        this.networkSyncs = [];
        if (existsSync(path)) {
            const saved = JSON.parse(readFileSync(path, "utf8"));
            this.accumulator.accumulate(
                { next_batch: saved.nextBatch, rooms: saved.roomsData, account_data: { events: saved.accountData } },
                true,
            );
        }
    }

    async setSyncData(syncData) {
        this.networkSyncs.push(syncData);
        this.accumulator.accumulate(syncData);
    }

    wantsSave() {
        return true;
    }

    async save() {
        const temporary = `${this.path}.tmp`;
        writeFileSync(temporary, JSON.stringify(this.accumulator.getJSON(true)));
        renameSync(temporary, this.path);
    }

    async getSavedSync() {
        const data = this.accumulator.getJSON();
        return data.nextBatch ? structuredClone(data) : null;
    }

    async getSavedSyncToken() {
        return this.accumulator.getNextBatchToken();
    }
}
