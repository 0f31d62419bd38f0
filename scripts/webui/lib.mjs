// Shared plumbing for the browser drivers (synapse-admin.mjs): a static server for a built web
// app, a headless Chromium through playwright-core, a record of every request the app sent to
// Hearth, and a step runner that prints what it checked and takes a screenshot when a step fails.
//
// Environment (run.sh sets all of it):
//   HEARTH_URL         the homeserver's base URL, e.g. http://127.0.0.1:8008
//   WEBUI_APP_DIR      the built app to serve (a dist/ directory)
//   WEBUI_DRIVER_DIR   where playwright-core is installed (outside the repository)
//   CHROMIUM           the browser binary (default /usr/bin/chromium)

import { createServer } from "node:http";
import { createReadStream, existsSync, statSync } from "node:fs";
import { createRequire } from "node:module";
import { extname, join, normalize } from "node:path";

export const env = (name, fallback) => {
    const value = process.env[name] ?? fallback;
    if (value === undefined) throw new Error(`${name} is not set (see scripts/webui/run.sh)`);
    return value;
};

export const hearthUrl = env("HEARTH_URL").replace(/\/$/, "");
const { chromium } = createRequire(join(env("WEBUI_DRIVER_DIR"), "package.json"))("playwright-core");

// --- static server ----------------------------------------------------------------------------
const contentTypes = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript",
    ".mjs": "text/javascript",
    ".css": "text/css",
    ".json": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".woff2": "font/woff2",
    ".wasm": "application/wasm",
};

/// Serves `dir` on an ephemeral loopback port; `overrides` maps a path to a JSON value served
/// instead of the file (the app's config.json pointing at the Hearth under test).
export async function serveApp(dir, overrides = {}) {
    const server = createServer((request, response) => {
        const path = decodeURIComponent(new URL(request.url, "http://x").pathname);
        if (path in overrides) {
            response.writeHead(200, { "content-type": contentTypes[".json"] });
            response.end(JSON.stringify(overrides[path]));
            return;
        }
        let file = normalize(join(dir, path));
        if (!file.startsWith(normalize(dir))) {
            response.writeHead(403).end();
            return;
        }
        if (existsSync(file) && statSync(file).isDirectory()) file = join(file, "index.html");
        if (!existsSync(file)) {
            response.writeHead(404).end();
            return;
        }
        response.writeHead(200, { "content-type": contentTypes[extname(file)] ?? "application/octet-stream" });
        createReadStream(file).pipe(response);
    });
    await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
    return { url: `http://127.0.0.1:${server.address().port}`, close: () => server.close() };
}

// --- browser and the record of Hearth's answers -----------------------------------------------
/// Every request a page sent to Hearth with Hearth's status; 5xx answers fail the run at the end
/// of the step that saw them, 4xx answers are printed so a reader sees what the app tried.
export const hearthAnswers = [];

export async function openBrowser() {
    const browser = await chromium.launch({
        executablePath: env("CHROMIUM", "/usr/bin/chromium"),
        args: ["--no-sandbox", "--disable-dev-shm-usage"],
    });
    return browser;
}

export async function newPage(browser, label) {
    const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
    const page = await context.newPage();
    page.on("response", async (response) => {
        const url = new URL(response.url());
        // The app may reach Hearth under another name than HEARTH_URL (the base URL that
        // /.well-known/matrix/client gives), so Hearth's requests are told by their paths.
        if (!/^\/(_matrix|_synapse|\.well-known)\//.test(url.pathname)) return;
        const request = response.request();
        if (request.method() === "OPTIONS") return;
        const answer = { page: label, method: request.method(), path: url.pathname + url.search, status: response.status() };
        if (answer.status >= 400) {
            try {
                answer.body = (await response.text()).slice(0, 300);
            } catch {
                answer.body = "(no body)";
            }
        }
        hearthAnswers.push(answer);
    });
    page.on("pageerror", (error) => console.log(`  [${label}] page error: ${error.message.slice(0, 200)}`));
    return page;
}

// --- steps ------------------------------------------------------------------------------------
let stepNumber = 0;
const passed = [];
let failed = 0;

/// Runs one checked step: prints it, fails on an exception or on a 5xx Hearth gave meanwhile,
/// and screenshots every open page into /tmp on failure.
export async function step(name, pages, body) {
    stepNumber += 1;
    const seenBefore = hearthAnswers.length;
    try {
        await body();
        const serverErrors = hearthAnswers.slice(seenBefore).filter((a) => a.status >= 500);
        if (serverErrors.length > 0) throw new Error(`Hearth answered 5xx: ${JSON.stringify(serverErrors)}`);
        passed.push(name);
        console.log(`ok ${stepNumber} - ${name}`);
    } catch (error) {
        failed += 1;
        console.log(`not ok ${stepNumber} - ${name}: ${error.message}`);
        for (const [label, page] of Object.entries(pages)) {
            const path = `/tmp/webui-${label}-step${stepNumber}.png`;
            await page.screenshot({ path, fullPage: true }).catch(() => {});
            console.log(`  screenshot: ${path}`);
        }
        throw error;
    }
}

/// Prints the 4xx answers Hearth gave during the run (the app's unsupported calls show here)
/// and the totals.
export function summary() {
    const refused = hearthAnswers.filter((a) => a.status >= 400);
    const distinct = new Map();
    for (const a of refused) {
        const key = `${a.method} ${a.path.replace(/\?.*/, "")} -> ${a.status}`;
        if (!distinct.has(key)) distinct.set(key, a.body);
    }
    console.log(`Hearth answered ${hearthAnswers.length} requests, ${refused.length} with 4xx/5xx:`);
    for (const [key, body] of distinct) console.log(`  ${key} ${body ?? ""}`);
    console.log(`${passed.length} passed, ${failed} failed`);
}

// --- the client API, for seeding what the app will show ---------------------------------------
export async function api(method, path, token, body) {
    const response = await fetch(hearthUrl + path, {
        method,
        headers: {
            ...(token ? { authorization: `Bearer ${token}` } : {}),
            ...(body instanceof Uint8Array ? { "content-type": "application/octet-stream" } : { "content-type": "application/json" }),
        },
        body: body === undefined ? undefined : body instanceof Uint8Array ? body : JSON.stringify(body),
    });
    const text = await response.text();
    if (!response.ok) throw new Error(`${method} ${path} -> ${response.status} ${text.slice(0, 300)}`);
    return text ? JSON.parse(text) : {};
}

export async function login(user, password) {
    const answer = await api("POST", "/_matrix/client/v3/login", null, {
        type: "m.login.password",
        identifier: { type: "m.id.user", user },
        password,
    });
    return answer.access_token;
}
