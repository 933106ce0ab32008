//! Opening the channel to the host. The broker owns it: the frontend gets a
//! duplicate, so the channel (and a connected host) outlives a frontend crash.

use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use ipc::ChannelKind;
use nix::fcntl::{FcntlArg, OFlag, fcntl, open};
use nix::sys::socket::{
    self, AddressFamily, Backlog, SockFlag, SockType, SockaddrLike, SockaddrStorage, VsockAddr,
};
use nix::sys::stat::Mode;
use nix::sys::termios;

use crate::cli::{Method, Settings};

/// Where host connections come from.
pub enum Source {
    /// A device that is the channel itself (virtio-serial port, serial line).
    Device { fd: OwnedFd, kind: ChannelKind },
    /// A listening socket; each accepted connection is a channel.
    Listener { fd: OwnedFd, unix_path: Option<PathBuf> },
}

#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error("cannot open channel {path}")]
    Open {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot set up channel {path}")]
    Setup {
        path: String,
        #[source]
        source: nix::Error,
    },
    #[error("socket-activation descriptor is neither a unix nor a vsock socket")]
    ActivationFamily,
    #[error("only one socket-activation descriptor is supported, got {0}")]
    ActivationCount(String),
}

fn setup_err(path: &str) -> impl Fn(nix::Error) -> ChannelError + '_ {
    move |source| ChannelError::Setup { path: path.to_owned(), source }
}

/// Opens the channel the settings name.
pub fn open_source(s: &Settings) -> Result<Source, ChannelError> {
    let path = s.channel_path().unwrap_or_default();
    match s.method {
        Method::VirtioSerial => open_device(&path, ChannelKind::VirtioSerial),
        Method::IsaSerial => open_device(&path, ChannelKind::Serial),
        Method::UnixListen => listen_unix(&path),
        Method::VsockListen => listen_vsock(&path),
    }
}

fn open_device(path: &str, kind: ChannelKind) -> Result<Source, ChannelError> {
    let fd = open(
        Path::new(path),
        OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| ChannelError::Open { path: path.to_owned(), source: e.into() })?;
    if kind == ChannelKind::Serial {
        // Raw, 8-bit clean byte stream; modem lines ignored so that no hang-up
        // ever ends the channel. Stale input is garbage.
        let mut tio = termios::tcgetattr(&fd).map_err(setup_err(path))?;
        termios::cfmakeraw(&mut tio);
        tio.control_flags |= termios::ControlFlags::CLOCAL | termios::ControlFlags::CREAD;
        tio.control_chars[termios::SpecialCharacterIndices::VMIN as usize] = 1;
        tio.control_chars[termios::SpecialCharacterIndices::VTIME as usize] = 0;
        termios::tcflush(&fd, termios::FlushArg::TCIFLUSH).map_err(setup_err(path))?;
        termios::tcsetattr(&fd, termios::SetArg::TCSANOW, &tio).map_err(setup_err(path))?;
    }
    Ok(Source::Device { fd, kind })
}

fn listen_unix(path: &str) -> Result<Source, ChannelError> {
    let p = Path::new(path);
    // A socket left by an earlier run is replaced; anything else is not ours.
    if let Ok(meta) = std::fs::symlink_metadata(p) {
        if meta.file_type().is_socket() {
            let _ = std::fs::remove_file(p);
        }
    }
    let listener = UnixListener::bind(p)
        .map_err(|source| ChannelError::Open { path: path.to_owned(), source })?;
    listener
        .set_nonblocking(true)
        .map_err(|source| ChannelError::Open { path: path.to_owned(), source })?;
    Ok(Source::Listener { fd: OwnedFd::from(listener), unix_path: Some(p.to_owned()) })
}

fn listen_vsock(addr: &str) -> Result<Source, ChannelError> {
    let (cid, port) = crate::cli::parse_vsock(addr).map_err(|_| ChannelError::Open {
        path: addr.to_owned(),
        source: io::Error::from(io::ErrorKind::InvalidInput),
    })?;
    let fd = socket::socket(
        AddressFamily::Vsock,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    )
    .map_err(setup_err(addr))?;
    socket::bind(fd.as_raw_fd(), &VsockAddr::new(cid, port)).map_err(setup_err(addr))?;
    socket::listen(&fd, Backlog::new(16).unwrap_or(Backlog::MAXCONN)).map_err(setup_err(addr))?;
    Ok(Source::Listener { fd, unix_path: None })
}

/// A listening socket passed by systemd (`LISTEN_FDS`), as qemu-ga accepts one.
/// Returns the method it implies and the source.
pub fn from_activation() -> Result<Option<(Method, Source)>, ChannelError> {
    let pid_matches = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
        .is_some_and(|p| p == std::process::id());
    let Some(count) = std::env::var("LISTEN_FDS").ok().filter(|_| pid_matches) else {
        return Ok(None);
    };
    forget_activation_env();
    if count != "1" {
        return Err(ChannelError::ActivationCount(count));
    }
    const FIRST: i32 = 3;
    #[allow(unsafe_code)]
    // SAFETY: by the sd_listen_fds protocol, LISTEN_FDS=1 with our pid means
    // descriptor 3 was passed to this process for it to own; nothing else in
    // the broker uses descriptor 3.
    let fd = unsafe { OwnedFd::from_raw_fd(FIRST) };
    fcntl(fd.as_fd(), FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC))
        .map_err(setup_err("LISTEN_FDS"))?;
    let flags = fcntl(fd.as_fd(), FcntlArg::F_GETFL).map_err(setup_err("LISTEN_FDS"))?;
    fcntl(fd.as_fd(), FcntlArg::F_SETFL(OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK))
        .map_err(setup_err("LISTEN_FDS"))?;
    let addr: SockaddrStorage =
        socket::getsockname(fd.as_raw_fd()).map_err(setup_err("LISTEN_FDS"))?;
    let method = match addr.family() {
        Some(AddressFamily::Unix) => Method::UnixListen,
        Some(AddressFamily::Vsock) => Method::VsockListen,
        _ => return Err(ChannelError::ActivationFamily),
    };
    Ok(Some((method, Source::Listener { fd, unix_path: None })))
}

fn forget_activation_env() {
    for var in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        #[allow(unsafe_code)]
        // SAFETY: called before any other thread exists (the broker is
        // single-threaded and spawns nothing before opening its channel), so
        // no other thread can be reading the environment.
        unsafe {
            std::env::remove_var(var)
        };
    }
}

/// Accepts one pending connection, non-blocking and close-on-exec.
pub fn accept(listener: &OwnedFd) -> nix::Result<OwnedFd> {
    socket::accept4(listener, SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK)
}
