//! An endpoint's URL when it is saved: an internal address typed as such, `localhost`, or
//! a name that resolves only to internal addresses is refused unless the operator allowed
//! internal hosts for webhooks. (Operators register endpoints, so unlike a tenant they
//! are told when a name resolves to an internal address.)

use domain::ports::{EndpointCheck, HostCheck};
use domain::values::Host;
use domain::webhook::EndpointUrl;
use mailer::guard::{Guard, is_forbidden, is_localhost};

/// The deadline of the lookup made when an endpoint is saved.
const SAVE_LOOKUP: std::time::Duration = std::time::Duration::from_secs(5);

/// [`EndpointCheck`] by the address guard.
#[derive(Debug, Clone)]
pub struct GuardCheck(pub Guard);

#[async_trait::async_trait]
impl EndpointCheck for GuardCheck {
    async fn check(&self, url: &EndpointUrl) -> HostCheck {
        if self.0.allow_private {
            return HostCheck::Reachable;
        }
        let host = url.host();
        if is_localhost(&host) {
            return HostCheck::Forbidden;
        }
        let Ok(name) = Host::parse(&host) else {
            return HostCheck::Forbidden;
        };
        if let Some(ip) = name.ip() {
            return if is_forbidden(ip) {
                HostCheck::Forbidden
            } else {
                HostCheck::Reachable
            };
        }
        match self
            .0
            .resolver
            .lookup_host(name.as_str(), url.port(), SAVE_LOOKUP)
            .await
        {
            Ok(addrs) if !addrs.is_empty() && addrs.iter().any(|a| is_forbidden(a.ip())) => HostCheck::Forbidden,
            Ok(addrs) if !addrs.is_empty() => HostCheck::Reachable,
            _ => HostCheck::Unresolved,
        }
    }
}
