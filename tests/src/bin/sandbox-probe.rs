//! Test helper: enters the frontend's real sandbox (all layers, or some of
//! them), then attempts one forbidden action and reports how it was stopped.
//!
//! `sandbox-probe LAYERS ACTION [ARG]`
//! - LAYERS: `all` (what the frontend does), `no-seccomp` (identity,
//!   no_new_privs and Landlock only), `weak-seccomp` (all layers, but the
//!   seccomp filter without its argument conditions).
//! - Exit status: 0 the action succeeded; 13 EACCES; 1 EPERM; 9 EBADF;
//!   2 another error (printed). Being killed (SIGSYS, SIGABRT) is seen by the
//!   caller as a signal.

#![deny(unsafe_code)]

use std::os::fd::{AsRawFd, BorrowedFd};
use std::process::ExitCode;

use nix::errno::Errno;
use nix::sys::socket::{self, AddressFamily, SockFlag, SockType, SockaddrIn, UnixAddr};
use qga_warden_frontend::sandbox::{self, Identity, LandlockPolicy, seccomp};

fn enter(layers: &str) {
    let identity =
        nix::unistd::Uid::effective().is_root().then_some(Identity { uid: 65534, gid: 65534 });
    let result = match layers {
        "all" => sandbox::enter(identity, LandlockPolicy::BestEffort).map(drop),
        "no-seccomp" | "weak-seccomp" => (|| {
            sandbox::drop_privileges(identity)?;
            sandbox::set_no_new_privs()?;
            sandbox::restrict_landlock(LandlockPolicy::BestEffort)?;
            if layers == "weak-seccomp" {
                seccomp::install(&seccomp::compile(seccomp::Conditions::Ignored)?)?;
            }
            Ok(())
        })(),
        other => panic!("unknown layers {other}"),
    };
    if let Err(e) = result {
        eprintln!("probe: cannot enter the sandbox: {e}");
        std::process::exit(3);
    }
}

fn report(r: Result<(), Errno>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(Errno::EACCES) => ExitCode::from(13),
        Err(Errno::EPERM) => ExitCode::from(1),
        Err(Errno::EBADF) => ExitCode::from(9),
        Err(e) => {
            eprintln!("probe: {e}");
            ExitCode::from(2)
        }
    }
}

/// The frontend only ever holds what the broker gives it (the broker marks
/// everything else close-on-exec); the test runner may leak descriptors (a
/// jobserver pipe), so close them to stand where the frontend stands.
fn close_inherited() {
    let fds: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .map(|d| d.flatten().filter_map(|e| e.file_name().to_str()?.parse().ok()).collect())
        .unwrap_or_default();
    // The directory's own descriptor was in the listing and is closed now.
    let open = |fd: &i32| std::fs::read_link(format!("/proc/self/fd/{fd}")).is_ok();
    for fd in fds.into_iter().filter(|&fd| fd > 2).filter(open) {
        #[allow(unsafe_code)]
        // SAFETY: nothing in this process uses descriptors above 2 (it has
        // just started and opened none itself), and `fd` is open: these are
        // descriptors inherited from the test runner, owned by nothing here.
        drop(unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) });
    }
}

fn main() -> ExitCode {
    close_inherited();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (layers, action) = (args[0].as_str(), args[1].as_str());
    let arg = args.get(2).cloned().unwrap_or_default();
    // Anything the action needs that is not itself under test is made first.
    let unix_sock = (action == "connect-abstract")
        .then(|| socket::socket(AddressFamily::Unix, SockType::Stream, SockFlag::empty(), None));
    enter(layers);
    let r = match action {
        "nothing" => Ok(()),
        "open-passwd" => nix::fcntl::open(
            "/etc/passwd",
            nix::fcntl::OFlag::O_RDONLY,
            nix::sys::stat::Mode::empty(),
        )
        .map(drop),
        "create-file" => nix::fcntl::open(
            arg.as_str(),
            nix::fcntl::OFlag::O_WRONLY | nix::fcntl::OFlag::O_CREAT,
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .map(drop),
        "execve" => {
            let prog = c"/bin/true";
            nix::unistd::execv(prog, &[prog]).map(drop)
        }
        "socket-inet" => {
            socket::socket(AddressFamily::Inet, SockType::Stream, SockFlag::empty(), None).map(drop)
        }
        "socket-unix" => {
            socket::socket(AddressFamily::Unix, SockType::Stream, SockFlag::empty(), None).map(drop)
        }
        "connect-tcp" => {
            // A socket made inside the sandbox is the seccomp case; under
            // no-seccomp the socket is made, and Landlock refuses the connect.
            socket::socket(AddressFamily::Inet, SockType::Stream, SockFlag::empty(), None).and_then(
                |s| {
                    let port: u16 = arg.parse().unwrap_or(9);
                    socket::connect(s.as_raw_fd(), &SockaddrIn::new(127, 0, 0, 1, port))
                },
            )
        }
        "connect-abstract" => unix_sock.unwrap_or(Err(Errno::EINVAL)).and_then(|s| {
            let addr = UnixAddr::new_abstract(arg.as_bytes())?;
            socket::connect(s.as_raw_fd(), &addr)
        }),
        "ptrace" => nix::sys::ptrace::attach(nix::unistd::getppid()),
        "mount" => nix::mount::mount(
            Some("none"),
            "/tmp",
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        ),
        "setuid0" => nix::unistd::setuid(nix::unistd::Uid::from_raw(0)),
        "kill-parent" => {
            nix::sys::signal::kill(nix::unistd::getppid(), nix::sys::signal::Signal::SIGCONT)
        }
        "write-unowned" => {
            // Every descriptor number the frontend was not given.
            let mut result = Err(Errno::EBADF);
            for n in 3..256 {
                #[allow(unsafe_code)]
                // SAFETY: the descriptor is only written to, never closed or
                // kept; a number that is not open yields EBADF, which is what
                // this probe expects to see.
                let fd = unsafe { BorrowedFd::borrow_raw(n) };
                match nix::unistd::write(fd, b"x") {
                    Err(Errno::EBADF) => {}
                    other => {
                        eprintln!("probe: descriptor {n}: {other:?}");
                        result = other.map(drop);
                        break;
                    }
                }
            }
            result
        }
        "mmap-exec" => {
            #[allow(unsafe_code)]
            // SAFETY: an anonymous private mapping is requested and, if
            // granted, never touched or unmapped; the process exits next.
            let p = unsafe {
                nix::libc::mmap(
                    std::ptr::null_mut(),
                    4096,
                    nix::libc::PROT_READ | nix::libc::PROT_EXEC,
                    nix::libc::MAP_PRIVATE | nix::libc::MAP_ANONYMOUS,
                    -1,
                    0,
                )
            };
            if p == nix::libc::MAP_FAILED { Err(Errno::last()) } else { Ok(()) }
        }
        "fcntl-setfl" => {
            let stdin = std::io::stdin();
            nix::fcntl::fcntl(
                stdin.as_fd_borrowed(),
                nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
            )
            .map(drop)
        }
        "panic" => panic!("a panic inside the sandbox"),
        other => panic!("unknown action {other}"),
    };
    report(r)
}

trait StdinFd {
    fn as_fd_borrowed(&self) -> BorrowedFd<'_>;
}

impl StdinFd for std::io::Stdin {
    fn as_fd_borrowed(&self) -> BorrowedFd<'_> {
        std::os::fd::AsFd::as_fd(self)
    }
}
