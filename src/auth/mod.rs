//! Authentication and authorization, in the core: who the caller is ([`Principal`], from a
//! bearer token, a verified client certificate, or a listener's configured principal) and what it
//! may do (ACL rules, [`acl`], kept durably in [`store`]). Transports only gather credentials;
//! every Broker call goes through [`crate::broker::Caller`], which checks the rules before the
//! call runs, so no protocol can skip the check.
//!
//! - [`acl`]: rules and matching (literal or prefix names, deny wins, default deny);
//! - [`store`]: the durable ACL file;
//! - [`tokens`]: the SHA-256 token file, compared in constant time.
//!
//! With security off (no token file and no client CA) every caller is [`Principal::Anonymous`]
//! and everything is allowed, as before.

pub mod acl;
pub mod store;
pub mod tokens;

use std::sync::Arc;

pub use acl::{AclRule, Effect, Operation, Pattern, Resource, ResourceKind};
pub use store::{AclStore, StoreError};
pub use tokens::{TokenFile, TokenFileError};

use crate::broker::BrokerError;

/// Who makes a request.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Principal {
    /// Nobody in particular: security is off.
    Anonymous,
    /// An authenticated name (a token's principal, a certificate's CN or SAN, or a listener's
    /// configured principal).
    Named(Arc<str>),
}

impl Principal {
    pub fn named(name: &str) -> Self {
        Self::Named(Arc::from(name))
    }

    pub fn name(&self) -> &str {
        match self {
            Self::Anonymous => "anonymous",
            Self::Named(n) => n,
        }
    }
}

impl std::fmt::Display for Principal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What a transport knows about its caller.
#[derive(Debug, Clone, Copy, Default)]
pub struct Credentials<'a> {
    /// The bearer token sent with the request (without `Bearer `).
    pub token: Option<&'a str>,
    /// A principal the transport already verified: a client certificate's name under mTLS, or
    /// the principal configured for the legacy listener.
    pub verified: Option<&'a str>,
}

/// The `authorization` header or metadata value's token, if it is `Bearer <token>`.
pub fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// The broker's security settings: how callers authenticate, and the ACLs they are held to.
pub struct Security {
    enabled: bool,
    tokens: Option<TokenFile>,
    acls: AclStore,
    /// Principals allowed everything, ACLs or not (to bootstrap the ACLs).
    super_users: Vec<String>,
}

impl Security {
    /// Security on: callers must authenticate (with a token from `tokens`, or a principal the
    /// transport verified) and are held to `acls` (default deny).
    pub fn enabled(tokens: Option<TokenFile>, acls: AclStore) -> Self {
        Self {
            enabled: true,
            tokens,
            acls,
            super_users: Vec::new(),
        }
    }

    /// `super_users` are allowed everything (they bootstrap the ACLs).
    #[must_use]
    pub fn with_super_users(mut self, super_users: Vec<String>) -> Self {
        self.super_users = super_users;
        self
    }

    /// Security off: everyone is anonymous and allowed everything.
    pub fn disabled() -> Self {
        Self {
            enabled: false,
            tokens: None,
            acls: AclStore::in_memory(Vec::new()),
            super_users: Vec::new(),
        }
    }

    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    pub fn acls(&self) -> &AclStore {
        &self.acls
    }

    pub fn tokens(&self) -> Option<&TokenFile> {
        self.tokens.as_ref()
    }

    /// The principal behind `creds`.
    ///
    /// # Errors
    /// `Unauthenticated` when security is on and there are no credentials, or the token is not
    /// one of the token file's.
    pub fn authenticate(&self, creds: Credentials<'_>) -> Result<Principal, BrokerError> {
        if !self.enabled {
            return Ok(Principal::Anonymous);
        }
        if let Some(token) = creds.token {
            return match self.tokens.as_ref().and_then(|t| t.principal(token)) {
                Some(p) => Ok(Principal::Named(p)),
                None => Err(BrokerError::Unauthenticated(
                    "the bearer token is not valid".into(),
                )),
            };
        }
        match creds.verified {
            Some(name) => Ok(Principal::named(name)),
            None => Err(BrokerError::Unauthenticated(
                "authentication required: send a bearer token (authorization: Bearer <token>) \
                 or a client certificate"
                    .into(),
            )),
        }
    }

    /// Whether `principal` may do `operation` on `resource`.
    pub fn allows(
        &self,
        principal: &Principal,
        operation: Operation,
        resource: &Resource<'_>,
    ) -> bool {
        match principal {
            Principal::Anonymous => !self.enabled,
            Principal::Named(name) => {
                !self.enabled
                    || self.super_users.iter().any(|s| **s == **name)
                    || acl::decide(&self.acls.snapshot(), name, operation, resource)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_values_parse() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer "), None);
        assert_eq!(bearer("abc"), None);
    }

    #[test]
    fn security_off_lets_everyone_in_and_on_requires_credentials() {
        let off = Security::disabled();
        let p = off.authenticate(Credentials::default()).unwrap();
        assert_eq!(p, Principal::Anonymous);
        assert!(off.allows(&p, Operation::Admin, &Resource::Cluster));

        let on = Security::enabled(None, AclStore::in_memory(Vec::new()));
        let err = on.authenticate(Credentials::default()).unwrap_err();
        assert!(matches!(err, BrokerError::Unauthenticated(_)), "{err}");
        let err = on
            .authenticate(Credentials {
                token: Some("x"),
                verified: None,
            })
            .unwrap_err();
        assert!(err.to_string().contains("not valid"), "{err}");
        let p = on
            .authenticate(Credentials {
                token: None,
                verified: Some("cn=a"),
            })
            .unwrap();
        assert_eq!(p.name(), "cn=a");
        assert!(
            !on.allows(&p, Operation::Describe, &Resource::Topic("t")),
            "default deny"
        );
        assert!(!on.allows(
            &Principal::Anonymous,
            Operation::Describe,
            &Resource::Topic("t")
        ));
    }
}
