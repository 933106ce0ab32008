//! VM tests, filesystems: guest-fsfreeze-freeze (all) and thaw on the
//! guest's own virtio disk, guest-get-fsinfo reporting that disk's PCI
//! address as QEMU placed it, guest-fstrim. Each check runs against
//! qga-warden and against Debian's qemu-ga, each in its own guest, and
//! expects the same bytes from both; the checks of what qga-warden does
//! beyond qemu-ga (thawing on SIGTERM) run against qga-warden only.

use std::time::{Duration, Instant};

use qga_warden_tests::vm::{Check, GuestAgent, SCRATCH_MOUNT, Vm, VmOptions, note};
use qga_warden_tests::vm_tests;
use serde_json::Value;

const CHECKS: &[Check] = &[
    ("fsfreeze of every filesystem, then thaw", freeze_all_and_thaw),
    ("fsinfo names the virtio disk's PCI address", fsinfo_pci_address),
    ("fstrim of the guest's disk", fstrim),
    ("SIGTERM while frozen thaws first", sigterm_while_frozen),
];

vm_tests!(fsfreeze, VmOptions::default(), CHECKS);

fn call(vm: &mut Vm, request: &str) -> String {
    vm.agent().call(request)
}

/// Whether the guest's scratch filesystem is frozen, asked with busybox's
/// fsfreeze (which fails with "busy" on a frozen filesystem; on a thawed one
/// it succeeds and is undone at once).
fn frozen(vm: &mut Vm) -> bool {
    let (status, out) = vm.sh(&format!("fsfreeze --freeze {SCRATCH_MOUNT} 2>&1"));
    if status == 0 {
        vm.sh_ok(&format!("fsfreeze --unfreeze {SCRATCH_MOUNT}"));
        return false;
    }
    assert!(out.contains("busy"), "fsfreeze: {out}");
    true
}

fn freeze_all_and_thaw(vm: &mut Vm) {
    assert_eq!(call(vm, r#"{"execute":"guest-fsfreeze-status"}"#), r#"{"return": "thawed"}"#);
    // The guest's root is an initramfs (not a block device): the scratch
    // disk is the only filesystem to freeze.
    assert_eq!(call(vm, r#"{"execute":"guest-fsfreeze-freeze"}"#), r#"{"return": 1}"#);
    assert_eq!(call(vm, r#"{"execute":"guest-fsfreeze-status"}"#), r#"{"return": "frozen"}"#);
    assert!(frozen(vm));
    // A write started now waits for the thaw.
    vm.sh_ok(&format!(
        "rm -f /tmp/write.done; (echo x > {SCRATCH_MOUNT}/during-freeze && echo ok > /tmp/write.done) &"
    ));
    vm.sh_ok("sleep 1");
    assert_eq!(vm.sh("cat /tmp/write.done").0, 1, "a write completed while frozen");
    assert_eq!(
        call(vm, r#"{"execute":"guest-get-time"}"#),
        r#"{"error": {"class": "CommandNotFound", "desc": "Command guest-get-time has been disabled: the agent is in frozen state"}}"#
    );
    assert_eq!(call(vm, r#"{"execute":"guest-fsfreeze-thaw"}"#), r#"{"return": 1}"#);
    let deadline = Instant::now() + Duration::from_secs(30);
    while vm.sh("cat /tmp/write.done").0 != 0 {
        assert!(Instant::now() < deadline, "the write did not complete after the thaw");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!frozen(vm));
    assert_eq!(call(vm, r#"{"execute":"guest-fsfreeze-status"}"#), r#"{"return": "thawed"}"#);
    // freeze-list of the disk's mount point, and of nothing mounted there.
    let list = format!(
        r#"{{"execute":"guest-fsfreeze-freeze-list","arguments":{{"mountpoints":["{SCRATCH_MOUNT}"]}}}}"#
    );
    assert_eq!(call(vm, &list), r#"{"return": 1}"#);
    assert_eq!(call(vm, r#"{"execute":"guest-fsfreeze-thaw"}"#), r#"{"return": 1}"#);
}

fn fsinfo_pci_address(vm: &mut Vm) {
    let slot = vm.scratch_disk_slot();
    let reply = call(vm, r#"{"execute":"guest-get-fsinfo"}"#);
    // Byte for byte, the same for both agents; used and total bytes as df
    // computes them (used, and used plus available to non-root).
    let df = vm.sh_ok(&format!("df -B1 {SCRATCH_MOUNT} | tail -1"));
    let df: Vec<u64> = df.split_whitespace().filter_map(|w| w.parse().ok()).collect();
    assert_eq!(df.len(), 3, "df: {df:?}");
    // qga-warden also has QEMU 9.2's total-bytes-privileged: every block
    // (df's size).
    let privileged = match vm.agent_kind() {
        GuestAgent::Warden => format!(r#""total-bytes-privileged": {}, "#, df[0]),
        GuestAgent::QemuGa => String::new(),
    };
    let expected = format!(
        r#"{{"return": [{{"name": "vda", "total-bytes": {}, {privileged}"mountpoint": "{SCRATCH_MOUNT}", "disk": [{{"bus-type": "virtio", "bus": 0, "unit": 0, "pci-controller": {{"bus": 0, "slot": {slot}, "domain": 0, "function": 0}}, "dev": "/dev/vda", "target": 0}}], "used-bytes": {}, "type": "ext4"}}]}}"#,
        df[1] + df[2],
        df[1]
    );
    assert_eq!(reply, expected);
}

fn fstrim(vm: &mut Vm) {
    let reply = call(vm, r#"{"execute":"guest-fstrim","arguments":{"minimum":4096}}"#);
    let v: Value = serde_json::from_str(&reply).expect("JSON");
    let paths = v["return"]["paths"].as_array().expect("paths").clone();
    assert_eq!(paths.len(), 1, "{reply}");
    assert_eq!(paths[0]["path"], SCRATCH_MOUNT);
    match paths[0].get("error") {
        None => {
            assert_eq!(paths[0]["minimum"], 4096, "{reply}");
            assert!(paths[0]["trimmed"].is_u64(), "{reply}");
        }
        Some(e) => assert_eq!(e, "trim not supported", "{reply}"),
    }
    note(&format!("{}: fstrim: {reply}", vm.label()));
}

fn sigterm_while_frozen(vm: &mut Vm) {
    if vm.agent_kind() == GuestAgent::QemuGa {
        note("qemu-ga: skipped (it refuses to exit while frozen)");
        return;
    }
    assert_eq!(call(vm, r#"{"execute":"guest-fsfreeze-freeze"}"#), r#"{"return": 1}"#);
    assert!(frozen(vm));
    vm.sh_ok("qga-test-agent stop");
    assert!(!frozen(vm), "SIGTERM left the disk frozen");
    vm.sh_ok("qga-test-agent start");
    vm.wait_for_agent(Duration::from_secs(30));
    assert_eq!(call(vm, r#"{"execute":"guest-fsfreeze-status"}"#), r#"{"return": "thawed"}"#);
}
