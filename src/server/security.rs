//! The server's part of security (issue 15): before serving, load the TLS certificate, the
//! token file and the ACL file (failing start-up with what is wrong), hand the broker its
//! [`Security`], warn about insecure listeners, and keep certificate and tokens reloading.

use std::sync::Arc;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::ServerError;
use super::tls::{self, Reload, ReloadingCert, Tls, TokenReload};
use crate::auth::{AclStore, Security, TokenFile};
use crate::broker::Broker;
use crate::config::SecuritySettings;

/// What start-up loaded.
pub struct Prepared {
    pub grpc: Option<Tls>,
    pub http: Option<Tls>,
    pub legacy: Option<Tls>,
    cert: Option<Arc<ReloadingCert>>,
    security: Security,
}

/// Loads every security file named by `settings`.
///
/// # Errors
/// `Security` naming the file and what is wrong with it.
pub fn prepare(settings: &SecuritySettings) -> Result<Prepared, ServerError> {
    let fail = |e: &dyn std::fmt::Display| ServerError::Security(e.to_string());
    let (grpc, http, legacy, cert) = match &settings.tls {
        Some(files) => {
            let cert = Arc::new(ReloadingCert::load(files.clone()).map_err(|e| fail(&e))?);
            let grpc = Tls::new(&cert, tls::ALPN_GRPC).map_err(|e| fail(&e))?;
            let http = Tls::new(&cert, tls::ALPN_HTTP).map_err(|e| fail(&e))?;
            let legacy = if settings.legacy_tls {
                Some(Tls::new(&cert, &[]).map_err(|e| fail(&e))?)
            } else {
                None
            };
            (Some(grpc), Some(http), legacy, Some(cert))
        }
        None => (None, None, None, None),
    };
    let security = if settings.authentication() {
        let tokens = match &settings.token_file {
            Some(path) => Some(TokenFile::open(path).map_err(|e| fail(&e))?),
            None => None,
        };
        let acls = AclStore::open(&settings.acl_file).map_err(|e| fail(&e))?;
        Security::enabled(tokens, acls).with_super_users(settings.super_users.clone())
    } else {
        Security::disabled()
    };
    for l in &settings.insecure_listeners {
        tracing::warn!(
            listener = %l,
            "--insecure: listening off loopback without TLS and authentication; anyone who can \
             reach it can read and write every topic"
        );
    }
    Ok(Prepared {
        grpc,
        http,
        legacy,
        cert,
        security,
    })
}

impl Prepared {
    /// Gives `broker` its security and starts reloading the certificate and tokens; returns the
    /// reload task, if there is anything to reload.
    pub fn install(
        &mut self,
        broker: &Broker,
        shutdown: CancellationToken,
    ) -> Option<JoinHandle<()>> {
        let security = std::mem::replace(&mut self.security, Security::disabled());
        let enabled = security.is_enabled();
        broker.secure(security);
        tracing::info!(
            tls = self.cert.is_some(),
            authentication = enabled,
            "security"
        );
        let mut items: Vec<Arc<dyn Reload>> = Vec::new();
        if let Some(cert) = &self.cert {
            items.push(Arc::clone(cert) as Arc<dyn Reload>);
        }
        if let Some(t) = broker.security().cloned().and_then(TokenReload::new) {
            items.push(Arc::new(t));
        }
        if items.is_empty() {
            return None;
        }
        Some(tokio::spawn(tls::watch(items, tls::RELOAD_CHECK, shutdown)))
    }
}
