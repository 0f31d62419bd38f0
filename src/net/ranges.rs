//! Which addresses count as non-public: the ranges an outbound request that a user can aim
//! must not reach unless the operator allows it (`network.allow_private_destinations`).
//!
//! The list follows the IANA special-purpose registries (and Synapse's default
//! `ip_range_blacklist`): loopback, private, shared (CGNAT), link-local, unique-local,
//! documentation, benchmarking, multicast, reserved, unspecified and broadcast. IPv6
//! addresses that carry an IPv4 address (v4-mapped, v4-compatible, NAT64, 6to4) are judged by
//! the IPv4 address inside, since that is where the packets end up.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Whether `address` is outside the public internet.
pub(crate) fn is_non_public(address: IpAddr) -> bool {
    match address {
        IpAddr::V4(v4) => is_non_public_v4(v4),
        IpAddr::V6(v6) => is_non_public_v6(v6),
    }
}

/// IPv4 ranges as (network, prefix length).
const NON_PUBLIC_V4: [([u8; 4], u32); 17] = [
    ([0, 0, 0, 0], 8),          // "this network", including the unspecified address
    ([10, 0, 0, 0], 8),         // private
    ([100, 64, 0, 0], 10),      // shared address space (carrier-grade NAT)
    ([127, 0, 0, 0], 8),        // loopback
    ([169, 254, 0, 0], 16),     // link-local (cloud metadata services live here)
    ([172, 16, 0, 0], 12),      // private
    ([192, 0, 0, 0], 24),       // IETF protocol assignments
    ([192, 0, 2, 0], 24),       // documentation (TEST-NET-1)
    ([192, 88, 99, 0], 24),     // 6to4 relay anycast
    ([192, 168, 0, 0], 16),     // private
    ([198, 18, 0, 0], 15),      // benchmarking
    ([198, 51, 100, 0], 24),    // documentation (TEST-NET-2)
    ([203, 0, 113, 0], 24),     // documentation (TEST-NET-3)
    ([224, 0, 0, 0], 4),        // multicast
    ([240, 0, 0, 0], 4),        // reserved for future use
    ([255, 255, 255, 255], 32), // limited broadcast (inside 240/4; listed for the reader)
    ([192, 31, 196, 0], 24),    // AS112
];

/// IPv6 ranges as (network, prefix length); ranges that embed IPv4 are handled apart.
const NON_PUBLIC_V6: [(u128, u32); 9] = [
    (0, 128),                                        // unspecified
    (1, 128),                                        // loopback
    (0x0100_0000_0000_0000_0000_0000_0000_0000, 64), // discard-only
    (0x2001_0db8_0000_0000_0000_0000_0000_0000, 32), // documentation
    (0x2001_0000_0000_0000_0000_0000_0000_0000, 23), // IETF protocol assignments (Teredo, ORCHID…)
    (0xfc00_0000_0000_0000_0000_0000_0000_0000, 7),  // unique-local
    (0xfe80_0000_0000_0000_0000_0000_0000_0000, 10), // link-local
    (0xfec0_0000_0000_0000_0000_0000_0000_0000, 10), // site-local (deprecated, still routable inside sites)
    (0xff00_0000_0000_0000_0000_0000_0000_0000, 8),  // multicast
];

fn is_non_public_v4(address: Ipv4Addr) -> bool {
    let bits = u32::from(address);
    NON_PUBLIC_V4
        .iter()
        .any(|(network, prefix)| in_prefix(u128::from(bits), u128::from(u32::from_be_bytes(*network)), *prefix, 32))
}

fn is_non_public_v6(address: Ipv6Addr) -> bool {
    if let Some(v4) = embedded_v4(address) {
        return is_non_public_v4(v4);
    }
    let bits = u128::from(address);
    NON_PUBLIC_V6.iter().any(|(network, prefix)| in_prefix(bits, *network, *prefix, 128))
}

/// The IPv4 address an IPv6 address stands for, where the packets would go to it.
fn embedded_v4(address: Ipv6Addr) -> Option<Ipv4Addr> {
    let bits = u128::from(address);
    let low32 = Ipv4Addr::from((bits & 0xffff_ffff) as u32);
    // ::ffff:a.b.c.d (v4-mapped): a dual-stack socket connects to a.b.c.d.
    if bits >> 32 == 0xffff {
        return Some(low32);
    }
    // ::a.b.c.d (v4-compatible, deprecated) — but not :: and ::1, judged as IPv6 above.
    if bits >> 32 == 0 && bits > 1 {
        return Some(low32);
    }
    // 64:ff9b::a.b.c.d (NAT64, RFC 6052) and 64:ff9b:1::/48 (local-use NAT64, RFC 8215).
    if bits >> 32 == 0x0064_ff9b_0000_0000_0000_0000 || bits >> 80 == 0x0064_ff9b_0001 {
        return Some(low32);
    }
    // 2002:a.b.c.d::/48 (6to4).
    if bits >> 112 == 0x2002 {
        return Some(Ipv4Addr::from(((bits >> 80) & 0xffff_ffff) as u32));
    }
    None
}

fn in_prefix(address: u128, network: u128, prefix: u32, width: u32) -> bool {
    if prefix == 0 {
        return true;
    }
    let shift = width - prefix;
    address >> shift == network >> shift
}

#[cfg(test)]
mod tests {
    use super::*;

    fn judged(text: &str) -> bool {
        is_non_public(text.parse().expect("an address"))
    }

    #[test]
    fn private_loopback_link_local_and_special_ranges_are_non_public() {
        for address in [
            "127.0.0.1",
            "127.255.255.254",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "0.1.2.3",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
            "192.0.2.10",
            "198.18.0.1",
            "::",
            "::1",
            "fe80::1",
            "fc00::1",
            "fd12:3456::1",
            "ff02::1",
            "fec0::1",
            "2001:db8::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::7f00:1",
            "2002:7f00:1::1",
            "2002:c0a8:101::",
        ] {
            assert!(judged(address), "{address} must be refused");
        }
    }

    #[test]
    fn public_addresses_are_allowed() {
        for address in [
            "1.1.1.1",
            "8.8.8.8",
            "172.15.255.255",
            "172.32.0.0",
            "192.169.0.1",
            "100.128.0.1",
            "93.184.216.34",
            "2606:4700:4700::1111",
            "2a00:1450:4001:80b::200e",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ] {
            assert!(!judged(address), "{address} is public");
        }
    }
}
