//! Delivery in the API suite: an app whose tenants may send to servers on loopback, its
//! worker started and stopped in process, and enqueueing and waiting for a delivery.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use testkit::servers::test_ca;

use super::{Backend, TestApp, spawn_app_with};

pub const ENQUEUE: &str = "mutation($i:NotificationInput!){ enqueueNotification(input:$i){ id status messageId subject to kind retries idempotencyKey } }";
pub const DELIVERY: &str = "query($id:ID!){ delivery(id:$id){ id status retries messageId failureReason failureMessage failureCode failureDetail sentAt nextAttemptAt \
    attempts { outcome stage smtpCode enhancedCode serverMessage senderAddress senderSource } } }";

/// A running in-process worker; `stop` drains it like SIGTERM does.
pub struct RunningWorker {
    stop: tokio::sync::oneshot::Sender<()>,
    handle: tokio::task::JoinHandle<worker::WorkerReport>,
}

impl RunningWorker {
    pub fn start(app: &TestApp) -> Self {
        let (stop, rx) = tokio::sync::oneshot::channel::<()>();
        let handle = tokio::spawn(app.app.worker().run(async {
            let _ = rx.await;
        }));
        Self { stop, handle }
    }

    pub async fn stop(self) -> worker::WorkerReport {
        let _ = self.stop.send(());
        self.handle.await.expect("worker task")
    }
}

/// An app whose tenants may send to these loopback ports (see [`delivery_config`]).
pub async fn delivery_app(backend: Backend, ports: &[u16]) -> TestApp {
    let ports = ports.to_vec();
    spawn_app_with(backend, move |c| delivery_config(c, ports)).await
}

/// Private hosts on `ports` allowed, the test CA trusted, short deadlines and retries.
pub fn delivery_config(c: &mut mailgate::config::Config, ports: Vec<u16>) {
    c.allow_private_smtp_hosts = true;
    c.smtp_allowed_ports = ports;
    c.smtp_ca_file = Some(test_ca().ca_pem.clone());
    c.smtp_connect_timeout_secs = 3;
    c.smtp_command_timeout_secs = 5;
    c.retry_base_secs = 1;
    c.rate_limit_defer_secs = 1;
    c.worker_poll_ms = 100;
    c.worker_shutdown_grace_secs = 5;
}

/// A `REGISTRATION_COMPLETED` notification in `locale`, with an idempotency key or none.
pub fn registration(tenant: &str, locale: &str, key: Option<&str>) -> Value {
    json!({
        "tenantId": tenant,
        "kind": "REGISTRATION_COMPLETED",
        "to": "member@example.net",
        "locale": locale,
        "variables": { "name": "<Yamada & Co>", "siteName": "Sakura", "loginUrl": "https://sakura.example/login?a=1&b=2" },
        "idempotencyKey": key,
    })
}

/// Enqueues as the service; the new (or existing) delivery.
pub async fn enqueue(app: &TestApp, input: Value) -> Value {
    app.ok(&app.service(), ENQUEUE, json!({ "i": input })).await["enqueueNotification"].clone()
}

/// The delivery with its attempts, as an operator reads it.
pub async fn delivery(app: &TestApp, id: &str) -> Value {
    app.ok(&app.operator(), DELIVERY, json!({ "id": id })).await["delivery"].clone()
}

/// Polls until the delivery has `status` (and returns it), or panics after `timeout`.
pub async fn wait_status(app: &TestApp, id: &str, status: &str, timeout: Duration) -> Value {
    let start = Instant::now();
    loop {
        let d = delivery(app, id).await;
        if d["status"] == status {
            return d;
        }
        assert!(start.elapsed() < timeout, "delivery {id} never became {status}: {d}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
