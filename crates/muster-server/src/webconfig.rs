//! The web configuration file (`--web-config-file`), in the format of the Prometheus
//! exporter-toolkit that the official exporters read:
//!
//! ```yaml
//! tls_server_config:
//!   cert_file: server.crt          # relative paths are relative to this file
//!   key_file: server.key
//!   client_auth_type: RequireAndVerifyClientCert
//!   client_ca_file: clients-ca.crt
//!   min_version: TLS12
//! basic_auth_users:
//!   prometheus: $2y$10$...           # bcrypt, the part after `:` of `htpasswd -nBC 10 prometheus`
//! muster:
//!   protect_health: false          # muster's own key: also protect /-/healthy and /-/ready
//! ```
//!
//! The file is read and checked by the supervisor before anything forks ([`WebConfig::load`]):
//! a malformed file, an unreadable certificate or key, a hash that is not bcrypt, or a
//! known-weak password (see [`crate::auth`]) stops the server with an error that names the
//! field. On SIGHUP it is read again; a bad new file keeps the old configuration.
//!
//! TLS (rustls) applies to every listener (the application's and `--metrics-bind`); basic
//! auth protects `/metrics` (and, with `muster.protect_health`, the health endpoints).
//! The application's own routes are the application's business.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use serde::Deserialize;

use crate::auth::BasicAuth;
use crate::ServerError;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileWebConfig {
    tls_server_config: Option<FileTls>,
    basic_auth_users: Option<BTreeMap<String, String>>,
    muster: Option<FileMuster>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTls {
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    client_auth_type: Option<ClientAuthType>,
    client_ca_file: Option<PathBuf>,
    min_version: Option<TlsVersion>,
    max_version: Option<TlsVersion>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileMuster {
    protect_health: Option<bool>,
}

/// `tls_server_config.client_auth_type`: whether and how client certificates are asked
/// for (the names of Go's `tls.ClientAuthType`, as in exporter-toolkit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum ClientAuthType {
    /// No client certificate is asked for (the default).
    #[default]
    NoClientCert,
    /// A certificate is asked for but neither required nor verified.
    RequestClientCert,
    /// A certificate is required but not verified.
    #[serde(alias = "RequireClientCert")]
    RequireAnyClientCert,
    /// A certificate is optional; one that is sent must verify against `client_ca_file`.
    VerifyClientCertIfGiven,
    /// A certificate is required and must verify against `client_ca_file`.
    RequireAndVerifyClientCert,
}

/// `tls_server_config.min_version` / `max_version`. rustls speaks TLS 1.2 and 1.3 only,
/// so `TLS10` and `TLS11` are refused with an explanation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
pub enum TlsVersion {
    /// TLS 1.0 (refused: not supported by rustls).
    TLS10,
    /// TLS 1.1 (refused: not supported by rustls).
    TLS11,
    /// TLS 1.2.
    TLS12,
    /// TLS 1.3.
    TLS13,
}

/// A loaded, checked web configuration: TLS settings ready for rustls and the basic-auth
/// users. Cheap to clone (shared parts are reference-counted).
#[derive(Clone)]
pub struct WebConfig {
    /// The file it was read from.
    pub path: PathBuf,
    /// The rustls server configuration, when `tls_server_config` is present.
    pub tls: Option<Arc<ServerConfig>>,
    /// The client-certificate policy in force.
    pub client_auth: ClientAuthType,
    /// Basic-auth users, when `basic_auth_users` is present and not empty.
    pub(crate) auth: Option<Arc<BasicAuth>>,
    /// Also require credentials for `/-/healthy` and `/-/ready` (`muster.protect_health`).
    pub protect_health: bool,
}

impl fmt::Debug for WebConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebConfig")
            .field("path", &self.path)
            .field("tls", &self.tls.is_some())
            .field("client_auth", &self.client_auth)
            .field(
                "basic_auth_users",
                &self.auth.as_ref().map(|a| a.user_names()),
            )
            .field("protect_health", &self.protect_health)
            .finish()
    }
}

fn field_error(path: &Path, field: &str, message: impl fmt::Display) -> ServerError {
    ServerError::Config(format!(
        "web config file {}: {field}: {message}",
        path.display()
    ))
}

impl WebConfig {
    /// Reads and checks a web configuration file: parses it, loads the certificate, key
    /// and client CA files (relative to the file's directory), checks every bcrypt hash
    /// and refuses known-weak credentials unless `allow_weak_credentials`. Every error
    /// names the offending field.
    pub fn load(path: &Path, allow_weak_credentials: bool) -> Result<WebConfig, ServerError> {
        let web = Self::load_unchecked(path)?;
        web.check_weak(allow_weak_credentials)?;
        Ok(web)
    }

    /// [`WebConfig::load`] without the weak-password check (the slow part: bcrypt
    /// runs per candidate password); run [`WebConfig::check_weak`] before using it.
    pub(crate) fn load_unchecked(path: &Path) -> Result<WebConfig, ServerError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ServerError::Config(format!(
                "cannot read web config file {}: {e}",
                path.display()
            ))
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::parse_unchecked(&text, path, base)
    }

    /// Refuses known-weak passwords (see [`crate::auth`]) unless
    /// `allow_weak_credentials`, in which case each is logged as a warning.
    pub(crate) fn check_weak(&self, allow_weak_credentials: bool) -> Result<(), ServerError> {
        match &self.auth {
            Some(a) => a.check_weak(allow_weak_credentials, |field, msg| {
                field_error(&self.path, field, msg)
            }),
            None => Ok(()),
        }
    }

    /// Parses a web configuration document; `path` names it in errors and relative file
    /// names are resolved against `base`.
    pub fn parse(
        text: &str,
        path: &Path,
        base: &Path,
        allow_weak_credentials: bool,
    ) -> Result<WebConfig, ServerError> {
        let web = Self::parse_unchecked(text, path, base)?;
        web.check_weak(allow_weak_credentials)?;
        Ok(web)
    }

    fn parse_unchecked(text: &str, path: &Path, base: &Path) -> Result<WebConfig, ServerError> {
        let file: FileWebConfig = if text.trim().is_empty() {
            FileWebConfig::default()
        } else {
            serde_norway::from_str(text).map_err(|e| {
                ServerError::Config(format!("web config file {}: {e}", path.display()))
            })?
        };
        let (tls, client_auth) = match &file.tls_server_config {
            Some(t) => {
                let (c, a) = build_tls(t, path, base)?;
                (Some(Arc::new(c)), a)
            }
            None => (None, ClientAuthType::NoClientCert),
        };
        let auth = match file.basic_auth_users {
            Some(users) if !users.is_empty() => {
                Some(Arc::new(BasicAuth::new(users, |field, msg| {
                    field_error(path, field, msg)
                })?))
            }
            _ => None,
        };
        Ok(WebConfig {
            path: path.to_path_buf(),
            tls,
            client_auth,
            auth,
            protect_health: file.muster.and_then(|m| m.protect_health).unwrap_or(false),
        })
    }

    /// Whether `/metrics` asks for credentials.
    pub fn has_basic_auth(&self) -> bool {
        self.auth.is_some()
    }

    /// Whether a request carrying this `Authorization` header may see a protected
    /// endpoint: `true` when no `basic_auth_users` are configured, else only for a
    /// configured user's right password (see [`crate::auth`] for how it is checked).
    /// A refusal should be answered with 401 and `WWW-Authenticate:`
    /// [`crate::auth::CHALLENGE`]. Must run inside a tokio runtime (bcrypt goes to its
    /// blocking pool).
    pub async fn authorize(&self, authorization: Option<&http::HeaderValue>) -> bool {
        match &self.auth {
            None => true,
            Some(a) => a.check(authorization).await,
        }
    }
}

fn resolve(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

fn load_certs(
    path: &Path,
    field: &str,
    file: &Path,
) -> Result<Vec<CertificateDer<'static>>, ServerError> {
    let iter = CertificateDer::pem_file_iter(file)
        .map_err(|e| field_error(path, field, format!("cannot read {}: {e}", file.display())))?;
    let certs = iter
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| field_error(path, field, format!("{}: {e}", file.display())))?;
    if certs.is_empty() {
        return Err(field_error(
            path,
            field,
            format!("{} holds no PEM certificate", file.display()),
        ));
    }
    Ok(certs)
}

fn build_tls(
    t: &FileTls,
    path: &Path,
    base: &Path,
) -> Result<(ServerConfig, ClientAuthType), ServerError> {
    let field = |f: &str| format!("tls_server_config.{f}");
    let min = t.min_version.unwrap_or(TlsVersion::TLS12);
    let max = t.max_version.unwrap_or(TlsVersion::TLS13);
    for (name, v) in [
        ("min_version", t.min_version),
        ("max_version", t.max_version),
    ] {
        if matches!(v, Some(TlsVersion::TLS10 | TlsVersion::TLS11)) {
            return Err(field_error(
                path,
                &field(name),
                "TLS 1.0 and 1.1 are not supported (rustls speaks TLS12 and TLS13)",
            ));
        }
    }
    if min > max {
        return Err(field_error(
            path,
            &field("min_version"),
            format!("{min:?} is above max_version {max:?}"),
        ));
    }
    let mut versions: Vec<&'static rustls::SupportedProtocolVersion> = Vec::new();
    if min <= TlsVersion::TLS13 && max >= TlsVersion::TLS13 {
        versions.push(&rustls::version::TLS13);
    }
    if min <= TlsVersion::TLS12 && max >= TlsVersion::TLS12 {
        versions.push(&rustls::version::TLS12);
    }

    let cert_file = t.cert_file.as_deref().ok_or_else(|| {
        field_error(
            path,
            &field("cert_file"),
            "missing (required with tls_server_config)",
        )
    })?;
    let key_file = t.key_file.as_deref().ok_or_else(|| {
        field_error(
            path,
            &field("key_file"),
            "missing (required with tls_server_config)",
        )
    })?;
    let cert_file = resolve(base, cert_file);
    let key_file = resolve(base, key_file);
    let certs = load_certs(path, &field("cert_file"), &cert_file)?;
    let key = PrivateKeyDer::from_pem_file(&key_file).map_err(|e| {
        field_error(
            path,
            &field("key_file"),
            format!(
                "cannot read a PEM private key from {}: {e}",
                key_file.display()
            ),
        )
    })?;

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let auth_type = t.client_auth_type.unwrap_or_default();
    let client_ca = match &t.client_ca_file {
        Some(f) => {
            let f = resolve(base, f);
            let mut roots = RootCertStore::empty();
            for c in load_certs(path, &field("client_ca_file"), &f)? {
                roots.add(c).map_err(|e| {
                    field_error(
                        path,
                        &field("client_ca_file"),
                        format!("{}: {e}", f.display()),
                    )
                })?;
            }
            Some(Arc::new(roots))
        }
        None => None,
    };
    let verifier: Option<Arc<dyn ClientCertVerifier>> = match auth_type {
        ClientAuthType::NoClientCert => {
            if client_ca.is_some() {
                return Err(field_error(
                    path,
                    &field("client_ca_file"),
                    "a client CA is configured but client_auth_type is NoClientCert \
                     (use RequireAndVerifyClientCert or VerifyClientCertIfGiven)",
                ));
            }
            None
        }
        ClientAuthType::RequestClientCert | ClientAuthType::RequireAnyClientCert => {
            Some(Arc::new(AnyClientCert {
                mandatory: auth_type == ClientAuthType::RequireAnyClientCert,
                provider: Arc::clone(&provider),
            }))
        }
        ClientAuthType::VerifyClientCertIfGiven | ClientAuthType::RequireAndVerifyClientCert => {
            let roots = client_ca.ok_or_else(|| {
                field_error(
                    path,
                    &field("client_ca_file"),
                    format!("missing (required with client_auth_type {auth_type:?})"),
                )
            })?;
            let mut b = WebPkiClientVerifier::builder_with_provider(roots, Arc::clone(&provider));
            if auth_type == ClientAuthType::VerifyClientCertIfGiven {
                b = b.allow_unauthenticated();
            }
            Some(
                b.build()
                    .map_err(|e| field_error(path, &field("client_ca_file"), format!("{e}")))?,
            )
        }
    };
    let builder = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&versions)
        .map_err(|e| field_error(path, &field("min_version"), e))?;
    let builder = match verifier {
        Some(v) => builder.with_client_cert_verifier(v),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(certs, key).map_err(|e| {
        field_error(
            path,
            &field("key_file"),
            format!("the key does not fit the certificate in cert_file: {e}"),
        )
    })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok((config, auth_type))
}

/// `RequestClientCert` / `RequireAnyClientCert`: takes any certificate (as Go does for
/// these modes), but still checks that the client holds its key (the handshake
/// signature).
#[derive(Debug)]
struct AnyClientCert {
    mandatory: bool,
    provider: Arc<CryptoProvider>,
}

impl ClientCertVerifier for AnyClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<WebConfig, ServerError> {
        WebConfig::parse(text, Path::new("web.yml"), Path::new("/nonexistent"), false)
    }

    #[test]
    fn malformed_documents_name_the_field() {
        let e = parse("basic_auth_userz:\n  a: b\n").expect_err("unknown key");
        assert!(e.to_string().contains("basic_auth_userz"), "{e}");
        let e = parse("tls_server_config:\n  client_auth_type: Sometimes\n").expect_err("variant");
        assert!(e.to_string().contains("client_auth_type"), "{e}");
        let e = parse("tls_server_config:\n  key_file: k.pem\n").expect_err("no cert");
        assert!(e.to_string().contains("tls_server_config.cert_file"), "{e}");
        let e = parse("tls_server_config:\n  cert_file: c.pem\n  key_file: k.pem\n")
            .expect_err("missing file");
        assert!(e.to_string().contains("tls_server_config.cert_file"), "{e}");
        let e = parse("tls_server_config:\n  min_version: TLS11\n").expect_err("old tls");
        assert!(e.to_string().contains("min_version"), "{e}");
        let e = parse("basic_auth_users:\n  ann: plaintext\n").expect_err("not bcrypt");
        assert!(e.to_string().contains("basic_auth_users.ann"), "{e}");
        let e = parse("muster:\n  protect_health: maybe\n").expect_err("bool");
        assert!(e.to_string().contains("protect_health"), "{e}");
        let e = parse("- a\n- b\n").expect_err("not a map");
        assert!(e.to_string().contains("web.yml"), "{e}");
    }

    #[test]
    fn authorize_without_users_allows_everything() {
        let c = parse("muster:\n  protect_health: true\n").expect("valid");
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        assert!(rt.block_on(c.authorize(None)));
    }

    #[test]
    fn empty_document_means_nothing_protected() {
        let c = parse("").expect("empty");
        assert!(c.tls.is_none() && c.auth.is_none() && !c.protect_health);
        let c = parse("muster:\n  protect_health: true\n").expect("muster key");
        assert!(c.protect_health);
    }
}
