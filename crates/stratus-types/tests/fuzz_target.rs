//! Property-based fuzzing of the outbound target policy (`stratus_types::target`): its config
//! parsers never panic, and its answers agree with an independent reference for CIDR
//! membership, IPv4-mapped IPv6 and the built-in link-local ranges. Cases per property:
//! `PROPTEST_CASES` (default 4,000).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;
use proptest::test_runner::Config;
use stratus_types::target::{Cidr, TargetPolicy};

fn config() -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4_000);
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

/// IPv4 membership by arithmetic on u32, written apart from the parser.
fn v4_in(ip: Ipv4Addr, net: Ipv4Addr, prefix: u8) -> bool {
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    };
    u32::from(ip) & mask == u32::from(net) & mask
}

fn entry() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[0-9./:a-fA-F*]{0,40}",
        (any::<[u8; 4]>(), 0u8..40).prop_map(|(a, p)| format!("{}/{p}", Ipv4Addr::from(a))),
        (any::<u128>(), 0u8..140).prop_map(|(a, p)| format!("{}/{p}", Ipv6Addr::from(a))),
        "\\*?\\.?[a-z0-9-]{0,10}(\\.[a-z0-9-]{0,10}){0,3}\\.?",
    ]
}

proptest! {
    #![proptest_config(config())]

    /// Arbitrary deny and allow entries: a policy or an error naming the setting, never a
    /// panic; any policy answers every host without panicking.
    #[test]
    fn config_entries_never_panic(
        deny in prop::collection::vec(entry(), 0..4),
        allow in prop::collection::vec(entry(), 0..4),
        host in prop_oneof![any::<String>(), "[0-9.:a-z\\[\\]]{0,30}"],
        ip in any::<u128>(),
    ) {
        let mut map = BTreeMap::new();
        map.insert("p".to_string(), allow);
        match TargetPolicy::new(&deny, &map) {
            Ok(policy) => {
                let _ = policy.check_host("p", &host);
                let _ = policy.check_host("q", &host);
                let _ = policy.check_ip("p", IpAddr::V6(Ipv6Addr::from(ip)));
            }
            Err(e) => prop_assert!(e.0.starts_with("outbound."), "{}", e.0),
        }
    }

    /// A configured IPv4 range refuses exactly its members, spelled plainly or IPv4-mapped.
    #[test]
    fn ipv4_ranges_match_the_reference(net in any::<[u8; 4]>(), prefix in 0u8..=32, ip in any::<[u8; 4]>()) {
        let net = Ipv4Addr::from(net);
        let base = Cidr::new(IpAddr::V4(net), prefix).network();
        let policy = TargetPolicy::new(&[format!("{base}/{prefix}")], &BTreeMap::new()).unwrap();
        let ip = Ipv4Addr::from(ip);
        let builtin = v4_in(ip, Ipv4Addr::new(169, 254, 0, 0), 16) || v4_in(ip, Ipv4Addr::UNSPECIFIED, 8);
        let want_refused = builtin || v4_in(ip, net, prefix);
        prop_assert_eq!(policy.check_denied(IpAddr::V4(ip)).is_err(), want_refused);
        prop_assert_eq!(policy.check_denied(IpAddr::V6(ip.to_ipv6_mapped())).is_err(), want_refused);
    }

    /// The built-in policy refuses every link-local address and allows every loopback one.
    #[test]
    fn builtin_link_local_and_loopback(low in any::<u16>(), v6 in any::<u128>()) {
        let policy = TargetPolicy::builtin();
        let [a, b] = low.to_be_bytes();
        prop_assert!(policy.check_denied(IpAddr::V4(Ipv4Addr::new(169, 254, a, b))).is_err());
        prop_assert!(policy.check_denied(IpAddr::V4(Ipv4Addr::new(127, a, b, 1))).is_ok());
        let link_local = Ipv6Addr::from((0xfe80u128 << 112) | (v6 >> 10));
        prop_assert!(policy.check_denied(IpAddr::V6(link_local)).is_err());
    }
}
