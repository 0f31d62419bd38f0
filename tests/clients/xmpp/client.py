"""A real XMPP client (slixmpp) for tests/xmpp.rs: logs in to Hearth and reports what it saw,
one JSON object per line on stdout.

usage: client.py HOST PORT JID PASSWORD MECHANISM MODE [PEER TEXT]
MODE: login | login-tls (direct TLS) | chat (roster, presence, send TEXT to PEER, wait for
PEER's answer).
"""
import asyncio
import hashlib
import json
import ssl
import sys

import slixmpp


def emit(**fields):
    print(json.dumps(fields), flush=True)


def main():
    host, port, jid, password, mechanism, mode = sys.argv[1:7]
    peer, text = (sys.argv[7], sys.argv[8]) if mode == "chat" else (None, None)
    client = slixmpp.ClientXMPP(jid, password, sasl_mech=mechanism)
    # The certificate is Hearth's generated self-signed one: the test compares its fingerprint
    # with the file instead of trusting it through a CA.
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    client.ssl_context = context
    client.enable_direct_tls = mode == "login-tls"
    client.enable_starttls = mode != "login-tls"
    client.enable_plaintext = False
    done = asyncio.get_event_loop().create_future()

    def finish():
        if not done.done():
            done.set_result(None)

    async def session_start(_event):
        tls = client.transport.get_extra_info("ssl_object")
        certificate = tls.getpeercert(binary_form=True) if tls else b""
        emit(event="session", jid=str(client.boundjid), cert_sha256=hashlib.sha256(certificate).hexdigest())
        roster = await client.get_roster()
        items = roster["roster"]["items"]
        emit(event="roster", items={str(item): dict(items[item]) for item in items})
        if mode != "chat":
            client.disconnect()
            return
        client.send_presence()
        client.send_message(mto=peer, mbody=text, mtype="chat")
        emit(event="sent")

    def message(msg):
        if msg["type"] not in ("chat", "normal") or msg["from"].bare != peer:
            return
        stanza_id = msg.xml.find("{urn:xmpp:sid:0}stanza-id")
        emit(
            event="message",
            body=msg["body"],
            stanza_id=stanza_id.get("id") if stanza_id is not None else None,
        )
        client.disconnect()

    def presence(stanza):
        if peer is None or stanza["from"].bare != peer:
            return
        show = stanza.xml.find("{jabber:client}show")
        emit(event="presence", type=stanza.xml.get("type"), show=show.text if show is not None else None)

    def failed_auth(stanza):
        condition = stanza["condition"] if stanza is not None else None
        emit(event="failed_auth", condition=condition)

    def stream_error(error):
        emit(event="stream_error", condition=error["condition"])

    client.add_event_handler("session_start", session_start)
    client.add_event_handler("message", message)
    client.add_event_handler("presence", presence)
    client.add_event_handler("failed_auth", failed_auth)
    client.add_event_handler("failed_all_auth", lambda _: (client.disconnect(), finish()))
    client.add_event_handler("stream_error", stream_error)
    client.add_event_handler("disconnected", lambda _: finish())
    client.add_event_handler("connection_failed", lambda _: finish())
    client.connect(host, int(port))
    asyncio.get_event_loop().run_until_complete(asyncio.wait_for(done, 60))
    emit(event="end")


if __name__ == "__main__":
    main()
