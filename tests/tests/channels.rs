//! The channel methods other than unix-listen, as far as this machine can
//! provide them (virtio-serial is covered in the VM tests).

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use qga_warden_tests::{TIMEOUT, TempDir, broker_bin, wait_bounded};

/// isa-serial on a pseudo-terminal: the broker opens the pty's device like a
/// serial port (raw mode), the test plays the host on the other side.
#[test]
fn isa_serial_over_a_pty() {
    let pty = nix::pty::openpty(None, None).expect("openpty");
    let slave_path =
        std::fs::read_link(format!("/proc/self/fd/{}", pty.slave.as_raw_fd())).expect("pty path");
    let dir = TempDir::new("serial");
    let log = std::fs::File::create(dir.path().join("log")).expect("log");
    let mut child = Command::new(broker_bin())
        .args(["-m", "isa-serial", "-p"])
        .arg(&slave_path)
        .arg("-v")
        .env("QGA_CONF", "/nonexistent/qga-warden-test.conf")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .expect("spawn");
    let mut master = std::fs::File::from(pty.master);
    // The test's own copy of the slave would keep it open; the agent has its own.
    drop(pty.slave);
    let mut reply = Vec::new();
    let deadline = Instant::now() + TIMEOUT;
    // The agent may not have put the line in raw mode yet; retry until it answers.
    let mut sent = Instant::now() - Duration::from_secs(1);
    nix::fcntl::fcntl(&master, nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK))
        .expect("nonblock");
    while !reply.ends_with(b"\xff{\"return\": 3}\n") {
        assert!(Instant::now() < deadline, "no reply over the serial line: {reply:?}");
        if sent.elapsed() > Duration::from_millis(500) {
            master
                .write_all(b"\xff{\"execute\":\"guest-sync-delimited\",\"arguments\":{\"id\":3}}")
                .expect("write");
            sent = Instant::now();
        }
        let mut buf = [0u8; 4096];
        match master.read(&mut buf) {
            Ok(n) => reply.extend_from_slice(&buf[..n]),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    let _ = child.kill();
    let _ = wait_bounded(&mut child, TIMEOUT);
    let log = std::fs::read_to_string(dir.path().join("log")).unwrap_or_default();
    assert!(log.contains("isa-serial"), "{log}");
}

#[test]
fn vsock_listen_when_the_machine_has_vsock() {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, VsockAddr, bind, socket};
    // Probe: can this machine bind a vsock port at all?
    let probe = socket(AddressFamily::Vsock, SockType::Stream, SockFlag::empty(), None);
    let Ok(probe) = probe else {
        eprintln!("skipped: no AF_VSOCK on this machine");
        return;
    };
    if bind(probe.as_raw_fd(), &VsockAddr::new(u32::MAX, 47_001)).is_err() {
        eprintln!("skipped: cannot bind a vsock port on this machine");
        return;
    }
    drop(probe);
    let mut child = Command::new(broker_bin())
        .args(["-m", "vsock-listen", "-p", "4294967295:47002"])
        .env("QGA_CONF", "/nonexistent/qga-warden-test.conf")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    // Connecting needs a vsock loopback transport; without one, listening is
    // all that can be shown here.
    std::thread::sleep(Duration::from_millis(300));
    let running = child.try_wait().expect("try_wait").is_none();
    let _ = child.kill();
    let _ = wait_bounded(&mut child, TIMEOUT);
    assert!(running, "agent did not stay up listening on vsock");
}
