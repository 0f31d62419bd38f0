"""Shared plumbing for the matrix-nio scenarios that tests/real_clients.rs runs against Hearth.

The Rust test passes, in the environment:
  HEARTH_URL        the homeserver's base URL
  HEARTH_ACCOUNTS   JSON {"alice": "password", ...} of accounts it created
  HEARTH_STATE_DIR  a scratch directory for what a client keeps on disk
A scenario prints one line `HEARTH-RESULT {json}` on stdout: the steps it passed and, on
failure, the step that failed, the error, what the client saw and the HTTP answers that were
not 2xx.
"""

import asyncio
import json
import os
import sys
import time
import traceback
from urllib.parse import urlsplit

from nio import AsyncClient, ErrorResponse, MatrixRoom, PushRulesEvent

BASE_URL = os.environ["HEARTH_URL"]
STATE_DIR = os.environ["HEARTH_STATE_DIR"]
ACCOUNTS = json.loads(os.environ["HEARTH_ACCOUNTS"])

HTTP_ERRORS: list = []


class Failure(Exception):
    def __init__(self, message, saw=None):
        super().__init__(message)
        self.saw = saw


def check(condition, message, saw=None):
    """Raises a Failure carrying what the client saw unless `condition` holds."""
    if not condition:
        raise Failure(message, saw)


def check_equal(actual, expected, what):
    if actual != expected:
        raise Failure(f"{what}: expected {expected!r}, got {actual!r}", repr(actual))


def ok(response, what):
    """nio returns errors as values: turn one into a failure naming the request."""
    if isinstance(response, ErrorResponse):
        raise Failure(
            f"{what}: {type(response).__name__} {response.status_code} {response.message}",
            {"status_code": response.status_code, "message": response.message},
        )
    return response


class Client(AsyncClient):
    """An AsyncClient that records every answer that was not 2xx, and keeps, per room, the
    timeline events its syncs delivered (what a nio bot or client reads)."""

    def __init__(self, user="", device_id=None):
        super().__init__(BASE_URL, user, device_id=device_id)
        self.timelines: dict[str, list] = {}
        self.synced_batches: list[dict] = []
        self.left_rooms: set[str] = set()
        # The latest `m.push_rules` account data the syncs delivered (nio reads rules only there).
        self.push_rules: PushRulesEvent | None = None

    async def send(self, method, path, data=None, headers=None, trace_context=None, timeout=None):
        response = await super().send(method, path, data, headers, trace_context, timeout)
        if response.status >= 300:
            body = await response.read()
            entry = {
                "method": method,
                # The query holds the access token (nio sends it there): leave it out.
                "path": urlsplit(path).path,
                "request": (data[:300] if isinstance(data, str) else None),
                "status": response.status,
                "answer": body[:300].decode("utf-8", "replace"),
            }
            # A client that retries repeats itself: count the repeats instead of listing them.
            if HTTP_ERRORS and {k: v for k, v in HTTP_ERRORS[-1].items() if k != "times"} == entry:
                HTTP_ERRORS[-1]["times"] = HTTP_ERRORS[-1].get("times", 1) + 1
            else:
                HTTP_ERRORS.append(entry)
            del HTTP_ERRORS[:-30]
        return response

    async def sync_once(self, timeout_ms=1000, **kwargs):
        response = ok(await self.sync(timeout=timeout_ms, **kwargs), f"sync of {self.user_id}")
        batch = {}
        for room_id, room in response.rooms.join.items():
            self.timelines.setdefault(room_id, []).extend(room.timeline.events)
            batch[room_id] = [event.event_id for event in room.timeline.events]
        self.synced_batches.append(batch)
        self.left_rooms.update(response.rooms.leave)
        for event in response.account_data_events:
            if isinstance(event, PushRulesEvent):
                self.push_rules = event
        return response

    async def sync_until(self, what, probe, saw=lambda: None, timeout_s=30.0):
        """Syncs until `probe()` holds (checked before each sync), and returns its value."""
        deadline = time.monotonic() + timeout_s
        while True:
            value = probe()
            if value:
                return value
            if time.monotonic() > deadline:
                raise Failure(f"timed out after {timeout_s} s waiting for {what}", saw())
            await self.sync_once(timeout_ms=500)

    def event(self, room_id, event_id):
        return next((e for e in self.timelines.get(room_id, []) if e.event_id == event_id), None)

    def rule_ids(self):
        """The ids of the push rules, per kind, as this client last synced them."""
        rules = self.push_rules.global_rules if self.push_rules else None
        kinds = ("override", "content", "room", "sender", "underride")
        return {kind: [rule.id for rule in getattr(rules, kind)] for kind in kinds} if rules else None

    def rule(self, kind, rule_id):
        rules = self.push_rules.global_rules if self.push_rules else None
        return next((rule for rule in getattr(rules, kind, []) if rule.id == rule_id), None) if rules else None

    def room(self, room_id) -> MatrixRoom | None:
        return self.rooms.get(room_id)

    def members(self, room_id):
        """The joined members this client knows of (none before its sync has the room)."""
        room = self.rooms.get(room_id)
        return sorted(room.users) if room else []

    def messages(self, room_id):
        return [
            {"id": e.event_id, "type": type(e).__name__, "sender": e.sender, "body": getattr(e, "body", None)}
            for e in self.timelines.get(room_id, [])
        ]


CLIENTS: list[Client] = []


async def logged_in(name, password=None):
    """A client logged in with a password, as a nio user would (nio sends the name it was
    given as the `m.id.user` identifier and learns the full user id from the answer)."""
    client = new_client(name)
    ok(await client.login(password or ACCOUNTS[name], device_name=f"hearth test ({name})"), f"login of {name}")
    return client


def new_client(user="", device_id=None):
    client = Client(user, device_id=device_id)
    CLIENTS.append(client)
    return client


class Steps:
    def __init__(self):
        self.passed = []
        self.figures = {}
        self.current = "(setup)"

    async def step(self, name, coroutine):
        self.current = name
        started = time.monotonic()
        value = await coroutine
        self.passed.append({"step": name, "ms": round((time.monotonic() - started) * 1000)})
        return value

    def figure(self, name, value):
        self.figures[name] = value


def scenario(name, body):
    """Runs `body(steps)` and prints the report; exits 0 when it passed."""

    async def main():
        steps = Steps()
        try:
            await body(steps)
            result = {"client": "matrix-nio", "scenario": name, "ok": True, "steps": steps.passed, "figures": steps.figures}
        except Exception as error:  # noqa: BLE001 - every failure is reported, with its step
            result = {
                "client": "matrix-nio",
                "scenario": name,
                "ok": False,
                "failed_step": steps.current,
                "error": f"{type(error).__name__}: {error}",
                "saw": getattr(error, "saw", None),
                "http_errors": HTTP_ERRORS,
                "steps": steps.passed,
                "figures": steps.figures,
            }
            traceback.print_exc(file=sys.stderr)
        for client in CLIENTS:
            await client.close()
        print("HEARTH-RESULT " + json.dumps(result, default=repr), flush=True)
        return result["ok"]

    sys.exit(0 if asyncio.run(main()) else 1)
