//! TLS certificates and the rustls configurations: the listener's
//! certificates chosen by SNI ([`SniResolver`]), the client configuration
//! for the connections sipark opens, and reading PEM files. A leaf: it
//! imports no other module of `io`.

use std::path::Path;
use std::sync::Arc;

use hashbrown::HashMap;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

/// One certificate the TLS listener can present: for the SNI name
/// `domain`, or the default one (`None`).
#[derive(Debug, Clone)]
pub struct TlsCert {
    /// Lowercase server name this certificate is chosen for.
    pub domain: Option<String>,
    pub key: Arc<CertifiedKey>,
}

/// Reads a PEM certificate chain and private key into a signing key.
pub fn load_cert(domain: Option<String>, cert: &Path, key: &Path) -> Result<TlsCert, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("{}: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!("{}: no certificate", cert.display()));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{}: {e}", key.display()))?;
    cert_from_der(domain, chain, key_der).map_err(|e| format!("{} / {}: {e}", cert.display(), key.display()))
}

/// A [`TlsCert`] from DER: checks that the key matches the certificate.
pub fn cert_from_der(
    domain: Option<String>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<TlsCert, String> {
    let provider = rustls::crypto::ring::default_provider();
    let signing = provider.key_provider.load_private_key(key).map_err(|e| format!("private key: {e}"))?;
    let ck = CertifiedKey::new(chain, signing);
    match ck.keys_match() {
        Ok(()) => {}
        // Not every key type can tell; only a definite mismatch is refused.
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(e) => return Err(format!("key does not match the certificate: {e}")),
    }
    Ok(TlsCert { domain: domain.map(|d| d.to_ascii_lowercase()), key: Arc::new(ck) })
}

/// Reads trust anchors (PEM) for outbound TLS.
pub fn load_roots(ca: &Path) -> Result<Arc<RootCertStore>, String> {
    let mut roots = RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).map_err(|e| format!("{}: {e}", ca.display()))? {
        let c = c.map_err(|e| format!("{}: {e}", ca.display()))?;
        roots.add(c).map_err(|e| format!("{}: {e}", ca.display()))?;
    }
    if roots.is_empty() {
        return Err(format!("{}: no certificate", ca.display()));
    }
    Ok(Arc::new(roots))
}

/// Chooses the certificate by SNI name; the default (the entry without a
/// domain) when there is no name or no certificate for it. Without a
/// default such a handshake fails: no tenant's certificate is shown to a
/// client that asked for another name.
#[derive(Debug)]
pub struct SniResolver {
    default: Option<Arc<CertifiedKey>>,
    by_name: HashMap<String, Arc<CertifiedKey>>,
}

impl SniResolver {
    /// The resolver over `certs`: the first entry of each name wins, and
    /// the first one without a name is the default. At least one entry.
    pub fn new(certs: &[TlsCert]) -> Result<SniResolver, String> {
        if certs.is_empty() {
            return Err("TLS needs at least one certificate".into());
        }
        let default = certs.iter().find(|c| c.domain.is_none()).map(|c| c.key.clone());
        let mut by_name = HashMap::new();
        for c in certs {
            if let Some(d) = &c.domain {
                by_name.entry(d.to_ascii_lowercase()).or_insert_with(|| c.key.clone());
            }
        }
        Ok(SniResolver { default, by_name })
    }

    fn pick(&self, name: Option<&str>) -> Option<Arc<CertifiedKey>> {
        name.and_then(|n| self.by_name.get(n.to_ascii_lowercase().as_str())).or(self.default.as_ref()).cloned()
    }

    /// How many names have their own certificate.
    pub fn names(&self) -> usize {
        self.by_name.len()
    }

    /// Whether there is a default certificate.
    pub fn has_default(&self) -> bool {
        self.default.is_some()
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.pick(hello.server_name())
    }
}

/// The listener's rustls configuration (ring provider, TLS 1.2 and 1.3).
pub fn server_config(certs: &[TlsCert]) -> Result<Arc<ServerConfig>, String> {
    let resolver = SniResolver::new(certs)?;
    let cfg = ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS versions: {e}"))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    Ok(Arc::new(cfg))
}

/// The configuration of outbound TLS connections.
pub fn client_config(roots: Arc<RootCertStore>) -> Result<Arc<ClientConfig>, String> {
    let cfg = ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS versions: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn self_signed(names: &[&str]) -> TlsCert {
        let ck = rcgen::generate_simple_self_signed(names.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
            .unwrap_or_else(|e| panic!("rcgen: {e}"));
        let key = PrivateKeyDer::try_from(ck.signing_key.serialize_der()).unwrap_or_else(|e| panic!("key: {e}"));
        cert_from_der(None, vec![ck.cert.der().clone()], key).unwrap_or_else(|e| panic!("cert: {e}"))
    }

    #[test]
    fn sni_picks_the_domain_certificate_else_the_default() {
        let default = self_signed(&["default.example"]);
        let mut acme = self_signed(&["acme.example"]);
        acme.domain = Some("acme.example".into());
        let r = SniResolver::new(&[acme.clone(), default.clone()]).unwrap_or_else(|e| panic!("{e}"));
        let picked = |name| r.pick(name).unwrap_or_else(|| panic!("no certificate for {name:?}"));
        assert!(Arc::ptr_eq(&picked(Some("ACME.example")), &acme.key), "by name, case-insensitive");
        assert!(Arc::ptr_eq(&picked(Some("other.example")), &default.key), "unknown name: the None entry");
        assert!(Arc::ptr_eq(&picked(None), &default.key), "no SNI: the None entry");
        assert_eq!((r.names(), r.has_default()), (1, true));
        // Without a None entry there is no default: only the tenant's own name gets a certificate.
        let r = SniResolver::new(std::slice::from_ref(&acme)).unwrap_or_else(|e| panic!("{e}"));
        assert!(r.pick(Some("acme.example")).is_some_and(|k| Arc::ptr_eq(&k, &acme.key)));
        assert!(r.pick(None).is_none(), "no SNI and no default: no certificate");
        assert!(r.pick(Some("other.example")).is_none(), "another name and no default: no certificate");
        assert!(SniResolver::new(&[]).is_err(), "no certificate at all is an error");
        assert!(server_config(&[default]).is_ok());
        assert!(server_config(&[acme]).is_ok(), "tenant certificates alone are a valid listener");
    }

    #[test]
    fn mismatched_key_is_refused() {
        let a = rcgen::generate_simple_self_signed(vec!["a.example".to_owned()]).unwrap_or_else(|e| panic!("{e}"));
        let b = rcgen::generate_simple_self_signed(vec!["b.example".to_owned()]).unwrap_or_else(|e| panic!("{e}"));
        let key = PrivateKeyDer::try_from(b.signing_key.serialize_der()).unwrap_or_else(|e| panic!("key: {e}"));
        let r = cert_from_der(None, vec![a.cert.der().clone()], key);
        assert!(r.is_err(), "a key that is not the certificate's must be refused");
    }
}
