//! guest-network-get-interfaces, as qemu-ga 7.2's
//! `qmp_guest_network_get_interfaces`, `guest_get_hw_addr` and
//! `guest_get_network_stats` (qga/commands-posix.c) do it:
//!
//! - one entry per interface name, in the order getifaddrs() first lists it;
//! - its hardware address from SIOCGIFHWADDR, asked (on a fresh AF_INET
//!   socket) for every getifaddrs() entry of the interface until it is
//!   obtained, the first 6 bytes of `sa_data` as `%02x:...`; a failing ioctl
//!   only leaves it out;
//! - its IPv4 and IPv6 addresses as glibc's inet_ntop writes them, the prefix
//!   being the number of bits set in the netmask;
//! - its counters from /proc/net/dev, looked up each time it gets an address
//!   until they are found.

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;

use ipc::{InterfaceStats, IpAddress, NetworkInterface, OpError};
use nix::errno::Errno;
use nix::ifaddrs::getifaddrs;
use nix::libc;
use nix::sys::socket::{AddressFamily, SockFlag, SockType, SockaddrStorage, socket};

use crate::log::{debug, warning};

/// Where qemu-ga reads the interface counters.
const NET_DEV: &str = "/proc/net/dev";

pub fn interfaces() -> Result<Vec<NetworkInterface>, OpError> {
    let entries = getifaddrs().map_err(|e| sys_error("getifaddrs failed", e))?;
    let mut list: Vec<NetworkInterface> = Vec::new();
    for entry in entries {
        // guest_find_interface: the first interface of that name (strcmp).
        let at = match list.iter().position(|i| i.name == entry.interface_name) {
            Some(at) => at,
            None => {
                list.push(NetworkInterface {
                    name: entry.interface_name.clone(),
                    hardware_address: None,
                    ip_addresses: None,
                    statistics: None,
                });
                list.len() - 1
            }
        };
        let info = &mut list[at];
        if info.hardware_address.is_none() {
            info.hardware_address = hardware_address(&entry.interface_name)?;
        }
        let Some(address) = ip_address(entry.address.as_ref(), entry.netmask.as_ref()) else {
            continue;
        };
        info.ip_addresses.get_or_insert_with(Vec::new).push(address);
        if info.statistics.is_none() {
            info.statistics = statistics(&info.name);
        }
    }
    Ok(list)
}

fn sys_error(what: &str, e: Errno) -> OpError {
    OpError::Sysfs { what: what.to_owned(), errno: e as i32 }
}

/// The address of an AF_INET or AF_INET6 entry; `None` for other families
/// (AF_PACKET) and for entries without an address.
fn ip_address(
    address: Option<&SockaddrStorage>,
    netmask: Option<&SockaddrStorage>,
) -> Option<IpAddress> {
    let address = address?;
    // glibc's getifaddrs gives the netmask the family of the address, so the
    // netmask has the same type as the address whenever there is one.
    if let Some(sin) = address.as_sockaddr_in() {
        let prefix =
            netmask.and_then(|m| m.as_sockaddr_in()).map_or(0, |m| prefix(&m.ip().octets()));
        Some(IpAddress { address: ntop4(sin.ip().octets()), ipv6: false, prefix })
    } else if let Some(sin6) = address.as_sockaddr_in6() {
        let prefix =
            netmask.and_then(|m| m.as_sockaddr_in6()).map_or(0, |m| prefix(&m.ip().octets()));
        Some(IpAddress { address: ntop6(&sin6.ip().octets()), ipv6: true, prefix })
    } else {
        None
    }
}

/// The number of bits set in a netmask (qemu-ga's `ctpop32` over its words).
fn prefix(mask: &[u8]) -> i64 {
    mask.iter().map(|b| i64::from(b.count_ones())).sum()
}

/// inet_ntop(AF_INET): dotted decimal.
fn ntop4(octets: [u8; 4]) -> String {
    Ipv4Addr::from(octets).to_string()
}

/// glibc's inet_ntop(AF_INET6) (resolv/inet_ntop.c). It differs from Rust's
/// `Ipv6Addr` Display in writing the last 32 bits as dotted decimal after
/// six zero words (`::1.2.3.4`, `::0.1.0.2` for `::1:2`) as well as after
/// `::ffff`; Rust does that only for IPv4-mapped addresses.
fn ntop6(addr: &[u8; 16]) -> String {
    let words: [u16; 8] =
        std::array::from_fn(|i| u16::from_be_bytes([addr[2 * i], addr[2 * i + 1]]));
    // The longest run of zero words (the first of equally long ones), if it
    // is at least two words long: (start, length).
    let mut best: Option<(usize, usize)> = None;
    let mut current: Option<(usize, usize)> = None;
    for (i, &w) in words.iter().enumerate() {
        if w == 0 {
            current = Some(current.map_or((i, 1), |(start, len)| (start, len + 1)));
        } else if let Some(run) = current.take() {
            if best.is_none_or(|b| run.1 > b.1) {
                best = Some(run);
            }
        }
    }
    if let Some(run) = current {
        if best.is_none_or(|b| run.1 > b.1) {
            best = Some(run);
        }
    }
    let best = best.filter(|&(_, len)| len >= 2);
    let in_best = |i: usize| best.is_some_and(|(start, len)| (start..start + len).contains(&i));

    let mut out = String::with_capacity(46);
    for (i, &w) in words.iter().enumerate() {
        if in_best(i) {
            if best.is_some_and(|(start, _)| start == i) {
                out.push(':');
            }
            continue;
        }
        if i != 0 {
            out.push(':');
        }
        let embedded_v4 = i == 6
            && match best {
                Some((0, 6)) => true,
                Some((0, 5)) => words[5] == 0xffff,
                _ => false,
            };
        if embedded_v4 {
            out.push_str(&ntop4([addr[12], addr[13], addr[14], addr[15]]));
            break;
        }
        let _ = write!(out, "{w:x}");
    }
    if best.is_some_and(|(start, len)| start + len == words.len()) {
        out.push(':');
    }
    out
}

/// `struct ifreq` (net/if.h) as SIOCGIFHWADDR uses it: the name, then
/// `ifr_hwaddr` (a `struct sockaddr`) at the start of the union, then the
/// rest of the union.
#[repr(C, align(8))]
struct IfreqHwaddr {
    name: [u8; libc::IFNAMSIZ],
    family: u16,
    data: [u8; 14],
    rest: [u8; IFREQ_SIZE - libc::IFNAMSIZ - 16],
}

const IFREQ_SIZE: usize = size_of::<libc::ifreq>();
const _: () = assert!(size_of::<IfreqHwaddr>() == IFREQ_SIZE);
const _: () = assert!(size_of::<libc::sockaddr>() == 16);

impl IfreqHwaddr {
    /// Zeroed, with `name` as qemu-ga's `pstrcpy(ifr_name, IF_NAMESIZE, name)`
    /// leaves it: at most 15 bytes, NUL-terminated.
    fn new(name: &str) -> IfreqHwaddr {
        let mut req = IfreqHwaddr {
            name: [0; libc::IFNAMSIZ],
            family: 0,
            data: [0; 14],
            rest: [0; IFREQ_SIZE - libc::IFNAMSIZ - 16],
        };
        let bytes = name.as_bytes();
        let n = bytes.len().min(libc::IFNAMSIZ - 1);
        req.name[..n].copy_from_slice(&bytes[..n]);
        req
    }
}

nix::ioctl_readwrite_bad!(siocgifhwaddr, libc::SIOCGIFHWADDR, IfreqHwaddr);

/// guest_get_hw_addr: `Ok(None)` when the ioctl fails (qemu-ga only logs
/// that), an error only when the socket cannot be created.
fn hardware_address(name: &str) -> Result<Option<String>, OpError> {
    let sock = socket(AddressFamily::Inet, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)
        .map_err(|e| sys_error("failed to create socket", e))?;
    let mut req = IfreqHwaddr::new(name);
    #[allow(unsafe_code)]
    // SAFETY: SIOCGIFHWADDR reads and writes one `struct ifreq`. `req` is
    // repr(C) with the name at offset 0 and `ifr_hwaddr` (family, 14 bytes of
    // data) right after it, padded to exactly size_of::<libc::ifreq>() (checked
    // at compile time) and aligned at least as strictly, every byte
    // initialized; the name is NUL-terminated within IFNAMSIZ. `req` is a live
    // local borrowed mutably for the call only, and `sock` is an open socket.
    let result = unsafe { siocgifhwaddr(sock.as_raw_fd(), &mut req) };
    match result {
        Ok(_) => Ok(Some(mac_text(&req.data))),
        Err(e) => {
            if e == Errno::EADDRNOTAVAIL {
                debug!("failed to get MAC address of {name}: {}", e.desc());
            } else {
                warning!("failed to get MAC address of {name}: {}", e.desc());
            }
            Ok(None)
        }
    }
}

/// `%02x:%02x:%02x:%02x:%02x:%02x` of the first 6 bytes.
fn mac_text(data: &[u8; 14]) -> String {
    let mut out = String::with_capacity(17);
    for (i, b) in data[..6].iter().enumerate() {
        if i != 0 {
            out.push(':');
        }
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// guest_get_network_stats: the counters of `name` in /proc/net/dev, `None`
/// when the file cannot be read or has no valid line for it.
fn statistics(name: &str) -> Option<InterfaceStats> {
    match std::fs::read(NET_DEV) {
        Ok(text) => {
            let stats = parse_net_dev(&text, name.as_bytes());
            if stats.is_none() {
                debug!("{NET_DEV}: Interface '{name}' not found");
            }
            stats
        }
        Err(e) => {
            debug!("failed to open network stats {NET_DEV}: {e}");
            None
        }
    }
}

/// The counters of interface `name` in the text of /proc/net/dev, parsed as
/// qemu-ga does: each line with leading (GLib ASCII) white space removed;
/// the part before its first ':' must be exactly `name`; then 16 numbers as
/// sscanf's `%lld` reads them, or the line is skipped. The first such line
/// wins. Numbers out of range saturate as with strtoll, and are then taken
/// as unsigned (a negative number wraps), as qemu-ga stores them.
fn parse_net_dev(text: &[u8], name: &[u8]) -> Option<InterfaceStats> {
    for line in text.split_inclusive(|&c| c == b'\n') {
        // A C string: it ends at the first NUL.
        let line = &line[..line.iter().position(|&c| c == 0).unwrap_or(line.len())];
        let start = line.iter().position(|&c| !is_glib_space(c)).unwrap_or(line.len());
        let line = &line[start..];
        let Some(colon) = line.iter().position(|&c| c == b':') else {
            continue;
        };
        if &line[..colon] != name {
            continue;
        }
        let Some(v) = scan_numbers::<16>(&line[colon + 1..]) else {
            continue;
        };
        return Some(InterfaceStats {
            rx_bytes: v[0] as u64,
            rx_packets: v[1] as u64,
            rx_errs: v[2] as u64,
            rx_dropped: v[3] as u64,
            tx_bytes: v[8] as u64,
            tx_packets: v[9] as u64,
            tx_errs: v[10] as u64,
            tx_dropped: v[11] as u64,
        });
    }
    None
}

/// g_ascii_isspace, which `g_strchug` uses (no vertical tab).
fn is_glib_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\x0c' | b'\r')
}

/// isspace in the C locale, which sscanf uses.
fn is_c_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r')
}

/// sscanf(s, "%lld %lld ...") with `N` conversions: `None` unless all `N`
/// succeed. Whatever follows the last one is ignored.
fn scan_numbers<const N: usize>(s: &[u8]) -> Option<[i64; N]> {
    let mut out = [0; N];
    let mut rest = s;
    for slot in &mut out {
        let (value, used) = scan_lld(rest)?;
        *slot = value;
        rest = &rest[used..];
    }
    Some(out)
}

/// One `%lld`: white space, an optional sign, at least one decimal digit;
/// out of range values saturate (glibc converts with strtoll). Returns the
/// value and the number of bytes read.
fn scan_lld(s: &[u8]) -> Option<(i64, usize)> {
    let mut i = s.iter().take_while(|&&c| is_c_space(c)).count();
    let negative = match s.get(i) {
        Some(b'-') => {
            i += 1;
            true
        }
        Some(b'+') => {
            i += 1;
            false
        }
        _ => false,
    };
    let digits = s[i..].iter().take_while(|c| c.is_ascii_digit()).count();
    if digits == 0 {
        return None;
    }
    // The magnitude, capped at 2^63 (enough to tell every saturated case).
    const CAP: u128 = 1 << 63;
    let magnitude =
        s[i..i + digits].iter().fold(0u128, |acc, &d| (acc * 10 + u128::from(d - b'0')).min(CAP));
    let value = match (negative, magnitude) {
        (false, m) if m >= CAP => i64::MAX,
        (true, m) if m >= CAP => i64::MIN,
        (false, m) => m as i64,
        (true, m) => -(m as i64),
    };
    Some((value, i + digits))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:  123456     789    0    0    0     0          0         0   123456     789    0    0    0     0       0          0
  eth0: 9876543210 1234567    1    2    3     4          5         6 1122334455  998877    7    8    9    10      11         12
 eth01:    1000      10    0    0    0     0          0         0     2000      20    0    0    0     0       0          0
";

    fn stats(v: [u64; 8]) -> InterfaceStats {
        InterfaceStats {
            rx_bytes: v[0],
            rx_packets: v[1],
            rx_errs: v[2],
            rx_dropped: v[3],
            tx_bytes: v[4],
            tx_packets: v[5],
            tx_errs: v[6],
            tx_dropped: v[7],
        }
    }

    #[test]
    fn parses_a_real_sample() {
        let text = SAMPLE.as_bytes();
        assert_eq!(parse_net_dev(text, b"lo"), Some(stats([123456, 789, 0, 0, 123456, 789, 0, 0])));
        assert_eq!(
            parse_net_dev(text, b"eth0"),
            Some(stats([9876543210, 1234567, 1, 2, 1122334455, 998877, 7, 8]))
        );
        assert_eq!(parse_net_dev(text, b"eth01"), Some(stats([1000, 10, 0, 0, 2000, 20, 0, 0])));
        assert_eq!(parse_net_dev(text, b"eth"), None);
        assert_eq!(parse_net_dev(text, b"eth0 "), None);
        assert_eq!(parse_net_dev(text, b"wlan0"), None);
        assert_eq!(parse_net_dev(b"", b"lo"), None);
    }

    #[test]
    fn names_must_match_exactly() {
        let text = b"eth01: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n\
                     eth0: 21 22 23 24 25 26 27 28 29 30 31 32 33 34 35 36\n";
        assert_eq!(parse_net_dev(text, b"eth0"), Some(stats([21, 22, 23, 24, 29, 30, 31, 32])));
        assert_eq!(parse_net_dev(text, b"eth01"), Some(stats([1, 2, 3, 4, 9, 10, 11, 12])));
        // Space before the colon is part of the name.
        assert_eq!(parse_net_dev(b"eth0 : 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16", b"eth0"), None);
        // An alias label never matches: the first colon ends the name.
        let alias = b"eth0:1: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16";
        assert_eq!(parse_net_dev(alias, b"eth0:1"), None);
    }

    #[test]
    fn skips_malformed_and_short_lines() {
        let good = "eth0: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n";
        for bad in [
            "eth0: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15\n",
            "eth0:\n",
            "eth0",
            "eth0: 1 2 3 x 5 6 7 8 9 10 11 12 13 14 15 16\n",
            "eth0: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 +\n",
            "eth0: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15\n16\n",
            "eth0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n",
            "\n",
            "   \n",
        ] {
            assert_eq!(parse_net_dev(bad.as_bytes(), b"eth0"), None, "{bad:?}");
            // A later valid line is still found.
            let text = format!("{bad}\n{good}");
            assert_eq!(
                parse_net_dev(text.as_bytes(), b"eth0"),
                Some(stats([1, 2, 3, 4, 9, 10, 11, 12])),
                "{bad:?}"
            );
        }
        // A NUL ends the line as far as qemu-ga's C string functions see.
        assert_eq!(
            parse_net_dev(b"eth0: 1 2 3 4 5 6 7 8\x009 10 11 12 13 14 15 16", b"eth0"),
            None
        );
    }

    #[test]
    fn numbers_as_sscanf_reads_them() {
        // Extra fields are ignored; numbers need no space between them when
        // a sign starts the next one; vertical tab is sscanf white space.
        let text = b"\t eth0:1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 junk";
        assert_eq!(parse_net_dev(text, b"eth0"), Some(stats([1, 2, 3, 4, 9, 10, 11, 12])));
        let text = b"eth0:1+2 3 4 5 6 7 8 9 10 11 12 13 14 15 16";
        assert_eq!(parse_net_dev(text, b"eth0"), Some(stats([1, 2, 3, 4, 9, 10, 11, 12])));
        let text = b"eth0:\x0b1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16";
        assert_eq!(parse_net_dev(text, b"eth0"), Some(stats([1, 2, 3, 4, 9, 10, 11, 12])));
        // ...but g_strchug does not remove a leading vertical tab.
        let text = b"\x0beth0: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16";
        assert_eq!(parse_net_dev(text, b"eth0"), None);
        // Saturation at LLONG_MAX / LLONG_MIN, and negatives wrap.
        let text = b"eth0: 99999999999999999999 9223372036854775807 -1 -99999999999999999999 \
                     0 0 0 0 18446744073709551615 -0 +7 007 0 0 0 0";
        assert_eq!(
            parse_net_dev(text, b"eth0"),
            Some(stats([
                i64::MAX as u64,
                i64::MAX as u64,
                u64::MAX,
                1 << 63,
                i64::MAX as u64,
                0,
                7,
                7
            ]))
        );
        assert_eq!(scan_lld(b"  -42x"), Some((-42, 5)));
        assert_eq!(scan_lld(b"0x10"), Some((0, 1)));
        assert_eq!(scan_lld(b"- 1"), None);
        assert_eq!(scan_lld(b""), None);
        assert_eq!(scan_lld(b"-9223372036854775808"), Some((i64::MIN, 20)));
        assert_eq!(scan_lld(b"9223372036854775808"), Some((i64::MAX, 19)));
    }

    #[test]
    fn prefix_counts_netmask_bits() {
        assert_eq!(prefix(&[255, 255, 255, 0]), 24);
        assert_eq!(prefix(&[255, 0, 0, 0]), 8);
        assert_eq!(prefix(&[0; 4]), 0);
        assert_eq!(prefix(&[255; 4]), 32);
        assert_eq!(prefix(&[255, 255, 255, 252]), 30);
        assert_eq!(prefix(&[255; 16]), 128);
        let mut m = [0u8; 16];
        m[..8].fill(255);
        assert_eq!(prefix(&m), 64);
        m[8] = 0x80;
        assert_eq!(prefix(&m), 65);
    }

    fn v6(text: &str) -> String {
        let addr: std::net::Ipv6Addr = text.parse().expect("address");
        ntop6(&addr.octets())
    }

    #[test]
    fn ntop_as_glibc() {
        assert_eq!(ntop4([127, 0, 0, 1]), "127.0.0.1");
        assert_eq!(ntop4([10, 0, 255, 7]), "10.0.255.7");
        assert_eq!(ntop4([0, 0, 0, 0]), "0.0.0.0");
        // Expected texts are glibc's inet_ntop (Debian 12).
        for (input, glibc) in [
            ("::", "::"),
            ("::1", "::1"),
            ("::2", "::2"),
            ("::0.0.0.2", "::2"),
            ("::1.2.3.4", "::1.2.3.4"),
            ("::1:2", "::0.1.0.2"),
            ("::1:0", "::0.1.0.0"),
            ("::ffff:1.2.3.4", "::ffff:1.2.3.4"),
            ("::ffff:0:0", "::ffff:0.0.0.0"),
            ("::fffe:1.2.3.4", "::fffe:102:304"),
            ("::ffff:0:1.2.3.4", "::ffff:0:102:304"),
            ("::5:ffff:1.2.3.4", "::5:ffff:102:304"),
            ("0:0:0:0:0:1:2:3", "::1:2:3"),
            ("64:ff9b::1.2.3.4", "64:ff9b::102:304"),
            ("fe80::1", "fe80::1"),
            ("fe80::5054:ff:fe12:3456", "fe80::5054:ff:fe12:3456"),
            ("2001:db8::", "2001:db8::"),
            ("1::", "1::"),
            ("1:0:0:1::1", "1:0:0:1::1"),
            ("1:0:0:1:0:0:1:1", "1::1:0:0:1:1"),
            ("1:0:1:0:1:0:1:0", "1:0:1:0:1:0:1:0"),
            ("2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"),
            ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
            ("0:0:1::", "0:0:1::"),
            ("0:1::", "0:1::"),
            ("0:0:0:1:0:0:0:0", "0:0:0:1::"),
            ("0:0:0:0:1:0:0:0", "::1:0:0:0"),
        ] {
            assert_eq!(v6(input), glibc, "{input}");
        }
    }

    #[test]
    fn mac_address_text() {
        let mut data = [0u8; 14];
        assert_eq!(mac_text(&data), "00:00:00:00:00:00");
        data[..8].copy_from_slice(&[0x52, 0x54, 0x00, 0xab, 0xcd, 0xef, 0x99, 0x99]);
        assert_eq!(mac_text(&data), "52:54:00:ab:cd:ef");
    }

    #[test]
    fn ifreq_name_is_truncated_and_terminated() {
        let req = IfreqHwaddr::new("abcdefghijklmnopqrst");
        assert_eq!(&req.name[..15], b"abcdefghijklmno");
        assert_eq!(req.name[15], 0);
        let req = IfreqHwaddr::new("lo");
        assert_eq!(&req.name[..3], b"lo\0");
    }

    #[test]
    fn lists_loopback_like_qemu_ga() {
        let list = interfaces().expect("interfaces");
        let Some(lo) = list.iter().find(|i| i.name == "lo") else {
            return; // no loopback in this network namespace
        };
        assert_eq!(lo.hardware_address.as_deref(), Some("00:00:00:00:00:00"));
        if let Some(addresses) = &lo.ip_addresses {
            assert!(lo.statistics.is_some());
            for a in addresses.iter().filter(|a| a.address == "127.0.0.1") {
                assert_eq!((a.ipv6, a.prefix), (false, 8));
            }
        }
    }
}
