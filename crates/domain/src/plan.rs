//! Plans and the plan gate. The only way to obtain a [`SenderOverridePermit`] is
//! [`sender_override_permit`], and everything that uses a tenant's own mail server
//! takes that permit, so no caller can skip the check.

use std::fmt;
use std::str::FromStr;

crate::coded_enum! {
    /// The hosting plans a tenant can be on (the codes are used in the API and the
    /// database).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum Plan {
        Economy = "ECONOMY",
        Basic = "BASIC",
        Pro = "PRO",
        Share = "SHARE",
        Biz = "BIZ",
    }
}

impl Plan {
    /// The product name shown to people.
    pub fn display_name(self) -> &'static str {
        match self {
            Plan::Economy => "Economy",
            Plan::Basic => "Basic",
            Plan::Pro => "Pro",
            Plan::Share => "Share",
            Plan::Biz => "Biz",
        }
    }

    /// Whether tenants on this plan may send from their own server and address.
    pub fn can_override_sender(self) -> bool {
        sender_override_permit(self).is_ok()
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// A plan code that is not one of ours.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown plan {0:?}")]
pub struct UnknownPlan(pub String);

impl FromStr for Plan {
    type Err = UnknownPlan;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Plan::from_code(s).ok_or_else(|| UnknownPlan(s.to_owned()))
    }
}

/// Proof that a plan allows a custom sender. It has a private field, so it can only
/// come from [`sender_override_permit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderOverridePermit {
    plan: Plan,
}

impl SenderOverridePermit {
    /// The plan the permit was granted for.
    pub fn plan(self) -> Plan {
        self.plan
    }
}

/// The plan does not allow a custom sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("plan {0} does not allow a custom sender")]
pub struct PlanForbidsCustomSender(pub Plan);

/// The plan gate: only Share and Biz may replace the platform's default sender.
pub fn sender_override_permit(plan: Plan) -> Result<SenderOverridePermit, PlanForbidsCustomSender> {
    match plan {
        Plan::Share | Plan::Biz => Ok(SenderOverridePermit { plan }),
        Plan::Economy | Plan::Basic | Plan::Pro => Err(PlanForbidsCustomSender(plan)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_share_and_biz_get_a_permit() {
        let allowed: Vec<Plan> = Plan::ALL
            .into_iter()
            .filter(|p| sender_override_permit(*p).is_ok())
            .collect();
        assert_eq!(allowed, vec![Plan::Share, Plan::Biz]);
    }

    #[test]
    fn codes_round_trip() {
        for p in Plan::ALL {
            assert_eq!(p.code().parse::<Plan>(), Ok(p));
        }
        assert!("share".parse::<Plan>().is_err());
    }
}
