//! Read-only inventory, as qemu-ga reads it on Linux: host name, users, time
//! zone, OS, disk and CPU statistics (qemu-ga 7.2), load (QEMU 10.0) and
//! routes (QEMU 9.1). Each parser takes the file's path or text, so tests
//! feed it captured inputs; each reply is capped (`ipc::limits`).

use std::io::Read;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;

use ipc::limits::{MAX_CPUS, MAX_DISKS, MAX_INFO_STRING, MAX_ROUTES, MAX_USERS};
use ipc::{CpuStats, DiskStatsInfo, OpError, OsInfo, Response, Route, User};

pub const UTMP: &str = "/run/utmp";
pub const DISKSTATS: &str = "/proc/diskstats";
pub const STAT: &str = "/proc/stat";
pub const LOADAVG: &str = "/proc/loadavg";
pub const PROC_NET: &str = "/proc/net";

/// The most of any one /proc file or os-release read: far beyond what a
/// guest with `MAX_DISKS` disks or `MAX_CPUS` CPUs writes.
const MAX_READ: u64 = 16 * 1024 * 1024;

fn read_capped(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    std::fs::File::open(path)?.take(MAX_READ).read_to_end(&mut out)?;
    Ok(out)
}

fn errno(e: &std::io::Error) -> i32 {
    e.raw_os_error().unwrap_or(nix::libc::EIO)
}

/// qemu-ga's `open("/proc/...")` error.
fn open_error(path: &Path, e: &std::io::Error) -> OpError {
    OpError::Sysfs { what: format!("open(\"{}\")", path.display()), errno: errno(e) }
}

fn bounded(s: &str) -> String {
    let mut end = s.len().min(MAX_INFO_STRING);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

/// guest-get-host-name: gethostname(2).
pub fn host_name() -> Result<String, OpError> {
    nix::unistd::gethostname().map(|h| bounded(&h.to_string_lossy())).map_err(|e| {
        OpError::CommandFailed { message: format!("cannot get hostname: {}", e.desc()) }
    })
}

/// `struct utmp` on 64-bit Linux (glibc's layout, 384 bytes).
const UTMP_RECORD: usize = 384;
const UT_TYPE: usize = 0;
const UT_USER: usize = 44;
const UT_USER_LEN: usize = 32;
const UT_TV_SEC: usize = 340;
const UT_TV_USEC: usize = 344;
const USER_PROCESS: i16 = 7;

/// guest-get-users: the USER_PROCESS records of utmp, one entry per user in
/// order of first appearance, with the earliest login time. A missing utmp
/// is no users, as for qemu-ga's getutxent.
pub fn users(utmp: &Path) -> Result<Vec<User>, OpError> {
    match read_capped(utmp) {
        Ok(bytes) => Ok(parse_utmp(&bytes)),
        Err(_) => Ok(Vec::new()),
    }
}

fn parse_utmp(bytes: &[u8]) -> Vec<User> {
    let mut users: Vec<User> = Vec::new();
    for rec in bytes.chunks_exact(UTMP_RECORD) {
        let i16_at = |o: usize| i16::from_ne_bytes([rec[o], rec[o + 1]]);
        let i32_at = |o: usize| i32::from_ne_bytes([rec[o], rec[o + 1], rec[o + 2], rec[o + 3]]);
        if i16_at(UT_TYPE) != USER_PROCESS {
            continue;
        }
        let raw = &rec[UT_USER..UT_USER + UT_USER_LEN];
        let name = &raw[..raw.iter().position(|&b| b == 0).unwrap_or(raw.len())];
        let name = String::from_utf8_lossy(name).into_owned();
        let login_time = f64::from(i32_at(UT_TV_SEC)) + f64::from(i32_at(UT_TV_USEC)) / 1e6;
        if let Some(u) = users.iter_mut().find(|u| u.user == name) {
            u.login_time = u.login_time.min(login_time);
        } else if users.len() < MAX_USERS {
            users.push(User { user: name, login_time });
        }
    }
    users
}

/// guest-get-timezone: the abbreviation and offset in effect now, from
/// `TZ` or /etc/localtime (re-read when it changes).
pub fn timezone() -> Result<Response, OpError> {
    use nix::libc;
    let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_REALTIME)
        .map(|t| t.tv_sec())
        .unwrap_or(0);
    // SAFETY: an all-zero `tm` is a valid value (integers and a null pointer).
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: tzset takes no arguments and only updates libc's time zone
    // state; the broker is single-threaded, so nothing reads that state
    // concurrently.
    unsafe { tzset() };
    // SAFETY: both pointers are to live locals of the right types;
    // localtime_r writes only to `tm`.
    let ok = !unsafe { libc::localtime_r(&now, &mut tm) }.is_null();
    if !ok {
        return Err(OpError::CommandFailed {
            message: "Couldn't retrieve local timezone".to_owned(),
        });
    }
    let zone = if tm.tm_zone.is_null() {
        None
    } else {
        // SAFETY: glibc points tm_zone at a NUL-terminated string in its
        // time zone state, valid until the next tzset; it is copied here.
        let name = unsafe { std::ffi::CStr::from_ptr(tm.tm_zone) };
        Some(bounded(&name.to_string_lossy()))
    };
    Ok(Response::Timezone { zone, offset: tm.tm_gmtoff })
}

unsafe extern "C" {
    /// POSIX tzset(3); the libc crate does not declare it.
    fn tzset();
}

/// guest-get-osinfo: uname(2), and /etc/os-release (else
/// /usr/lib/os-release) beneath `root`.
pub fn osinfo(root: &Path) -> OsInfo {
    let mut info = OsInfo::default();
    let uts = nix::sys::utsname::uname();
    if let Ok(u) = &uts {
        info.kernel_version = Some(bounded(&u.version().to_string_lossy()));
        info.kernel_release = Some(bounded(&u.release().to_string_lossy()));
        info.machine = Some(bounded(&u.machine().to_string_lossy()));
    }
    let release = ["etc/os-release", "usr/lib/os-release"]
        .iter()
        .find_map(|p| read_capped(&root.join(p)).ok().and_then(|b| parse_os_release(&b)));
    if let Some(fields) = release {
        let get = |key: &str| {
            fields.iter().rev().find(|(k, _)| k == key).map(|(_, v)| bounded(&unquote(v)))
        };
        info.id = get("ID");
        info.name = get("NAME");
        info.pretty_name = get("PRETTY_NAME");
        info.version = get("VERSION");
        info.version_id = get("VERSION_ID");
        info.variant = get("VARIANT");
        info.variant_id = get("VARIANT_ID");
    }
    info
}

/// os-release as qemu-ga reads it, with GLib's key file parser: UTF-8 only,
/// `#` comments and blank lines skipped, any other line must be `KEY=VALUE`
/// (else the file is not used); whitespace around the key and before the
/// value is dropped.
fn parse_os_release(bytes: &[u8]) -> Option<Vec<(String, String)>> {
    let text = std::str::from_utf8(bytes).ok()?;
    let mut fields = Vec::new();
    for line in text.lines() {
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (k, v) = line.split_once('=')?;
        fields.push((k.trim_end().to_owned(), v.trim_start().to_owned()));
    }
    Some(fields)
}

/// qemu-ga's `ga_osrelease_replace_special`: a value not starting with `"`
/// is cut at its first space or semicolon; a double-quoted one is unquoted,
/// with `\$ \' \" \\ \`` unescaped.
fn unquote(value: &str) -> String {
    let Some(body) = value.strip_prefix('"') else {
        let end = value.find([' ', ';']).unwrap_or(value.len());
        return value[..end].to_owned();
    };
    let mut out = String::new();
    let mut chars = body.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if matches!(chars.peek(), Some('$' | '\'' | '"' | '\\' | '`')) => {
                out.extend(chars.next());
            }
            '"' => break,
            c => out.push(c),
        }
    }
    out
}

/// guest-get-diskstats: every line of /proc/diskstats, in order.
pub fn diskstats(path: &Path) -> Result<Vec<DiskStatsInfo>, OpError> {
    let bytes = read_capped(path).map_err(|e| open_error(path, &e))?;
    Ok(parse_diskstats(&String::from_utf8_lossy(&bytes)))
}

fn parse_diskstats(text: &str) -> Vec<DiskStatsInfo> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut words = line.split_ascii_whitespace();
        let (Some(major), Some(minor), Some(name)) = (
            words.next().and_then(|w| w.parse::<u32>().ok()),
            words.next().and_then(|w| w.parse::<u32>().ok()),
            words.next(),
        ) else {
            continue;
        };
        // As sscanf: the numbers up to the first that does not parse.
        let stats: Vec<u64> = words.map_while(|w| w.parse().ok()).take(17).collect();
        // qemu-ga needs at least 4 (the old partition format).
        if stats.len() < 4 {
            continue;
        }
        out.push(DiskStatsInfo {
            name: bounded(name),
            major: u64::from(major),
            minor: u64::from(minor),
            stats,
        });
        if out.len() == MAX_DISKS {
            break;
        }
    }
    out
}

/// guest-get-cpustats: each `cpuN` line of /proc/stat, in milliseconds.
pub fn cpustats(path: &Path) -> Result<Vec<CpuStats>, OpError> {
    let bytes = read_capped(path).map_err(|e| open_error(path, &e))?;
    // SAFETY: sysconf only reads a system constant.
    let clk_tck = unsafe { nix::libc::sysconf(nix::libc::_SC_CLK_TCK) };
    let clk_tck = u64::try_from(clk_tck).ok().filter(|&t| t > 0).unwrap_or(100);
    Ok(parse_cpustats(&String::from_utf8_lossy(&bytes), clk_tck))
}

fn parse_cpustats(text: &str, clk_tck: u64) -> Vec<CpuStats> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut words = line.split_ascii_whitespace();
        let Some(name) = words.next() else { continue };
        // The total line ("cpu") and everything not a CPU are skipped.
        let Some(id) = name.strip_prefix("cpu").filter(|id| !id.is_empty()) else {
            continue;
        };
        let columns: Vec<u64> = words
            .map_while(|w| w.parse::<u64>().ok())
            .take(10)
            .map(|t| t.wrapping_mul(1000) / clk_tck)
            .collect();
        // qemu-ga stops at the first line with fewer than 4 numbers.
        if columns.len() < 4 {
            break;
        }
        // atoi: the leading digits.
        let digits = id.bytes().take_while(u8::is_ascii_digit).count();
        let cpu = id[..digits].parse().unwrap_or(0);
        out.push(CpuStats { cpu, columns });
        if out.len() == MAX_CPUS {
            break;
        }
    }
    out
}

/// guest-get-load: /proc/loadavg, as getloadavg(3) reads it.
pub fn load(path: &Path) -> Result<Response, OpError> {
    let bytes = read_capped(path).map_err(|e| OpError::LoadAverage { errno: errno(&e) })?;
    let text = String::from_utf8_lossy(&bytes);
    let v: Vec<f64> =
        text.split_ascii_whitespace().take(3).filter_map(|w| w.parse().ok()).collect();
    match v[..] {
        [load1m, load5m, load15m] => Ok(Response::Load { load1m, load5m, load15m }),
        _ => Err(OpError::LoadAverage { errno: nix::libc::EINVAL }),
    }
}

/// guest-network-get-route: /proc/net/route, then /proc/net/ipv6_route,
/// beneath `proc_net`. A missing IPv6 table (IPv6 disabled) lists IPv4
/// routes only, where QEMU 9.1 fails the whole command.
pub fn routes(proc_net: &Path) -> Result<Vec<Route>, OpError> {
    let v4 = proc_net.join("route");
    let bytes = read_capped(&v4).map_err(|e| open_error(&v4, &e))?;
    let mut out = parse_routes_v4(&String::from_utf8_lossy(&bytes));
    let v6 = proc_net.join("ipv6_route");
    match read_capped(&v6) {
        Ok(bytes) => out.extend(parse_routes_v6(&String::from_utf8_lossy(&bytes))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(open_error(&v6, &e)),
    }
    out.truncate(MAX_ROUTES);
    Ok(out)
}

/// A /proc/net/route address: hexadecimal, in the kernel's (little-endian)
/// byte order.
fn ipv4(hex: &str) -> Option<String> {
    let v = u32::from_str_radix(hex, 16).ok()?;
    Some(Ipv4Addr::from(v.swap_bytes()).to_string())
}

fn ipv6(hex: &str) -> Option<String> {
    if hex.len() != 32 {
        return None;
    }
    u128::from_str_radix(hex, 16).ok().map(|v| Ipv6Addr::from(v).to_string())
}

fn parse_routes_v4(text: &str) -> Vec<Route> {
    let mut out = Vec::new();
    // The first line is the header.
    for line in text.lines().skip(1) {
        let w: Vec<&str> = line.split_ascii_whitespace().collect();
        let route = (|| {
            let int = |i: usize| w.get(i)?.parse::<i64>().ok();
            Some(Route::V4 {
                iface: bounded(w.first()?),
                destination: ipv4(w.get(1)?)?,
                gateway: ipv4(w.get(2)?)?,
                flags: u64::from_str_radix(w.get(3)?, 16).ok()?,
                refcnt: int(4)?,
                use_: int(5)?,
                metric: int(6)?,
                mask: ipv4(w.get(7)?)?,
                mtu: int(8)?,
                window: int(9)?,
                irtt: int(10)?,
            })
        })();
        out.extend(route);
        if out.len() >= MAX_ROUTES {
            break;
        }
    }
    out
}

fn parse_routes_v6(text: &str) -> Vec<Route> {
    let mut out = Vec::new();
    for line in text.lines() {
        let w: Vec<&str> = line.split_ascii_whitespace().collect();
        let route = (|| {
            let hex = |i: usize| u64::from_str_radix(w.get(i)?, 16).ok();
            Some(Route::V6 {
                destination: ipv6(w.first()?)?,
                desprefixlen: u32::from_str_radix(w.get(1)?, 16).ok()?,
                source: ipv6(w.get(2)?)?,
                srcprefixlen: u32::from_str_radix(w.get(3)?, 16).ok()?,
                nexthop: ipv6(w.get(4)?)?,
                // %x into an int, as QEMU reads it.
                metric: i64::from(hex(5)? as u32 as i32),
                refcnt: i64::from(hex(6)? as u32 as i32),
                use_: i64::from(hex(7)? as u32 as i32),
                flags: hex(8)?,
                iface: bounded(w.get(9)?),
            })
        })();
        out.extend(route);
        if out.len() >= MAX_ROUTES {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utmp_record(kind: i16, user: &str, sec: i32, usec: i32) -> Vec<u8> {
        let mut r = vec![0u8; UTMP_RECORD];
        r[UT_TYPE..UT_TYPE + 2].copy_from_slice(&kind.to_ne_bytes());
        r[UT_USER..UT_USER + user.len()].copy_from_slice(user.as_bytes());
        r[UT_TV_SEC..UT_TV_SEC + 4].copy_from_slice(&sec.to_ne_bytes());
        r[UT_TV_USEC..UT_TV_USEC + 4].copy_from_slice(&usec.to_ne_bytes());
        r
    }

    #[test]
    fn utmp_keeps_each_users_earliest_login_in_order_of_first_appearance() {
        let mut bytes = Vec::new();
        bytes.extend(utmp_record(2, "reboot", 100, 0)); // BOOT_TIME
        bytes.extend(utmp_record(7, "bob", 1_700_000_300, 250_000));
        bytes.extend(utmp_record(7, "alice", 1_700_000_200, 0));
        bytes.extend(utmp_record(8, "carol", 5, 0)); // DEAD_PROCESS
        bytes.extend(utmp_record(7, "bob", 1_700_000_100, 500_000));
        bytes.extend(utmp_record(7, &"x".repeat(32), 1, 0)); // unterminated
        bytes.extend([0u8; 17]); // a torn record at the end is ignored
        let users = parse_utmp(&bytes);
        let got: Vec<(&str, f64)> = users.iter().map(|u| (u.user.as_str(), u.login_time)).collect();
        assert_eq!(
            got,
            [("bob", 1_700_000_100.5), ("alice", 1_700_000_200.0), (&"x".repeat(32)[..], 1.0)]
        );
    }

    #[test]
    fn a_missing_utmp_is_no_users() {
        assert_eq!(users(Path::new("/nonexistent/utmp")), Ok(Vec::new()));
    }

    #[test]
    fn os_release_as_qemu_ga_reads_it() {
        // Debian 12's file, and the cases qemu-ga's unquoting handles.
        let text = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\n\
            VERSION_ID=\"12\"\nVERSION=\"12 (bookworm)\"\nVERSION_CODENAME=bookworm\nID=debian\n\
            # a comment\n\n  VARIANT = plain value; cut\nVARIANT_ID=\"a \\\"q\\\" \\n\"\n";
        let fields = parse_os_release(text.as_bytes()).expect("parses");
        let get = |k: &str| fields.iter().rev().find(|(f, _)| f == k).map(|(_, v)| unquote(v));
        assert_eq!(get("PRETTY_NAME").as_deref(), Some("Debian GNU/Linux 12 (bookworm)"));
        assert_eq!(get("ID").as_deref(), Some("debian"));
        assert_eq!(get("VARIANT").as_deref(), Some("plain"));
        assert_eq!(get("VARIANT_ID").as_deref(), Some("a \"q\" \\n"));
        assert_eq!(unquote("'single quoted'"), "'single", "qemu-ga's quirk");
        assert_eq!(parse_os_release(b"ID=x\nnot a key\n"), None);
        assert_eq!(parse_os_release(b"ID=\xff\n"), None);
    }

    #[test]
    fn osinfo_falls_back_to_usr_lib_and_omits_absent_fields() {
        let root = std::env::temp_dir().join(format!("qgaw-osinfo-{}", std::process::id()));
        let lib = root.join("usr/lib");
        std::fs::create_dir_all(&lib).expect("mkdir");
        std::fs::write(lib.join("os-release"), "ID=alpine\nNAME=\"Alpine Linux\"\n")
            .expect("write");
        let info = osinfo(&root);
        std::fs::remove_dir_all(&root).expect("cleanup");
        assert_eq!(info.id.as_deref(), Some("alpine"));
        assert_eq!(info.name.as_deref(), Some("Alpine Linux"));
        assert_eq!(info.version, None);
        assert_eq!(info.variant_id, None);
        assert!(info.kernel_release.is_some() && info.machine.is_some());
    }

    #[test]
    fn diskstats_lines_of_every_kernel_format() {
        // 5.5+ (17 numbers), 4.18 (15), old (11), 2.4 partitions (4), junk.
        let text = "   7       0 loop0 572 0 5128 21 1638 122 2398 421 0 412 832 80 80 1120460 5 1536 384\n\
             254       0 vda 10 1 20 3 40 5 60 7 0 9 10 11 12 13 14\n\
               8       0 sda 1 2 3 4 5 6 7 8 9 10 11\n\
               8       1 sda1 1 2 3 4\n\
               8       2 sda2 1 2 3\n\
             garbage\n";
        let got = parse_diskstats(text);
        let lens: Vec<(&str, usize)> =
            got.iter().map(|d| (d.name.as_str(), d.stats.len())).collect();
        assert_eq!(lens, [("loop0", 17), ("vda", 15), ("sda", 11), ("sda1", 4)]);
        assert_eq!((got[0].major, got[0].minor), (7, 0));
        assert_eq!(got[0].stats[16], 384);
    }

    #[test]
    fn cpustats_skip_the_total_and_convert_ticks_to_milliseconds() {
        let text = "cpu  10 20 30 40 50 60 70 80 90 100\n\
                    cpu0 100 200 300 400 500 600 700 800 900 1000\n\
                    cpu1 1 2 3 4\n\
                    intr 5 6 7\n\
                    cpu2 1 2\n\
                    cpu3 1 2 3 4 5\n";
        let got = parse_cpustats(text, 100);
        assert_eq!(got.len(), 2, "stops at the first short cpu line: {got:?}");
        assert_eq!(got[0].cpu, 0);
        assert_eq!(got[0].columns, [1000, 2000, 3000, 4000, 5000, 6000, 7000, 8000, 9000, 10000]);
        assert_eq!(got[1].cpu, 1);
        assert_eq!(got[1].columns, [10, 20, 30, 40]);
    }

    #[test]
    fn load_average() {
        let dir = std::env::temp_dir().join(format!("qgaw-load-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join("loadavg"), "2.59 1.76 1.30 6/122 11996\n").expect("write");
        std::fs::write(dir.join("bad"), "2.59\n").expect("write");
        let good = load(&dir.join("loadavg"));
        let bad = load(&dir.join("bad"));
        let missing = load(&dir.join("missing"));
        std::fs::remove_dir_all(&dir).expect("cleanup");
        assert_eq!(good, Ok(Response::Load { load1m: 2.59, load5m: 1.76, load15m: 1.30 }));
        assert_eq!(bad, Err(OpError::LoadAverage { errno: nix::libc::EINVAL }));
        assert_eq!(missing, Err(OpError::LoadAverage { errno: nix::libc::ENOENT }));
    }

    #[test]
    fn routes_from_captured_tables() {
        let v4 = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                  eth0\t00000000\t010200C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n\
                  eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t1500\t0\t0\n\
                  bad line\n";
        let got = parse_routes_v4(v4);
        assert_eq!(got.len(), 2);
        assert_eq!(
            got[0],
            Route::V4 {
                iface: "eth0".into(),
                destination: "0.0.0.0".into(),
                gateway: "192.0.2.1".into(),
                mask: "0.0.0.0".into(),
                metric: 100,
                flags: 3,
                refcnt: 0,
                use_: 0,
                mtu: 0,
                window: 0,
                irtt: 0,
            }
        );
        let Route::V4 { destination, mask, mtu, .. } = &got[1] else { panic!("v4") };
        assert_eq!(
            (destination.as_str(), mask.as_str(), *mtu),
            ("192.0.2.0", "255.255.255.0", 1500)
        );

        let v6 = "fe800000000000000000000000000000 40 00000000000000000000000000000000 00 \
                  00000000000000000000000000000000 00000100 00000002 00000000 00000001     eth0\n\
                  00000000000000000000000000000000 00 00000000000000000000000000000000 00 \
                  fd000000000000000000000000000001 00000400 00000003 0000000a 00000003     eth0\n";
        let got = parse_routes_v6(v6);
        assert_eq!(
            got[0],
            Route::V6 {
                iface: "eth0".into(),
                destination: "fe80::".into(),
                desprefixlen: 64,
                source: "::".into(),
                srcprefixlen: 0,
                nexthop: "::".into(),
                metric: 256,
                refcnt: 2,
                use_: 0,
                flags: 1,
            }
        );
        let Route::V6 { nexthop, metric, use_, .. } = &got[1] else { panic!("v6") };
        assert_eq!((nexthop.as_str(), *metric, *use_), ("fd00::1", 1024, 10));
    }

    #[test]
    fn routes_without_an_ipv6_table() {
        let dir = std::env::temp_dir().join(format!("qgaw-routes-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join("route"), "Iface\n").expect("write");
        let got = routes(&dir);
        std::fs::remove_dir_all(&dir).expect("cleanup");
        assert_eq!(got, Ok(Vec::new()));
        assert!(matches!(
            routes(Path::new("/nonexistent")),
            Err(OpError::Sysfs { errno: nix::libc::ENOENT, .. })
        ));
    }

    #[test]
    fn timezone_and_host_name_answer() {
        assert!(matches!(timezone(), Ok(Response::Timezone { .. })));
        assert!(host_name().is_ok_and(|h| !h.is_empty()));
    }
}
