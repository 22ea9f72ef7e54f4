//! OAuth 2.0 on loopback: an authorization server (Authlib, `oauth_server.py`) standing in
//! for Microsoft Entra ID and Google, its clients and control endpoints, the PKCE pair and
//! the JWT-bearer test key.

use std::fs;
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use serde::Deserialize;

use super::ca::test_ca;
use super::script::{Script, prune_old_dirs, python, read_lossy, scripts_dir, temp_dir};

/// The client that the SMTP and mail-API fakes introspect tokens as (registered on every
/// [`OAuthServer`]).
pub const INTROSPECTION_CLIENT: (&str, &str) = ("mailserver", "mailserver-introspection-secret");

/// A PKCE pair (RFC 7636): the verifier and its S256 challenge.
pub const PKCE_VERIFIER: &str = "mailgate-test-pkce-verifier-0123456789-abcdefghijklmnopqrstuvwxyz";
pub const PKCE_CHALLENGE: &str = "6E6U8dO0dpe_ndrqI2iHze20DNFkAp-EJGv_dlbqZSU";

/// A client registered on an [`OAuthServer`].
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct OAuthClient {
    pub client_id: String,
    /// None: a public client (PKCE only, no secret).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    /// Exact match, except that `http://127.0.0.1:0/...` (or localhost) matches any port.
    pub redirect_uris: Vec<String>,
    /// A JWT-bearer issuer (RFC 7523): assertions with `iss` = `client_id`, signed RS256 by
    /// the private half of this key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwt_public_key: Option<PathBuf>,
    /// May introspect any token.
    pub introspect: bool,
}

impl OAuthClient {
    pub fn confidential(id: &str, secret: &str, redirect_uris: &[&str]) -> Self {
        Self {
            client_id: id.into(),
            client_secret: Some(secret.into()),
            redirect_uris: redirect_uris.iter().map(|u| (*u).to_owned()).collect(),
            ..Self::default()
        }
    }
    pub fn public(id: &str, redirect_uris: &[&str]) -> Self {
        Self {
            client_id: id.into(),
            redirect_uris: redirect_uris.iter().map(|u| (*u).to_owned()).collect(),
            ..Self::default()
        }
    }
    /// A service account with domain-wide delegation (Google): signs assertions with
    /// [`jwt_test_key`].
    pub fn jwt_issuer(id: &str) -> Self {
        Self {
            client_id: id.into(),
            jwt_public_key: Some(jwt_test_key().public_pem.clone()),
            ..Self::default()
        }
    }
}

/// How `/authorize` refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OAuthDenial {
    ConsentRequired,
    AccessDenied,
}

impl OAuthDenial {
    fn as_str(self) -> &'static str {
        match self {
            Self::ConsentRequired => "consent_required",
            Self::AccessDenied => "access_denied",
        }
    }
}

#[derive(Debug, Clone)]
pub struct OAuthOptions {
    /// HTTPS with the test CA (`test_ca()`); control and introspection for the fakes stay
    /// on a plain-HTTP port.
    pub tls: bool,
    /// The mailbox that signs in at `/authorize`.
    pub user: String,
    pub deny: Option<OAuthDenial>,
    /// Access-token lifetime (default 3600 s).
    pub token_ttl: Option<u64>,
    /// Every refresh answers `invalid_grant` with `AADSTS700082: ...`.
    pub refresh_fails: bool,
    /// Besides [`INTROSPECTION_CLIENT`], which is always there.
    pub clients: Vec<OAuthClient>,
}

impl Default for OAuthOptions {
    fn default() -> Self {
        Self {
            tls: false,
            user: "alice@contoso.example".into(),
            deny: None,
            token_ttl: None,
            refresh_fails: false,
            clients: Vec::new(),
        }
    }
}

/// One request the [`OAuthServer`] answered (its JSON-lines log; never a secret or token).
#[derive(Debug, Clone, Deserialize)]
pub struct OAuthRequest {
    pub at: f64,
    pub method: String,
    pub path: String,
    pub status: u16,
    pub grant_type: Option<String>,
    pub client_id: Option<String>,
    pub scope: Option<String>,
    pub user: Option<String>,
    pub error: Option<String>,
    pub error_description: Option<String>,
}

/// A token the [`OAuthServer`] issued (`/control/tokens`).
#[derive(Debug, Clone, Deserialize)]
pub struct IssuedToken {
    pub access_token: String,
    pub refresh_token: Option<String>,
    pub scope: String,
    pub user: Option<String>,
    pub client_id: String,
    pub grant_type: Option<String>,
    pub issued_at: i64,
    pub expires_in: i64,
    pub access_revoked: bool,
    pub refresh_revoked: bool,
    /// Not revoked and not expired.
    pub active: bool,
}

/// The JWT-bearer test key pair of this process (made on first use by `make_jwt_key.py`).
#[derive(Debug)]
pub struct JwtTestKey {
    /// PKCS#8 PEM: sign assertions with this (`jsonwebtoken::EncodingKey::from_rsa_pem`).
    pub private_pem: PathBuf,
    pub public_pem: PathBuf,
}

pub fn jwt_test_key() -> &'static JwtTestKey {
    static KEY: OnceLock<JwtTestKey> = OnceLock::new();
    KEY.get_or_init(|| {
        prune_old_dirs("mailgate-jwtkey-", Duration::from_secs(3600));
        let dir = temp_dir("jwtkey");
        let out = Command::new(python())
            .arg(scripts_dir().join("make_jwt_key.py"))
            .arg(&dir)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {} (run tests/mailservers/install.sh): {e}", python()));
        assert!(
            out.status.success(),
            "make_jwt_key.py failed (run tests/mailservers/install.sh): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        JwtTestKey {
            private_pem: dir.join("jwt_private.pem"),
            public_pem: dir.join("jwt_public.pem"),
        }
    })
}

/// A blocking HTTP/1.1 exchange with a plain-HTTP server on 127.0.0.1: (status, body).
fn http_plain(port: u16, method: &str, path: &str, content_type: &str, body: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap_or_else(|e| panic!("connect {port}: {e}"));
    let _ = stream.set_read_timeout(Some(Duration::from_secs(60)));
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: {content_type}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream
        .write_all(request.as_bytes())
        .unwrap_or_else(|e| panic!("write {path}: {e}"));
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .unwrap_or_else(|e| panic!("read {path}: {e}"));
    let text = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad HTTP response to {path}: {text}"));
    (status, body.to_owned())
}

/// `oauth_server.py`: an OAuth 2.0 authorization server (Authlib) on 127.0.0.1 standing in
/// for Microsoft Entra ID and Google: `/authorize` (PKCE S256), `/token` (code, refresh with
/// rotation, client credentials, JWT bearer), `/introspect`, `/revoke`.
#[derive(Debug)]
pub struct OAuthServer {
    /// HTTP, or HTTPS with `tls`.
    pub port: u16,
    /// Plain HTTP (the same as `port` without `tls`): control endpoints and the fakes'
    /// introspection.
    pub control_port: u16,
    pub tls: bool,
    log: PathBuf,
    child: Script,
}

impl OAuthServer {
    pub fn start(opts: OAuthOptions) -> OAuthServer {
        let dir = temp_dir("oauth");
        let log = dir.join("requests.jsonl");
        let clients_file = dir.join("clients.json");
        let mut clients = opts.clients.clone();
        clients.push(OAuthClient {
            client_id: INTROSPECTION_CLIENT.0.into(),
            client_secret: Some(INTROSPECTION_CLIENT.1.into()),
            introspect: true,
            ..OAuthClient::default()
        });
        let json = serde_json::to_string_pretty(&clients).unwrap_or_else(|e| panic!("{e}"));
        fs::write(&clients_file, json).unwrap_or_else(|e| panic!("cannot write {}: {e}", clients_file.display()));
        let mut args: Vec<String> = vec![
            "--port".into(),
            "0".into(),
            "--clients".into(),
            clients_file.display().to_string(),
            "--log".into(),
            log.display().to_string(),
            "--user".into(),
            opts.user.clone(),
        ];
        if opts.tls {
            let ca = test_ca();
            args.extend([
                "--tls".into(),
                "--cert".into(),
                ca.cert.display().to_string(),
                "--key".into(),
                ca.key.display().to_string(),
            ]);
        }
        if let Some(deny) = opts.deny {
            args.extend(["--deny".into(), deny.as_str().into()]);
        }
        if let Some(ttl) = opts.token_ttl {
            args.extend(["--token-ttl".into(), ttl.to_string()]);
        }
        if opts.refresh_fails {
            args.push("--refresh-fails".into());
        }
        let (child, ready) = Script::start("oauth", "oauth_server.py", &args, dir, &[]);
        let port_at = |i: usize| -> u16 {
            ready
                .get(i)
                .and_then(|p| p.parse().ok())
                .unwrap_or_else(|| panic!("bad READY line: {ready:?}"))
        };
        OAuthServer {
            port: port_at(0),
            control_port: port_at(1),
            tls: opts.tls,
            log,
            child,
        }
    }

    /// `http(s)://127.0.0.1:<port>`: the issuer; endpoints are below it.
    pub fn base_url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }
    pub fn authorize_url(&self) -> String {
        format!("{}/authorize", self.base_url())
    }
    /// Also the `aud` a JWT-bearer assertion must carry.
    pub fn token_url(&self) -> String {
        format!("{}/token", self.base_url())
    }
    pub fn introspect_url(&self) -> String {
        format!("{}/introspect", self.base_url())
    }
    pub fn revoke_url(&self) -> String {
        format!("{}/revoke", self.base_url())
    }

    /// The introspection endpoint as the SMTP and mail-API fakes call it: plain HTTP, with
    /// [`INTROSPECTION_CLIENT`] as user info.
    pub fn introspection_for_servers(&self) -> String {
        let (id, secret) = INTROSPECTION_CLIENT;
        format!("http://{id}:{secret}@127.0.0.1:{}/introspect", self.control_port)
    }

    /// The CA certificate a client must trust (with `tls`).
    pub fn ca_pem(&self) -> Option<&'static Path> {
        self.tls.then(|| test_ca().ca_pem.as_path())
    }

    pub fn dir(&self) -> &Path {
        &self.child.dir
    }

    /// What the server wrote to stderr (Werkzeug's access log and any traceback).
    pub fn stderr(&self) -> String {
        read_lossy(&self.child.log)
    }

    /// Every request answered so far, in order.
    pub fn requests(&self) -> Vec<OAuthRequest> {
        let text = read_lossy(&self.log);
        text.split_inclusive('\n')
            .filter(|l| l.ends_with('\n') && !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad OAuth log line ({e}): {l}")))
            .collect()
    }

    /// `/token` requests with this `grant_type` (e.g. `refresh_token`), answered or not.
    pub fn token_requests(&self, grant_type: &str) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.path == "/token" && r.grant_type.as_deref() == Some(grant_type))
            .count()
    }

    /// `/token` requests with this `grant_type` that got a token (200).
    pub fn tokens_granted(&self, grant_type: &str) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.path == "/token" && r.grant_type.as_deref() == Some(grant_type) && r.status == 200)
            .count()
    }

    /// Every token issued so far, in order.
    pub fn tokens(&self) -> Vec<IssuedToken> {
        let (status, body) = http_plain(self.control_port, "GET", "/control/tokens", "application/json", "");
        assert_eq!(status, 200, "/control/tokens: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("bad /control/tokens ({e}): {body}"))
    }

    /// Revokes every access and refresh token of `user` (an admin revoking the app's consent).
    pub fn revoke_user(&self, user: &str) -> usize {
        let body = format!(
            "user={}",
            user.replace('%', "%25").replace('+', "%2B").replace('@', "%40")
        );
        let (status, text) = http_plain(
            self.control_port,
            "POST",
            "/control/revoke-user",
            "application/x-www-form-urlencoded",
            &body,
        );
        assert_eq!(status, 200, "/control/revoke-user: {text}");
        let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        v["revoked"].as_u64().unwrap_or_default() as usize
    }

    /// Changes settings while running: any of `user`, `deny` (`null`, `"consent_required"`,
    /// `"access_denied"`), `refresh_fails`, `token_ttl`. Returns all settings.
    pub fn set(&self, settings: serde_json::Value) -> serde_json::Value {
        let (status, text) = http_plain(
            self.control_port,
            "POST",
            "/control/settings",
            "application/json",
            &settings.to_string(),
        );
        assert_eq!(status, 200, "/control/settings: {text}");
        serde_json::from_str(&text).unwrap_or_default()
    }

    /// Registers (or replaces) a client while running, e.g. once the app's port is known.
    pub fn register_client(&self, client: &OAuthClient) {
        let json = serde_json::to_string(client).unwrap_or_else(|e| panic!("{e}"));
        let (status, text) = http_plain(self.control_port, "POST", "/control/clients", "application/json", &json);
        assert_eq!(status, 200, "/control/clients: {text}");
    }
}
