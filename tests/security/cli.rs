//! The binary: `obelisk serve` refuses an insecure non-loopback bind naming `--insecure`, and
//! `obelisk acl add|list|remove` manage ACLs over TLS with a token (`--ca`, `--token`, and the
//! `OBELISK_*` variables).

use std::process::{Command, Output};

use super::support::*;

fn obelisk(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_obelisk"));
    c.args(args)
        .env_remove("OBELISK_TOKEN")
        .env_remove("OBELISK_CA");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("runs")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn serve_refuses_a_non_loopback_bind_without_tls_and_auth() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let o = obelisk(
        &[
            "serve",
            "--data-dir",
            data.to_str().unwrap(),
            "--grpc-addr",
            "0.0.0.0:0",
            "--tcp-addr",
            "off",
            "--http-addr",
            "off",
        ],
        &[],
    );
    assert!(!o.status.success());
    let out = text(&o);
    assert!(
        out.contains("--insecure") && out.contains("0.0.0.0"),
        "{out}"
    );
}

// The commands block their thread: the server needs another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_commands_add_list_and_remove_over_tls_with_a_token() {
    let s = Secure::start().await;
    let server = s.grpc_url();
    let ca = s.certs.ca.to_str().unwrap().to_string();
    let add = [
        "acl",
        "add",
        "--server",
        &server,
        "--principal",
        "alice",
        "--topic",
        "logs.",
        "--prefix",
        "--operation",
        "produce",
    ];
    let flags = [("OBELISK_CA", ca.as_str()), ("OBELISK_TOKEN", ROOT)];
    let o = obelisk(&add, &flags);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "added\n");
    let o = obelisk(
        &[
            "acl", "list", "--server", &server, "--ca", &ca, "--token", ROOT,
        ],
        &[],
    );
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("alice") && out.contains("logs.") && out.contains("prefix"),
        "{out}"
    );
    s.grpc(Some(ALICE))
        .await
        .produce(produce("logs.x", "v"))
        .await
        .expect("the CLI's rule applies");
    let o = obelisk(
        &add,
        &[("OBELISK_CA", ca.as_str()), ("OBELISK_TOKEN", ALICE)],
    );
    assert!(!o.status.success());
    assert!(text(&o).contains("PermissionDenied"), "{}", text(&o));
    let mut remove = add;
    remove[1] = "remove";
    let o = obelisk(&remove, &flags);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "removed\n");
    let o = obelisk(&["acl", "list", "--server", &server], &flags);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "no ACLs\n");
    let o = obelisk(&["topics", "list", "--server", &server, "--ca", &ca], &[]);
    assert!(!o.status.success(), "no token");
    assert!(text(&o).contains("Unauthenticated"), "{}", text(&o));
}
