//! The wire protocol, through the real binaries over a real unix socket:
//! every case of ../shared/reference/qemu-ga-behaviour.md that issue 2 covers,
//! each with its exact reply.

use std::time::Duration;

use qga_warden_tests::{Agent, Client};

/// Sends `input` on a fresh connection and returns exactly `n` reply lines.
fn replies(agent: &Agent, input: &[u8], n: usize) -> Vec<Vec<u8>> {
    let mut c = agent.connect();
    c.send(input);
    let lines = (0..n).map(|_| c.line()).collect();
    c.expect_silence(Duration::from_millis(200));
    lines
}

fn one(agent: &Agent, input: &[u8]) -> String {
    String::from_utf8(replies(agent, input, 1).remove(0)).expect("utf-8")
}

fn generic(desc: &str) -> String {
    format!("{{\"error\": {{\"class\": \"GenericError\", \"desc\": \"{desc}\"}}}}\n")
}

#[test]
fn framing_and_resync() {
    let agent = Agent::start(&[]);
    let cases: &[(&[u8], &[u8])] = &[
        (br#"{"execute":"guest-ping"}"#, b"{\"return\": {}}\n"),
        (br#"{"execute":"guest-ping","id":"abc"}"#, b"{\"return\": {}, \"id\": \"abc\"}\n"),
        (
            br#"{"execute":"guest-ping","id":{"b":[1.5,0.1,1e2,-0,null,true],"a":"\u00e9"}}"#,
            b"{\"return\": {}, \"id\": {\"a\": \"\\u00E9\", \"b\": [1.5, 0.10000000000000001, 100, 0, null, true]}}\n",
        ),
        (br#"{"execute":"guest-sync","arguments":{"id":123}}"#, b"{\"return\": 123}\n"),
        (
            br#"{"execute":"guest-sync-delimited","arguments":{"id":125}}"#,
            b"\xff{\"return\": 125}\n",
        ),
        (
            br#"{"execute":"guest-sync","arguments":{"id":-9223372036854775808},"id":7}"#,
            b"{\"return\": -9223372036854775808, \"id\": 7}\n",
        ),
        (
            b"\xff",
            b"{\"error\": {\"class\": \"GenericError\", \"desc\": \"JSON parse error, stray '\\uFFFD'\"}}\n",
        ),
        (
            b"{'execute':'guest-ping'}",
            b"{\"return\": {}}\n",
        ),
        (
            b"\n {\n\"execute\"\r\n:\t\"guest-ping\" } ",
            b"{\"return\": {}}\n",
        ),
    ];
    for (input, want) in cases {
        let got = replies(&agent, input, 1).remove(0);
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(want),
            "input {:?}",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn ff_then_sync_delimited() {
    let agent = Agent::start(&[]);
    let lines =
        replies(&agent, b"\xff{\"execute\":\"guest-sync-delimited\",\"arguments\":{\"id\":42}}", 2);
    assert_eq!(lines[0], generic("JSON parse error, stray '\\uFFFD'").as_bytes());
    assert_eq!(lines[1], b"\xff{\"return\": 42}\n");
}

#[test]
fn partial_request_then_ff_then_valid() {
    let agent = Agent::start(&[]);
    let mut c = agent.connect();
    c.send(br#"{"execute":"guest-pi"#);
    c.expect_silence(Duration::from_millis(100));
    c.send(b"\xff");
    assert_eq!(c.text(), generic("JSON parse error, stray '\\\"guest-pi\\uFFFD'"));
    assert_eq!(c.call(r#"{"execute":"guest-ping","id":1}"#), r#"{"return": {}, "id": 1}"#);
}

#[test]
fn two_requests_in_one_write_and_one_split_over_many() {
    let agent = Agent::start(&[]);
    let lines = replies(
        &agent,
        br#"{"execute":"guest-ping","id":1}{"execute":"guest-sync","arguments":{"id":2}}"#,
        2,
    );
    assert_eq!(lines[0], b"{\"return\": {}, \"id\": 1}\n");
    assert_eq!(lines[1], b"{\"return\": 2}\n");

    let mut c = agent.connect();
    let req = b"{ \"execute\" :\n \"guest-sync\", \"arguments\": {\"id\": 99} }";
    for byte in req.chunks(1) {
        c.send(byte);
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(c.text(), "{\"return\": 99}\n");
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let agent = Agent::start(&[]);
    let mut c = agent.connect();
    let mut input = Vec::new();
    for i in 0..500 {
        if i % 7 == 0 {
            input.extend_from_slice(format!(r#"{{"execute":"nope","id":{i}}}"#).as_bytes());
        } else {
            input.extend_from_slice(format!(r#"{{"execute":"guest-ping","id":{i}}}"#).as_bytes());
        }
    }
    c.send(&input);
    for i in 0..500 {
        let line = c.text();
        if i % 7 == 0 {
            assert!(line.starts_with(&format!("{{\"id\": {i}, \"error\"")), "{line}");
        } else {
            assert_eq!(line, format!("{{\"return\": {{}}, \"id\": {i}}}\n"));
        }
    }
}

#[test]
fn request_errors_match_qemu_ga() {
    let agent = Agent::start(&[]);
    let cases: &[(&str, &str)] = &[
        ("[1,2,3]", "QMP input must be a JSON object"),
        ("\"hello\"", "QMP input must be a JSON object"),
        ("{}", "QMP input lacks member 'execute'"),
        (r#"{"execute":123}"#, "QMP input member 'execute' must be a string"),
        (r#"{"execute":"guest-ping","foo":1}"#, "QMP input member 'foo' is unexpected"),
        (
            r#"{"execute":"guest-ping","arguments":[]}"#,
            "QMP input member 'arguments' must be an object",
        ),
        (r#"{"execute":"guest-sync"}"#, "Parameter 'id' is missing"),
        (r#"{"execute":"guest-sync","arguments":{"id":1,"x":2}}"#, "Parameter 'x' is unexpected"),
        (
            r#"{"execute":"guest-sync","arguments":{"id":"s"}}"#,
            "Invalid parameter type for 'id', expected: integer",
        ),
        (
            r#"{"execute":"guest-sync","arguments":{"id":1.5}}"#,
            "Invalid parameter type for 'id', expected: integer",
        ),
        (
            r#"{"execute":"guest-sync","arguments":{"id":9223372036854775808}}"#,
            "Invalid parameter type for 'id', expected: integer",
        ),
        (r#"{"execute": guest-ping}"#, "JSON parse error, stray '-p'"),
        (
            "{\"execute\":\"guest-ping\",\"id\":\"\u{c3}(\"}",
            "JSON parse error, invalid UTF-8 sequence in string",
        ),
        (r#"{"execute":"guest-ping","id":"a","id":"b"}"#, "JSON parse error, duplicate key"),
        (r#"{"execute":"guest-ping",}"#, "JSON parse error, expecting value"),
        (r#"{"execute" "guest-ping"}"#, "JSON parse error, missing : in object pair"),
        (r#"{"execute":"guest-ping","id":nul}"#, "JSON parse error, invalid keyword 'nul'"),
        (
            r#"{"execute":"guest-ping","id":"\x"}"#,
            "JSON parse error, invalid escape sequence in string",
        ),
        (
            r#"{"execute":"guest-ping","id":"\ud800"}"#,
            "JSON parse error, \\\\ud800 is not a valid Unicode character",
        ),
        (
            r#"{"execute":"guest-shutdown","arguments":{"mode":"bad"}}"#,
            "mode is invalid (valid values are: halt|powerdown|reboot",
        ),
    ];
    for (input, desc) in cases {
        // Invalid UTF-8 cannot be in a &str: the 0xC3 0x28 case is built here.
        let bytes: Vec<u8> = if input.contains('\u{c3}') {
            br#"{"execute":"guest-ping","id":""#.iter().chain(b"\xc3\x28\"}").copied().collect()
        } else {
            input.as_bytes().to_vec()
        };
        assert_eq!(one(&agent, &bytes), generic(desc), "input {input}");
    }
    assert_eq!(
        one(&agent, br#"{"execute":"no-such-command","id":"x"}"#),
        "{\"id\": \"x\", \"error\": {\"class\": \"CommandNotFound\", \"desc\": \"The command no-such-command has not been found\"}}\n"
    );
    assert_eq!(
        one(&agent, br#"{"id":1}"#),
        "{\"id\": 1, \"error\": {\"class\": \"GenericError\", \"desc\": \"QMP input lacks member 'execute'\"}}\n"
    );
}

#[test]
fn the_connection_keeps_working_after_every_error() {
    let agent = Agent::start(&[]);
    let mut c = agent.connect();
    let garbage: &[&[u8]] = &[
        b"[1,2,3]",
        b"{}",
        br#"{"execute":"nope"}"#,
        br#"{"execute": guest-ping}"#,
        b"\xff",
        br#"{"execute":"guest-sync","arguments":{"id":"s"}}"#,
        b"\x01",
    ];
    for (i, g) in garbage.iter().enumerate() {
        c.send(g);
        assert!(c.resync(i as i64, Duration::from_secs(5)), "no resync after {g:?}");
        assert_eq!(c.call(r#"{"execute":"guest-ping","id":0}"#), r#"{"return": {}, "id": 0}"#);
    }
}

#[test]
fn a_run_of_garbage_gets_one_error_and_never_more_than_a_prefix() {
    let agent = Agent::start(&[]);
    let mut c = agent.connect();
    // qemu-ga answers each 0xFF (and each trailing bad token) separately.
    c.send(b"\xff\xff\xff\xff\x01\x02]]]]");
    assert_eq!(c.text(), generic("JSON parse error, stray '\\uFFFD'"));
    c.expect_silence(Duration::from_millis(200));
    // A request that names a command re-arms error replies.
    assert_eq!(c.call(r#"{"execute":"guest-ping"}"#), r#"{"return": {}}"#);
    c.send(b"\xff");
    assert_eq!(c.text(), generic("JSON parse error, stray '\\uFFFD'"));
    // A long bad token is quoted only in part.
    let mut long = b"\"".to_vec();
    long.extend(std::iter::repeat_n(b'x', 100_000));
    long.push(0x01);
    c.send(br#"{"execute":"guest-ping"}"#);
    assert_eq!(c.text(), "{\"return\": {}}\n");
    c.send(&long);
    let line = c.text();
    assert!(line.len() < 200, "error echoes too much: {} bytes", line.len());
    assert!(line.contains("stray '\\\"xxxx") && line.contains("...'"), "{line}");
}

#[test]
fn nesting_and_size_limits_resynchronise() {
    let agent = Agent::start(&[]);
    let mut c = agent.connect();
    let mut deep = vec![b'['; 1025];
    deep.extend(vec![b']'; 1025]);
    c.send(&deep);
    assert_eq!(c.text(), generic("JSON nesting depth limit exceeded"));
    assert_eq!(c.call(r#"{"execute":"guest-ping"}"#), r#"{"return": {}}"#);

    // 1024 levels are fine.
    let mut ok = b"{\"execute\":\"guest-ping\",\"id\":".to_vec();
    ok.extend(vec![b'['; 1023]);
    ok.extend(vec![b']'; 1023]);
    ok.push(b'}');
    c.send(&ok);
    assert!(c.text().starts_with("{\"return\": {}, \"id\": [[[["));

    // A request over 64 MiB is refused and memory is not kept.
    let mut big = b"{\"execute\":\"guest-ping\",\"id\":\"".to_vec();
    big.extend(std::iter::repeat_n(b'A', 65 * 1024 * 1024));
    big.extend_from_slice(b"\"}");
    c.send(&big);
    assert_eq!(c.text(), generic("JSON token size limit exceeded"));
    assert_eq!(c.call(r#"{"execute":"guest-ping"}"#), r#"{"return": {}}"#);
    let fe = agent.frontend_pid().expect("frontend");
    let rss = qga_warden_tests::rss_kib(fe).expect("rss");
    assert!(rss < 64 * 1024, "frontend keeps {rss} KiB after an oversized request");
}

#[test]
fn guest_info_lists_every_command() {
    let agent = Agent::start(&[]);
    let mut c = agent.connect();
    let info = c.call(r#"{"execute":"guest-info"}"#);
    let version =
        info.split("\"version\": \"").nth(1).and_then(|v| v.split('"').next()).expect("version");
    let parts: Vec<&str> = version.split('.').collect();
    assert_eq!(parts.len(), 3, "version {version}");
    assert!(parts.iter().all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())));
    let commands = info.matches("\"name\": ").count();
    assert_eq!(commands, ipc::Command::ALL.len(), "{info}");
    for enabled in
        ["guest-ping", "guest-sync", "guest-sync-delimited", "guest-info", "guest-get-time"]
    {
        assert!(
            info.contains(&format!(
                "{{\"enabled\": true, \"name\": \"{enabled}\", \"success-response\": true}}"
            )),
            "{enabled} not enabled in {info}"
        );
    }
    for no_reply in
        ["guest-shutdown", "guest-suspend-disk", "guest-suspend-ram", "guest-suspend-hybrid"]
    {
        assert!(
            info.contains(&format!("\"name\": \"{no_reply}\", \"success-response\": false}}")),
            "{no_reply}"
        );
    }
    // Reverse registration order, as qemu-ga lists them.
    let exec = info.find("\"guest-exec\"").expect("exec");
    let sync_delimited = info.find("\"guest-sync-delimited\"").expect("sync-delimited");
    assert!(exec < sync_delimited);
}

#[test]
fn every_command_is_enabled_but_exec_files_and_get_devices_by_default() {
    let agent = Agent::start(&[]);
    let mut c = agent.connect();
    let info = c.call(r#"{"execute":"guest-info"}"#);
    for command in ipc::Command::ALL {
        let name = command.name();
        // guest-get-devices: qemu-ga disables it on Linux.
        let off = name.starts_with("guest-exec")
            || name.starts_with("guest-file-")
            || name == "guest-get-devices";
        assert!(
            info.contains(&format!("{{\"enabled\": {}, \"name\": \"{name}\"", !off)),
            "{name} in {info}"
        );
    }
}

#[test]
fn get_time_is_the_system_clock_in_nanoseconds() {
    let agent = Agent::start(&[]);
    let mut c = agent.connect();
    let reply = c.call(r#"{"execute":"guest-get-time"}"#);
    let ns: i64 =
        reply.trim_start_matches("{\"return\": ").trim_end_matches('}').parse().expect("integer");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos() as i64;
    assert!((now - ns).abs() < 5_000_000_000, "agent {ns}, test {now}");
}

#[test]
fn block_and_allow_rpcs_disable_commands() {
    let agent = Agent::start(&[
        "-b",
        "guest-get-time,guest-exec",
        "-a",
        "guest-ping,guest-info,guest-sync,guest-exec",
    ]);
    let mut c = agent.connect();
    let disabled = |cmd: &str| {
        format!(
            "{{\"error\": {{\"class\": \"CommandNotFound\", \"desc\": \"Command {cmd} has been disabled\"}}}}"
        )
    };
    assert_eq!(
        c.call(r#"{"execute":"guest-exec","arguments":{"path":"/bin/true"}}"#),
        disabled("guest-exec")
    );
    assert_eq!(c.call(r#"{"execute":"guest-get-time"}"#), disabled("guest-get-time"));
    // Not in the allow list.
    assert_eq!(
        c.call(r#"{"execute":"guest-sync-delimited","arguments":{"id":1}}"#),
        disabled("guest-sync-delimited")
    );
    // As in qemu-ga, a disabled command is refused before its arguments are checked.
    assert_eq!(
        c.call(r#"{"execute":"guest-exec","arguments":{"bogus":1}}"#),
        disabled("guest-exec")
    );
    assert_eq!(c.call(r#"{"execute":"guest-ping"}"#), r#"{"return": {}}"#);
    let info = c.call(r#"{"execute":"guest-info"}"#);
    assert!(info.contains(r#"{"enabled": false, "name": "guest-exec", "success-response": true}"#));
    assert!(
        info.contains(r#"{"enabled": false, "name": "guest-get-time", "success-response": true}"#)
    );
    assert!(info.contains(r#"{"enabled": true, "name": "guest-ping", "success-response": true}"#));
}

#[test]
fn one_client_at_a_time() {
    let agent = Agent::start(&[]);
    let mut first = agent.connect();
    assert_eq!(first.call(r#"{"execute":"guest-ping","id":1}"#), r#"{"return": {}, "id": 1}"#);
    let mut second = Client::connect(&agent.socket);
    second.send(br#"{"execute":"guest-ping","id":2}"#);
    second.expect_silence(Duration::from_millis(300));
    assert_eq!(first.call(r#"{"execute":"guest-ping","id":3}"#), r#"{"return": {}, "id": 3}"#);
    drop(first);
    // The queued client is served once the first one has gone.
    assert_eq!(second.text(), "{\"return\": {}, \"id\": 2}\n");
}

#[test]
fn a_client_leaving_mid_request_leaves_nothing_behind() {
    let agent = Agent::start(&[]);
    let mut c = agent.connect();
    c.send(br#"{"execute":"guest-sync","argum"#);
    c.shutdown();
    drop(c);
    let mut next = agent.connect();
    // Had the partial request survived, this would complete it wrongly.
    assert_eq!(next.call(r#"{"execute":"guest-ping","id":5}"#), r#"{"return": {}, "id": 5}"#);
    drop(next);
    // A client that leaves with replies still queued.
    let mut c = agent.connect();
    let mut many = Vec::new();
    for _ in 0..1000 {
        many.extend_from_slice(br#"{"execute":"guest-info"}"#);
    }
    c.send(&many);
    drop(c);
    let mut next = agent.connect();
    assert_eq!(next.call(r#"{"execute":"guest-ping","id":6}"#), r#"{"return": {}, "id": 6}"#);
}
