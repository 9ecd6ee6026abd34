//! Who an HTTP request acts for (security, issue 15): the [`Authed`] extractor authenticates the
//! request (`Authorization: Bearer <token>`, or the connection's verified client certificate)
//! and yields the [`Caller`] every handler calls the broker through. Handlers without it (the
//! probes and `/metrics`) stay open unless `probes_require_auth` is set ([`probe_guard`]).

use std::sync::Arc;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::header;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::HttpState;
use super::error::ApiError;
use crate::auth::Credentials;
use crate::broker::{BrokerError, Caller};

/// The verified client certificate's principal of the request's connection (mTLS), put in every
/// request's extensions by the server.
#[derive(Debug, Clone, Default)]
pub struct PeerPrincipal(pub Option<Arc<str>>);

/// The broker, acting for the request's authenticated caller.
pub struct Authed(pub Caller);

fn authenticate(parts: &Parts, state: &HttpState) -> Result<Caller, BrokerError> {
    let token = parts
        .headers
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().ok().and_then(crate::auth::bearer).unwrap_or(""));
    let verified = parts
        .extensions
        .get::<PeerPrincipal>()
        .and_then(|p| p.0.as_deref());
    state.broker.authenticate(Credentials { token, verified })
}

impl FromRequestParts<HttpState> for Authed {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &HttpState) -> Result<Self, ApiError> {
        Ok(Self(authenticate(parts, state)?))
    }
}

/// Refuses unauthenticated requests to the probes and `/metrics` when
/// [`super::HttpConfig::probes_require_auth`] is set (any authenticated principal may read them).
pub async fn probe_guard(State(state): State<HttpState>, req: Request, next: Next) -> Response {
    if state.config.probes_require_auth {
        let (parts, body) = req.into_parts();
        if let Err(e) = authenticate(&parts, &state) {
            return ApiError::Broker(e).into_response();
        }
        return next.run(Request::from_parts(parts, body)).await;
    }
    next.run(req).await
}
