//! The OAuth sign-in's ports on the store (issue 25): the `state` sealed with the key
//! ring (AES-256-GCM, so the browser can neither read the PKCE verifier inside nor change
//! a byte; keys rotated out still open it), and each `state` used once
//! (`oauth_states_used`, keyed by its nonce); and the tenants' connections
//! (`mail_connections`), their refresh tokens sealed for the connection's id, refreshed
//! by one lease holder at a time across processes.

use std::str::FromStr as _;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use domain::error::FieldCode;
use domain::oauth::{
    ConnectionId, ConnectionKind, ConnectionStatus, GrantProblem, MailConnection, NewConnection, StateNonce,
};
use domain::ports::{AuthorizationStateStore, MailConnections, RefreshOutcome, RefreshTurn, StateSeal};
use domain::{StoreError, TenantId};
use sea_orm::{ConnectionTrait, QueryResult};
use secrecy::{ExposeSecret as _, SecretString};

use crate::convert::{corrupt, db_err, tenant_id};
use crate::crypto::{SecretKeyRing, SecretPurpose};
use crate::sql::SqlBuilder;
use crate::store::SqlStore;

/// The associated data's subject of every sealed `state` (its tenant is inside the claims,
/// which the domain checks against the caller).
pub const STATE_SUBJECT: &str = "oauth-sign-in";

/// The sealed form: `v1.<key id>.<base64url(nonce || ciphertext)>`: URL-safe, and the key
/// id says which key of the ring opens it.
const VERSION: &str = "v1";

/// Sealed `state`s longer than this are not opened (what we seal is far shorter).
const MAX_SEALED: usize = 4096;

impl StateSeal for SqlStore {
    fn seal(&self, claims: &[u8]) -> String {
        // The claims are text (`AuthorizationState::to_claims`); anything else seals as
        // its lossless base64 so that nothing is refused here.
        let text = match std::str::from_utf8(claims) {
            Ok(t) => t.to_owned(),
            Err(_) => URL_SAFE_NO_PAD.encode(claims),
        };
        match self
            .keys
            .encrypt_for(&SecretString::from(text), STATE_SUBJECT, SecretPurpose::OauthState)
        {
            Ok((sealed, key_id)) => format!("{VERSION}.{key_id}.{}", URL_SAFE_NO_PAD.encode(sealed)),
            // AES-GCM sealing fails only for absurd lengths; an empty `state` then fails to
            // open at the callback, refusing the sign-in rather than weakening it.
            Err(_) => String::new(),
        }
    }

    fn open(&self, token: &str) -> Option<Vec<u8>> {
        if token.len() > MAX_SEALED {
            return None;
        }
        let mut parts = token.splitn(3, '.');
        let (version, key_id, body) = (parts.next()?, parts.next()?, parts.next()?);
        if version != VERSION {
            return None;
        }
        let sealed = URL_SAFE_NO_PAD.decode(body).ok()?;
        let opened = self
            .keys
            .decrypt_for(&sealed, key_id, STATE_SUBJECT, SecretPurpose::OauthState)
            .ok()?;
        Some(opened.expose_secret().as_bytes().to_vec())
    }
}

#[async_trait::async_trait]
impl AuthorizationStateStore for SqlStore {
    async fn mark_state_used(
        &self,
        tenant: TenantId,
        nonce: &StateNonce,
        expires_at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let backend = self.connection().get_database_backend();
        let txn = self.begin_write().await?;
        // What has expired can go: an expired `state` is refused before it gets here.
        let mut expired = SqlBuilder::new(backend);
        expired
            .sql("DELETE FROM oauth_states_used WHERE expires_at_ms < ")
            .bind(Utc::now().timestamp_millis());
        txn.execute_raw(expired.build()).await.map_err(db_err)?;
        let mut insert = SqlBuilder::new(backend);
        insert
            .sql("INSERT INTO oauth_states_used (nonce, tenant_id, expires_at_ms) VALUES (")
            .bind(nonce.as_str().to_owned())
            .sql(", ")
            .bind(tenant.to_string())
            .sql(", ")
            .bind(expires_at.timestamp_millis())
            .sql(") ON CONFLICT (nonce) DO NOTHING");
        let inserted = txn.execute_raw(insert.build()).await.map_err(db_err)?.rows_affected();
        txn.commit().await.map_err(db_err)?;
        Ok(inserted == 1)
    }
}

/// The columns [`connection_from_row`] reads a [`MailConnection`] from (by name; no
/// secret among them).
const CONNECTION_COLUMNS: &str = "id, tenant_id, kind, mailbox, status, scopes, directory_id, token_url, client_id, \
     last_refreshed_at_ms, created_at_ms";

/// Seals a connection's secret (refresh token or client secret) for its id and purpose.
fn seal(
    keys: &SecretKeyRing,
    id: ConnectionId,
    purpose: SecretPurpose,
    secret: &SecretString,
) -> Result<(Vec<u8>, String), StoreError> {
    keys.encrypt_for(secret, &id.to_string(), purpose)
        .map_err(|e| StoreError::Crypto(format!("mail connection {id}: {}: {e}", purpose.as_str())))
}

/// Opens what [`seal`] sealed.
fn open(
    keys: &SecretKeyRing,
    id: ConnectionId,
    purpose: SecretPurpose,
    sealed: &[u8],
    key_id: &str,
) -> Result<SecretString, StoreError> {
    keys.decrypt_for(sealed, key_id, &id.to_string(), purpose)
        .map_err(|e| StoreError::Crypto(format!("mail connection {id}: {}: {e}", purpose.as_str())))
}

fn millis(ms: i64, subject: &str, field: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_millis(ms).ok_or_else(|| corrupt(subject, field, FieldCode::InvalidFormat))
}

/// A connection read back, every value parsed again.
fn connection_from_row(row: &QueryResult) -> Result<MailConnection, StoreError> {
    let raw_id: String = row.try_get("", "id").map_err(db_err)?;
    let id = ConnectionId::from_str(&raw_id).map_err(|e| corrupt("a mail_connections row", "id", e))?;
    let subject = format!("mail connection {id}");
    let text = |column: &str| -> Result<String, StoreError> { row.try_get("", column).map_err(db_err) };
    let kind = text("kind")?;
    let status = text("status")?;
    let last_refreshed_at_ms: Option<i64> = row.try_get("", "last_refreshed_at_ms").map_err(db_err)?;
    let created_at_ms: i64 = row.try_get("", "created_at_ms").map_err(db_err)?;
    Ok(MailConnection {
        id,
        tenant_id: tenant_id(&text("tenant_id")?, "mail_connections")?,
        kind: ConnectionKind::from_code(&kind).ok_or_else(|| corrupt(&subject, "kind", FieldCode::InvalidFormat))?,
        mailbox: text("mailbox")?,
        status: ConnectionStatus::from_code(&status)
            .ok_or_else(|| corrupt(&subject, "status", FieldCode::InvalidFormat))?,
        scopes: text("scopes")?.split_whitespace().map(str::to_owned).collect(),
        directory_id: row.try_get("", "directory_id").map_err(db_err)?,
        token_url: row.try_get("", "token_url").map_err(db_err)?,
        client_id: row.try_get("", "client_id").map_err(db_err)?,
        last_refreshed_at: last_refreshed_at_ms
            .map(|ms| millis(ms, &subject, "lastRefreshedAt"))
            .transpose()?,
        created_at: millis(created_at_ms, &subject, "createdAt")?,
    })
}

fn lease_millis(lease: Duration) -> i64 {
    i64::try_from(lease.as_millis()).unwrap_or(i64::MAX)
}

#[async_trait::async_trait]
impl MailConnections for SqlStore {
    async fn create(
        &self,
        tenant: TenantId,
        new: NewConnection<'_>,
        now: DateTime<Utc>,
    ) -> Result<MailConnection, StoreError> {
        let id = ConnectionId::generate();
        let sealed = new
            .refresh_token
            .map(|token| seal(&self.keys, id, SecretPurpose::OauthRefreshToken, token))
            .transpose()?;
        let (ciphertext, key_id) = sealed.unzip();
        let client_sealed = new
            .client
            .map(|c| seal(&self.keys, id, SecretPurpose::OauthClientSecret, c.client_secret))
            .transpose()?;
        let (client_ciphertext, client_key_id) = client_sealed.unzip();
        // What is read back is what was stored: milliseconds.
        let created_at = millis(now.timestamp_millis(), &format!("mail connection {id}"), "createdAt")?;
        let mut insert = SqlBuilder::new(self.connection().get_database_backend());
        insert
            .sql(
                "INSERT INTO mail_connections (id, tenant_id, kind, mailbox, status, scopes, directory_id, \
                 token_url, client_id, client_secret_ciphertext, client_secret_key_id, \
                 refresh_token_ciphertext, refresh_token_key_id, created_at_ms) VALUES (",
            )
            .bind(id.to_string())
            .sql(", ")
            .bind(tenant.to_string())
            .sql(", ")
            .bind(new.kind.code())
            .sql(", ")
            .bind(new.mailbox.to_owned())
            .sql(", ")
            .bind(ConnectionStatus::Active.code())
            .sql(", ")
            .bind(new.scopes.join(" "))
            .sql(", ")
            .bind(new.directory.map(|d| d.as_str().to_owned()))
            .sql(", ")
            .bind(new.client.map(|c| c.token_url.to_owned()))
            .sql(", ")
            .bind(new.client.map(|c| c.client_id.to_owned()))
            .sql(", ")
            .bind(client_ciphertext)
            .sql(", ")
            .bind(client_key_id)
            .sql(", ")
            .bind(ciphertext)
            .sql(", ")
            .bind(key_id)
            .sql(", ")
            .bind(created_at.timestamp_millis())
            .sql(")");
        self.connection().execute_raw(insert.build()).await.map_err(db_err)?;
        Ok(MailConnection {
            id,
            tenant_id: tenant,
            kind: new.kind,
            mailbox: new.mailbox.to_owned(),
            status: ConnectionStatus::Active,
            scopes: new.scopes.to_vec(),
            directory_id: new.directory.map(|d| d.as_str().to_owned()),
            token_url: new.client.map(|c| c.token_url.to_owned()),
            client_id: new.client.map(|c| c.client_id.to_owned()),
            last_refreshed_at: None,
            created_at,
        })
    }

    async fn client_secret(&self, tenant: TenantId, id: ConnectionId) -> Result<Option<SecretString>, StoreError> {
        self.read_sealed(
            tenant,
            id,
            "client_secret_ciphertext",
            "client_secret_key_id",
            SecretPurpose::OauthClientSecret,
        )
        .await
    }

    async fn get(&self, tenant: TenantId, id: ConnectionId) -> Result<Option<MailConnection>, StoreError> {
        let mut select = SqlBuilder::new(self.connection().get_database_backend());
        select
            .sql("SELECT ")
            .sql(CONNECTION_COLUMNS)
            .sql(" FROM mail_connections WHERE tenant_id = ")
            .bind(tenant.to_string())
            .sql(" AND id = ")
            .bind(id.to_string());
        let row = self.connection().query_one_raw(select.build()).await.map_err(db_err)?;
        row.as_ref().map(connection_from_row).transpose()
    }

    async fn list(&self, tenant: TenantId) -> Result<Vec<MailConnection>, StoreError> {
        let mut select = SqlBuilder::new(self.connection().get_database_backend());
        select
            .sql("SELECT ")
            .sql(CONNECTION_COLUMNS)
            .sql(" FROM mail_connections WHERE tenant_id = ")
            .bind(tenant.to_string())
            .sql(" ORDER BY created_at_ms, id");
        let rows = self.connection().query_all_raw(select.build()).await.map_err(db_err)?;
        rows.iter().map(connection_from_row).collect()
    }

    async fn idle_since(
        &self,
        before: DateTime<Utc>,
        kinds: &[ConnectionKind],
        limit: u64,
    ) -> Result<Vec<MailConnection>, StoreError> {
        if kinds.is_empty() {
            return Ok(Vec::new());
        }
        let mut select = SqlBuilder::new(self.connection().get_database_backend());
        select
            .sql("SELECT ")
            .sql(CONNECTION_COLUMNS)
            .sql(" FROM mail_connections WHERE status = ")
            .bind(ConnectionStatus::Active.code())
            .sql(" AND kind IN (")
            .bind_list(kinds.iter().map(|kind| kind.code()))
            .sql(") AND COALESCE(last_refreshed_at_ms, created_at_ms) < ")
            .bind(before.timestamp_millis())
            .sql(" ORDER BY COALESCE(last_refreshed_at_ms, created_at_ms), id")
            .limit(i64::try_from(limit).unwrap_or(i64::MAX));
        let rows = self.connection().query_all_raw(select.build()).await.map_err(db_err)?;
        rows.iter().map(connection_from_row).collect()
    }

    async fn begin_refresh(
        &self,
        tenant: TenantId,
        id: ConnectionId,
        holder: &str,
        lease: Duration,
        now: DateTime<Utc>,
    ) -> Result<RefreshTurn, StoreError> {
        let backend = self.connection().get_database_backend();
        let now_ms = now.timestamp_millis();
        let txn = self.begin_write().await?;
        // The lease is taken where no other holder's lease is live; on PostgreSQL the
        // UPDATE's row lock orders concurrent callers, on SQLite the write lock.
        let mut take = SqlBuilder::new(backend);
        take.sql("UPDATE mail_connections SET refresh_holder = ")
            .bind(holder.to_owned())
            .sql(", refresh_until_ms = ")
            .bind(now_ms.saturating_add(lease_millis(lease)))
            .sql(" WHERE tenant_id = ")
            .bind(tenant.to_string())
            .sql(" AND id = ")
            .bind(id.to_string())
            .sql(" AND refresh_token_ciphertext IS NOT NULL AND (refresh_until_ms IS NULL OR refresh_until_ms < ")
            .bind(now_ms)
            .sql(" OR refresh_holder = ")
            .bind(holder.to_owned())
            .sql(")");
        let taken = txn.execute_raw(take.build()).await.map_err(db_err)?.rows_affected() == 1;
        let mut read = SqlBuilder::new(backend);
        read.sql("SELECT refresh_token_ciphertext, refresh_token_key_id FROM mail_connections WHERE tenant_id = ")
            .bind(tenant.to_string())
            .sql(" AND id = ")
            .bind(id.to_string());
        let row = txn.query_one_raw(read.build()).await.map_err(db_err)?;
        let turn = match row {
            None => RefreshTurn::Gone,
            Some(row) => {
                let sealed: Option<Vec<u8>> = row.try_get("", "refresh_token_ciphertext").map_err(db_err)?;
                let key_id: Option<String> = row.try_get("", "refresh_token_key_id").map_err(db_err)?;
                match (sealed, key_id, taken) {
                    (Some(sealed), Some(key_id), true) => {
                        match open(&self.keys, id, SecretPurpose::OauthRefreshToken, &sealed, &key_id) {
                            Ok(token) => RefreshTurn::Yours(token),
                            Err(error) => {
                                // The lease is not kept for a token nobody can use.
                                txn.rollback().await.map_err(db_err)?;
                                return Err(error);
                            }
                        }
                    }
                    (None, _, _) => RefreshTurn::NoRefreshToken,
                    (Some(_), None, _) => {
                        txn.rollback().await.map_err(db_err)?;
                        return Err(corrupt(
                            &format!("mail connection {id}"),
                            "refreshTokenKeyId",
                            FieldCode::Required,
                        ));
                    }
                    (Some(_), Some(_), false) => RefreshTurn::Busy,
                }
            }
        };
        txn.commit().await.map_err(db_err)?;
        Ok(turn)
    }

    async fn finish_refresh(
        &self,
        tenant: TenantId,
        id: ConnectionId,
        holder: &str,
        outcome: RefreshOutcome,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut finish = SqlBuilder::new(self.connection().get_database_backend());
        finish.sql("UPDATE mail_connections SET refresh_holder = NULL, refresh_until_ms = NULL");
        match &outcome {
            RefreshOutcome::Refreshed(refreshed) => {
                // Saved every time the server sent one, in the write that ends the lease.
                if refreshed.rotated {
                    let (sealed, key_id) = seal(
                        &self.keys,
                        id,
                        SecretPurpose::OauthRefreshToken,
                        &refreshed.refresh_token,
                    )?;
                    finish
                        .sql(", refresh_token_ciphertext = ")
                        .bind(sealed)
                        .sql(", refresh_token_key_id = ")
                        .bind(key_id);
                }
                finish.sql(", last_refreshed_at_ms = ").bind(now.timestamp_millis());
            }
            RefreshOutcome::Refused(problem) => {
                if let Some(status) = ConnectionStatus::after_refusal(*problem) {
                    finish.sql(", status = ").bind(status.code());
                }
            }
        }
        finish
            .sql(" WHERE tenant_id = ")
            .bind(tenant.to_string())
            .sql(" AND id = ")
            .bind(id.to_string())
            .sql(" AND refresh_holder = ")
            .bind(holder.to_owned());
        let done = self.connection().execute_raw(finish.build()).await.map_err(db_err)?;
        Ok(done.rows_affected() == 1)
    }

    async fn record_app_token(
        &self,
        tenant: TenantId,
        id: ConnectionId,
        outcome: Result<(), GrantProblem>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut update = SqlBuilder::new(self.connection().get_database_backend());
        update.sql("UPDATE mail_connections SET ");
        match outcome {
            Ok(()) => {
                update.sql("last_refreshed_at_ms = ").bind(now.timestamp_millis());
            }
            Err(problem) => match ConnectionStatus::after_refusal(problem) {
                Some(status) => {
                    update.sql("status = ").bind(status.code());
                }
                None => return Ok(true),
            },
        }
        update
            .sql(" WHERE tenant_id = ")
            .bind(tenant.to_string())
            .sql(" AND id = ")
            .bind(id.to_string());
        let done = self.connection().execute_raw(update.build()).await.map_err(db_err)?;
        Ok(done.rows_affected() == 1)
    }

    async fn refresh_token_for_revocation(
        &self,
        tenant: TenantId,
        id: ConnectionId,
    ) -> Result<Option<SecretString>, StoreError> {
        self.read_sealed(
            tenant,
            id,
            "refresh_token_ciphertext",
            "refresh_token_key_id",
            SecretPurpose::OauthRefreshToken,
        )
        .await
    }

    async fn delete(&self, tenant: TenantId, id: ConnectionId) -> Result<bool, StoreError> {
        let mut delete = SqlBuilder::new(self.connection().get_database_backend());
        delete
            .sql("DELETE FROM mail_connections WHERE tenant_id = ")
            .bind(tenant.to_string())
            .sql(" AND id = ")
            .bind(id.to_string());
        let done = self.connection().execute_raw(delete.build()).await.map_err(db_err)?;
        Ok(done.rows_affected() == 1)
    }
}

impl SqlStore {
    /// A connection's sealed secret in `ciphertext` / `key_column` (our own column names),
    /// opened; `None`: no such connection, or nothing sealed.
    async fn read_sealed(
        &self,
        tenant: TenantId,
        id: ConnectionId,
        ciphertext: &str,
        key_column: &str,
        purpose: SecretPurpose,
    ) -> Result<Option<SecretString>, StoreError> {
        let mut select = SqlBuilder::new(self.connection().get_database_backend());
        select
            .sql(&format!(
                "SELECT {ciphertext}, {key_column} FROM mail_connections WHERE tenant_id = "
            ))
            .bind(tenant.to_string())
            .sql(" AND id = ")
            .bind(id.to_string());
        let Some(row) = self.connection().query_one_raw(select.build()).await.map_err(db_err)? else {
            return Ok(None);
        };
        let sealed: Option<Vec<u8>> = row.try_get("", ciphertext).map_err(db_err)?;
        let key_id: Option<String> = row.try_get("", key_column).map_err(db_err)?;
        match (sealed, key_id) {
            (Some(sealed), Some(key_id)) => open(&self.keys, id, purpose, &sealed, &key_id).map(Some),
            _ => Ok(None),
        }
    }
}

/// Re-seals, with the ring's current key, every connection's secret (refresh token,
/// client secret) sealed under another key (part of [`crate::rotate_secret_key`]);
/// returns how many were rewritten. A row is only rewritten while it still holds what
/// was read, so a refresh that saved a rotated token meanwhile is never undone.
pub(crate) async fn reseal_connections(db: &impl ConnectionTrait, keys: &SecretKeyRing) -> Result<usize, StoreError> {
    let mut rewritten = 0;
    for (ciphertext, key_column, purpose) in [
        (
            "refresh_token_ciphertext",
            "refresh_token_key_id",
            SecretPurpose::OauthRefreshToken,
        ),
        (
            "client_secret_ciphertext",
            "client_secret_key_id",
            SecretPurpose::OauthClientSecret,
        ),
    ] {
        rewritten += reseal_column(db, keys, ciphertext, key_column, purpose).await?;
    }
    Ok(rewritten)
}

/// [`reseal_connections`] for one sealed column (its name and its key id's, both ours).
async fn reseal_column(
    db: &impl ConnectionTrait,
    keys: &SecretKeyRing,
    ciphertext: &str,
    key_column: &str,
    purpose: SecretPurpose,
) -> Result<usize, StoreError> {
    const BATCH: u64 = 100;
    let backend = db.get_database_backend();
    let current = keys.current_key_id().to_owned();
    let mut rewritten = 0;
    let mut after = String::new();
    loop {
        let mut page = SqlBuilder::new(backend);
        page.sql(&format!(
            "SELECT id, {ciphertext}, {key_column} FROM mail_connections WHERE {ciphertext} IS NOT NULL AND {key_column} <> "
        ))
        .bind(current.clone())
        .sql(" AND id > ")
        .bind(after.clone())
        .sql(&format!(" ORDER BY id LIMIT {BATCH}"));
        let rows = db.query_all_raw(page.build()).await.map_err(db_err)?;
        let Some(last) = rows.last() else {
            return Ok(rewritten);
        };
        after = last.try_get("", "id").map_err(db_err)?;
        for row in &rows {
            let raw_id: String = row.try_get("", "id").map_err(db_err)?;
            let id = ConnectionId::from_str(&raw_id)
                .map_err(|_| corrupt(&format!("mail connection {raw_id}"), "id", FieldCode::InvalidFormat))?;
            let sealed: Vec<u8> = row.try_get("", ciphertext).map_err(db_err)?;
            let key_id: String = row.try_get("", key_column).map_err(db_err)?;
            let secret = open(keys, id, purpose, &sealed, &key_id)?;
            let (resealed, new_key) = seal(keys, id, purpose, &secret)?;
            let mut update = SqlBuilder::new(backend);
            update
                .sql(&format!("UPDATE mail_connections SET {ciphertext} = "))
                .bind(resealed)
                .sql(&format!(", {key_column} = "))
                .bind(new_key)
                .sql(" WHERE id = ")
                .bind(raw_id)
                .sql(&format!(" AND {key_column} = "))
                .bind(key_id)
                .sql(&format!(" AND {ciphertext} = "))
                .bind(sealed);
            rewritten += usize::from(db.execute_raw(update.build()).await.map_err(db_err)?.rows_affected() == 1);
        }
    }
}
