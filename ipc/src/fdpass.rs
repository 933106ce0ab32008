//! Passing a file descriptor over a unix socket (SCM_RIGHTS).
//!
//! Only the broker sends descriptors and only the frontend receives them; the
//! broker reads its end with plain reads, so descriptors a compromised frontend
//! tries to send are discarded by the kernel.

use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use nix::sys::socket::{self, ControlMessage, ControlMessageOwned, MsgFlags};

use crate::limits::MAX_FDS_PER_MESSAGE;

/// Sends (part of) `data` with `fd` attached to its first byte. Returns how
/// many bytes were sent; the rest goes out with plain writes.
pub fn send_with_fd(sock: BorrowedFd<'_>, data: &[u8], fd: BorrowedFd<'_>) -> io::Result<usize> {
    let fds = [fd.as_raw_fd()];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    let iov = [IoSlice::new(data)];
    socket::sendmsg::<()>(sock.as_raw_fd(), &iov, &cmsg, MsgFlags::MSG_NOSIGNAL, None)
        .map_err(io::Error::from)
}

/// Receives bytes into `buf`; descriptors that arrive with them are appended
/// to `fds` (close-on-exec). Returns the byte count (0 at end of file).
pub fn recv_with_fds(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    fds: &mut Vec<OwnedFd>,
) -> io::Result<usize> {
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; MAX_FDS_PER_MESSAGE]);
    let mut iov = [IoSliceMut::new(buf)];
    let msg = socket::recvmsg::<()>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(io::Error::from)?;
    let bytes = msg.bytes;
    let truncated = msg.flags.contains(MsgFlags::MSG_CTRUNC);
    for cmsg in msg.cmsgs().map_err(io::Error::from)? {
        if let ControlMessageOwned::ScmRights(received) = cmsg {
            for raw in received {
                #[allow(unsafe_code)]
                // SAFETY: the kernel has just installed `raw` in this process's
                // descriptor table for this message (SCM_RIGHTS); nothing else
                // knows the number, so this is its only owner.
                fds.push(unsafe { OwnedFd::from_raw_fd(raw) });
            }
        }
    }
    if truncated {
        return Err(io::Error::other("descriptors were truncated in transit"));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixStream;

    #[test]
    fn a_descriptor_travels_with_its_bytes() {
        let (a, b) = UnixStream::pair().expect("pair");
        let (r, w) = nix::unistd::pipe().expect("pipe");
        assert_eq!(send_with_fd(a.as_fd(), b"hello", w.as_fd()).expect("send"), 5);
        drop(w);
        let mut buf = [0u8; 16];
        let mut fds = Vec::new();
        let n = recv_with_fds(b.as_fd(), &mut buf, &mut fds).expect("recv");
        assert_eq!(&buf[..n], b"hello");
        assert_eq!(fds.len(), 1);
        nix::unistd::write(&fds[0], b"x").expect("write through passed fd");
        let mut one = [0u8; 1];
        assert_eq!(nix::unistd::read(&r, &mut one).expect("read"), 1);
    }
}
