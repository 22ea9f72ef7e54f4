//! The setup assistant's probe: every pair (port, encryption) up to EHLO at once, each
//! under its own deadline and the address guard, with no credentials; a STARTTLS pair
//! whose server offers no STARTTLS is tried once more in plain text, to say so. Then,
//! with credentials, one AUTH on the best working pair — never a second: retried logins
//! lock accounts. Encrypted pairs only, unless the user typed the plain one. Every
//! session it opened ends with QUIT before the report is returned (those still
//! answering when the deadline comes are left to finish in the background); only the
//! conversations cut by their deadline are dropped without.

use std::time::{Duration, Instant};

use domain::mail::{FailureKind, SendFailure, SendStage};
use domain::probe::{Offer, PAIR_DEADLINE, ProbeReport, ProbeTarget, ProbedPair, answers_in_plain};
use domain::settings::Encryption;
use tokio::task::JoinSet;

use crate::Mailer;
use crate::session::{self, ServerParams, Session, Timeouts};

/// What one pair's conversation ended with: its outcome and, when it works, the session
/// (kept for the one AUTH).
type Tried = (usize, u16, Encryption, Result<(Offer, Session), SendFailure>);

impl Mailer {
    pub(crate) async fn run_probe(&self, target: &ProbeTarget, deadline: Duration) -> ProbeReport {
        let started = Instant::now();
        let until = tokio::time::Instant::now() + deadline;
        let step = PAIR_DEADLINE / 2;
        let t = Timeouts {
            connect: step,
            command: step,
            data: step,
        };
        let ehlo = crate::client_id(target.ehlo.as_ref().unwrap_or(&self.inner.config.ehlo_name));
        let typed = |port, encryption| target.typed == Some((port, encryption));

        let failed_all = |f: &SendFailure| -> Vec<ProbedPair> {
            target
                .pairs
                .iter()
                .map(|&(port, encryption)| ProbedPair {
                    port,
                    encryption,
                    typed: typed(port, encryption),
                    outcome: Err(f.clone()),
                })
                .collect()
        };
        // One lookup for every pair (the same checked addresses).
        let addrs = match self.inner.guard.resolve(&target.host, 0, step).await {
            Ok(a) => a,
            Err(f) => return ProbeReport::ranked(failed_all(&f), None, started.elapsed()),
        };

        let mut set: JoinSet<Tried> = JoinSet::new();
        let mut refused_ports = Vec::new();
        for (i, &(port, encryption)) in target.pairs.iter().enumerate() {
            if !self.inner.config.ports.smtp.contains(&port) {
                refused_ports.push((i, port, encryption));
                continue;
            }
            let params = ServerParams {
                host: target.host.as_str().to_owned(),
                port,
                encryption,
                credentials: None,
                mechanism: crate::session::AuthMechanism::Password,
                ehlo: ehlo.clone(),
            };
            let addrs: Vec<_> = addrs.iter().map(|a| std::net::SocketAddr::new(a.ip(), port)).collect();
            let tls = self.inner.tls.clone();
            set.spawn(async move {
                let outcome = match tokio::time::timeout(PAIR_DEADLINE, try_pair(&params, &addrs, &tls, &t)).await {
                    Ok(r) => r,
                    Err(_) => Err(SendFailure::new(SendStage::Connect, FailureKind::TimedOut)),
                };
                (i, port, encryption, outcome)
            });
        }

        let mut tried: Vec<Tried> = Vec::new();
        let mut late: Vec<Session> = Vec::new();
        collect(&mut set, until, &mut tried, &mut late).await;

        // Plain-text follow-ups for STARTTLS pairs that answered but offered no STARTTLS.
        let mut followups: JoinSet<Tried> = JoinSet::new();
        for (i, port, encryption, outcome) in &tried {
            if *encryption == Encryption::StartTls
                && let Err(f) = outcome
                && answers_in_plain(f)
                && !target.pairs.contains(&(*port, Encryption::None))
            {
                let params = ServerParams {
                    host: target.host.as_str().to_owned(),
                    port: *port,
                    encryption: Encryption::None,
                    credentials: None,
                    mechanism: crate::session::AuthMechanism::Password,
                    ehlo: ehlo.clone(),
                };
                let addrs: Vec<_> = addrs.iter().map(|a| std::net::SocketAddr::new(a.ip(), *port)).collect();
                let tls = self.inner.tls.clone();
                let (i, port) = (*i, *port);
                followups.spawn(async move {
                    let outcome = match tokio::time::timeout(PAIR_DEADLINE, try_pair(&params, &addrs, &tls, &t)).await {
                        Ok(r) => r,
                        Err(_) => Err(SendFailure::new(SendStage::Connect, FailureKind::TimedOut)),
                    };
                    (i, port, Encryption::None, outcome)
                });
            }
        }
        collect(&mut followups, until, &mut tried, &mut late).await;

        // Everything not answered in time timed out; ports not open to tenants were not tried.
        let mut pairs: Vec<ProbedPair> = Vec::new();
        let mut sessions: Vec<((u16, Encryption), Session)> = Vec::new();
        for (i, &(port, encryption)) in target.pairs.iter().enumerate() {
            if refused_ports.iter().any(|(j, _, _)| *j == i) {
                pairs.push(ProbedPair {
                    port,
                    encryption,
                    typed: typed(port, encryption),
                    outcome: Err(SendFailure::new(SendStage::Connect, FailureKind::PortNotAllowed)),
                });
                continue;
            }
            for (_, p, e, outcome) in tried
                .iter_mut()
                .filter(|(j, p, e, _)| *j == i && *p == port && *e == encryption)
            {
                push(&mut pairs, &mut sessions, *p, *e, typed(*p, *e), outcome);
            }
            if !pairs.iter().any(|p| p.port == port && p.encryption == encryption) {
                pairs.push(ProbedPair {
                    port,
                    encryption,
                    typed: typed(port, encryption),
                    outcome: Err(SendFailure::new(SendStage::Connect, FailureKind::TimedOut)),
                });
            }
            for (_, p, e, outcome) in tried.iter_mut().filter(|(j, p, e, _)| {
                *j == i && *p == port && *e == Encryption::None && encryption != Encryption::None
            }) {
                push(&mut pairs, &mut sessions, *p, *e, false, outcome);
            }
        }
        let report = ProbeReport::ranked(pairs, None, started.elapsed());

        // The one AUTH: on the best pair, if it offers a login method and is encrypted
        // (or plain because the user chose plain).
        let mut auth = None;
        if let (Some((user, password)), Some(best)) = (&target.credentials, report.best())
            && let Ok(offer) = &best.outcome
            && offer.password_auth()
            && (best.encryption != Encryption::None || best.typed)
            && let Some(pos) = sessions.iter().position(|(k, _)| *k == (best.port, best.encryption))
        {
            let (_, mut session) = sessions.swap_remove(pos);
            let left = until.saturating_duration_since(tokio::time::Instant::now());
            let auth_t = Timeouts {
                command: t.command.min(left),
                ..t
            };
            // A refused login has said QUIT already; one that worked says it below.
            let result = session.authenticate(user.as_str(), password, &auth_t).await;
            if result.is_ok() {
                sessions.push(((best.port, best.encryption), session));
            }
            auth = Some(result);
        }
        // Goodbye to every session, all at once: waited for within the deadline (one
        // round trip), then left to finish in the background (each bounded by the
        // command deadline).
        let goodbyes: Vec<_> = sessions
            .into_iter()
            .map(|(_, s)| s)
            .chain(late)
            .chain(
                tried
                    .into_iter()
                    .filter_map(|(_, _, _, outcome)| outcome.ok().map(|(_, s)| s)),
            )
            .map(|s| tokio::spawn(async move { s.quit(&t).await }))
            .collect();
        let left = until.saturating_duration_since(tokio::time::Instant::now());
        if tokio::time::timeout(left, join_all(goodbyes)).await.is_err() {
            tracing::debug!("a probe's QUIT went unanswered");
        }
        ProbeReport::ranked(report.pairs, auth, started.elapsed())
    }
}

/// Joins `set`'s conversations until `until`; then those still running are cut (their
/// connections dropped: the deadline came), and the sessions of any that finished while
/// being cut go to `late` (to say QUIT).
async fn collect(
    set: &mut JoinSet<Tried>,
    until: tokio::time::Instant,
    tried: &mut Vec<Tried>,
    late: &mut Vec<Session>,
) {
    loop {
        match tokio::time::timeout_at(until, set.join_next()).await {
            Ok(Some(Ok(done))) => tried.push(done),
            Ok(Some(Err(e))) => tracing::warn!(error = %e, "a probe conversation ended abnormally"),
            Ok(None) => return,
            Err(_) => {
                set.abort_all();
                while let Some(joined) = set.join_next().await {
                    if let Ok((_, _, _, Ok((_, session)))) = joined {
                        late.push(session);
                    }
                }
                return;
            }
        }
    }
}

/// Waits for every task (their results are nothing).
async fn join_all(handles: Vec<tokio::task::JoinHandle<()>>) {
    for handle in handles {
        let _ = handle.await;
    }
}

fn push(
    pairs: &mut Vec<ProbedPair>,
    sessions: &mut Vec<((u16, Encryption), Session)>,
    port: u16,
    encryption: Encryption,
    typed: bool,
    outcome: &mut Result<(Offer, Session), SendFailure>,
) {
    let taken = std::mem::replace(outcome, Err(SendFailure::new(SendStage::Connect, FailureKind::Network)));
    let outcome = match taken {
        Ok((offer, session)) => {
            sessions.push(((port, encryption), session));
            Ok(offer)
        }
        Err(f) => Err(f),
    };
    pairs.push(ProbedPair {
        port,
        encryption,
        typed,
        outcome,
    });
}

async fn try_pair(
    params: &ServerParams,
    addrs: &[std::net::SocketAddr],
    tls: &crate::tls::TlsMaterial,
    t: &Timeouts,
) -> Result<(Offer, Session), SendFailure> {
    let session = session::open(params, addrs, tls, t).await?;
    Ok((session.offer(), session))
}
