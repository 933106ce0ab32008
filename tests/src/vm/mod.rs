//! End-to-end tests in a real guest: QEMU (`qemu-system-x86_64`, TCG unless
//! KVM actually works) boots Debian's kernel with a busybox initramfs that
//! holds the agent under test; the host reaches the agent over a real
//! virtio-serial port (`org.qemu.guest_agent.0`), as libvirt does.
//!
//! - [`Vm::boot`] builds the guest in a temporary directory and boots it; on
//!   a machine without the packages it prints `SKIPPED: <reason>` and returns
//!   `None`. [`GuestAgent`] chooses qga-warden or Debian's qemu-ga, so every
//!   check can be run against the reference.
//! - [`Vm::agent`] is the host side of the agent's channel, [`Vm::sh`] a shell
//!   in the guest that does not go through the agent (a second virtio-serial
//!   port), [`Vm::qmp`] QEMU's monitor.
//! - The VM is killed when the [`Vm`] is dropped, pass or fail; on failure the
//!   guest's console log is printed.
//!
//! Each command family has its own test file, `tests/tests/vm_<family>.rs`,
//! that boots one VM per agent ([`vm_tests!`]) and runs its checks in it.

pub mod cpio;
pub mod image;
pub mod qmp;
pub mod shell;

use std::io::Write;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub use image::GuestFile;
use image::{GuestSpec, HostAssets};
use qmp::Qmp;
use shell::{ShellError, TestShell};

use crate::{Client, TIMEOUT, TempDir, wait_bounded};

/// The agent's virtio-serial port, qemu-ga's default.
pub const AGENT_PORT: &str = "org.qemu.guest_agent.0";
/// Where the guest mounts the scratch disk.
pub const SCRATCH_MOUNT: &str = "/mnt/scratch";
/// A file the host puts on the scratch disk when it makes it.
pub const SCRATCH_MARKER: (&str, &str) =
    ("made-on-host.txt", "written by mkfs.ext4 -d on the host\n");

/// `QGA_WARDEN_VM_TESTS=skip` skips the VM tests (saying so); `=require` makes
/// a missing package a failure instead of a skip (CI sets it).
pub const ENV_SWITCH: &str = "QGA_WARDEN_VM_TESTS";
/// `QGA_WARDEN_VM_ACCEL=tcg|kvm` overrides the accelerator probe.
pub const ENV_ACCEL: &str = "QGA_WARDEN_VM_ACCEL";

/// Which agent runs in the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuestAgent {
    /// qga-warden's release build: the broker as root, which starts the frontend.
    Warden,
    /// Debian's qemu-guest-agent, the reference.
    QemuGa,
}

impl GuestAgent {
    pub const ALL: [GuestAgent; 2] = [GuestAgent::Warden, GuestAgent::QemuGa];

    pub fn name(self) -> &'static str {
        match self {
            GuestAgent::Warden => "qga-warden",
            GuestAgent::QemuGa => "qemu-ga",
        }
    }

    /// The name `tests/vm/qga-test-agent` knows it by.
    fn guest_name(self) -> &'static str {
        match self {
            GuestAgent::Warden => "warden",
            GuestAgent::QemuGa => "qemu-ga",
        }
    }
}

/// How to build and boot the guest.
#[derive(Clone, Debug)]
pub struct VmOptions {
    /// `-m`: boot memory, hotplug slots and the most memory hot-plug may reach.
    pub memory: String,
    /// `-smp`.
    pub smp: String,
    /// Appended to the kernel command line.
    pub kernel_args: Vec<String>,
    /// Appended to the agent's command line in the guest.
    pub agent_args: Vec<String>,
    /// More files and programs in the guest.
    pub extra_files: Vec<GuestFile>,
    /// Size of the ext4 scratch disk, MiB.
    pub scratch_mib: u64,
    /// From starting QEMU to the guest's test shell answering.
    pub boot_timeout: Duration,
}

impl Default for VmOptions {
    fn default() -> VmOptions {
        VmOptions {
            memory: "512M,slots=2,maxmem=2G".into(),
            smp: "2,maxcpus=2".into(),
            kernel_args: Vec::new(),
            agent_args: Vec::new(),
            extra_files: Vec::new(),
            scratch_mib: 64,
            boot_timeout: Duration::from_secs(240),
        }
    }
}

/// Writes a line to standard error past libtest's capture, so that it shows
/// in `cargo test` output whether the test passes or not.
pub fn note(msg: &str) {
    let _ = std::io::stderr().write_all(format!("{msg}\n").as_bytes());
}

/// The accelerator to use: KVM only when a KVM guest actually runs here.
pub fn accel(qemu: &Path) -> &'static str {
    static ACCEL: OnceLock<&'static str> = OnceLock::new();
    ACCEL.get_or_init(|| match std::env::var(ENV_ACCEL).as_deref() {
        Ok("kvm") => "kvm",
        Ok("tcg") => "tcg",
        _ if kvm_works(qemu) => "kvm",
        _ => "tcg",
    })
}

/// Starts a KVM guest with nothing to boot for a second and asks whether it is
/// still running: on some hosts /dev/kvm opens but QEMU aborts when the first
/// vCPU starts (e.g. "failed to set MSR").
fn kvm_works(qemu: &Path) -> bool {
    if std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm").is_err() {
        return false;
    }
    let Ok(mut child) = Command::new(qemu)
        .args(["-machine", "pc,accel=kvm", "-cpu", "host", "-nodefaults", "-no-user-config"])
        .args(["-display", "none", "-no-reboot", "-m", "64M", "-qmp", "stdio"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
    else {
        return false;
    };
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(b"{\"execute\":\"qmp_capabilities\"}\n");
        std::thread::sleep(Duration::from_secs(1));
        let _ = stdin.write_all(b"{\"execute\":\"query-status\"}\n{\"execute\":\"quit\"}\n");
    }
    let status = wait_bounded(&mut child, TIMEOUT);
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
        return false;
    }
    let mut out = String::new();
    if let Some(mut stdout) = child.stdout.take() {
        let _ = std::io::Read::read_to_string(&mut stdout, &mut out);
    }
    status.is_some_and(|s| s.success()) && out.contains("\"status\": \"running\"")
}

/// A log file as text; bytes that are not UTF-8 (an agent's debug log may
/// quote a 0xFF from the host) become U+FFFD instead of losing the log.
fn read_lossy(path: &Path) -> String {
    String::from_utf8_lossy(&std::fs::read(path).unwrap_or_default()).into_owned()
}

/// The QEMU process and the VM's directory. Dropping it kills QEMU (by its
/// pid, bounded wait) and removes the directory; if the thread is panicking
/// it prints the console log first.
struct Qemu {
    child: Option<Child>,
    console: PathBuf,
    qemu_log: PathBuf,
    label: String,
    logs_shown: bool,
    dir: TempDir,
}

impl Qemu {
    fn alive(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    fn show_logs(&mut self) {
        if self.logs_shown {
            return;
        }
        self.logs_shown = true;
        let console = read_lossy(&self.console);
        let qemu = read_lossy(&self.qemu_log);
        // Not through the captured eprintln!: a failing test's log must show
        // even when its output is interleaved with other tests'.
        note(&format!(
            "--- {} guest console log ---\n{console}\n--- QEMU's own output ---\n{qemu}\n--- end of {} logs ---",
            self.label, self.label
        ));
    }
}

impl Drop for Qemu {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            if wait_bounded(&mut child, TIMEOUT).is_none() {
                note(&format!(
                    "{}: QEMU (pid {}) did not exit after SIGKILL",
                    self.label,
                    child.id()
                ));
            }
        }
        if std::thread::panicking() {
            self.show_logs();
        }
    }
}

/// A booted guest with the agent running.
pub struct Vm {
    agent: GuestAgent,
    client: Option<Client>,
    shell: TestShell,
    qmp: Qmp,
    qga_socket: PathBuf,
    /// From starting QEMU to the first `guest-ping` reply.
    pub boot_to_first_ping: Duration,
    /// From starting QEMU to the test shell's first answer.
    pub boot_to_shell: Duration,
    pub accel: &'static str,
    /// Last, so that it is dropped (QEMU killed) after the connections.
    qemu: Qemu,
}

/// Returns the host's assets, or `None` after saying why the test is skipped.
fn prerequisites(agent: GuestAgent) -> Option<HostAssets> {
    let label = agent.name();
    let switch = std::env::var(ENV_SWITCH).unwrap_or_default();
    if switch == "skip" {
        note(&format!("SKIPPED: VM test with {label}: {ENV_SWITCH}=skip"));
        return None;
    }
    match image::find_host_assets(agent) {
        Ok(a) => Some(a),
        Err(reason) if switch == "require" => {
            panic!("VM test with {label}: {reason} (and {ENV_SWITCH}=require)")
        }
        Err(reason) => {
            note(&format!("SKIPPED: VM test with {label}: {reason}"));
            None
        }
    }
}

impl Vm {
    /// Builds the guest and boots it, waiting until the agent answers. `None`
    /// (after printing `SKIPPED: <reason>`) when this machine lacks what the
    /// VM needs; panics, with the console log, if the guest does not come up.
    pub fn boot(agent: GuestAgent, options: &VmOptions) -> Option<Vm> {
        let assets = prerequisites(agent)?;
        let release_dir = match agent {
            GuestAgent::Warden => crate::release_bin_dir(),
            GuestAgent::QemuGa => Path::new("/nonexistent"),
        };
        let accel = accel(&assets.qemu);
        let dir = TempDir::new("vm");
        let initramfs = dir.path().join("initramfs.cpio");
        let scratch = dir.path().join("scratch.img");
        image::build_initramfs(
            &assets,
            &GuestSpec {
                agent,
                agent_args: &options.agent_args,
                release_dir,
                extra_files: &options.extra_files,
                ports: 2,
            },
            &initramfs,
        )
        .unwrap_or_else(|e| panic!("building the initramfs: {e}"));
        image::make_scratch_disk(
            &assets,
            &scratch,
            options.scratch_mib,
            &[(SCRATCH_MARKER.0, SCRATCH_MARKER.1.as_bytes())],
        )
        .unwrap_or_else(|e| panic!("making the scratch disk: {e}"));

        let qga_socket = dir.path().join("qga.sock");
        let test_socket = dir.path().join("test.sock");
        let qmp_socket = dir.path().join("qmp.sock");
        let console = dir.path().join("console.log");
        let qemu_log = dir.path().join("qemu.log");
        let mut append = vec![
            "console=ttyS0".to_owned(),
            "panic=-1".into(),
            "memhp_default_state=offline".into(),
        ];
        append.extend(options.kernel_args.iter().cloned());

        let mut cmd = Command::new(&assets.qemu);
        cmd.args(["-nodefaults", "-no-user-config", "-display", "none", "-no-reboot"])
            .args(["-machine", &format!("pc,accel={accel}")])
            .args(if accel == "kvm" { &["-cpu", "host"][..] } else { &[][..] })
            .args(["-smp", &options.smp, "-m", &options.memory])
            .arg("-kernel")
            .arg(&assets.kernel)
            .arg("-initrd")
            .arg(&initramfs)
            .args(["-append", &append.join(" ")])
            .arg("-chardev")
            .arg(format!("file,id=console0,path={}", console.display()))
            .args(["-serial", "chardev:console0"])
            .arg("-qmp")
            .arg(format!("unix:{},server=on,wait=off", qmp_socket.display()))
            .args(["-device", "virtio-serial-pci,id=vser0"])
            .arg("-chardev")
            .arg(format!("socket,id=qga0,path={},server=on,wait=off", qga_socket.display()))
            .args([
                "-device",
                &format!("virtserialport,bus=vser0.0,chardev=qga0,name={AGENT_PORT}"),
            ])
            .arg("-chardev")
            .arg(format!("socket,id=qts0,path={},server=on,wait=off", test_socket.display()))
            .args([
                "-device",
                &format!("virtserialport,bus=vser0.0,chardev=qts0,name={}", shell::PORT_NAME),
            ])
            .arg("-drive")
            .arg(format!("file={},format=raw,if=none,id=scratch", scratch.display()))
            .args(["-device", "virtio-blk-pci,drive=scratch,serial=qga-scratch"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(&qemu_log).expect("create the QEMU log")));
        let label = format!("VM[{}]", agent.name());
        let started = Instant::now();
        let child = cmd.spawn().expect("start qemu-system-x86_64");
        let mut qemu = Qemu {
            child: Some(child),
            console,
            qemu_log,
            label: label.clone(),
            logs_shown: false,
            dir,
        };

        // QEMU makes its sockets before the guest starts.
        let deadline = Instant::now() + TIMEOUT;
        while ![&qga_socket, &test_socket, &qmp_socket].iter().all(|p| p.exists()) {
            assert!(qemu.alive(), "{label}: QEMU exited at start-up");
            assert!(Instant::now() < deadline, "{label}: QEMU made no sockets in {TIMEOUT:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
        let qmp =
            Qmp::connect(&qmp_socket, TIMEOUT).unwrap_or_else(|e| panic!("{label}: QMP: {e}"));
        let mut shell = TestShell::connect(&test_socket)
            .unwrap_or_else(|e| panic!("{label}: test shell socket: {e}"));
        // Connected from the start, as libvirt is: the guest finds the host
        // side of the agent's port open when the agent starts.
        let client = Client::connect(&qga_socket);

        if let Err(e) = shell.wait_ready(options.boot_timeout, || qemu.alive()) {
            panic!(
                "{label}: the guest's test shell did not come up within {:?}: {e:?}",
                options.boot_timeout
            );
        }
        let boot_to_shell = started.elapsed();
        let mut vm = Vm {
            agent,
            client: Some(client),
            shell,
            qmp,
            qga_socket,
            boot_to_first_ping: Duration::ZERO,
            boot_to_shell,
            accel,
            qemu,
        };
        vm.wait_for_agent(Duration::from_secs(60));
        let reply = vm.agent().call(r#"{"execute":"guest-ping"}"#);
        assert_eq!(reply, r#"{"return": {}}"#, "{label}: first guest-ping");
        vm.boot_to_first_ping = started.elapsed();
        note(&format!(
            "{label}: booted ({accel}): test shell after {:.1} s, first guest-ping answered after {:.1} s",
            vm.boot_to_shell.as_secs_f64(),
            vm.boot_to_first_ping.as_secs_f64()
        ));
        Some(vm)
    }

    pub fn agent_kind(&self) -> GuestAgent {
        self.agent
    }

    pub fn label(&self) -> &str {
        &self.qemu.label
    }

    /// The host's connection to the agent's channel (connecting if the test
    /// disconnected it). After a reconnection, resynchronise first.
    pub fn agent(&mut self) -> &mut Client {
        let socket = &self.qga_socket;
        self.client.get_or_insert_with(|| Client::connect(socket))
    }

    /// Closes the host's side of the agent's channel: the guest sees the
    /// virtio-serial port close (QEMU's `server=on` chardev).
    pub fn disconnect_agent(&mut self) {
        if let Some(c) = self.client.take() {
            c.shutdown();
        }
    }

    /// `0xFF` + `guest-sync-delimited` until the agent answers (bounded);
    /// panics with the console log if it does not.
    pub fn wait_for_agent(&mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        let mut id = 1000;
        loop {
            id += 1;
            if self.agent().resync(id, Duration::from_millis(500)) {
                return;
            }
            assert!(self.qemu.alive(), "{}: QEMU exited while waiting for the agent", self.label());
            assert!(
                Instant::now() < deadline,
                "{}: the agent did not answer guest-sync-delimited within {limit:?}",
                self.label()
            );
        }
    }

    /// Restarts the agent in the guest (through the test shell, as an
    /// administrator would) and waits until it answers again.
    pub fn restart_agent(&mut self) {
        self.sh_ok("/sbin/qga-test-agent restart");
        self.wait_for_agent(Duration::from_secs(30));
    }

    /// The agent's pid in the guest, then its children's (qga-warden: the
    /// frontend).
    pub fn agent_pids(&mut self) -> Vec<u32> {
        self.sh_ok("/sbin/qga-test-agent pids")
            .split_whitespace()
            .map(|p| p.parse().expect("a pid"))
            .collect()
    }

    /// Runs one line of shell in the guest, as root, without the agent;
    /// returns the exit status and the output (stdout and stderr).
    pub fn sh(&mut self, cmd: &str) -> (i32, String) {
        self.sh_within(cmd, Duration::from_secs(60))
    }

    pub fn sh_within(&mut self, cmd: &str, limit: Duration) -> (i32, String) {
        match self.shell.run(cmd, limit) {
            Ok(r) => r,
            Err(ShellError::Timeout) => panic!(
                "{}: no answer from the test shell within {limit:?} to {cmd:?}",
                self.label()
            ),
            Err(ShellError::Closed(why)) => {
                panic!("{}: test shell: {why} (running {cmd:?})", self.label())
            }
        }
    }

    /// As [`Vm::sh`], asserting exit status 0; returns the output.
    pub fn sh_ok(&mut self, cmd: &str) -> String {
        let (status, out) = self.sh(cmd);
        assert_eq!(status, 0, "{}: `{cmd}` failed in the guest:\n{out}", self.label());
        out
    }

    /// Sends a QMP command (a JSON object) and returns QEMU's reply line.
    pub fn qmp(&mut self, command: &str) -> String {
        self.qmp.execute(command, TIMEOUT).unwrap_or_else(|e| panic!("QMP {command}: {e}"))
    }

    /// The PCI slot QEMU gave the scratch disk (the guest's only
    /// virtio-blk device), from QMP's `query-pci`.
    pub fn scratch_disk_slot(&mut self) -> u64 {
        let reply: serde_json::Value =
            serde_json::from_str(&self.qmp(r#"{"execute":"query-pci"}"#)).expect("QMP JSON");
        let devices = reply["return"][0]["devices"].as_array().expect("PCI devices").clone();
        devices
            .iter()
            .find(|d| {
                d["id"]["vendor"] == 0x1af4
                    && (d["id"]["device"] == 0x1001 || d["id"]["device"] == 0x1042)
            })
            .and_then(|d| d["slot"].as_u64())
            .unwrap_or_else(|| panic!("no virtio-blk device in {devices:?}"))
    }

    /// QMP events received so far.
    pub fn qmp_events(&self) -> &[String] {
        &self.qmp.events
    }

    /// Waits (bounded) for a QMP event named `name` and returns it.
    pub fn wait_for_event(&mut self, name: &str, limit: Duration) -> Option<String> {
        let needle = format!("\"event\": \"{name}\"");
        let deadline = Instant::now() + limit;
        loop {
            if let Some(e) = self.qmp.events.iter().find(|e| e.contains(&needle)) {
                return Some(e.clone());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            self.qmp.read_events(left.min(Duration::from_millis(200)));
        }
    }

    /// The VM's directory on the host (images, sockets, logs); removed with
    /// the VM.
    pub fn host_dir(&self) -> &Path {
        self.qemu.dir.path()
    }

    /// The guest's serial console so far.
    pub fn console_log(&self) -> String {
        read_lossy(&self.qemu.console)
    }

    /// Prints the console log and QEMU's output (once).
    pub fn show_logs(&mut self) {
        self.qemu.show_logs();
    }

    /// Waits (bounded) for QEMU to exit by itself, e.g. after the guest
    /// powered off (`-no-reboot`: a reboot also ends QEMU). For
    /// `guest-shutdown`, once it is implemented.
    pub fn wait_for_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let child = self.qemu.child.as_mut()?;
        wait_bounded(child, limit)
    }
}

/// One check run in a booted guest.
pub type Check = (&'static str, fn(&mut Vm));

/// Boots one guest with `agent` and runs every check in it, in order. Before
/// each check the host resynchronises with the agent, so a check starts on a
/// clean channel. A failing check does not stop the others; the test fails
/// at the end, naming them, with the console log.
pub fn run_checks(agent: GuestAgent, options: VmOptions, checks: &[Check]) {
    let Some(mut vm) = Vm::boot(agent, &options) else {
        return;
    };
    let started = Instant::now();
    let mut failed = Vec::new();
    for (name, check) in checks {
        let t = Instant::now();
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            vm.wait_for_agent(Duration::from_secs(30));
            check(&mut vm);
        }));
        let verdict = if outcome.is_ok() { "ok" } else { "FAILED" };
        note(&format!(
            "{}: check {name} ... {verdict} ({:.1} s)",
            vm.label(),
            t.elapsed().as_secs_f64()
        ));
        if outcome.is_err() {
            failed.push(*name);
        }
    }
    note(&format!(
        "{}: {} checks in {:.1} s after boot",
        vm.label(),
        checks.len(),
        started.elapsed().as_secs_f64()
    ));
    if !failed.is_empty() {
        vm.show_logs();
        panic!("{}: failed checks: {}", vm.label(), failed.join(", "));
    }
}

/// Declares, in a `tests/tests/vm_*.rs` file, a module `$name` with one test
/// per agent: each boots one guest and runs `$checks` (a `&[Check]`) in it
/// with `$options` (a `VmOptions`).
#[macro_export]
macro_rules! vm_tests {
    ($name:ident, $options:expr, $checks:expr) => {
        mod $name {
            use super::*;

            #[test]
            fn qga_warden() {
                $crate::vm::run_checks($crate::vm::GuestAgent::Warden, $options, $checks);
            }

            #[test]
            fn qemu_ga() {
                $crate::vm::run_checks($crate::vm::GuestAgent::QemuGa, $options, $checks);
            }
        }
    };
}
