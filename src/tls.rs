//! TLS for the peer port and the client port: a member's certificate chain, its key and
//! the certificate authorities it trusts, read from PEM files, and the rustls
//! configurations made from them (ring is the crypto provider).
//!
//! - **Peers** authenticate each other (mutual TLS, ZooKeeper's `sslQuorum`): a member
//!   presents its certificate and accepts a peer only if the peer's certificate chains to
//!   one of the trusted authorities. A dialler also checks that the certificate names the
//!   address it dialled (its host name or IP address, as ZooKeeper's
//!   `ssl.quorum.hostnameVerification` does by default).
//! - **Clients** (ZooKeeper's `secureClientPort`) check the member's certificate; the
//!   member asks for theirs as [`ClientAuth`] says (ZooKeeper's `ssl.clientAuth`, whose
//!   default is `need`).
//!
//! ```no_run
//! let tls = zkraft::TlsConfig::from_pem_files("member.pem", "member-key.pem", "ca.pem")?;
//! # Ok::<(), zkraft::Error>(())
//! ```

use std::path::Path;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use crate::error::{Error, Result};

/// Whether a TLS client port asks clients for a certificate (ZooKeeper's `ssl.clientAuth`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ClientAuth {
    /// No client certificate is asked for: the connection is encrypted, the client is
    /// anonymous (it may still authenticate with digest or SASL).
    None,
    /// A client may present a certificate; one that does must chain to a trusted authority.
    Want,
    /// Every client must present a certificate that chains to a trusted authority
    /// (ZooKeeper's default).
    #[default]
    Need,
}

impl std::str::FromStr for ClientAuth {
    type Err = Error;

    /// `none`, `want` or `need` (case-insensitive), as ZooKeeper spells them.
    fn from_str(s: &str) -> Result<ClientAuth> {
        match s.to_ascii_lowercase().as_str() {
            "none" => Ok(ClientAuth::None),
            "want" => Ok(ClientAuth::Want),
            "need" => Ok(ClientAuth::Need),
            _ => Err(Error::Config(format!(
                "client auth {s:?} is not none, want or need"
            ))),
        }
    }
}

/// A member's TLS material: its certificate chain, its private key and the authorities it
/// trusts. Cheap to clone.
#[derive(Clone)]
pub struct TlsConfig {
    material: Arc<Material>,
}

struct Material {
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    roots: Arc<RootCertStore>,
}

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConfig")
            .field("certificates", &self.material.certs.len())
            .field("trusted", &self.material.roots.len())
            .finish_non_exhaustive()
    }
}

impl TlsConfig {
    /// Reads the member's certificate chain (`cert`, leaf first), its private key (`key`:
    /// PKCS#8, PKCS#1 or SEC1) and the trusted authorities (`ca`), all PEM files.
    pub fn from_pem_files(
        cert: impl AsRef<Path>,
        key: impl AsRef<Path>,
        ca: impl AsRef<Path>,
    ) -> Result<TlsConfig> {
        let read = |what: &str, path: &Path| {
            std::fs::read(path)
                .map_err(|e| Error::Config(format!("TLS {what} {}: {e}", path.display())))
        };
        let (cert, key, ca) = (cert.as_ref(), key.as_ref(), ca.as_ref());
        Self::from_pem(
            &read("certificate", cert)?,
            &read("key", key)?,
            &read("CA", ca)?,
        )
        .map_err(|e| {
            Error::Config(format!(
                "{e} (certificate {}, key {}, CA {})",
                cert.display(),
                key.display(),
                ca.display()
            ))
        })
    }

    /// Like [`TlsConfig::from_pem_files`], from the files' contents.
    pub fn from_pem(cert: &[u8], key: &[u8], ca: &[u8]) -> Result<TlsConfig> {
        let bad = |what: &str, e: &dyn std::fmt::Display| Error::Config(format!("TLS {what}: {e}"));
        let certs = CertificateDer::pem_slice_iter(cert)
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| bad("certificate", &e))?;
        if certs.is_empty() {
            return Err(Error::Config(
                "TLS certificate: no certificate found".into(),
            ));
        }
        let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| bad("key", &e))?;
        let mut roots = RootCertStore::empty();
        for ca in CertificateDer::pem_slice_iter(ca) {
            let ca = ca.map_err(|e| bad("CA", &e))?;
            roots.add(ca).map_err(|e| bad("CA", &e))?;
        }
        if roots.is_empty() {
            return Err(Error::Config("TLS CA: no certificate found".into()));
        }
        let tls = TlsConfig {
            material: Arc::new(Material {
                certs,
                key,
                roots: Arc::new(roots),
            }),
        };
        // Every configuration is made once here, so that a key that does not match its
        // certificate is refused at start rather than at the first connection.
        tls.peer_acceptor()?;
        tls.peer_connector()?;
        tls.client_port(ClientAuth::Want)?;
        Ok(tls)
    }

    /// A rustls server configuration with this member's certificate, asking clients for
    /// theirs as `auth` says: for a front end of the embedding application's own (an
    /// admin port over HTTPS).
    pub fn server_config(&self, auth: ClientAuth) -> Result<Arc<ServerConfig>> {
        self.client_port(auth)
    }

    /// The configuration that accepts peers: this member's certificate, and a peer's
    /// required.
    pub(crate) fn peer_acceptor(&self) -> Result<Arc<ServerConfig>> {
        let verifier =
            WebPkiClientVerifier::builder_with_provider(self.material.roots.clone(), provider())
                .build()
                .map_err(|e| Error::Config(format!("TLS CA: {e}")))?;
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(tls_error)?
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.material.certs.clone(), self.material.key.clone_key())
            .map_err(tls_error)?;
        // A peer connection only ever carries frames from the dialler: no session
        // tickets, so the acceptor writes nothing after the handshake but its answer.
        config.send_tls13_tickets = 0;
        Ok(Arc::new(config))
    }

    /// The configuration that dials peers: the peer's certificate checked, this member's
    /// presented.
    pub(crate) fn peer_connector(&self) -> Result<Arc<ClientConfig>> {
        let config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(tls_error)?
            .with_root_certificates(self.material.roots.clone())
            .with_client_auth_cert(self.material.certs.clone(), self.material.key.clone_key())
            .map_err(tls_error)?;
        Ok(Arc::new(config))
    }

    /// The configuration of a TLS client port.
    pub(crate) fn client_port(&self, auth: ClientAuth) -> Result<Arc<ServerConfig>> {
        let builder = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(tls_error)?;
        let builder = match auth {
            ClientAuth::None => builder.with_no_client_auth(),
            ClientAuth::Want | ClientAuth::Need => {
                let verifier = WebPkiClientVerifier::builder_with_provider(
                    self.material.roots.clone(),
                    provider(),
                );
                let verifier = if auth == ClientAuth::Want {
                    verifier.allow_unauthenticated()
                } else {
                    verifier
                };
                builder.with_client_cert_verifier(
                    verifier
                        .build()
                        .map_err(|e| Error::Config(format!("TLS CA: {e}")))?,
                )
            }
        };
        let config = builder
            .with_single_cert(self.material.certs.clone(), self.material.key.clone_key())
            .map_err(tls_error)?;
        Ok(Arc::new(config))
    }
}

/// The name a dialler expects in the certificate of the peer at `addr` (`host:port`,
/// `[v6]:port`): the host name, or the IP address.
pub(crate) fn server_name(addr: &str) -> Result<ServerName<'static>> {
    let host = addr.rsplit_once(':').map_or(addr, |(host, _)| host);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_string())
        .map_err(|_| Error::Config(format!("{host:?} is not a host name or IP address")))
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn tls_error(e: rustls::Error) -> Error {
    Error::Config(format!("TLS: {e}"))
}

#[cfg(test)]
pub(crate) mod test_certs {
    //! Certificates made at run time for the tests: an authority, and members it signs.

    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};

    /// An authority that signs member certificates.
    pub(crate) struct Authority {
        cert: rcgen::Certificate,
        key: KeyPair,
    }

    impl Authority {
        pub(crate) fn new() -> Authority {
            let key = KeyPair::generate().unwrap();
            let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            let cert = params.self_signed(&key).unwrap();
            Authority { cert, key }
        }

        /// The authority's certificate, PEM.
        pub(crate) fn pem(&self) -> String {
            self.cert.pem()
        }

        /// A member certificate for `localhost` and 127.0.0.1, and its key (PEM).
        pub(crate) fn member(&self) -> (String, String) {
            self.member_named(&["localhost", "127.0.0.1"])
        }

        /// A member certificate for `names`, and its key (PEM).
        pub(crate) fn member_named(&self, names: &[&str]) -> (String, String) {
            let key = KeyPair::generate().unwrap();
            let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
            let params = CertificateParams::new(names).unwrap();
            let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
            (cert.pem(), key.serialize_pem())
        }

        /// A configuration for a member this authority signed, trusting it.
        pub(crate) fn config(&self) -> super::TlsConfig {
            self.config_named(&["localhost", "127.0.0.1"])
        }

        /// The same, with a certificate for `names`.
        pub(crate) fn config_named(&self, names: &[&str]) -> super::TlsConfig {
            let (cert, key) = self.member_named(names);
            super::TlsConfig::from_pem(cert.as_bytes(), key.as_bytes(), self.pem().as_bytes())
                .unwrap()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_certs::Authority;
    use super::*;

    #[test]
    fn pem_material_is_checked_when_read() {
        let ca = Authority::new();
        let (cert, key) = ca.member();
        let ca_pem = ca.pem();
        assert!(TlsConfig::from_pem(cert.as_bytes(), key.as_bytes(), ca_pem.as_bytes()).is_ok());
        // A key that is not the certificate's.
        let (_, other_key) = ca.member();
        let wrong = TlsConfig::from_pem(cert.as_bytes(), other_key.as_bytes(), ca_pem.as_bytes());
        assert!(matches!(wrong, Err(Error::Config(_))), "{wrong:?}");
        for (c, k, a) in [
            ("", key.as_str(), ca_pem.as_str()),
            (cert.as_str(), "", ca_pem.as_str()),
            (cert.as_str(), key.as_str(), ""),
            ("garbage", key.as_str(), ca_pem.as_str()),
        ] {
            let got = TlsConfig::from_pem(c.as_bytes(), k.as_bytes(), a.as_bytes());
            assert!(matches!(got, Err(Error::Config(_))), "{got:?}");
        }
        let missing = TlsConfig::from_pem_files("/nonexistent/c.pem", "k", "a");
        assert!(
            matches!(&missing, Err(Error::Config(m)) if m.contains("/nonexistent/c.pem")),
            "{missing:?}"
        );
    }

    #[test]
    fn names_and_client_auth_parse() {
        assert!(matches!(
            server_name("127.0.0.1:2701").unwrap(),
            ServerName::IpAddress(_)
        ));
        assert!(matches!(
            server_name("[::1]:2701").unwrap(),
            ServerName::IpAddress(_)
        ));
        assert!(matches!(
            server_name("zk-1.internal:2701").unwrap(),
            ServerName::DnsName(_)
        ));
        assert!(server_name("bad name:1").is_err());
        assert_eq!("NEED".parse::<ClientAuth>().unwrap(), ClientAuth::Need);
        assert_eq!("want".parse::<ClientAuth>().unwrap(), ClientAuth::Want);
        assert_eq!("none".parse::<ClientAuth>().unwrap(), ClientAuth::None);
        assert!("maybe".parse::<ClientAuth>().is_err());
    }
}
