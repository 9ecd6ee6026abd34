//! REST over HTTPS: 401 JSON without (valid) credentials, 403 without an ACL (nothing written),
//! ACLs (literal, prefix, deny wins), lists filtered, probes open unless configured otherwise.

use obelisk::proto as pb;
use pb::{AclEffect, AclOperation, AclPattern, AclResourceType};
use serde_json::json;

use super::support::*;

fn message(v: &str) -> serde_json::Value {
    json!({"key": "k", "value": v})
}

#[tokio::test]
async fn no_token_is_401_and_a_token_without_an_acl_is_403_with_nothing_written() {
    let s = Secure::start().await;
    let h = s.https().await;
    let r = h
        .call("POST", "/topics/orders/messages", None, Some(message("v")))
        .await;
    assert_eq!(r.status, 401, "{}", r.json);
    assert_eq!(r.json["error"]["code"], "unauthenticated");
    assert_eq!(r.headers.get("www-authenticate").unwrap(), "Bearer");
    let r = h
        .call(
            "POST",
            "/topics/orders/messages",
            Some("wrong"),
            Some(message("v")),
        )
        .await;
    assert_eq!(r.status, 401, "{}", r.json);
    let r = h
        .call(
            "POST",
            "/topics/orders/messages",
            Some(ALICE),
            Some(message("v")),
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.json);
    assert_eq!(r.json["error"]["code"], "permission_denied");
    assert_eq!(s.stored("orders").await, 0);
}

#[tokio::test]
async fn with_acls_rest_produce_and_fetch_work_prefix_and_deny_included() {
    let s = Secure::start().await;
    s.allow(acl(
        "alice",
        AclResourceType::Topic,
        "app.",
        AclPattern::Prefix,
        AclOperation::Produce,
        AclEffect::Allow,
    ))
    .await;
    s.allow(acl(
        "alice",
        AclResourceType::Topic,
        "app.",
        AclPattern::Prefix,
        AclOperation::Consume,
        AclEffect::Allow,
    ))
    .await;
    s.allow(acl(
        "alice",
        AclResourceType::Topic,
        "app.private",
        AclPattern::Literal,
        AclOperation::Produce,
        AclEffect::Deny,
    ))
    .await;
    let h = s.https().await;
    let r = h
        .call(
            "POST",
            "/topics/app.web/messages",
            Some(ALICE),
            Some(message("hello")),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.json);
    let partition = r.json["partition"].as_u64().unwrap();
    let r = h
        .call(
            "GET",
            &format!("/topics/app.web/messages?partition={partition}&offset=0"),
            Some(ALICE),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.json);
    assert_eq!(r.json["records"][0]["value"], "hello");
    let r = h
        .call(
            "POST",
            "/topics/app.private/messages",
            Some(ALICE),
            Some(message("x")),
        )
        .await;
    assert_eq!(r.status, 403, "deny wins: {}", r.json);
    let r = h
        .call(
            "POST",
            "/topics/other/messages",
            Some(ALICE),
            Some(message("x")),
        )
        .await;
    assert_eq!(r.status, 403, "outside the prefix: {}", r.json);
    assert_eq!(s.stored("app.private").await, 0);
    // The list shows what alice may describe (her allowed produce/consume imply it).
    let r = h.call("GET", "/topics", Some(ALICE), None).await;
    assert_eq!(r.status, 200);
    let names: Vec<_> = r.json["topics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["app.web"]);
    let r = h.call("GET", "/topics", Some(BOB), None).await;
    assert_eq!(r.json["topics"], json!([]), "bob sees nothing");
}

#[tokio::test]
async fn probes_and_metrics_stay_open_by_default_and_can_require_a_token() {
    let s = Secure::start().await;
    let h = s.https().await;
    for path in ["/health/live", "/health/ready", "/metrics"] {
        assert_eq!(h.call("GET", path, None, None).await.status, 200, "{path}");
    }
    let s = Secure::start_with(|c| c.probes_require_auth = true).await;
    let h = s.https().await;
    for path in ["/health/live", "/metrics"] {
        assert_eq!(h.call("GET", path, None, None).await.status, 401, "{path}");
        assert_eq!(
            h.call("GET", path, Some(BOB), None).await.status,
            200,
            "{path}"
        );
    }
}
