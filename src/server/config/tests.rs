//! Configuration loading and validation, as an operator meets it.

use super::*;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn load(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
    Config::load(None, env(pairs))
}

fn write(text: &str) -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), text).unwrap();
    file
}

#[test]
fn defaults_listen_on_loopback_with_the_embedded_store() {
    let config = load(&[]).unwrap();
    assert_eq!(config.listen, "127.0.0.1:8080".parse().unwrap());
    assert_eq!(config.database, Database::Embedded);
    assert_eq!(config.data_dir, PathBuf::from("./mandate-data"));
    assert_eq!(config.request_body_limit, 65536);
    assert_eq!(config.request_timeout, Duration::from_secs(10));
    assert!(config.root_keys.is_empty());
}

#[test]
fn environment_variables_override_the_file() {
    let file = write("listen = \"127.0.0.1:9000\"\ndata_dir = \"/var/lib/mandate\"\n");
    let config = Config::load(
        Some(file.path()),
        env(&[("MANDATE_LISTEN", "0.0.0.0:7000"), ("PATH", "/bin")]),
    )
    .unwrap();
    assert_eq!(config.listen, "0.0.0.0:7000".parse().unwrap());
    assert_eq!(config.data_dir, PathBuf::from("/var/lib/mandate"));
}

#[test]
fn the_config_file_can_be_named_by_mandate_config() {
    let file = write("request_timeout_ms = 2500\n");
    let path = file.path().to_str().unwrap();
    let config = load(&[("MANDATE_CONFIG", path)]).unwrap();
    assert_eq!(config.request_timeout, Duration::from_millis(2500));
}

#[test]
fn an_unknown_file_key_is_refused_with_its_line() {
    let file = write("listen = \"127.0.0.1:9000\"\nlisten_adress = \"x\"\n");
    let err = Config::load(Some(file.path()), env(&[])).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, ConfigError::File { line: 2, .. }), "{text}");
    assert!(text.contains("unknown field `listen_adress`"), "{text}");
    assert!(!text.contains('\n'));
}

#[test]
fn an_unknown_mandate_environment_variable_is_refused() {
    let err = load(&[("MANDATE_LISTN", "127.0.0.1:1")]).unwrap_err();
    assert_eq!(err, ConfigError::UnknownEnv("MANDATE_LISTN".into()));
}

#[test]
fn root_keys_parse_from_the_environment_and_the_highest_kid_signs_by_default() {
    let config = load(&[("MANDATE_ROOT_KEYS", "1=/k/one.pem, 2=/k/two.pem")]).unwrap();
    assert_eq!(
        config.root_keys,
        vec![
            RootKeyFile {
                kid: 1,
                path: "/k/one.pem".into()
            },
            RootKeyFile {
                kid: 2,
                path: "/k/two.pem".into()
            },
        ]
    );
    assert_eq!(config.signing_kid(), Some(2));
    let config = load(&[
        ("MANDATE_ROOT_KEYS", "1=/k/one.pem,2=/k/two.pem"),
        ("MANDATE_ACTIVE_KID", "1"),
    ])
    .unwrap();
    assert_eq!(config.signing_kid(), Some(1));
}

#[test]
fn root_keys_in_the_file_are_tables() {
    let file = write("active_kid = 3\n[[root_keys]]\nkid = 3\npath = \"/k/3.pem\"\n");
    let config = Config::load(Some(file.path()), env(&[])).unwrap();
    assert_eq!(config.root_keys[0].kid, 3);
    assert_eq!(config.signing_kid(), Some(3));
}

#[test]
fn bad_root_key_settings_are_refused() {
    for (value, expect) in [
        ("1=/a,1=/b", "kid 1 is listed twice"),
        ("one=/a", "is not a kid"),
        ("/a", "is not KID=PATH"),
        ("1=", "empty path"),
    ] {
        let err = load(&[("MANDATE_ROOT_KEYS", value)])
            .unwrap_err()
            .to_string();
        assert!(err.contains(expect), "{value}: {err}");
    }
    let err = load(&[("MANDATE_ROOT_KEYS", "1=/a"), ("MANDATE_ACTIVE_KID", "2")])
        .unwrap_err()
        .to_string();
    assert_eq!(err, "active_kid: kid 2 is not among root_keys");
}

#[test]
fn database_urls_select_the_store() {
    let pg = load(&[(
        "MANDATE_DATABASE_URL",
        "postgres://mandate:hunter2@db:5432/mandate",
    )])
    .unwrap();
    assert!(matches!(pg.database, Database::Postgres(_)));
    let lite = load(&[("MANDATE_DATABASE_URL", "sqlite:///var/lib/m.db")]).unwrap();
    assert_eq!(lite.database, Database::Sqlite("/var/lib/m.db".into()));
}

#[test]
fn malformed_database_urls_are_refused_without_echoing_them() {
    for url in [
        "postgres//mandate:hunter2@db",
        "mysql://mandate:hunter2@db/m",
        "postgres://mandate:hunter2@db:notaport/m",
        "sqlite://",
    ] {
        let err = load(&[("MANDATE_DATABASE_URL", url)])
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("database_url: "), "{url}: {err}");
        assert!(!err.contains("hunter2"), "{url}: {err}");
    }
}

#[test]
fn the_database_password_never_appears_in_debug_output() {
    let config = load(&[(
        "MANDATE_DATABASE_URL",
        "postgres://mandate:hunter2@db:5432/mandate?password=hunter3",
    )])
    .unwrap();
    let debug = format!("{config:?}");
    assert!(!debug.contains("hunter2"), "{debug}");
    assert!(!debug.contains("hunter3"), "{debug}");
    assert!(debug.contains("db:5432/mandate"), "{debug}");
}

#[test]
fn out_of_range_numbers_are_refused() {
    for (key, value, expect) in [
        ("MANDATE_REQUEST_BODY_LIMIT", "10", "request_body_limit"),
        ("MANDATE_REQUEST_TIMEOUT_MS", "0", "request_timeout_ms"),
        (
            "MANDATE_DATABASE_MAX_CONNECTIONS",
            "0",
            "database_max_connections",
        ),
        ("MANDATE_LISTEN", "localhost", "listen"),
        ("MANDATE_LOG_FORMAT", "xml", "log_format"),
        (
            "MANDATE_REQUEST_TIMEOUT_MS",
            "-5",
            "MANDATE_REQUEST_TIMEOUT_MS",
        ),
    ] {
        let err = load(&[(key, value)]).unwrap_err().to_string();
        assert!(err.starts_with(expect), "{key}={value}: {err}");
    }
}

#[test]
fn every_setting_is_documented() {
    let doc = include_str!("../../../docs/configuration.md");
    for var in ENV_VARS {
        assert!(doc.contains(&format!("`{var}`")), "{var} is not documented");
    }
    for key in [
        "listen",
        "database_url",
        "database_max_connections",
        "data_dir",
        "root_keys",
        "active_kid",
        "request_body_limit",
        "request_timeout_ms",
        "log",
        "log_format",
    ] {
        assert!(
            doc.contains(&format!("| `{key}` |")),
            "{key} is not documented"
        );
        // Every documented key is one the file parser accepts.
        let toml = match key {
            "root_keys" => "root_keys = []".to_owned(),
            "active_kid"
            | "database_max_connections"
            | "request_body_limit"
            | "request_timeout_ms" => format!("{key} = 1"),
            _ => format!("{key} = \"x\""),
        };
        let parsed: Result<Settings, _> = toml::from_str(&toml);
        assert!(parsed.is_ok(), "{key}: {parsed:?}");
    }
}

#[test]
fn the_admin_token_comes_from_the_environment_or_a_file_never_both() {
    let token = "mnd_adm_0123456789abcdefghijklmnopqrstuvwxyzABCD";
    let config = load(&[("MANDATE_ADMIN_TOKEN", token)]).unwrap();
    assert!(matches!(
        config.admin_token,
        Some(AdminTokenSource::Value(_))
    ));
    assert!(!format!("{config:?}").contains(token), "redacted in Debug");
    let config = load(&[("MANDATE_ADMIN_TOKEN_FILE", "/run/secrets/admin")]).unwrap();
    assert_eq!(
        config.admin_token,
        Some(AdminTokenSource::File("/run/secrets/admin".into()))
    );
    let err = load(&[
        ("MANDATE_ADMIN_TOKEN", token),
        ("MANDATE_ADMIN_TOKEN_FILE", "/x"),
    ])
    .unwrap_err();
    assert!(err.to_string().contains("not both"), "{err}");
}

#[test]
fn a_weak_admin_token_is_refused_without_echoing_it() {
    for weak in [
        "hunter2",
        "mnd_adm_short",
        "mnd_adm_has spaces in it and is long enough ok",
    ] {
        let err = load(&[("MANDATE_ADMIN_TOKEN", weak)])
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("MANDATE_ADMIN_TOKEN: must be mnd_adm_"),
            "{err}"
        );
        assert!(!err.contains(weak), "{err}");
    }
}

#[test]
fn the_admin_token_cannot_be_written_into_the_file() {
    let file = write("admin_token = \"mnd_adm_0123456789abcdefghijklmnopqrstuvwxyzABCD\"\n");
    let err = Config::load(Some(file.path()), env(&[]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown field `admin_token`"), "{err}");
}

#[test]
fn the_ttl_cap_is_bounded() {
    assert_eq!(load(&[]).unwrap().max_ttl_seconds, 3600);
    assert!(load(&[("MANDATE_MAX_TTL_SECONDS", "59")]).is_err());
    assert!(load(&[("MANDATE_MAX_TTL_SECONDS", "86401")]).is_err());
    assert_eq!(
        load(&[("MANDATE_MAX_TTL_SECONDS", "600")])
            .unwrap()
            .max_ttl_seconds,
        600
    );
}

#[test]
fn mint_rate_limits_default_strict_and_cannot_be_switched_off() {
    let config = load(&[]).unwrap();
    assert_eq!(
        (config.mint_rate_per_agent, config.mint_rate_per_principal),
        (600, 120)
    );
    for key in [
        "MANDATE_MINT_RATE_PER_AGENT",
        "MANDATE_MINT_RATE_PER_PRINCIPAL",
    ] {
        let err = load(&[(key, "0")]).unwrap_err().to_string();
        assert!(err.contains("between 1 and 1000000"), "{key}: {err}");
        assert!(load(&[(key, "1000001")]).is_err());
        assert!(load(&[(key, "ten")]).is_err());
    }
    let config = load(&[("MANDATE_MINT_RATE_PER_PRINCIPAL", "30")]).unwrap();
    assert_eq!(config.mint_rate_per_principal, 30);
}

#[test]
fn the_revocation_stream_cap_is_bounded() {
    assert_eq!(load(&[]).unwrap().max_revocation_streams, 1024);
    assert_eq!(
        load(&[("MANDATE_MAX_REVOCATION_STREAMS", "8")])
            .unwrap()
            .max_revocation_streams,
        8
    );
    assert!(load(&[("MANDATE_MAX_REVOCATION_STREAMS", "0")]).is_err());
    assert!(load(&[("MANDATE_MAX_REVOCATION_STREAMS", "100001")]).is_err());
}

#[test]
fn the_live_mandate_cap_is_bounded() {
    assert_eq!(load(&[]).unwrap().max_live_mandates_per_agent, 10_000);
    assert!(load(&[("MANDATE_MAX_LIVE_MANDATES_PER_AGENT", "0")]).is_err());
    assert_eq!(
        load(&[("MANDATE_MAX_LIVE_MANDATES_PER_AGENT", "50")])
            .unwrap()
            .max_live_mandates_per_agent,
        50
    );
}
