"""A raw XMPP client for tests/xmpp_bad_input.rs: it sends what no well-behaved client would.

usage: raw.py HOST PORT [SEND UNTIL]...
Opens a stream to hearth.test and upgrades it with STARTTLS (Hearth's generated certificate is
not verified), then for each pair sends SEND ("{header}" in it is a stream header) and reads
what the server writes until UNTIL appears in it or the connection closes. One JSON line per
pair: {"answer": TEXT, "closed": BOOL}; it stops after the connection closed.
"""
import json
import socket
import ssl
import sys

HEADER = ("<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' "
          "to='hearth.test' version='1.0'>")


def read_until(sock, until):
    """What the server wrote until `until` showed up (True: it closed the connection)."""
    text = ""
    while until not in text:
        try:
            chunk = sock.recv(65536)
        except (ConnectionError, ssl.SSLError, OSError):
            return text, True
        if not chunk:
            return text, True
        text += chunk.decode("utf-8", "replace")
    return text, False


def main():
    host, port = sys.argv[1], int(sys.argv[2])
    pairs = sys.argv[3:]
    sock = socket.create_connection((host, port), timeout=30)
    sock.sendall(HEADER.encode())
    read_until(sock, "</stream:features>")
    sock.sendall(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
    read_until(sock, "<proceed")
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    sock = context.wrap_socket(sock, server_hostname="hearth.test")
    for index in range(0, len(pairs), 2):
        send, until = pairs[index].replace("{header}", HEADER), pairs[index + 1]
        sock.sendall(send.encode())
        text, closed = read_until(sock, until)
        print(json.dumps({"answer": text, "closed": closed}), flush=True)
        if closed:
            break
    print(json.dumps({"event": "end"}), flush=True)


if __name__ == "__main__":
    main()
