//! Exit codes and messages: a broker that is down, bad names, bad input.

use std::process::Command;

use super::{obelisk, start, stderr, with_server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_say_what_went_wrong_and_exit_non_zero() {
    // A port nothing listens on: bind, note it, close.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let down = format!("http://{closed}");
    for args in [
        vec!["produce", "t", "--value", "x"],
        vec!["consume", "t"],
        vec!["topics", "list"],
        vec!["groups", "describe", "g"],
    ] {
        let o = obelisk(with_server(&down, &args), b"").await;
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        let err = stderr(&o);
        assert!(
            err.starts_with(&format!("error: cannot reach the broker at {down}")),
            "{args:?}: {err}"
        );
    }
    // OBELISK_SERVER is the default, and a bare host:port works.
    let o = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_obelisk"))
            .args(["topics", "list"])
            .env("OBELISK_SERVER", closed.to_string())
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        stderr(&o).contains(&format!("cannot reach the broker at http://{closed}")),
        "{}",
        stderr(&o)
    );

    let (_dir, server, url) = start().await;
    let bad = obelisk(
        with_server(&url, &["produce", "bad/topic", "--value", "x"]),
        b"",
    )
    .await;
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        stderr(&bad).starts_with("error: InvalidArgument: invalid topic name \"bad/topic\""),
        "{}",
        stderr(&bad)
    );
    let bad_lines = obelisk(
        with_server(&url, &["produce", "t", "--json"]),
        b"{\"value\":\"ok\"}\nnot json\n",
    )
    .await;
    assert_eq!(bad_lines.status.code(), Some(1));
    assert!(
        stderr(&bad_lines).starts_with("error: line 2: not valid JSON"),
        "{}",
        stderr(&bad_lines)
    );
    let no_sep = obelisk(
        with_server(&url, &["produce", "t", "--key-separator", "="]),
        b"k=v\nnokey\n",
    )
    .await;
    assert_eq!(no_sep.status.code(), Some(1));
    assert!(
        stderr(&no_sep).contains("line 2 has no key separator"),
        "{}",
        stderr(&no_sep)
    );
    let unknown_topic = obelisk(with_server(&url, &["consume", "nope"]), b"").await;
    assert_eq!(unknown_topic.status.code(), Some(1));
    assert!(
        stderr(&unknown_topic).starts_with("error: NotFound: topic \"nope\""),
        "{}",
        stderr(&unknown_topic)
    );
    let bad_from = obelisk(
        with_server(&url, &["consume", "t", "--from", "yesterday"]),
        b"",
    )
    .await;
    assert_eq!(bad_from.status.code(), Some(2), "clap's usage error");
    assert!(
        stderr(&bad_from).contains("expected earliest, latest"),
        "{}",
        stderr(&bad_from)
    );
    let bad_group = obelisk(
        with_server(&url, &["consume", "t", "--group", "no/pe"]),
        b"",
    )
    .await;
    assert_eq!(bad_group.status.code(), Some(1));
    assert!(
        stderr(&bad_group).contains("invalid consumer group name"),
        "{}",
        stderr(&bad_group)
    );
    server.stop().await;
}
