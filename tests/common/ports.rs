//! Ports for servers a test starts as separate processes (`hearth serve`, Synapse).
//!
//! Binding port 0 and handing the number to a child is racy: between the probe socket's close
//! and the child's bind, any other socket of the machine that binds port 0 — another test's
//! in-process server, an outgoing connection — may be given the same number. The child then
//! fails to bind, or worse, the test talks to the other server (a login of a user it never
//! made). The kernel hands out port-0 and outgoing ports only from its ephemeral range
//! (`/proc/sys/net/ipv4/ip_local_port_range`, 32768–60999 by default), so these ports come from
//! below it, where only an explicit bind can take them.

use std::sync::atomic::{AtomicU16, Ordering};

/// Below Linux's default ephemeral range, above the ports well-known services use.
const FIRST: u16 = 20_000;
const COUNT: u16 = 12_000;

/// A port below the ephemeral range that nothing listens on now. Each call in a process gives
/// a different port; processes start at different offsets (their pid), so parallel test
/// binaries rarely probe the same ports, and a port in use is skipped.
pub fn port_for_child() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(u16::MAX);
    // u16::MAX marks "not seeded yet"; the pid spreads processes over the range.
    let seed = (std::process::id() % u32::from(COUNT)) as u16;
    let _ = NEXT.compare_exchange(u16::MAX, seed, Ordering::SeqCst, Ordering::SeqCst);
    for _ in 0..COUNT {
        let offset = NEXT.fetch_add(1, Ordering::SeqCst) % COUNT;
        let port = FIRST + offset;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {FIRST}..{}", FIRST + COUNT)
}
