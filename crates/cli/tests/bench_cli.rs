//! The load generator runs end to end against the real server (briefly),
//! and refuses to point anywhere but loopback.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::process::Command;

use common::*;
use serde_json::Value;

/// `strongroom bench --json` against `server` with `args`: its result.
fn bench_json(server: &ServerProc, args: &[&str]) -> Value {
    let out = Command::new(bin())
        .args(["bench", "--json", "--server", &server.url])
        .args(args)
        .arg("--data-dir")
        .arg(&server.data_dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn a_short_bench_run_reports_real_traffic() {
    let dir = temp_dir("bench");
    // The relay's default of 200 sends a second per device (burst 2,000) is
    // within reach of one device for a second on a fast machine; and the
    // runs below log in more users within a minute than the default allows.
    let fast = dir.join("fast.toml");
    std::fs::write(&fast, "[limits]\nsends_per_second = 1000000\nauth_per_minute = 100000\n").unwrap();
    let server = ServerProc::start(&dir.join("data"), &["--config", s(&fast)]);
    for scenario in ["pairs", "group"] {
        let v = bench_json(&server, &["--scenario", scenario, "--clients", "4", "--duration", "1"]);
        assert!(v["accepted"].as_u64().unwrap() > 0, "{v}");
        assert!(v["delivered"].as_u64().unwrap() >= v["accepted"].as_u64().unwrap() / 2, "{v}");
        assert_eq!((&v["refused"], &v["refused_rate_limited"]), (&0.into(), &0.into()), "{v}");
        assert!(v["latency_ms"]["p99"].as_f64().unwrap() > 0.0);
    }
    // A fixed count, sealed before the clock starts: every envelope is
    // delivered once, and the server's CPU per delivery is reported.
    let pid = server.child.id().to_string();
    let v = bench_json(
        &server,
        &["--clients", "4", "--count", "60", "--duration", "30", "--server-pid", &pid, "--yardstick", "1"],
    );
    assert_eq!((v["accepted"].as_u64(), v["delivered"].as_u64()), (Some(60), Some(60)), "{v}");
    assert!(v["server_cpu_seconds"][0].as_f64().unwrap() >= 0.0, "{v}");
    assert!(v["server_rss_mib"][0].as_f64().unwrap() > 1.0, "{v}");
    // The generator says what it cost and what it met: its own CPU, others',
    // its open-files limit, the data directory's fsync, how many samples.
    assert!(v["generator_cpu_seconds"].as_f64().unwrap() >= 0.0, "{v}");
    assert!(v["other_processes_cpu_seconds"].as_f64().is_some(), "{v}");
    assert!(v["generator_open_files_limit"].as_u64().unwrap() > 0, "{v}");
    assert!(v["data_dir_fsync_ms"].as_f64().unwrap() > 0.0, "{v}");
    assert_eq!(v["latency_samples"], 60, "{v}");
    // Each message reached one device: no fan-out to report.
    assert!(v["fan_out"].is_null(), "{v}");
    // The yardstick beside it: static responses and one-query requests,
    // every one answered, with the server's CPU for each.
    for kind in ["static", "one_query"] {
        let y = &v["yardstick"][kind];
        assert!(y["requests"].as_u64().unwrap() > 0, "{v}");
        assert!(y["server_cpu_us_per_request"].as_f64().unwrap() > 0.0, "{v}");
    }
    // Present; zero when 60 deliveries took less than one CPU tick (10 ms).
    assert!(v["delivery_in_static_requests"].as_f64().unwrap() >= 0.0, "{v}");
    // Sent over each sender's socket (the default), pushed as binary frames.
    assert_eq!((v["sends"].as_str(), v["pushes"].as_str()), (Some("websocket"), Some("binary")), "{v}");
    assert_eq!(v["sent_over_websocket"], 60, "{v}");
    assert_eq!(v["acks"].as_str(), Some("batched"), "{v}");
    // Acknowledging each message, on a timer, and in batches of drawn
    // sizes: all delivered, once each.
    for acks in ["each", "timed", "jittered", "full"] {
        let v = bench_json(
            &server,
            &["--scenario", "group", "--clients", "4", "--count", "30", "--duration", "30", "--acks", acks],
        );
        assert_eq!(
            (v["accepted"].as_u64(), v["delivered"].as_u64(), v["duplicates"].as_u64()),
            (Some(30), Some(90), Some(0)),
            "{v}"
        );
        assert_eq!(v["acks"].as_str(), Some(acks), "{v}");
        // Each message reached three devices: when the first copy came,
        // and how long the other two took after it.
        let f = &v["fan_out"];
        assert_eq!((f["messages"].as_u64(), f["incomplete"].as_u64()), (Some(30), Some(0)), "{v}");
        assert!(f["first_ms"]["p50"].as_f64().unwrap() > 0.0, "{v}");
        assert!(f["spread_ms"]["p99"].as_f64().unwrap() >= f["spread_ms"]["p50"].as_f64().unwrap(), "{v}");
    }
    // 60 messages in 3 s, about 45 to each device, none more than 100 ms
    // after the last: as `watch`, a device acknowledges 200 ms after the
    // first id waiting, about every third or fourth message; `full` waits
    // for 64 or a quiet socket, so about one frame each at the end (more
    // only if a stall on a loaded machine quiets the sockets for 200 ms).
    let frames = |acks: &str| {
        let v = bench_json(
            &server,
            &["--scenario", "group", "--clients", "4", "--rate", "20", "--duration", "3", "--acks", acks],
        );
        assert_eq!(v["duplicates"].as_u64(), Some(0), "{v}");
        let delivered = v["delivered"].as_u64().unwrap();
        assert!(delivered >= 90, "{v}");
        (v["ack_frames"].as_u64().unwrap(), delivered)
    };
    let (batched, delivered) = frames("batched");
    assert!(batched * 8 >= delivered && batched * 2 <= delivered, "{batched} ack frames for {delivered} deliveries");
    let (full, _) = frames("full");
    assert!(full >= 4 && full * 4 <= batched, "{full} ack frames at 64 or when quiet, {batched} batched");
    // Idle sockets count once the server accepted them, here spread over
    // three loopback source addresses.
    let roomy = dir.join("bench.toml");
    std::fs::write(&roomy, "[limits]\nauth_per_minute = 100000\nmax_connections_per_ip = 100000\n").unwrap();
    let idle_server = ServerProc::start(&dir.join("data-idle"), &["--config", s(&roomy)]);
    let idle_pid = idle_server.child.id().to_string();
    // The old path still runs: HTTP sends, JSON pushes (on the roomier server:
    // the first one's login limit is spent).
    let v = bench_json(
        &idle_server,
        &["--clients", "4", "--count", "40", "--duration", "30", "--sends", "http", "--pushes", "json"],
    );
    assert_eq!(
        (v["accepted"].as_u64(), v["delivered"].as_u64(), v["sent_over_websocket"].as_u64()),
        (Some(40), Some(40), Some(0)),
        "{v}"
    );
    let v = bench_json(
        &idle_server,
        &["--scenario", "idle", "--clients", "30", "--duration", "1", "--source-addrs", "3", "--server-pid", &idle_pid],
    );
    assert_eq!((v["connections"].as_u64(), v["connections_asked"].as_u64()), (Some(30), Some(30)), "{v}");
    assert_eq!(v["failed_connections"], 0, "{v}");
    // What the sockets added is measured from after the logins.
    assert!(v["server_rss_before_sockets_mib"][0].as_f64().unwrap() > 1.0, "{v}");
    assert!(v["server_rss_per_socket_kib"].is_number(), "{v}");
    // A fixed rate: what the run can send is sealed before the clock starts
    // (8 loops ticking every 0.4 s for 2 s: at most 6 each), and about the
    // rate is sent.
    let v = bench_json(&idle_server, &["--clients", "2", "--rate", "20", "--duration", "2"]);
    assert_eq!(v["sealed_before_clock"], 48, "{v}");
    let accepted = v["accepted"].as_u64().unwrap();
    assert!((20..=48).contains(&accepted) && v["refused"] == 0, "{v}");
    // In a group each message reaches every other member's device once:
    // 3 recipients per message, none counted as a duplicate, and the run
    // ends when the last copy arrives, not at --duration.
    let v = bench_json(
        &idle_server,
        &["--scenario", "group", "--clients", "4", "--count", "20", "--duration", "60", "--server-pid", &idle_pid],
    );
    assert_eq!((v["accepted"].as_u64(), v["delivered"].as_u64()), (Some(20), Some(60)), "{v}");
    assert_eq!(v["duplicates"], 0, "{v}");
    assert!(v["seconds"].as_f64().unwrap() < 30.0, "{v}");
    // A backlog queued for offline receivers drains whole, once; a receiver
    // reconnecting right after is sent again only what was in flight.
    let v =
        bench_json(&idle_server, &["--scenario", "backlog", "--clients", "2", "--count", "300", "--duration", "60"]);
    assert_eq!((v["accepted"].as_u64(), v["delivered"].as_u64()), (Some(300), Some(300)), "{v}");
    assert_eq!(v["duplicates"], 0, "{v}");
    // At most the last batch of acknowledgements (64) was still in flight
    // when the receiver went: nothing older comes again.
    assert!(v["pushed_again_after_reconnect"].as_u64().unwrap() <= 64, "{v}");
    // Refusals by the relay's send limit are told apart, with what to change.
    let slow = dir.join("slow.toml");
    std::fs::write(&slow, "[limits]\nsends_per_second = 1\n").unwrap();
    let limited = ServerProc::start(&dir.join("data-limited"), &["--config", s(&slow)]);
    let out = Command::new(bin())
        .args(["bench", "--json", "--server", &limited.url, "--clients", "2", "--duration", "1", "--data-dir"])
        .arg(&limited.data_dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["refused_rate_limited"].as_u64().unwrap() > 0, "{v}");
    assert_eq!(v["refused_rate_limited"], v["refused"], "{v}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("sends_per_second"));
    let out = Command::new(bin())
        .args(["bench", "--server", &server.url, "--bootstrap-secret", "x", "--scenario", "backlog"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs --count"));
    let out = Command::new(bin())
        .args(["bench", "--server", &server.url, "--bootstrap-secret", "x", "--server-pid", "12,abc"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--server-pid"));
    let out = Command::new(bin())
        .args(["bench", "--server", &server.url, "--bootstrap-secret", "x", "--acks", "sometimes"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--acks") && err.contains("batched") && err.contains("each") && err.contains("timed"),
        "{err}"
    );
    let out = Command::new(bin())
        .args(["bench", "--server", &server.url, "--bootstrap-secret", "x", "--yardstick", "61"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--yardstick 0..=60"));
    for bad in ["0", "2000000", "x"] {
        let out = Command::new(bin())
            .args(["bench", "--server", &server.url, "--bootstrap-secret", "x", "--count", bad])
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("--count"), "{err}");
    }
    let flood = Command::new(bin())
        .args(["bench", "--server", &server.url, "--bootstrap-secret", "x", "--rate", "1000000", "--duration", "600"])
        .output()
        .unwrap();
    assert!(!flood.status.success());
    assert!(String::from_utf8_lossy(&flood.stderr).contains("--rate × --duration"));
    let far = Command::new(bin())
        .args(["bench", "--server", "http://192.0.2.1:8080", "--bootstrap-secret", "x"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&far.stderr).contains("only runs against loopback"));
    // A private address is a host of one's own only when the user says so.
    let private = Command::new(bin())
        .args(["bench", "--server", "http://10.23.0.1:8080", "--bootstrap-secret", "x"])
        .output()
        .unwrap();
    assert!(!private.status.success());
    assert!(String::from_utf8_lossy(&private.stderr).contains("add --private-host"));
    let far = Command::new(bin())
        .args(["bench", "--server", "http://192.0.2.1:8080", "--private-host", "--bootstrap-secret", "x"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&far.stderr).contains("only runs against loopback"));
    let spread = Command::new(bin())
        .args([
            "bench",
            "--server",
            "http://10.23.0.1:8080",
            "--private-host",
            "--source-addrs",
            "2",
            "--bootstrap-secret",
            "x",
        ])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&spread.stderr).contains("--source-addrs"));
}
