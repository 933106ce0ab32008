//! VM tests, the whole machine: vCPU and memory-block hotplug, passwords,
//! the clock, network interfaces, and each power mode ending or rebooting
//! the guest. Each check runs against qga-warden and against Debian's
//! qemu-ga, each in its own guest, and expects the same bytes from both
//! (built from what the guest's sysfs, /etc/shadow and clock say); what
//! qga-warden does differently (suspend, where Debian's qemu-ga 7.2 returns
//! without suspending a guest that has no systemd) runs against it alone.
//!
//! The guest (busybox) lacks two programs the agents run; it gets stand-ins
//! that do what the real ones do and report how they were called:
//! `/sbin/shutdown` and `/usr/sbin/chpasswd`.

use std::time::{Duration, Instant};

use qga_warden_tests::vm::{Check, GuestAgent, GuestFile, Vm, VmOptions, note};
use qga_warden_tests::vm_tests;
use serde_json::Value;

const SHUTDOWN: &str = r#"#!/bin/sh
# /sbin/shutdown for the test guest: as systemd's, 'shutdown -h -P +0 MSG'
# schedules the shutdown and returns; busybox does it a moment later.
echo "qga-test: shutdown $*" >/dev/console
case "$*" in
"-h -P +0 hypervisor initiated shutdown") action=poweroff ;;
"-h -H +0 hypervisor initiated shutdown") action=halt ;;
"-h -r +0 hypervisor initiated shutdown") action=reboot ;;
*) echo "qga-test: shutdown: unexpected arguments" >/dev/console; exit 1 ;;
esac
(sleep 1; "$action" -f) </dev/null >/dev/null 2>&1 &
exit 0
"#;

const CHPASSWD: &str = r#"#!/bin/sh
# chpasswd for the test guest (busybox has none): 'user:password' lines on
# standard input; with -e the password is already crypted. It records how
# it was called (never the password) in /tmp/chpasswd.calls.
echo "args=$*" >>/tmp/chpasswd.calls
case "$*" in "" | "-e") ;; *) exit 2 ;; esac
while IFS= read -r line; do
    user=${line%%:*}
    pass=${line#*:}
    if [ "$1" = "-e" ]; then
        hash=$pass
    else
        hash=$(printf '%s\n' "$pass" | mkpasswd -m sha512) || exit 1
    fi
    grep -q "^$user:" /etc/shadow || exit 1
    sed -i "s|^$user:[^:]*:|$user:$hash:|" /etc/shadow || exit 1
done
"#;

fn options() -> VmOptions {
    VmOptions {
        extra_files: vec![
            GuestFile::Data { path: "/sbin/shutdown".into(), mode: 0o755, data: SHUTDOWN.into() },
            GuestFile::Data {
                path: "/usr/sbin/chpasswd".into(),
                mode: 0o755,
                data: CHPASSWD.into(),
            },
        ],
        ..VmOptions::default()
    }
}

const CHECKS: &[Check] = &[
    ("vCPUs: offline and online cpu1", vcpus),
    ("memory blocks: a hot-added DIMM onlined and offlined", memory_blocks),
    ("passwords, plain and crypted", passwords),
    ("the clock, set and set from the RTC", set_time),
    ("network interfaces", network),
    ("suspend to RAM and wake", suspend),
];

vm_tests!(system, options(), CHECKS);

fn call(vm: &mut Vm, request: &str) -> String {
    vm.agent().call(request)
}

fn json(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

/// get-vcpus as the guest's sysfs says it must be: directory order, cpu0
/// without an `online` file (cannot go offline).
fn expected_vcpus(vm: &mut Vm) -> String {
    // find lists a directory in readdir order, as the agents read it.
    let order = vm.sh_ok("cd /sys/devices/system/cpu && find . -maxdepth 1 -name 'cpu[0-9]*'");
    let mut items = Vec::new();
    for name in order.split_whitespace() {
        let Some(id) = name.strip_prefix("./cpu").and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let (code, state) = vm.sh(&format!("cat /sys/devices/system/cpu/cpu{id}/online"));
        let (online, can_offline) =
            if code == 0 { (state.trim() != "0", true) } else { (true, false) };
        items.push(format!(
            r#"{{"online": {online}, "can-offline": {can_offline}, "logical-id": {id}}}"#
        ));
    }
    format!(r#"{{"return": [{}]}}"#, items.join(", "))
}

fn vcpus(vm: &mut Vm) {
    let expected = expected_vcpus(vm);
    assert!(
        expected.contains(r#""online": true, "can-offline": true, "logical-id": 1"#),
        "{expected}"
    );
    assert_eq!(call(vm, r#"{"execute":"guest-get-vcpus"}"#), expected);
    let offline =
        r#"{"execute":"guest-set-vcpus","arguments":{"vcpus":[{"logical-id":1,"online":false}]}}"#;
    assert_eq!(call(vm, offline), r#"{"return": 1}"#);
    assert_eq!(vm.sh_ok("cat /sys/devices/system/cpu/cpu1/online"), "0\n");
    assert_eq!(vm.sh_ok("grep -c ^processor /proc/cpuinfo"), "1\n");
    assert_eq!(call(vm, r#"{"execute":"guest-get-vcpus"}"#), expected_vcpus(vm));
    // cpu0 cannot go offline; cpu1's change before it still counts.
    let both = r#"{"execute":"guest-set-vcpus","arguments":{"vcpus":[{"logical-id":1,"online":true},{"logical-id":0,"online":false}]}}"#;
    assert_eq!(call(vm, both), r#"{"return": 1}"#);
    assert_eq!(vm.sh_ok("cat /sys/devices/system/cpu/cpu1/online"), "1\n");
    assert_eq!(
        call(
            vm,
            r#"{"execute":"guest-set-vcpus","arguments":{"vcpus":[{"logical-id":0,"online":false}]}}"#
        ),
        r#"{"error": {"class": "GenericError", "desc": "logical processor #0 can't be offlined"}}"#
    );
    assert_eq!(call(vm, r#"{"execute":"guest-get-vcpus"}"#), expected);
}

/// The memory block indexes, and each one's state, as sysfs has them.
fn blocks(vm: &mut Vm) -> Vec<(u64, String)> {
    let out = vm.sh_ok(
        "cd /sys/devices/system/memory && for b in memory*; do echo \"${b#memory} $(cat $b/state)\"; done",
    );
    out.lines()
        .filter_map(|l| {
            let (i, s) = l.split_once(' ')?;
            Some((i.parse().ok()?, s.to_owned()))
        })
        .collect()
}

fn memory_blocks(vm: &mut Vm) {
    let size = vm.sh_ok("cat /sys/devices/system/memory/block_size_bytes");
    let size = u64::from_str_radix(size.trim(), 16).expect("block size");
    assert_eq!(
        call(vm, r#"{"execute":"guest-get-memory-block-info"}"#),
        format!(r#"{{"return": {{"size": {size}}}}}"#)
    );
    let before = blocks(vm);
    let listed = json(&call(vm, r#"{"execute":"guest-get-memory-blocks"}"#));
    assert_eq!(listed["return"].as_array().map(Vec::len), Some(before.len()));

    // Hot-add one block's worth of memory: it arrives offline
    // (memhp_default_state=offline).
    let add = format!(
        r#"{{"execute":"object-add","arguments":{{"qom-type":"memory-backend-ram","id":"mem1","size":{size}}}}}"#
    );
    assert_eq!(vm.qmp(&add), r#"{"return": {}}"#);
    let dimm =
        r#"{"execute":"device_add","arguments":{"driver":"pc-dimm","id":"dimm1","memdev":"mem1"}}"#;
    assert_eq!(vm.qmp(dimm), r#"{"return": {}}"#);
    let deadline = Instant::now() + Duration::from_secs(30);
    let new = loop {
        let now = blocks(vm);
        if let Some(b) = now.iter().find(|b| !before.contains(b)) {
            break b.0;
        }
        assert!(Instant::now() < deadline, "the hot-added memory did not appear");
        std::thread::sleep(Duration::from_millis(200));
    };
    let listed = json(&call(vm, r#"{"execute":"guest-get-memory-blocks"}"#));
    let entry = listed["return"]
        .as_array()
        .and_then(|a| a.iter().find(|b| b["phys-index"] == new))
        .unwrap_or_else(|| panic!("block {new} not listed: {listed}"))
        .clone();
    assert_eq!(entry["online"], false, "{entry}");

    let set = |online: bool| {
        format!(
            r#"{{"execute":"guest-set-memory-blocks","arguments":{{"mem-blks":[{{"phys-index":{new},"online":{online}}},{{"phys-index":999999,"online":true}}]}}}}"#
        )
    };
    assert_eq!(
        call(vm, &set(true)),
        format!(
            r#"{{"return": [{{"response": "success", "phys-index": {new}}}, {{"response": "not-found", "error-code": 2, "phys-index": 999999}}]}}"#
        )
    );
    assert_eq!(vm.sh_ok(&format!("cat /sys/devices/system/memory/memory{new}/state")), "online\n");
    // Onlining what is online: success, nothing written.
    let again = call(vm, &set(true));
    assert!(
        again.starts_with(&format!(
            r#"{{"return": [{{"response": "success", "phys-index": {new}}}"#
        )),
        "{again}"
    );
    let offline = call(vm, &set(false));
    note(&format!("{}: offline a hot-added block: {offline}", vm.label()));
    let state = vm.sh_ok(&format!("cat /sys/devices/system/memory/memory{new}/state"));
    if offline.contains(r#""response": "success""#) {
        assert_eq!(state, "offline\n");
    } else {
        // The kernel may keep a block that has unmovable pages.
        assert!(offline.contains(r#""response": "operation-failed""#), "{offline}");
    }
}

fn shadow_hash(vm: &mut Vm, user: &str) -> String {
    vm.sh_ok(&format!("grep '^{user}:' /etc/shadow | cut -d: -f2")).trim().to_owned()
}

fn passwords(vm: &mut Vm) {
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let set = |user: &str, pass: &str, crypted: bool| {
        format!(
            r#"{{"execute":"guest-set-user-password","arguments":{{"username":"{user}","password":"{}","crypted":{crypted}}}}}"#,
            b64(pass)
        )
    };
    vm.sh_ok("rm -f /tmp/chpasswd.calls");
    let before = shadow_hash(vm, "testuser");
    assert_eq!(call(vm, &set("testuser", "plain-Secret-1", false)), r#"{"return": {}}"#);
    let hashed = shadow_hash(vm, "testuser");
    assert!(hashed.starts_with("$6$") && hashed != before, "{hashed}");
    let crypted = "$6$qgatest$Jq3xHh9u2G1wIYx5BvYB1u6nqkK2nP0uRj1P2Xq1s6m1N0yE3c2pGm4bN2sI7wQ9eL5oT8aY1zU3vR6kD4hF0.";
    assert_eq!(call(vm, &set("testuser", crypted, true)), r#"{"return": {}}"#);
    assert_eq!(shadow_hash(vm, "testuser"), crypted);
    // chpasswd was given the password on its input, never as an argument.
    assert_eq!(vm.sh_ok("cat /tmp/chpasswd.calls"), "args=\nargs=-e\n");
    // Injection attempts: errors, and the file unchanged.
    let shadow = vm.sh_ok("cat /etc/shadow");
    assert_eq!(
        call(vm, &set("testuser", "x\nroot:y", false)),
        r#"{"error": {"class": "GenericError", "desc": "forbidden characters in raw password"}}"#
    );
    assert_eq!(
        call(vm, &set("root:x", "y", false)),
        r#"{"error": {"class": "GenericError", "desc": "forbidden characters in username"}}"#
    );
    assert_eq!(vm.sh_ok("cat /etc/shadow"), shadow);
}

/// The guest's clock, in seconds.
fn guest_secs(vm: &mut Vm) -> i64 {
    vm.sh_ok("date +%s").trim().parse().expect("date")
}

fn set_time(vm: &mut Vm) {
    let host_now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    // A day ahead, then back: the guest's clock and its RTC follow.
    let target = host_now + 86_400;
    let set = |secs: i64| {
        format!(r#"{{"execute":"guest-set-time","arguments":{{"time":{}}}}}"#, secs * 1_000_000_000)
    };
    assert_eq!(call(vm, &set(target)), r#"{"return": {}}"#);
    assert!((guest_secs(vm) - target).abs() < 30, "the guest clock did not move");
    let rtc = vm.sh_ok("hwclock -r -u");
    note(&format!("{}: RTC after set: {}", vm.label(), rtc.trim()));
    // The system clock from the RTC (hwclock -s): back to the day ahead.
    vm.sh_ok(&format!("date -s @{host_now} >/dev/null"));
    assert_eq!(call(vm, r#"{"execute":"guest-set-time"}"#), r#"{"return": {}}"#);
    assert!((guest_secs(vm) - target).abs() < 30, "the clock was not set from the RTC");
    assert_eq!(call(vm, &set(host_now)), r#"{"return": {}}"#);
    assert!((guest_secs(vm) - host_now).abs() < 30);
    // Out of qemu-ga's range.
    assert_eq!(
        call(vm, r#"{"execute":"guest-set-time","arguments":{"time":-1000000000}}"#),
        r#"{"error": {"class": "GenericError", "desc": "Invalid time"}}"#
    );
}

fn network(vm: &mut Vm) {
    // The guest has no network device: loopback only, without an address
    // (nothing brings it up).
    let reply = call(vm, r#"{"execute":"guest-network-get-interfaces"}"#);
    assert_eq!(reply, r#"{"return": [{"name": "lo", "hardware-address": "00:00:00:00:00:00"}]}"#);
    vm.sh_ok("ifconfig lo 127.0.0.1 netmask 255.0.0.0 up");
    let reply = json(&call(vm, r#"{"execute":"guest-network-get-interfaces"}"#));
    let lo = &reply["return"][0];
    assert_eq!(lo["name"], "lo");
    let v4 = serde_json::json!({"ip-address-type": "ipv4", "ip-address": "127.0.0.1", "prefix": 8});
    let addresses = lo["ip-addresses"].as_array().cloned().unwrap_or_default();
    assert!(addresses.contains(&v4), "{reply}");
    assert!(lo["statistics"]["rx-bytes"].is_u64(), "{reply}");
}

fn suspend(vm: &mut Vm) {
    if vm.agent_kind() == GuestAgent::QemuGa {
        note("qemu-ga: skipped (Debian's 7.2 returns without suspending when there is no systemd)");
        return;
    }
    let states = vm.sh_ok("cat /sys/power/state");
    if !states.split_whitespace().any(|s| s == "mem") {
        note(&format!("{}: skipped: the guest offers no suspend to RAM ({states:?})", vm.label()));
        return;
    }
    // No systemd and no pm-utils here: /sys/power/state it is. There is
    // no reply (success-response is false); QEMU reports the suspend.
    vm.agent().send(br#"{"execute":"guest-suspend-ram"}"#);
    assert!(vm.wait_for_event("SUSPEND", Duration::from_secs(60)).is_some(), "no SUSPEND event");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(vm.qmp(r#"{"execute":"system_wakeup"}"#), r#"{"return": {}}"#);
    assert!(vm.wait_for_event("WAKEUP", Duration::from_secs(60)).is_some(), "no WAKEUP event");
    vm.wait_for_agent(Duration::from_secs(60));
    assert_eq!(call(vm, r#"{"execute":"guest-ping"}"#), r#"{"return": {}}"#);
    // Hybrid sleep needs systemd or pm-utils.
    assert_eq!(
        call(vm, r#"{"execute":"guest-suspend-hybrid"}"#),
        r#"{"error": {"class": "GenericError", "desc": "the requested suspend mode is not supported by the guest"}}"#
    );
}

/// One guest per power mode: each ends the guest.
fn power(vm: &mut Vm, mode: &str) {
    let request = format!(r#"{{"execute":"guest-shutdown","arguments":{{"mode":"{mode}"}}}}"#);
    vm.agent().send(request.as_bytes());
    // No reply on success.
    vm.agent().expect_silence(Duration::from_millis(300));
    match mode {
        "halt" => {
            let deadline = Instant::now() + Duration::from_secs(60);
            while !vm.console_log().contains("System halted") {
                assert!(Instant::now() < deadline, "the guest did not halt");
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        _ => {
            let reason = if mode == "reboot" { "guest-reset" } else { "guest-shutdown" };
            let event =
                vm.wait_for_event("SHUTDOWN", Duration::from_secs(60)).expect("SHUTDOWN event");
            assert!(event.contains(&format!(r#""reason": "{reason}""#)), "{event}");
            // -no-reboot: a reboot ends QEMU too.
            assert!(vm.wait_for_exit(Duration::from_secs(60)).is_some(), "QEMU did not exit");
        }
    }
    assert!(vm.console_log().contains("qga-test: shutdown -h"), "shutdown was not run");
}

fn powerdown(vm: &mut Vm) {
    power(vm, "powerdown");
}
fn reboot(vm: &mut Vm) {
    power(vm, "reboot");
}
fn halt(vm: &mut Vm) {
    power(vm, "halt");
}

vm_tests!(power_powerdown, options(), &[("guest-shutdown powerdown", powerdown)]);
vm_tests!(power_reboot, options(), &[("guest-shutdown reboot", reboot)]);
vm_tests!(power_halt, options(), &[("guest-shutdown halt", halt)]);
