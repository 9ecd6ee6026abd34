//! Log output of the binary when stderr is not a terminal.

use super::{serve_with_unusable_data_dir, stderr};

/// Logs piped to a file or another program are plain text: no terminal colour codes.
#[test]
fn piped_logs_have_no_colour_codes() {
    let o = serve_with_unusable_data_dir(&["--log-level", "info"], &[]);
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
