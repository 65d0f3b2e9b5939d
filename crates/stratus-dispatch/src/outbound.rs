//! Outbound safety: every connection the dispatcher opens is checked against the
//! [`TargetPolicy`] (docs/outbound.md).
//!
//! Three checks cover every way an attempt reaches an address:
//!
//! - **Literal hosts** (`http://169.254.169.254/`, `http://[fe80::1]/`): the HTTP client
//!   connects to them without resolving, so [`Outbound::check_url`] refuses them before the
//!   request is sent.
//! - **Host names** go through the clients' DNS resolver ([`PolicyResolver`]), which drops the
//!   denied addresses and fails with the refusal when none remain. The check is on the
//!   resolved address actually connected to, so a name that resolves to an allowed address
//!   at create time and a denied one later (DNS rebinding) is still refused.
//! - **Redirects**: every hop (at most 10, as before) is re-checked by the clients' redirect
//!   policy — literal hosts and allow-lists there, resolved addresses by the resolver.
//!
//! A project with an allow-list needs its project at connection time, so it gets its own
//! client; every other project shares the default client, whose checks are the deny ranges
//! only. Each client keeps its own keep-alive pool.
//!
//! When an `HTTP_PROXY`/`HTTPS_PROXY` is set in the environment the proxy resolves host
//! names itself; only literal hosts, allow-lists and redirects are checked here then.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use stratus_types::target::{Refusal, TargetPolicy};

/// Most redirects followed per attempt (Cloud Tasks follows up to 10).
pub const MAX_REDIRECTS: usize = 10;

/// Why the dispatcher did not connect: recorded as the attempt's error. It travels inside
/// the HTTP client's errors; [`Refused::find`] gets it back out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("target refused{context}: {refusal}")]
pub struct Refused {
    /// Where the refusal happened: empty for the task's URL, ` (redirect)` for a redirect
    /// hop, ` (<name> resolves only to refused addresses)` for a host name.
    context: String,
    /// The rule and the address or host refused.
    pub refusal: Refusal,
}

impl Refused {
    /// A refusal of the task's own URL.
    pub fn direct(refusal: Refusal) -> Refused {
        Refused {
            context: String::new(),
            refusal,
        }
    }

    /// The refusal carried somewhere in `err`'s source chain, if any.
    pub fn find<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a Refused> {
        let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
        while let Some(e) = cur {
            if let Some(r) = e.downcast_ref::<Refused>() {
                return Some(r);
            }
            cur = e.source();
        }
        None
    }
}

/// The policy as one client applies it: for one project with an allow-list, or (`None`) the
/// deny ranges only.
#[derive(Debug, Clone)]
struct View {
    policy: Arc<TargetPolicy>,
    project: Option<String>,
}

impl View {
    fn check_ip(&self, ip: IpAddr) -> Result<(), Refusal> {
        match &self.project {
            Some(p) => self.policy.check_ip(p, ip),
            None => self.policy.check_denied(ip),
        }
    }

    /// An address a host name resolved to: the name passed the allow-list already, so only
    /// the deny ranges apply.
    fn check_resolved(&self, ip: IpAddr) -> Result<(), Refusal> {
        self.policy.check_denied(ip)
    }

    /// A host name before it is resolved: only allow-lists apply.
    fn check_name(&self, name: &str) -> Result<(), Refusal> {
        match &self.project {
            Some(p) => self.policy.check_host(p, name),
            None => Ok(()),
        }
    }

    fn check_url(&self, url: &url::Url) -> Result<(), Refusal> {
        match url.host() {
            Some(url::Host::Ipv4(ip)) => self.check_ip(ip.into()),
            Some(url::Host::Ipv6(ip)) => self.check_ip(ip.into()),
            Some(url::Host::Domain(name)) => self.check_name(name),
            None => Ok(()),
        }
    }
}

/// The DNS resolver of the dispatch clients: the system resolver (`getaddrinfo` on a
/// blocking thread), then the policy on every address returned. Denied addresses are
/// dropped; when none remain the lookup fails with the [`Refused`] of the first one.
#[derive(Debug, Clone)]
pub struct PolicyResolver {
    view: View,
}

impl Resolve for PolicyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let view = self.view.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            // `?` boxes the `Refused` itself, so `Refused::find` can downcast to it.
            view.check_name(&host).map_err(Refused::direct)?;
            let found = tokio::net::lookup_host((host.as_str(), 0)).await?;
            let mut kept: Vec<SocketAddr> = Vec::new();
            let mut refused: Option<Refusal> = None;
            for addr in found {
                match view.check_resolved(addr.ip()) {
                    Ok(()) => kept.push(addr),
                    Err(r) => {
                        tracing::debug!(host = %host, address = %addr.ip(), "dropped a denied address of a target host");
                        refused.get_or_insert(r);
                    }
                }
            }
            if kept.is_empty() {
                return Err(match refused {
                    Some(refusal) => Box::new(Refused {
                        context: format!(" ({host} resolves only to refused addresses)"),
                        refusal,
                    })
                        as Box<dyn std::error::Error + Send + Sync>,
                    None => format!("{host} resolves to no address").into(),
                });
            }
            Ok(Box::new(kept.into_iter()) as Addrs)
        })
    }
}

/// The dispatch clients and the policy they enforce. Built once per engine.
#[derive(Debug)]
pub struct Outbound {
    policy: Arc<TargetPolicy>,
    default: Clients,
    projects: HashMap<String, Clients>,
}

/// The two clients of one policy view.
#[derive(Debug)]
struct Clients {
    /// Follows redirects to any allowed target.
    any: reqwest::Client,
    /// Follows redirects only within the first URL's origin: for requests carrying
    /// `receiver_auth` proofs, which the HTTP client would otherwise hand to whatever host a
    /// redirect names (it strips only `Authorization` and cookies across hosts).
    same_origin: reqwest::Client,
}

impl Clients {
    fn build(view: View) -> Result<Clients, reqwest::Error> {
        Ok(Clients {
            any: build(view.clone(), false)?,
            same_origin: build(view, true)?,
        })
    }
}

impl Outbound {
    /// Builds the default client and one client per project with an allow-list.
    pub fn new(policy: Arc<TargetPolicy>) -> Result<Outbound, reqwest::Error> {
        let default = Clients::build(View {
            policy: policy.clone(),
            project: None,
        })?;
        let mut projects = HashMap::new();
        for p in policy.allow_listed_projects() {
            let view = View {
                policy: policy.clone(),
                project: Some(p.to_string()),
            };
            projects.insert(p.to_string(), Clients::build(view)?);
        }
        Ok(Outbound {
            policy,
            default,
            projects,
        })
    }

    /// The policy enforced.
    pub fn policy(&self) -> &Arc<TargetPolicy> {
        &self.policy
    }

    /// The client for tasks of `project`; with `same_origin`, one that refuses redirects
    /// leaving the task URL's origin (for requests carrying secrets in headers).
    pub fn client(&self, project: &str, same_origin: bool) -> &reqwest::Client {
        let c = self.projects.get(project).unwrap_or(&self.default);
        if same_origin { &c.same_origin } else { &c.any }
    }

    /// Checks the URL an attempt of `project` is about to be sent to: a literal host against
    /// the deny ranges and allow-list, a host name against the allow-list (its addresses are
    /// checked when resolved).
    pub fn check_url(&self, project: &str, url: &url::Url) -> Result<(), Refused> {
        let view = View {
            policy: self.policy.clone(),
            project: Some(project.to_string()),
        };
        view.check_url(url).map_err(Refused::direct)
    }
}

/// A client whose resolver and redirect policy apply `view`; with `same_origin`, redirects
/// to another scheme, host or port are refused.
fn build(view: View, same_origin: bool) -> Result<reqwest::Client, reqwest::Error> {
    let hops = view.clone();
    let redirect = reqwest::redirect::Policy::custom(move |attempt| {
        if attempt.previous().len() > MAX_REDIRECTS {
            let msg = format!("too many redirects (more than {MAX_REDIRECTS})");
            return attempt.error(msg);
        }
        if same_origin
            && let Some(first) = attempt.previous().first()
            && first.origin() != attempt.url().origin()
        {
            let msg = format!(
                "redirect to another origin ({}) not followed: the request carries the \
                 queue's receiver_auth secret or signature",
                attempt.url().origin().ascii_serialization()
            );
            return attempt.error(msg);
        }
        match hops.check_url(attempt.url()) {
            Ok(()) => attempt.follow(),
            Err(refusal) => attempt.error(Refused {
                context: " (redirect)".to_string(),
                refusal,
            }),
        }
    });
    crate::attempt::client_builder()
        .redirect(redirect)
        .dns_resolver(Arc::new(PolicyResolver { view }))
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(deny: &[&str], allow: &[(&str, &[&str])]) -> Arc<TargetPolicy> {
        let deny: Vec<String> = deny.iter().map(|s| s.to_string()).collect();
        let allow = allow
            .iter()
            .map(|(p, e)| (p.to_string(), e.iter().map(|s| s.to_string()).collect()))
            .collect();
        Arc::new(TargetPolicy::new(&deny, &allow).unwrap())
    }

    #[tokio::test]
    async fn resolver_drops_denied_addresses() {
        let view = View {
            policy: policy(&["127.0.0.0/8"], &[]),
            project: None,
        };
        let r = PolicyResolver { view };
        let err = r
            .resolve("localhost".parse().unwrap())
            .await
            .err()
            .expect("localhost resolves only to denied addresses here");
        let refused = Refused::find(err.as_ref()).expect("a refusal");
        let msg = refused.to_string();
        assert!(
            msg.starts_with("target refused (localhost resolves only to refused addresses): "),
            "{msg}"
        );
        // Without the deny range, localhost resolves.
        let r = PolicyResolver {
            view: View {
                policy: policy(&[], &[]),
                project: None,
            },
        };
        let addrs: Vec<SocketAddr> = r
            .resolve("localhost".parse().unwrap())
            .await
            .unwrap()
            .collect();
        assert!(addrs.iter().any(|a| a.ip().is_loopback()), "{addrs:?}");
    }

    #[tokio::test]
    async fn resolver_applies_allow_lists_before_resolving() {
        let r = PolicyResolver {
            view: View {
                policy: policy(&[], &[("billing", &["*.billing.internal"])]),
                project: Some("billing".into()),
            },
        };
        let err = r.resolve("localhost".parse().unwrap()).await.err().unwrap();
        assert_eq!(
            Refused::find(err.as_ref()).unwrap().to_string(),
            r#"target refused: localhost is not in the outbound allow-list of project "billing" (outbound.allow.billing)"#
        );
    }

    #[test]
    fn literal_urls_are_checked_per_project() {
        let out = Outbound::new(policy(&["10.0.0.0/8"], &[("billing", &["10.9.0.0/16"])])).unwrap();
        let url = |s: &str| url::Url::parse(s).unwrap();
        let e = out.check_url("p", &url("http://0xa9fea9fe/")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "target refused: 169.254.169.254 is in the denied range 169.254.0.0/16 (link-local and cloud metadata)"
        );
        assert!(
            out.check_url("p", &url("http://[::ffff:169.254.169.254]/"))
                .is_err()
        );
        assert!(out.check_url("p", &url("http://10.1.1.1/")).is_err());
        assert!(out.check_url("p", &url("http://127.0.0.1:8080/")).is_ok());
        assert!(out.check_url("p", &url("http://example.com/")).is_ok());
        assert!(out.check_url("billing", &url("http://127.0.0.1/")).is_err());
        assert!(
            out.check_url("billing", &url("http://example.com/"))
                .is_err()
        );
        // Denied on top of the allow-list.
        assert!(out.check_url("billing", &url("http://10.9.0.1/")).is_err());
    }
}
