//! Throwaway certificates for development, tests and benchmarks (`obelisk dev-certs`): a CA, a
//! server certificate for `localhost`, `127.0.0.1` and `::1`, and client certificates whose
//! subject CN is their principal. Never for production: the keys are written unencrypted.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

/// The files written by [`write`].
#[derive(Debug, Clone)]
pub struct DevCerts {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    /// `(principal, cert, key)` per client.
    pub clients: Vec<(String, PathBuf, PathBuf)>,
}

/// A CA able to sign more certificates.
pub struct DevCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

fn err(e: rcgen::Error) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

impl DevCa {
    /// A new CA named `name`.
    ///
    /// # Errors
    /// Key generation failed.
    pub fn new(name: &str) -> std::io::Result<Self> {
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().map_err(err)?;
        let issuer = CertifiedIssuer::self_signed(params, key).map_err(err)?;
        Ok(Self { issuer })
    }

    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A certificate and its key (PEM) for `names` (DNS names or IP addresses), with subject CN
    /// `cn`, usable by a server or a client as `purpose` says.
    ///
    /// # Errors
    /// Key generation or signing failed.
    pub fn issue(
        &self,
        cn: &str,
        names: &[&str],
        server: bool,
    ) -> std::io::Result<(String, String)> {
        let names: Vec<String> = names.iter().map(|s| (*s).to_string()).collect();
        let mut params = CertificateParams::new(names).map_err(err)?;
        params.distinguished_name.push(DnType::CommonName, cn);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![if server {
            ExtendedKeyUsagePurpose::ServerAuth
        } else {
            ExtendedKeyUsagePurpose::ClientAuth
        }];
        let key = KeyPair::generate().map_err(err)?;
        let cert = params.signed_by(&key, &self.issuer).map_err(err)?;
        Ok((cert.pem(), key.serialize_pem()))
    }
}

/// Writes a CA, a server certificate for the loopback names, and one client certificate per
/// `clients` principal into `dir` (created if needed): `ca.pem`, `server.pem`, `server.key`,
/// `client-<principal>.pem`, `client-<principal>.key`.
///
/// # Errors
/// A file cannot be written, or key generation failed.
pub fn write(dir: &Path, clients: &[&str]) -> std::io::Result<DevCerts> {
    std::fs::create_dir_all(dir)?;
    let ca = DevCa::new("Obelisk development CA")?;
    let ca_path = dir.join("ca.pem");
    std::fs::write(&ca_path, ca.pem())?;
    let (cert, key) = ca.issue("localhost", &["localhost", "127.0.0.1", "::1"], true)?;
    let server_cert = dir.join("server.pem");
    let server_key = dir.join("server.key");
    std::fs::write(&server_cert, cert)?;
    write_key(&server_key, &key)?;
    let mut out = Vec::new();
    for name in clients {
        let (cert, key) = ca.issue(name, &[], false)?;
        let c = dir.join(format!("client-{name}.pem"));
        let k = dir.join(format!("client-{name}.key"));
        std::fs::write(&c, cert)?;
        write_key(&k, &key)?;
        out.push(((*name).to_string(), c, k));
    }
    Ok(DevCerts {
        ca: ca_path,
        server_cert,
        server_key,
        clients: out,
    })
}

/// Writes a private key readable by its owner only.
fn write_key(path: &Path, pem: &str) -> std::io::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    o.mode(0o600);
    o.open(path)?.write_all(pem.as_bytes())
}
