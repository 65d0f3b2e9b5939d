//! Where tasks may be sent: the outbound target policy (docs/outbound.md).
//!
//! A [`TargetPolicy`] is built once from configuration and consulted at create time (for
//! IP-literal hosts and allow-lists) and by the dispatcher for every address it connects to
//! (resolved addresses, literal hosts and every redirect hop). It holds:
//!
//! - the **built-in deny ranges** (always on): IPv4 link-local `169.254.0.0/16` (which holds
//!   the cloud metadata address `169.254.169.254`), IPv6 link-local `fe80::/10`, the AWS IPv6
//!   metadata address `fd00:ec2::254`, and the unspecified ranges `0.0.0.0/8` and `::`;
//! - **extra deny ranges** from configuration (`outbound.deny`), e.g. `127.0.0.0/8`;
//! - optional **per-project allow-lists** (`outbound.allow.<project>`): when a project has
//!   one, its tasks may only target hosts matching an entry (exact host name, `*.suffix`
//!   pattern, IP address or CIDR range), and the deny ranges still apply on top.
//!
//! IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) are judged as the IPv4 address they carry,
//! so `::ffff:169.254.169.254` is refused like `169.254.169.254`. Loopback is allowed unless
//! denied by configuration (local development delivers to `127.0.0.1`).
//!
//! Everything here is pure: no DNS, no sockets.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// An IP network: an address and a prefix length. IPv4-mapped IPv6 networks
/// (`::ffff:0:0/96` and narrower) are stored as the IPv4 network they cover.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `a.b.c.d/n`, `v6addr/n` or a bare address (a single-address network). Host bits
    /// below the prefix must be zero (`10.0.0.1/8` is refused as a likely typo).
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = strip_brackets(addr)
            .parse()
            .map_err(|_| format!("{s:?} is not an IP address or CIDR range"))?;
        let max = max_prefix(addr);
        let prefix = match prefix {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(n) if n <= max && !p.starts_with('+') => n,
                _ => return Err(format!("{s:?} is not an IP address or CIDR range")),
            },
        };
        let cidr = Cidr::canonical(addr, prefix);
        if cidr.network() != cidr.addr {
            return Err(format!(
                "{s:?} has bits set below its /{prefix} prefix; the network is {cidr}"
            ));
        }
        Ok(cidr)
    }

    /// The network of `addr` with a prefix length (clamped to the family's maximum); host
    /// bits of `addr` are ignored.
    pub fn new(addr: IpAddr, prefix: u8) -> Cidr {
        Cidr::canonical(addr, prefix.min(max_prefix(addr)))
    }

    fn canonical(addr: IpAddr, prefix: u8) -> Cidr {
        match addr {
            IpAddr::V6(v6) if prefix >= 96 => match v6.to_ipv4_mapped() {
                Some(v4) => Cidr {
                    addr: IpAddr::V4(v4),
                    prefix: prefix - 96,
                },
                None => Cidr { addr, prefix },
            },
            _ => Cidr { addr, prefix },
        }
    }

    /// The network address (host bits cleared).
    pub fn network(&self) -> IpAddr {
        match self.addr {
            IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask32(self.prefix))),
            IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask128(self.prefix))),
        }
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether `ip` is in this network (an IPv4-mapped IPv6 address counts as its IPv4 one).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical_ip(ip)) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let m = mask32(self.prefix);
                u32::from(n) & m == u32::from(a) & m
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let m = mask128(self.prefix);
                u128::from(n) & m == u128::from(a) & m
            }
            _ => false,
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network(), self.prefix)
    }
}

fn max_prefix(addr: IpAddr) -> u8 {
    if addr.is_ipv4() { 32 } else { 128 }
}

fn mask32(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    }
}

fn mask128(prefix: u8) -> u128 {
    if prefix == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(prefix))
    }
}

/// `ip` with an IPv4-mapped IPv6 address turned into its IPv4 address.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => ip,
        },
        v4 => v4,
    }
}

fn strip_brackets(s: &str) -> &str {
    s.strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .unwrap_or(s)
}

/// A host name entry of an allow-list: an exact name or a `*.suffix` pattern (which matches
/// names ending in `.suffix`, at any depth, but not `suffix` itself). Stored lowercase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    /// Exactly this name.
    Exact(String),
    /// Any name ending in `.` + this suffix.
    Suffix(String),
}

impl HostPattern {
    /// Parses `name` or `*.suffix`; labels are letters, digits, `-` and `_`.
    pub fn parse(s: &str) -> Option<HostPattern> {
        let s = s.trim().trim_end_matches('.').to_ascii_lowercase();
        let (suffix, name) = match s.strip_prefix("*.") {
            Some(rest) => (true, rest.to_string()),
            None => (false, s),
        };
        let valid = !name.is_empty()
            && name.len() <= 253
            && name.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            });
        if !valid {
            return None;
        }
        Some(if suffix {
            HostPattern::Suffix(name)
        } else {
            HostPattern::Exact(name)
        })
    }

    /// Whether host name `host` matches (case-insensitive, a trailing dot ignored).
    pub fn matches(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.');
        match self {
            HostPattern::Exact(n) => host.eq_ignore_ascii_case(n),
            HostPattern::Suffix(s) => {
                host.len() > s.len() + 1
                    && host.as_bytes()[host.len() - s.len() - 1] == b'.'
                    && host[host.len() - s.len()..].eq_ignore_ascii_case(s)
            }
        }
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostPattern::Exact(n) => f.write_str(n),
            HostPattern::Suffix(s) => write!(f, "*.{s}"),
        }
    }
}

/// One project's allow-list: host name entries (matched against the URL's host name) and
/// IP/CIDR entries (matched against IP-literal hosts).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList {
    /// Host names and `*.suffix` patterns.
    pub hosts: Vec<HostPattern>,
    /// Addresses and ranges.
    pub nets: Vec<Cidr>,
}

impl AllowList {
    /// Parses the entries of `outbound.allow.<project>`; `setting` names it in errors.
    pub fn parse(setting: &str, entries: &[String]) -> Result<AllowList, PolicyError> {
        let mut list = AllowList::default();
        for e in entries {
            let t = e.trim();
            let looks_ip =
                t.contains('/') || t.contains(':') || strip_brackets(t).parse::<IpAddr>().is_ok();
            if looks_ip {
                list.nets
                    .push(Cidr::parse(t).map_err(|m| PolicyError(format!("{setting}: {m}")))?);
            } else if let Some(p) = HostPattern::parse(t) {
                list.hosts.push(p);
            } else {
                return Err(PolicyError(format!(
                    "{setting}: {e:?} is not a host name, *.suffix pattern, IP address or CIDR range"
                )));
            }
        }
        Ok(list)
    }
}

/// A configuration error of the outbound policy; the message names the setting and the bad
/// entry, e.g. `outbound.deny: "10.0.0.0/33" is not an IP address or CIDR range`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PolicyError(pub String);

/// A denied range and why it is denied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DenyRule {
    /// The range.
    pub net: Cidr,
    /// Why (shown in refusals): a built-in reason, or `outbound.deny` for configured ranges.
    pub reason: &'static str,
}

/// Why a target is refused. Its `Display` names the address or host and the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The address is in a denied range.
    #[error("{ip} is in the denied range {net} ({reason})")]
    Denied {
        /// The address refused.
        ip: IpAddr,
        /// The range it is in.
        net: Cidr,
        /// Why the range is denied.
        reason: &'static str,
    },
    /// The project has an allow-list and the host matches none of its entries.
    #[error(
        "{host} is not in the outbound allow-list of project {project:?} (outbound.allow.{project})"
    )]
    NotAllowed {
        /// The host (name or address) refused.
        host: String,
        /// The project whose allow-list applies.
        project: String,
    },
}

/// Built-in deny ranges: always refused, whatever the configuration says.
pub const BUILTIN_DENY: &[(&str, &str)] = &[
    ("169.254.0.0/16", "link-local and cloud metadata"),
    ("fe80::/10", "IPv6 link-local"),
    ("fd00:ec2::254/128", "AWS IPv6 metadata"),
    ("0.0.0.0/8", "unspecified"),
    ("::/128", "unspecified"),
];

/// Reason shown for ranges denied by configuration.
pub const CONFIGURED_REASON: &str = "outbound.deny";

/// The outbound target policy: deny ranges and per-project allow-lists. [`Default`] is the
/// built-in policy (built-in deny ranges only, no allow-lists).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetPolicy {
    deny: Vec<DenyRule>,
    allow: BTreeMap<String, AllowList>,
}

impl Default for TargetPolicy {
    fn default() -> Self {
        TargetPolicy::builtin()
    }
}

impl TargetPolicy {
    /// The built-in deny ranges only, no allow-lists.
    pub fn builtin() -> TargetPolicy {
        let deny = BUILTIN_DENY
            .iter()
            .map(|(net, reason)| DenyRule {
                net: Cidr::parse(net).unwrap_or_else(|_| unreachable!("built-in range {net}")),
                reason,
            })
            .collect();
        TargetPolicy {
            deny,
            allow: BTreeMap::new(),
        }
    }

    /// The built-in policy plus `deny` (entries of `outbound.deny`: IPs or CIDR ranges) and
    /// `allow` (project ID → entries of `outbound.allow.<project>`).
    pub fn new(
        deny: &[String],
        allow: &BTreeMap<String, Vec<String>>,
    ) -> Result<TargetPolicy, PolicyError> {
        let mut p = TargetPolicy::builtin();
        for d in deny {
            let net = Cidr::parse(d).map_err(|m| PolicyError(format!("outbound.deny: {m}")))?;
            p.deny.push(DenyRule {
                net,
                reason: CONFIGURED_REASON,
            });
        }
        for (project, entries) in allow {
            let setting = format!("outbound.allow.{project}");
            if !crate::names::valid_project_id(project) {
                return Err(PolicyError(format!(
                    "{setting}: {project:?} is not a valid project ID"
                )));
            }
            p.allow
                .insert(project.clone(), AllowList::parse(&setting, entries)?);
        }
        Ok(p)
    }

    /// The deny rules, built-in first.
    pub fn deny_rules(&self) -> &[DenyRule] {
        &self.deny
    }

    /// The allow-list of `project`, if it has one.
    pub fn allow_list(&self, project: &str) -> Option<&AllowList> {
        self.allow.get(project)
    }

    /// The projects that have an allow-list.
    pub fn allow_listed_projects(&self) -> impl Iterator<Item = &str> {
        self.allow.keys().map(String::as_str)
    }

    /// Checks `ip` against the deny ranges only (the check for resolved addresses of a host
    /// name that passed [`TargetPolicy::check_host`]).
    pub fn check_denied(&self, ip: IpAddr) -> Result<(), Refusal> {
        match self.deny.iter().find(|r| r.net.contains(ip)) {
            Some(r) => Err(Refusal::Denied {
                ip,
                net: r.net,
                reason: r.reason,
            }),
            None => Ok(()),
        }
    }

    /// Checks an IP-literal target of `project`: the deny ranges, then the project's
    /// allow-list (its IP/CIDR entries) when it has one.
    pub fn check_ip(&self, project: &str, ip: IpAddr) -> Result<(), Refusal> {
        self.check_denied(ip)?;
        match self.allow.get(project) {
            Some(list) if !list.nets.iter().any(|n| n.contains(ip)) => Err(Refusal::NotAllowed {
                host: ip.to_string(),
                project: project.to_string(),
            }),
            _ => Ok(()),
        }
    }

    /// Checks the host of a target URL of `project`: an IP literal (brackets allowed) goes
    /// through [`TargetPolicy::check_ip`]; a name must match the project's allow-list when it
    /// has one (its addresses are checked when resolved, at dispatch).
    pub fn check_host(&self, project: &str, host: &str) -> Result<(), Refusal> {
        if let Ok(ip) = strip_brackets(host).parse::<IpAddr>() {
            return self.check_ip(project, ip);
        }
        match self.allow.get(project) {
            Some(list) if !list.hosts.iter().any(|p| p.matches(host)) => Err(Refusal::NotAllowed {
                host: host.to_string(),
                project: project.to_string(),
            }),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn policy(deny: &[&str], allow: &[(&str, &[&str])]) -> Result<TargetPolicy, PolicyError> {
        let deny: Vec<String> = deny.iter().map(|s| s.to_string()).collect();
        let allow = allow
            .iter()
            .map(|(p, e)| (p.to_string(), e.iter().map(|s| s.to_string()).collect()))
            .collect();
        TargetPolicy::new(&deny, &allow)
    }

    #[test]
    fn builtin_denies_metadata_and_link_local() {
        let p = TargetPolicy::default();
        let e = p.check_ip("p", ip("169.254.169.254")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "169.254.169.254 is in the denied range 169.254.0.0/16 (link-local and cloud metadata)"
        );
        assert!(p.check_ip("p", ip("169.254.0.1")).is_err());
        assert!(p.check_ip("p", ip("fe80::1")).is_err());
        assert!(p.check_ip("p", ip("febf::1")).is_err());
        assert!(p.check_ip("p", ip("fec0::1")).is_ok());
        assert!(p.check_ip("p", ip("fd00:ec2::254")).is_err());
        assert!(p.check_ip("p", ip("fd00:ec2::253")).is_ok());
        assert!(p.check_ip("p", ip("0.0.0.0")).is_err());
        assert!(p.check_ip("p", ip("0.1.2.3")).is_err());
        assert!(p.check_ip("p", ip("::")).is_err());
        // Loopback and ordinary addresses are allowed by default.
        assert!(p.check_ip("p", ip("127.0.0.1")).is_ok());
        assert!(p.check_ip("p", ip("::1")).is_ok());
        assert!(p.check_ip("p", ip("10.0.0.1")).is_ok());
        assert!(p.check_ip("p", ip("169.253.255.255")).is_ok());
        assert!(p.check_ip("p", ip("169.255.0.0")).is_ok());
    }

    #[test]
    fn mapped_ipv6_is_judged_as_ipv4() {
        let p = policy(&["127.0.0.0/8"], &[]).unwrap();
        let e = p.check_ip("p", ip("::ffff:169.254.169.254")).unwrap_err();
        assert!(e.to_string().contains("169.254.0.0/16"), "{e}");
        assert!(p.check_ip("p", ip("::ffff:a9fe:a9fe")).is_err());
        assert!(p.check_ip("p", ip("::ffff:127.0.0.1")).is_err());
        assert!(p.check_ip("p", ip("::ffff:0.0.0.0")).is_err());
        assert!(p.check_ip("p", ip("::ffff:10.0.0.1")).is_ok());
        // A mapped range in the configuration covers the IPv4 addresses too.
        let p = policy(&["::ffff:10.0.0.0/104"], &[]).unwrap();
        let e = p.check_ip("p", ip("10.9.9.9")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "10.9.9.9 is in the denied range 10.0.0.0/8 (outbound.deny)"
        );
        assert!(p.check_ip("p", ip("11.0.0.1")).is_ok());
    }

    #[test]
    fn configured_ranges_and_prefix_edges() {
        let p = policy(&["127.0.0.1", "10.0.0.0/8", "2001:db8::/32"], &[]).unwrap();
        assert!(p.check_ip("p", ip("127.0.0.1")).is_err());
        assert!(
            p.check_ip("p", ip("127.0.0.2")).is_ok(),
            "/32 is one address"
        );
        assert!(p.check_ip("p", ip("10.255.255.255")).is_err());
        assert!(p.check_ip("p", ip("11.0.0.0")).is_ok());
        assert!(p.check_ip("p", ip("2001:db8:ffff::1")).is_err());
        assert!(p.check_ip("p", ip("2001:db9::1")).is_ok());
        // /0 denies a whole family, and only that family.
        let p = policy(&["0.0.0.0/0"], &[]).unwrap();
        assert!(p.check_ip("p", ip("8.8.8.8")).is_err());
        assert!(p.check_ip("p", ip("255.255.255.255")).is_err());
        assert!(p.check_ip("p", ip("::ffff:8.8.8.8")).is_err());
        assert!(p.check_ip("p", ip("2001:db8::1")).is_ok());
        let p = policy(&["::/0"], &[]).unwrap();
        assert!(p.check_ip("p", ip("2001:db8::1")).is_err());
        assert!(p.check_ip("p", ip("8.8.8.8")).is_ok());
    }

    #[test]
    fn bad_entries_name_the_setting() {
        let e = policy(&["10.0.0.0/33"], &[]).unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"outbound.deny: "10.0.0.0/33" is not an IP address or CIDR range"#
        );
        for bad in [
            "",
            "10.0.0",
            "10.0.0.0/",
            "10.0.0.0/-1",
            "10.0.0.0/+8",
            "::/129",
            "x",
        ] {
            let e = policy(&[bad], &[]).unwrap_err().to_string();
            assert!(e.starts_with("outbound.deny: "), "{bad}: {e}");
        }
        let e = policy(&["10.0.0.1/8"], &[]).unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"outbound.deny: "10.0.0.1/8" has bits set below its /8 prefix; the network is 10.0.0.0/8"#
        );
        let e = policy(&[], &[("billing", &["ok.example", "bad host"])]).unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"outbound.allow.billing: "bad host" is not a host name, *.suffix pattern, IP address or CIDR range"#
        );
        for bad in ["*", "*.", "a..b", "*.*.x", "", "1.2.3.4/40"] {
            let e = policy(&[], &[("billing", &[bad])]).unwrap_err().to_string();
            assert!(e.starts_with("outbound.allow.billing: "), "{bad}: {e}");
        }
        let e = policy(&[], &[("Bad Project", &["x.example"])]).unwrap_err();
        assert!(
            e.to_string().starts_with("outbound.allow.Bad Project: "),
            "{e}"
        );
    }

    #[test]
    fn allow_list_hosts_and_nets() {
        let p = policy(
            &["10.1.2.0/24"],
            &[(
                "billing",
                &[
                    "api.billing.example",
                    "*.Billing.Internal",
                    "10.1.0.0/16",
                    "[::1]",
                ],
            )],
        )
        .unwrap();
        assert!(p.check_host("billing", "api.billing.example").is_ok());
        assert!(p.check_host("billing", "API.Billing.Example.").is_ok());
        assert!(p.check_host("billing", "x.billing.internal").is_ok());
        assert!(p.check_host("billing", "a.b.BILLING.internal").is_ok());
        assert!(p.check_host("billing", "billing.internal").is_err(), "apex");
        assert!(p.check_host("billing", "evilbilling.internal").is_err());
        assert!(p.check_host("billing", "billing.internal.evil").is_err());
        assert!(p.check_host("billing", "other.example").is_err());
        assert!(p.check_host("billing", "10.1.0.5").is_ok());
        assert!(p.check_host("billing", "::ffff:10.1.0.5").is_ok());
        assert!(p.check_host("billing", "[::1]").is_ok());
        let e = p.check_host("billing", "10.2.0.5").unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"10.2.0.5 is not in the outbound allow-list of project "billing" (outbound.allow.billing)"#
        );
        // The deny list applies on top of the allow-list.
        let e = p.check_host("billing", "10.1.2.3").unwrap_err();
        assert!(matches!(e, Refusal::Denied { .. }), "{e}");
        assert!(p.check_host("billing", "169.254.169.254").is_err());
        // Other projects have no allow-list.
        assert!(p.check_host("other", "anything.example").is_ok());
        assert!(p.check_host("other", "10.2.0.5").is_ok());
        assert!(p.check_host("other", "10.1.2.3").is_err());
        assert_eq!(p.allow_listed_projects().collect::<Vec<_>>(), ["billing"]);
    }

    #[test]
    fn suffix_patterns_do_not_match_lookalikes() {
        let s = HostPattern::parse("*.acme.com").unwrap();
        assert!(s.matches("a.acme.com"));
        assert!(s.matches("A.ACME.COM"));
        assert!(s.matches("x.y.acme.com."));
        assert!(!s.matches("acme.com"));
        assert!(!s.matches(".acme.com"));
        assert!(!s.matches("evilacme.com"));
        assert!(!s.matches("acme.com.evil.com"));
        let e = HostPattern::parse("acme.com").unwrap();
        assert!(e.matches("ACME.com"));
        assert!(!e.matches("a.acme.com"));
        assert_eq!(s.to_string(), "*.acme.com");
    }

    #[test]
    fn cidr_display_and_contains() {
        let c = Cidr::parse("fe80::/10").unwrap();
        assert_eq!(c.to_string(), "fe80::/10");
        assert_eq!(
            Cidr::parse("::ffff:127.0.0.0/104").unwrap().to_string(),
            "127.0.0.0/8"
        );
        assert_eq!(Cidr::parse("1.2.3.4").unwrap().to_string(), "1.2.3.4/32");
        assert_eq!(Cidr::new(ip("10.9.9.9"), 8).to_string(), "10.0.0.0/8");
        assert!(
            Cidr::parse("10.0.0.0/8")
                .unwrap()
                .contains(ip("::ffff:10.0.0.1"))
        );
        assert!(!Cidr::parse("10.0.0.0/8").unwrap().contains(ip("::a00:1")));
    }
}
