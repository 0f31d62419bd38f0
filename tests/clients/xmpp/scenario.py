"""A scripted slixmpp client for tests/xmpp_live.rs: it reacts to what Hearth sends with the
next step of a conversation and reports each stanza it saw, one JSON object per line.

usage: scenario.py HOST PORT JID PASSWORD MODE ARGS...
MODE dm PEER TEXT: wait for PEER's message; answer it with a `displayed` marker and a
  `composing` chat state; when PEER stops typing (`active`), send TEXT (id `xmpp-reply-1`);
  end when PEER's read receipt for it arrives.
MODE muc ROOM NICK TEXT: join ROOM as NICK (history 5); after the subject, send TEXT (id
  `muc-1`); after its reflection wait for a live message from another occupant, then set the
  subject to "Set from XMPP", and after its reflection leave the room; end on the own
  unavailable presence.
MODE carbons PEER: enable carbons, report "ready"; on a carbon of the user's own message to
  PEER send "tpyo" (id `c-1`) and its correction "typo fixed" (id `c-2`); end on PEER's
  correction of a message.
MODE resume PEER LAST: with stream management (XEP-0198) enabled, on PEER's message "before drop"
  cut the TCP connection ("dropping"), wait for a line on stdin, reconnect and resume; report
  every message from PEER and end after the one with body LAST. When resumption fails, bind
  anew and report the archive with PEER (MAM) instead.
MODE block BLOCK UNBLOCK MARKER: report the block list, block BLOCK, report the list again and
  send BLOCK a message (id `to-blocked`); report "ready"; report each message; on MARKER's
  "marker" unblock UNBLOCK, report the list and end.
MODE mam MAX TARGET WITH [TARGET WITH...]: page each archive (TARGET's, filtered by WITH unless
  it is "-") backwards MAX results at a time until complete; report each page's `fin` and then
  the whole archive, oldest first.
"""
import asyncio
import json
import ssl
import sys

import slixmpp
from slixmpp.xmlstream import ET
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

CHAT_STATES = "http://jabber.org/protocol/chatstates"
MARKERS = "urn:xmpp:chat-markers:0"
RECEIPTS = "urn:xmpp:receipts"
MUC = "http://jabber.org/protocol/muc"
MUC_USER = "http://jabber.org/protocol/muc#user"
DELAY = "urn:xmpp:delay"
SID = "urn:xmpp:sid:0"
MAM = "urn:xmpp:mam:2"
RSM = "http://jabber.org/protocol/rsm"
FORWARD = "urn:xmpp:forward:0"
BLOCKING = "urn:xmpp:blocking"
BLOCKING_ERRORS = "urn:xmpp:blocking:errors"


def emit(**fields):
    print(json.dumps(fields), flush=True)


def child(xml, name, ns):
    return xml.find("{%s}%s" % (ns, name))


def text_of(xml, name):
    element = child(xml, name, "jabber:client")
    return element.text if element is not None else None


def error_condition(xml):
    """The defined condition of an error stanza, if it is one."""
    error = xml.find("{jabber:client}error")
    return error[0].tag.split("}")[1] if error is not None and len(error) else None


def main():
    host, port, jid, password, mode = sys.argv[1:6]
    args = sys.argv[6:]
    client = slixmpp.ClientXMPP(jid, password, sasl_mech="SCRAM-SHA-256")
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    client.ssl_context = context
    client.enable_direct_tls = False
    client.enable_starttls = True
    client.enable_plaintext = False
    done = asyncio.get_event_loop().create_future()
    step = {"name": "start"}

    def finish():
        if not done.done():
            done.set_result(None)

    def send_message(to, mtype, body=None, id=None, payloads=()):
        message = client.make_message(mto=to, mbody=body, mtype=mtype)
        if id is not None:
            message["id"] = id
        for payload in payloads:
            message.append(payload)
        message.send()

    def dm_message(stanza):
        peer, reply = args
        xml = stanza.xml
        if stanza["from"].bare != peer:
            return
        body = text_of(xml, "body")
        states = [c.tag.split("}")[1] for c in xml if c.tag.startswith("{%s}" % CHAT_STATES)]
        displayed = child(xml, "displayed", MARKERS)
        received = child(xml, "received", RECEIPTS)
        if body is not None:
            sid = child(xml, "stanza-id", SID)
            emit(event="message", body=body, id=xml.get("id"), stanza_id=sid.get("id") if sid is not None else None,
                 markable=child(xml, "markable", MARKERS) is not None)
            send_message(peer, "chat", payloads=[ET.Element("{%s}displayed" % MARKERS, id=xml.get("id"))])
            send_message(peer, "chat", payloads=[ET.Element("{%s}composing" % CHAT_STATES)])
            step["name"] = "reacted"
            emit(event="reacted")
        for state in states:
            emit(event="chatstate", state=state)
            if state == "active" and step["name"] == "reacted":
                step["name"] = "replied"
                send_message(peer, "chat", body=reply, id="xmpp-reply-1",
                             payloads=[ET.Element("{%s}active" % CHAT_STATES)])
                emit(event="sent")
        if displayed is not None:
            emit(event="displayed", id=displayed.get("id"),
                 received=received.get("id") if received is not None else None)
            if displayed.get("id") == "xmpp-reply-1":
                client.disconnect()

    def muc_message(stanza):
        room, nick, text = args
        xml = stanza.xml
        if stanza["from"].bare != room:
            return
        if xml.get("type") == "error":
            emit(event="error", condition=error_condition(xml))
            client.disconnect()
            return
        resource = stanza["from"].resource
        subject = child(xml, "subject", "jabber:client")
        body = text_of(xml, "body")
        if subject is not None:
            emit(event="subject", subject=subject.text or "", from_=str(stanza["from"]), step=step["name"])
            if step["name"] == "joining":
                step["name"] = "joined"
                send_message(room, "groupchat", body=text, id="muc-1")
            elif step["name"] == "setting-subject" and subject.text == "Set from XMPP":
                step["name"] = "leaving"
                client.send_presence(pto="%s/%s" % (room, nick), ptype="unavailable")
            return
        if body is None:
            return
        sid = child(xml, "stanza-id", SID)
        delay = child(xml, "delay", DELAY)
        emit(event="groupchat", body=body, nick=resource, id=xml.get("id"),
             stanza_id=sid.get("id") if sid is not None else None, delayed=delay is not None, step=step["name"])
        if step["name"] == "joined" and resource == nick and xml.get("id") == "muc-1":
            step["name"] = "live"
        elif step["name"] == "live" and resource != nick and delay is None:
            step["name"] = "setting-subject"
            message = client.make_message(mto=room, mtype="groupchat")
            message["subject"] = "Set from XMPP"
            message.send()

    def muc_presence(stanza):
        room, nick, _ = args
        xml = stanza.xml
        if stanza["from"].bare != room:
            return
        x = child(xml, "x", MUC_USER)
        item = child(x, "item", MUC_USER) if x is not None else None
        codes = sorted(s.get("code") for s in x.findall("{%s}status" % MUC_USER)) if x is not None else []
        emit(event="occupant", nick=stanza["from"].resource, type=xml.get("type"), codes=codes,
             jid=item.get("jid") if item is not None else None,
             affiliation=item.get("affiliation") if item is not None else None,
             role=item.get("role") if item is not None else None,
             error=error_condition(xml))
        if xml.get("type") == "error" or (xml.get("type") == "unavailable" and "110" in codes):
            client.disconnect()

    results = []

    def carbons_message(stanza):
        (peer,) = args
        xml = stanza.xml
        sent = xml.find("{urn:xmpp:carbons:2}sent/{%s}forwarded/{jabber:client}message" % FORWARD)
        if sent is not None:
            emit(event="carbon", body=text_of(sent, "body"), to=sent.get("to"), from_=sent.get("from"))
            send_message(peer, "chat", body="tpyo", id="c-1")
            replace = ET.Element("{urn:xmpp:message-correct:0}replace", id="c-1")
            send_message(peer, "chat", body="typo fixed", id="c-2", payloads=[replace])
            emit(event="corrected")
            return
        if stanza["from"].bare != peer or text_of(xml, "body") is None:
            return
        replace = child(xml, "replace", "urn:xmpp:message-correct:0")
        emit(event="message", body=text_of(xml, "body"), id=xml.get("id"),
             replace=replace.get("id") if replace is not None else None)
        if replace is not None:
            client.disconnect()

    def mam_result(stanza):
        result = child(stanza.xml, "result", MAM)
        if result is None:
            return
        inner = result.find("{%s}forwarded/{jabber:client}message" % FORWARD)
        delay = result.find("{%s}forwarded/{%s}delay" % (FORWARD, DELAY))
        results.append({"archive_id": result.get("id"), "queryid": result.get("queryid"), "from": inner.get("from"),
                        "type": inner.get("type"), "id": inner.get("id"), "body": text_of(inner, "body"),
                        "stamped": delay is not None and bool(delay.get("stamp"))})

    async def read_archive(target, with_jid, page_size):
        archive, before, pages = [], "", 0
        while True:
            del results[:]
            iq = client.make_iq_set(ito=target if with_jid == "-" else None)
            query = ET.SubElement(iq.xml, "{%s}query" % MAM, queryid="q%d" % pages)
            if with_jid != "-":
                form = ET.SubElement(query, "{jabber:x:data}x", type="submit")
                field = ET.SubElement(form, "{jabber:x:data}field", var="FORM_TYPE", type="hidden")
                ET.SubElement(field, "{jabber:x:data}value").text = MAM
                field = ET.SubElement(form, "{jabber:x:data}field", var="with")
                ET.SubElement(field, "{jabber:x:data}value").text = with_jid
            rsm = ET.SubElement(query, "{%s}set" % RSM)
            ET.SubElement(rsm, "{%s}max" % RSM).text = page_size
            ET.SubElement(rsm, "{%s}before" % RSM).text = before
            answer = await iq.send()
            fin = child(answer.xml, "fin", MAM)
            first = fin.find("{%s}set/{%s}first" % (RSM, RSM))
            complete = fin.get("complete") in ("true", "1")
            emit(event="fin", target=target, results=len(results), complete=complete,
                 queryids=sorted(set(r["queryid"] for r in results)))
            archive = results[:] + archive
            pages += 1
            if complete or first is None or pages > 10:
                break
            before = first.text
        emit(event="archive", target=target, pages=pages, messages=archive)

    def resume_message(stanza):
        peer, last = args
        body = text_of(stanza.xml, "body")
        if stanza["from"].bare != peer or body is None:
            return
        emit(event="message", body=body, step=step["name"])
        if body == "before drop" and step["name"] == "start":
            step["name"] = "dropping"
            emit(event="dropping")
            client.abort()
        elif body == last:
            client.disconnect()

    async def reconnect_when_told():
        await asyncio.get_event_loop().run_in_executor(None, sys.stdin.readline)
        step["name"] = "reconnecting"
        client.connect(host, int(port))

    def resume_disconnected(_event):
        if step["name"] == "dropping":
            asyncio.ensure_future(reconnect_when_told())
        else:
            finish()

    def resumed(stanza):
        step["name"] = "resumed"
        emit(event="resumed", h=int(stanza["h"]), client_sent=client.plugin["xep_0198"].seq)

    def resume_failed(stanza):
        condition = stanza.xml[0].tag.split("}")[1] if len(stanza.xml) else None
        step["name"] = "rebinding"
        emit(event="resume_failed", condition=condition)

    async def blocklist():
        iq = client.make_iq_get()
        ET.SubElement(iq.xml, "{%s}blocklist" % BLOCKING)
        answer = await iq.send()
        items = answer.xml.findall("{%s}blocklist/{%s}item" % (BLOCKING, BLOCKING))
        emit(event="blocklist", items=[item.get("jid") for item in items])

    async def change_block(name, target):
        iq = client.make_iq_set()
        ET.SubElement(ET.SubElement(iq.xml, "{%s}%s" % (BLOCKING, name)), "{%s}item" % BLOCKING, jid=target)
        answer = await iq.send()
        emit(event=name, type=answer.xml.get("type"))

    async def block_session():
        block, unblock, marker = args
        await blocklist()
        await change_block("block", block)
        await blocklist()
        send_message(block, "chat", body="hi", id="to-blocked")

    def block_message(stanza):
        block, unblock, marker = args
        xml = stanza.xml
        if xml.get("type") == "error" and xml.get("id") == "to-blocked":
            emit(event="bounce", condition=error_condition(xml),
                 blocked=xml.find("{jabber:client}error/{%s}blocked" % BLOCKING_ERRORS) is not None)
            emit(event="ready")
            return
        body = text_of(xml, "body")
        if body is None:
            return
        emit(event="message", from_=stanza["from"].bare, body=body)
        if stanza["from"].bare == marker and body == "marker":
            async def unblock_and_end():
                await change_block("unblock", unblock)
                await blocklist()
                client.disconnect()
            asyncio.ensure_future(unblock_and_end())

    async def session_start(_event):
        emit(event="session", jid=str(client.boundjid))
        if mode == "block":
            client.send_presence()
            await block_session()
            return
        if mode == "resume" and step["name"] == "rebinding":
            await read_archive(client.boundjid.bare, args[0], "20")
            client.disconnect()
            return
        client.send_presence()
        if mode == "carbons":
            iq = client.make_iq_set()
            ET.SubElement(iq.xml, "{urn:xmpp:carbons:2}enable")
            await iq.send()
            emit(event="ready")
        if mode == "mam":
            for index in range(1, len(args), 2):
                await read_archive(args[index], args[index + 1], args[0])
            client.disconnect()
        if mode == "muc":
            room, nick, _ = args
            presence = client.make_presence(pto="%s/%s" % (room, nick))
            x = ET.Element("{%s}x" % MUC)
            ET.SubElement(x, "{%s}history" % MUC, maxstanzas="5")
            presence.append(x)
            step["name"] = "joining"
            presence.send()

    handler = {"dm": dm_message, "muc": muc_message, "mam": mam_result, "carbons": carbons_message,
               "resume": resume_message, "block": block_message}[mode]
    client.register_handler(Callback("all messages", MatchXPath("{jabber:client}message"), handler))
    if mode == "muc":
        client.register_handler(Callback("all presence", MatchXPath("{jabber:client}presence"), muc_presence))
    client.add_event_handler("session_start", session_start)
    client.add_event_handler("failed_all_auth", lambda _: (client.disconnect(), finish()))
    client.add_event_handler("stream_error", lambda error: emit(event="stream_error", condition=error["condition"]))
    if mode == "resume":
        client.register_plugin("xep_0198")
        client.register_handler(Callback("archive", MatchXPath("{jabber:client}message/{%s}result" % MAM), mam_result))
        client.add_event_handler("session_resumed", resumed)
        client.add_event_handler("sm_failed", resume_failed)
        client.add_event_handler("disconnected", resume_disconnected)
    else:
        client.add_event_handler("disconnected", lambda _: finish())
    client.add_event_handler("connection_failed", lambda error: (emit(event="connection_failed", error=str(error)), finish()))
    client.connect(host, int(port))
    asyncio.get_event_loop().run_until_complete(asyncio.wait_for(done, 60))
    emit(event="end")


if __name__ == "__main__":
    main()
