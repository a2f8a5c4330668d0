//! The config's keys, groups, ranges and error messages.

use super::*;

#[test]
fn empty_config_gives_defaults() {
    for empty in ["", "{}", "[]", "  "] {
        let c = Config::from_json(empty).unwrap();
        assert_eq!(c.listen, "127.0.0.1:8080");
        assert_eq!(c.chat.default_room, "lobby");
        assert_eq!(c.worker_threads, 2);
    }
}

#[test]
fn keys_land_in_their_groups() {
    let c = Config::from_json(
        r#"{"listen":"127.0.0.1:0","history_size":7,"relay":"host","max_backlog_bytes":4096,"max_message_bytes":256,
            "max_connections":9,"event_queue":32,"api_key":"0123456789abcdef","rooms":{}}"#,
    )
    .unwrap();
    assert_eq!(c.history.history_size, 7);
    assert_eq!(c.moderation.relay, Relay::Host);
    assert_eq!(c.limits.max_backlog_bytes, 4096);
    assert_eq!(c.admission.max_connections, 9);
    assert_eq!(c.events.event_queue, 32);
    assert_eq!(c.site.api_key.as_deref(), Some("0123456789abcdef"));
}

#[test]
fn unknown_key_is_named() {
    let e = Config::from_json(r#"{"listen":"127.0.0.1:0","colour":"red"}"#).unwrap_err();
    assert_eq!(e.key, "colour");
    assert!(e.to_string().contains("colour"), "{e}");
}

#[test]
fn wrong_type_names_the_key() {
    let e = Config::from_json(r#"{"worker_threads":"two"}"#).unwrap_err();
    assert_eq!(e.key, "worker_threads");
}

#[test]
fn out_of_range_names_the_key_and_bounds() {
    let e = Config::from_json(r#"{"worker_threads":0}"#).unwrap_err();
    assert_eq!(e.key, "worker_threads");
    assert!(e.message.contains("between 1 and 64"), "{e}");
}

#[test]
fn bad_enum_value_names_the_key() {
    let e = Config::from_json(r#"{"relay":"sometimes"}"#).unwrap_err();
    assert_eq!(e.key, "relay");
}

#[test]
fn bad_listen_address_names_the_key() {
    let e = Config::from_json(r#"{"listen":"localhost"}"#).unwrap_err();
    assert_eq!(e.key, "listen");
}

#[test]
fn list_entries_are_named_with_their_index() {
    let e = Config::from_json(r#"{"trusted_proxies":["10.0.0.0/8","nonsense"]}"#).unwrap_err();
    assert_eq!(e.key, "trusted_proxies[1]");
    let e = Config::from_json(r#"{"allowed_origins":["example.com"]}"#).unwrap_err();
    assert_eq!(e.key, "allowed_origins[0]");
    assert!(Config::from_json(r#"{"trusted_proxies":["10.0.0.0/8","127.0.0.1"]}"#).is_ok());
}

#[test]
fn room_overrides_are_checked_too() {
    let c = Config::from_json(r#"{"rooms":{"ticker":{"slow_consumer":"drop_oldest"}}}"#).unwrap();
    assert_eq!(c.chat.rooms["ticker"].slow_consumer, Some(SlowConsumer::DropOldest));
    let e = Config::from_json(r#"{"rooms":{"ticker":{"slow_consumer":"ignore"}}}"#).unwrap_err();
    assert_eq!(e.key, "rooms.ticker.slow_consumer");
    let e = Config::from_json(r#"{"rooms":{"ticker":{"colour":1}}}"#).unwrap_err();
    assert_eq!(e.key, "rooms.ticker.colour");
}

#[test]
fn broken_json_is_reported() {
    let e = Config::from_json("{").unwrap_err();
    assert!(e.to_string().starts_with("config"), "{e}");
}

#[test]
fn a_backlog_too_small_for_one_message_is_refused_naming_both_keys() {
    let e = Config::from_json(r#"{"max_backlog_bytes": 262144}"#).unwrap_err();
    assert_eq!(e.key, "max_backlog_bytes");
    assert!(e.message.contains("max_message_bytes"), "{e}");
    assert!(Config::from_json(r#"{"max_backlog_bytes": 262144, "max_message_bytes": 16384}"#).is_ok());
    assert!(Config::from_json(
        r#"{"echo": true, "max_message_bytes": 1000000, "max_backlog_bytes": 1048576}"#
    )
    .is_ok());
}

#[test]
fn frame_ancestors_are_csp_sources_and_nothing_more() {
    let ok = |v: &str| Config::from_json(&format!(r#"{{"page_frame_ancestors": {v}}}"#));
    assert_eq!(ok("[]").unwrap_err().key, "page_frame_ancestors");
    for good in [
        r#"["'none'"]"#,
        r#"["'self'", "https://site.example", "https://*.site.example:8443"]"#,
        r#"["https:"]"#,
    ] {
        assert!(ok(good).is_ok(), "{good}");
    }
    for bad in
        [r#"["'self' https://a.example"]"#, r#"["https://a.example;"]"#, r#"["a,b"]"#, r#"["'unsafe-eval'"]"#]
    {
        assert_eq!(ok(bad).unwrap_err().key, "page_frame_ancestors[0]", "{bad}");
    }
    assert_eq!(ok(r#"["'self'", "'none'"]"#).unwrap_err().key, "page_frame_ancestors[1]");
    assert_eq!(Config::default().site.frame_ancestors().unwrap(), "'self'");
}

#[test]
fn metrics_auth_needs_an_api_key() {
    assert_eq!(Config::from_json(r#"{"metrics_auth": true}"#).unwrap_err().key, "metrics_auth");
    assert!(Config::from_json(r#"{"metrics_auth": true, "api_key": "0123456789abcdef"}"#).is_ok());
}

#[test]
fn control_socket_limits_are_checked() {
    let c = Config::from_json(
        r#"{"control_socket_uids": [33, 1000], "control_socket_max_connections": 8, "control_socket_idle_timeout_ms": 500}"#,
    )
    .unwrap();
    assert_eq!(c.site.control_socket_uids, [33, 1000]);
    assert_eq!((c.site.control_socket_max_connections, c.site.control_socket_idle_timeout_ms), (8, 500));
    let e = Config::from_json(r#"{"control_socket_uids": [-1]}"#).unwrap_err();
    assert!(e.key.starts_with("control_socket_uids"), "{e}");
    let e = Config::from_json(r#"{"control_socket_uids": [4294967295]}"#).unwrap_err();
    assert_eq!(e.key, "control_socket_uids[0]");
    let e = Config::from_json(r#"{"control_socket_max_connections": 0}"#).unwrap_err();
    assert_eq!(e.key, "control_socket_max_connections");
    let e = Config::from_json(r#"{"control_socket_idle_timeout_ms": 10}"#).unwrap_err();
    assert_eq!(e.key, "control_socket_idle_timeout_ms");
}

#[test]
fn tls_is_an_object_of_two_paths_and_names_its_own_keys() {
    let c = Config::from_json(r#"{"tls": {"cert": "a.pem", "key": "b.pem"}}"#).unwrap();
    assert_eq!(c.site.tls, Some(TlsConfig { cert: "a.pem".into(), key: "b.pem".into() }));
    assert_eq!(Config::from_json(r#"{"tls": {"cert": "a.pem", "key": " "}}"#).unwrap_err().key, "tls.key");
    let e = Config::from_json(r#"{"tls": {"cert": "a.pem", "key": "b.pem", "chain": "c.pem"}}"#).unwrap_err();
    assert_eq!(e.key, "tls.chain");
    let e = Config::from_json(r#"{"tls": "a.pem"}"#).unwrap_err();
    assert_eq!(e.key, "tls");
    assert!(e.message.contains("expected an object"), "{e}");
}

#[test]
fn pusher_is_an_app_with_defaults_and_named_checks() {
    let c = Config::from_json(r#"{"pusher":{"app_id":"1","key":"k","secret":"0123456789abcdef"}}"#).unwrap();
    let p = c.site.pusher.unwrap();
    assert_eq!((p.max_event_name_chars, p.max_event_data_bytes, p.max_channels_per_event), (200, 10240, 100));
    assert!(!p.client_events, "client events are off unless asked for");
    assert_eq!(p.activity_timeout, 120);
    for (json, key) in [
        (r#"{"pusher":{"app_id":"1","key":"k","secret":"short"}}"#, "pusher.secret"),
        (r#"{"pusher":{"app_id":"a/b","key":"k","secret":"0123456789abcdef"}}"#, "pusher.app_id"),
        (r#"{"pusher":{"app_id":"1","key":"","secret":"0123456789abcdef"}}"#, "pusher.key"),
        (
            r#"{"pusher":{"app_id":"1","key":"k","secret":"0123456789abcdef","max_event_data_bytes":0}}"#,
            "pusher.max_event_data_bytes",
        ),
    ] {
        assert_eq!(Config::from_json(json).unwrap_err().key, key, "{json}");
    }
    let e = Config::from_json(
        r#"{"pusher":{"app_id":"1","key":"k","secret":"0123456789abcdef","clientEvents":true}}"#,
    )
    .unwrap_err();
    assert!(e.to_string().contains("clientEvents"), "{e}");
}
