//! What no client should send, after TLS and after login: each is answered with the SASL
//! failure, stanza error or stream error RFC 6120 and XEP-0198 name — never a panic, and a
//! stanza error leaves the stream open. A raw client (`tests/clients/xmpp/raw.py`) sends it.

use crate::clients::install::xmpp_client_script;
use crate::xmpp::{run_script, start};
use base64::Engine;
use serde_json::Value;

const SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";
const STREAMS: &str = "xmlns='urn:ietf:params:xml:ns:xmpp-streams'";
const STANZAS: &str = "xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'";

/// The raw client's answers to `steps` (pairs of what to send and what ends the answer).
async fn exchange(port: u16, steps: &[String]) -> Vec<Value> {
    let script = xmpp_client_script().with_file_name("raw.py");
    let port = port.to_string();
    let mut args = vec!["127.0.0.1", port.as_str()];
    args.extend(steps.iter().map(String::as_str));
    let mut lines = run_script(&script, &args, async |_| {}).await;
    lines.pop();
    lines
}

fn plain(credentials: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(credentials)
}

/// Log in as alice with PLAIN and bind a resource, then `more`.
fn logged_in(more: &[(&str, &str)]) -> Vec<String> {
    let auth = format!("<auth xmlns='{SASL}' mechanism='PLAIN'>{}</auth>", plain("\0alice\0alice-password"));
    let bind = "<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>";
    let mut steps = vec!["{header}".to_owned(), "</stream:features>".to_owned(), auth, "success".to_owned()];
    steps.extend(["{header}".to_owned(), "</stream:features>".to_owned(), bind.to_owned(), "</iq>".to_owned()]);
    steps.extend(more.iter().flat_map(|(send, until)| [(*send).to_owned(), (*until).to_owned()]));
    steps
}

/// Read until the server closes the connection (the server never writes this).
const CLOSED: &str = "(until the connection closes)";

/// The answer to step `index` (attribute quotes made single, whichever the server used) and
/// whether the server closed the connection.
fn answer(lines: &[Value], index: usize) -> (String, bool) {
    let line = lines.get(index).unwrap_or_else(|| panic!("no answer {index}: {lines:?}"));
    (line["answer"].as_str().unwrap().replace('"', "'"), line["closed"].as_bool().unwrap())
}

#[tokio::test]
async fn bad_sasl_exchanges_get_their_failure_and_end_after_three() {
    let xmpp = start().await;
    xmpp.server.register("alice", "alice-password").await;
    let steps: Vec<String> = [
        ("{header}", "</stream:features>"),
        ("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='X-UNKNOWN'/>", "</failure>"),
        ("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>!!not base64!!</auth>", "</failure>"),
        ("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGFsaWNl</auth>", CLOSED),
    ]
    .iter()
    .flat_map(|(send, until)| [(*send).to_owned(), (*until).to_owned()])
    .collect();
    let lines = exchange(xmpp.starttls_port, &steps).await;
    assert!(answer(&lines, 0).0.contains("<mechanism>PLAIN</mechanism>"), "{lines:?}");
    assert!(answer(&lines, 1).0.contains("<invalid-mechanism/>"), "{lines:?}");
    assert!(answer(&lines, 2).0.contains("<incorrect-encoding/>"), "{lines:?}");
    // "\0alice" has no password part; the third failure also ends the stream.
    let (last, closed) = answer(&lines, 3);
    assert!(last.contains("<malformed-request/>"), "{last}");
    assert!(last.contains(&format!("<not-authorized {STREAMS}/>")) && closed, "{last}");

    // A stanza before authenticating ends the stream too.
    let steps = ["{header}", "</stream:features>", "<message to='bob@hearth.test'/>", CLOSED];
    let lines = exchange(xmpp.starttls_port, &steps.map(str::to_owned)).await;
    assert!(answer(&lines, 1).0.contains(&format!("<not-authorized {STREAMS}/>")), "{lines:?}");
}

#[tokio::test]
async fn bad_stanzas_after_login_get_stanza_errors_and_the_stream_goes_on() {
    let xmpp = start().await;
    xmpp.server.register("alice", "alice-password").await;
    let steps = logged_in(&[
        ("<iq type='get' id='u1'><query xmlns='urn:example:unknown'/></iq>", "</iq>"),
        ("<message to='nobody@elsewhere.test' id='m1' type='chat'><body>x</body></message>", "</message>"),
        ("<message to='bob@hearth.test' id='m2' type='headline'><body>x</body></message>", "</message>"),
        // Acknowledgements before stream management is enabled, then an impossible count.
        ("<a xmlns='urn:xmpp:sm:3' h='1'/>", "</failed>"),
        ("<enable xmlns='urn:xmpp:sm:3' resume='true'/>", "/>"),
        ("<iq type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>", "p1"),
        ("<a xmlns='urn:xmpp:sm:3' h='7'/>", CLOSED),
    ]);
    let lines = exchange(xmpp.starttls_port, &steps).await;
    assert!(answer(&lines, 2).0.contains("<sm xmlns='urn:xmpp:sm:3'/>"), "stream management is offered: {lines:?}");
    let (unknown, _) = answer(&lines, 4);
    assert!(
        unknown.contains("type='error'") && unknown.contains(&format!("<service-unavailable {STANZAS}/>")),
        "{unknown}"
    );
    let (elsewhere, _) = answer(&lines, 5);
    assert!(elsewhere.contains(&format!("<service-unavailable {STANZAS}/>")), "{elsewhere}");
    let (headline, _) = answer(&lines, 6);
    assert!(headline.contains(&format!("<feature-not-implemented {STANZAS}/>")), "{headline}");
    assert!(answer(&lines, 7).0.contains(&format!("<unexpected-request {STANZAS}/>")), "{lines:?}");
    let (enabled, closed) = answer(&lines, 8);
    assert!(enabled.contains("<enabled xmlns='urn:xmpp:sm:3' id='") && enabled.contains("resume='true'"), "{enabled}");
    assert!(!closed);
    assert!(answer(&lines, 9).0.contains("type='result'"), "the stream still serves: {lines:?}");
    // One stanza (the pong) was sent since enabling: h=7 is more than the server sent.
    let (too_high, closed) = answer(&lines, 10);
    assert!(too_high.contains(&format!("<undefined-condition {STREAMS}/>")), "{too_high}");
    assert!(too_high.contains("handled-count-too-high") && closed, "{too_high}");
}

#[tokio::test]
async fn bad_xml_oversized_and_unknown_stanzas_after_login_end_the_stream() {
    let xmpp = start().await;
    xmpp.server.register("alice", "alice-password").await;
    let oversized = format!("<message to='bob@hearth.test'><body>{}</body></message>", "x".repeat(10_000));
    for (send, condition) in [
        ("<message><body></message>", "not-well-formed"),
        (oversized.as_str(), "policy-violation"),
        ("<query xmlns='jabber:iq:roster'/>", "unsupported-stanza-type"),
        ("<resume xmlns='urn:xmpp:sm:3' h='0' previd='x'/><r xmlns='urn:xmpp:sm:3'/><a xmlns='urn:xmpp:sm:3'/>", ""),
    ] {
        let until = if condition.is_empty() { "</failed>" } else { CLOSED };
        let lines = exchange(xmpp.starttls_port, &logged_in(&[(send, until)])).await;
        let (text, closed) = answer(&lines, 4);
        if condition.is_empty() {
            // A resume on a bound stream is refused without ending it.
            assert!(text.contains(&format!("<unexpected-request {STANZAS}/>")) && !closed, "{text}");
        } else {
            assert!(text.contains(&format!("<{condition} {STREAMS}/>")), "{condition}: {text}");
            assert!(closed, "{condition}: {text}");
        }
    }
}
