//! Log output of the binary when stderr is not a terminal.

use super::{obelisk, stderr};

/// Logs piped to a file or another program are plain text: no terminal colour codes.
#[tokio::test]
async fn piped_logs_have_no_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    // A data directory below a regular file: the server logs its start, then fails to open it
    // and exits, so the whole log is there without stopping a server.
    let blocker = dir.path().join("file");
    std::fs::write(&blocker, b"").unwrap();
    let data_dir = blocker.join("data");
    let args = [
        "serve",
        "--data-dir",
        data_dir.to_str().unwrap(),
        "--grpc-addr",
        "127.0.0.1:0",
        "--tcp-addr",
        "off",
        "--http-addr",
        "off",
        "--log-level",
        "info",
    ];
    let o = obelisk(args.iter().map(ToString::to_string).collect(), b"").await;
    let log = stderr(&o);
    assert!(!o.status.success(), "the server cannot start here: {log}");
    assert!(
        log.contains("INFO") && log.contains("starting obelisk"),
        "{log}"
    );
    assert!(
        !log.contains("\x1b["),
        "colour codes in piped logs: {log:?}"
    );
}
