//! `obelisk serve` settings as a user gives them: defaults < TOML file (`OBELISK_CONFIG`) <
//! `OBELISK_*` environment < flags. The start-up log line shows what is in force; a data
//! directory that cannot be created makes the server exit right after it.

use std::process::Output;

use super::{serve_with_unusable_data_dir as serve, stderr};

/// The `key=value` fields of the "starting obelisk" log line.
fn started_with(o: &Output) -> String {
    let log = stderr(o);
    log.lines()
        .find(|l| l.contains("starting obelisk"))
        .unwrap_or_else(|| panic!("no start-up line in: {log}"))
        .to_string()
}

#[test]
fn environment_wins_over_the_file_and_flags_over_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("obelisk.toml");
    std::fs::write(
        &file,
        "durability = \"interval\"\ngrpc_addr = \"127.0.0.1:0\"\n",
    )
    .unwrap();
    let file = file.to_str().unwrap();

    let line = started_with(&serve(&[], &[("OBELISK_CONFIG", file)]));
    assert!(line.contains("durability=interval"), "{line}");
    assert!(line.contains("grpc=127.0.0.1:0"), "{line}");

    let env = [("OBELISK_CONFIG", file), ("OBELISK_DURABILITY", "fsync")];
    let line = started_with(&serve(&[], &env));
    assert!(line.contains("durability=fsync"), "{line}");
    assert!(
        line.contains("grpc=127.0.0.1:0"),
        "the file still applies: {line}"
    );

    let line = started_with(&serve(&["--durability", "interval"], &env));
    assert!(line.contains("durability=interval"), "{line}");
}

#[test]
fn bad_settings_are_refused_naming_them() {
    let o = serve(&[], &[("OBELISK_DURABILITY", "sometimes")]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("--durability") && err.contains("fsync") && err.contains("interval"),
        "{err}"
    );
    let o = serve(&["--grpc-addr", "localhost"], &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("invalid setting grpc_addr = \"localhost\""),
        "{}",
        stderr(&o)
    );
}
