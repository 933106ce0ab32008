//! Replies as qemu-ga writes them: one JSON object and a newline; `return`
//! before `id`, `id` before `error`; a 0xFF byte before the reply to
//! `guest-sync-delimited`.

use ipc::{
    AgentInfo, CpuStats, DiskAddress, DiskInfo, DiskStatsInfo, ErrorClass, ExecStatus, FsInfo,
    LogicalProcessor, MemoryBlock, MemoryBlockResponse, NetworkInterface, OsInfo, Response, Route,
    TrimResult, User,
};

use crate::json::{Json, writer};

/// Sent before the reply to `guest-sync-delimited`.
pub const SENTINEL: u8 = 0xFF;

/// Appends the reply to a successful request; nothing for commands that
/// send no reply on success.
pub fn success(out: &mut Vec<u8>, id: Option<&Json>, response: &Response, delimited: bool) {
    if matches!(response, Response::NoReply) {
        return;
    }
    if delimited {
        out.push(SENTINEL);
    }
    let mut obj = writer::Object::new(out);
    value(obj.key("return"), response);
    if let Some(id) = id {
        writer::value(obj.key("id"), id);
    }
    obj.end();
    out.push(b'\n');
}

/// Appends an error reply.
pub fn error(out: &mut Vec<u8>, id: Option<&Json>, class: ErrorClass, desc: &[u8]) {
    let mut obj = writer::Object::new(out);
    if let Some(id) = id {
        writer::value(obj.key("id"), id);
    }
    let mut err = writer::Object::new(obj.key("error"));
    writer::string(err.key("class"), class.name().as_bytes());
    writer::string(err.key("desc"), desc);
    err.end();
    obj.end();
    out.push(b'\n');
}

/// The reply to a `guest-file-read` whose data is still to come, in two
/// parts: everything before the base64 text, and everything after it.
pub fn file_read(id: Option<&Json>, count: u64, eof: bool) -> (Vec<u8>, Vec<u8>) {
    let mut out = Vec::new();
    let mut obj = writer::Object::new(&mut out);
    let mut ret = writer::Object::new(obj.key("return"));
    writer::int(ret.key("count"), i64::try_from(count).unwrap_or(i64::MAX));
    let b64 = ret.key("buf-b64");
    b64.extend_from_slice(b"\"\"");
    let split = b64.len() - 1;
    boolean(ret.key("eof"), eof);
    ret.end();
    if let Some(id) = id {
        writer::value(obj.key("id"), id);
    }
    obj.end();
    out.push(b'\n');
    let rest = out.split_off(split);
    (out, rest)
}

/// Appends the base64 text of `data`, whose length must be a multiple of 3
/// unless it ends the text.
pub fn base64_chunk(out: &mut Vec<u8>, data: &[u8]) {
    use base64::Engine;
    let start = out.len();
    out.resize(start + data.len().div_ceil(3) * 4, 0);
    let written = base64::engine::general_purpose::STANDARD
        .encode_slice(data, &mut out[start..])
        .unwrap_or(0);
    out.truncate(start + written);
}

fn boolean(out: &mut Vec<u8>, b: bool) {
    out.extend_from_slice(if b { b"true" } else { b"false" });
}

/// Appends `data` as a base64 JSON string, encoded straight into `out`.
fn base64_string(out: &mut Vec<u8>, data: &[u8]) {
    out.push(b'"');
    base64_chunk(out, data);
    out.push(b'"');
}

fn value(out: &mut Vec<u8>, response: &Response) {
    // Member order is qemu-ga's throughout.
    match response {
        Response::Empty | Response::NoReply => out.extend_from_slice(b"{}"),
        Response::Int(v) => writer::int(out, *v),
        Response::Info(info) => agent_info(out, info),
        // The server streams the data between the two parts of
        // `file_read`; here there is none to stream.
        Response::FileRead { count: _, eof } => {
            let mut o = writer::Object::new(out);
            writer::int(o.key("count"), 0);
            base64_string(o.key("buf-b64"), &[]);
            boolean(o.key("eof"), *eof);
            o.end();
        }
        Response::FileWrite { count, eof } => {
            let mut o = writer::Object::new(out);
            writer::int(o.key("count"), *count as i64);
            boolean(o.key("eof"), *eof);
            o.end();
        }
        Response::FileSeek { position, eof } => {
            let mut o = writer::Object::new(out);
            boolean(o.key("eof"), *eof);
            writer::int(o.key("position"), *position);
            o.end();
        }
        Response::Exec { pid } => {
            let mut o = writer::Object::new(out);
            writer::int(o.key("pid"), *pid);
            o.end();
        }
        Response::ExecStatus(s) => exec_status(out, s),
        Response::FsfreezeStatus(s) => writer::string(out, s.name().as_bytes()),
        Response::Fstrim(paths) => {
            let mut o = QDict::default();
            list(o.member("paths"), paths, trim_result);
            o.write(out);
        }
        Response::Fsinfo(list_) => list(out, list_, fs_info),
        Response::Vcpus(v) => list(out, v, vcpu),
        Response::MemoryBlocks(v) => list(out, v, memory_block),
        Response::MemoryBlockResponses(v) => list(out, v, memory_block_response),
        Response::MemoryBlockInfo { size } => {
            let mut o = QDict::default();
            uint(o.member("size"), *size);
            o.write(out);
        }
        Response::NetworkInterfaces(v) => list(out, v, network_interface),
        Response::Disks(v) => list(out, v, disk_info),
        Response::HostName(name) => {
            let mut o = QDict::default();
            writer::string(o.member("host-name"), name.as_bytes());
            o.write(out);
        }
        Response::Users(v) => list(out, v, user),
        Response::Timezone { zone, offset } => {
            let mut o = QDict::default();
            if let Some(z) = zone {
                writer::string(o.member("zone"), z.as_bytes());
            }
            writer::int(o.member("offset"), *offset);
            o.write(out);
        }
        Response::Osinfo(info) => os_info(out, info),
        Response::AuthorizedKeys(keys) => {
            let mut o = QDict::default();
            list(o.member("keys"), keys, |out, k| writer::string(out, k.as_bytes()));
            o.write(out);
        }
        Response::Diskstats(v) => list(out, v, disk_stats),
        Response::Cpustats(v) => list(out, v, cpu_stats),
        Response::Load { load1m, load5m, load15m } => {
            let mut o = QDict::default();
            writer::double(o.member("load1m"), *load1m);
            writer::double(o.member("load5m"), *load5m);
            writer::double(o.member("load15m"), *load15m);
            o.write(out);
        }
        Response::Routes(v) => list(out, v, route),
    }
}

/// A `uint64` member (qemu's JSON writes it unsigned).
fn uint(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(v.to_string().as_bytes());
}

fn vcpu(out: &mut Vec<u8>, v: &LogicalProcessor) {
    let mut o = QDict::default();
    writer::int(o.member("logical-id"), v.logical_id);
    boolean(o.member("online"), v.online);
    if let Some(c) = v.can_offline {
        boolean(o.member("can-offline"), c);
    }
    o.write(out);
}

fn memory_block(out: &mut Vec<u8>, b: &MemoryBlock) {
    let mut o = QDict::default();
    uint(o.member("phys-index"), b.phys_index);
    boolean(o.member("online"), b.online);
    if let Some(c) = b.can_offline {
        boolean(o.member("can-offline"), c);
    }
    o.write(out);
}

fn memory_block_response(out: &mut Vec<u8>, r: &MemoryBlockResponse) {
    let mut o = QDict::default();
    uint(o.member("phys-index"), r.phys_index);
    writer::string(o.member("response"), r.response.name().as_bytes());
    if let Some(e) = r.error_code {
        writer::int(o.member("error-code"), e);
    }
    o.write(out);
}

fn network_interface(out: &mut Vec<u8>, i: &NetworkInterface) {
    let mut o = QDict::default();
    writer::string(o.member("name"), i.name.as_bytes());
    if let Some(hw) = &i.hardware_address {
        writer::string(o.member("hardware-address"), hw.as_bytes());
    }
    if let Some(addresses) = &i.ip_addresses {
        list(o.member("ip-addresses"), addresses, |out, a| {
            let mut o = QDict::default();
            writer::string(o.member("ip-address"), a.address.as_bytes());
            let kind: &[u8] = if a.ipv6 { b"ipv6" } else { b"ipv4" };
            writer::string(o.member("ip-address-type"), kind);
            writer::int(o.member("prefix"), a.prefix);
            o.write(out);
        });
    }
    if let Some(s) = &i.statistics {
        let mut st = QDict::default();
        for (k, v) in [
            ("rx-bytes", s.rx_bytes),
            ("rx-packets", s.rx_packets),
            ("rx-errs", s.rx_errs),
            ("rx-dropped", s.rx_dropped),
            ("tx-bytes", s.tx_bytes),
            ("tx-packets", s.tx_packets),
            ("tx-errs", s.tx_errs),
            ("tx-dropped", s.tx_dropped),
        ] {
            uint(st.member(k), v);
        }
        st.write(o.member("statistics"));
    }
    o.write(out);
}

/// An object whose members come out in the order qemu-ga's QDict (a hash
/// table of 512 buckets, newest first within a bucket) iterates them.
/// Members are added in the schema's order.
#[derive(Default)]
struct QDict {
    members: Vec<(&'static str, Vec<u8>)>,
}

impl QDict {
    fn member(&mut self, key: &'static str) -> &mut Vec<u8> {
        self.members.push((key, Vec::new()));
        let last = self.members.len() - 1;
        &mut self.members[last].1
    }

    fn write(self, out: &mut Vec<u8>) {
        let mut members: Vec<(usize, (&str, Vec<u8>))> =
            self.members.into_iter().enumerate().collect();
        members.sort_by_key(|(i, (k, _))| (qdict_bucket(k), std::cmp::Reverse(*i)));
        let mut o = writer::Object::new(out);
        for (_, (k, v)) in members {
            o.key(k).extend_from_slice(&v);
        }
        o.end();
    }
}

/// qemu's `tdb_hash` of a key, modulo its QDict's 512 buckets.
fn qdict_bucket(key: &str) -> u32 {
    let mut v = 0x238F_13AFu32.wrapping_mul(key.len() as u32);
    for (i, &c) in key.as_bytes().iter().enumerate() {
        v = v.wrapping_add(u32::from(c) << (i * 5 % 24));
    }
    1_103_515_243u32.wrapping_mul(v).wrapping_add(12345) % 512
}

fn list<T>(out: &mut Vec<u8>, items: &[T], each: fn(&mut Vec<u8>, &T)) {
    out.push(b'[');
    for (n, item) in items.iter().enumerate() {
        if n > 0 {
            out.extend_from_slice(b", ");
        }
        each(out, item);
    }
    out.push(b']');
}

fn trim_result(out: &mut Vec<u8>, r: &TrimResult) {
    let mut o = QDict::default();
    writer::string(o.member("path"), r.path.as_bytes());
    if let Some(t) = r.trimmed {
        writer::int(o.member("trimmed"), t);
    }
    if let Some(m) = r.minimum {
        writer::int(o.member("minimum"), m);
    }
    if let Some(e) = &r.error {
        writer::string(o.member("error"), e.as_bytes());
    }
    o.write(out);
}

fn fs_info(out: &mut Vec<u8>, f: &FsInfo) {
    let mut o = QDict::default();
    writer::string(o.member("name"), f.name.as_bytes());
    writer::string(o.member("mountpoint"), f.mountpoint.as_bytes());
    writer::string(o.member("type"), f.fstype.as_bytes());
    if let Some(u) = f.used_bytes {
        writer::int(o.member("used-bytes"), i64::try_from(u).unwrap_or(i64::MAX));
    }
    if let Some(t) = f.total_bytes {
        writer::int(o.member("total-bytes"), i64::try_from(t).unwrap_or(i64::MAX));
    }
    list(o.member("disk"), &f.disks, disk_address);
    if let Some(t) = f.total_bytes_privileged {
        uint(o.member("total-bytes-privileged"), t);
    }
    o.write(out);
}

fn user(out: &mut Vec<u8>, u: &User) {
    let mut o = QDict::default();
    writer::string(o.member("user"), u.user.as_bytes());
    writer::double(o.member("login-time"), u.login_time);
    o.write(out);
}

fn os_info(out: &mut Vec<u8>, i: &OsInfo) {
    let mut o = QDict::default();
    for (key, value) in [
        ("kernel-release", &i.kernel_release),
        ("kernel-version", &i.kernel_version),
        ("machine", &i.machine),
        ("id", &i.id),
        ("name", &i.name),
        ("pretty-name", &i.pretty_name),
        ("version", &i.version),
        ("version-id", &i.version_id),
        ("variant", &i.variant),
        ("variant-id", &i.variant_id),
    ] {
        if let Some(v) = value {
            writer::string(o.member(key), v.as_bytes());
        }
    }
    o.write(out);
}

fn disk_info(out: &mut Vec<u8>, d: &DiskInfo) {
    let mut o = QDict::default();
    writer::string(o.member("name"), d.name.as_bytes());
    boolean(o.member("partition"), d.partition);
    if let Some(deps) = &d.dependencies {
        list(o.member("dependencies"), deps, |out, s| writer::string(out, s.as_bytes()));
    }
    if let Some(a) = &d.address {
        disk_address(o.member("address"), a);
    }
    if let Some(a) = &d.alias {
        writer::string(o.member("alias"), a.as_bytes());
    }
    if let Some(s) = &d.smart {
        let mut m = QDict::default();
        writer::string(m.member("type"), b"nvme");
        writer::int(m.member("critical-warning"), s.critical_warning);
        writer::int(m.member("temperature"), s.temperature);
        writer::int(m.member("available-spare"), s.available_spare);
        writer::int(m.member("available-spare-threshold"), s.available_spare_threshold);
        writer::int(m.member("percentage-used"), s.percentage_used);
        const COUNTERS: [(&str, &str); 10] = [
            ("data-units-read-lo", "data-units-read-hi"),
            ("data-units-written-lo", "data-units-written-hi"),
            ("host-read-commands-lo", "host-read-commands-hi"),
            ("host-write-commands-lo", "host-write-commands-hi"),
            ("controller-busy-time-lo", "controller-busy-time-hi"),
            ("power-cycles-lo", "power-cycles-hi"),
            ("power-on-hours-lo", "power-on-hours-hi"),
            ("unsafe-shutdowns-lo", "unsafe-shutdowns-hi"),
            ("media-errors-lo", "media-errors-hi"),
            ("number-of-error-log-entries-lo", "number-of-error-log-entries-hi"),
        ];
        for ((lo_key, hi_key), (lo, hi)) in COUNTERS.iter().zip(s.counters) {
            uint(m.member(lo_key), lo);
            uint(m.member(hi_key), hi);
        }
        m.write(o.member("smart"));
    }
    o.write(out);
}

/// `/proc/diskstats` columns as qemu-ga names them: which it reports
/// depends on how many the kernel wrote.
fn disk_stats(out: &mut Vec<u8>, d: &DiskStatsInfo) {
    let mut o = QDict::default();
    writer::string(o.member("name"), d.name.as_bytes());
    uint(o.member("major"), d.major);
    uint(o.member("minor"), d.minor);
    let c = &d.stats;
    // (schema name, column), in the schema's order.
    let mut present: Vec<(&'static str, u64)> = Vec::new();
    if c.len() == 4 {
        // The 2.4 partition format: ios and sectors only.
        present = vec![
            ("read-sectors", c[1]),
            ("read-ios", c[0]),
            ("write-sectors", c[3]),
            ("write-ios", c[2]),
        ];
    } else if c.len() >= 11 {
        present.extend([
            ("read-sectors", c[2]),
            ("read-ios", c[0]),
            ("read-merges", c[1]),
            ("write-sectors", c[6]),
            ("write-ios", c[4]),
            ("write-merges", c[5]),
        ]);
        if c.len() >= 15 {
            present.extend([
                ("discard-sectors", c[13]),
                ("discard-ios", c[11]),
                ("discard-merges", c[12]),
            ]);
        }
        if c.len() >= 17 {
            present.push(("flush-ios", c[15]));
        }
        present.extend([("read-ticks", c[3]), ("write-ticks", c[7])]);
        if c.len() >= 15 {
            present.push(("discard-ticks", c[14]));
        }
        if c.len() >= 17 {
            present.push(("flush-ticks", c[16]));
        }
        // qemu-ga reads these three as 32-bit unsigned numbers.
        present.extend([
            ("ios-pgr", c[8] as u32 as u64),
            ("total-ticks", c[9] as u32 as u64),
            ("weight-ticks", c[10] as u32 as u64),
        ]);
    }
    let mut stats = QDict::default();
    for (k, v) in present {
        uint(stats.member(k), v);
    }
    stats.write(o.member("stats"));
    o.write(out);
}

fn cpu_stats(out: &mut Vec<u8>, s: &CpuStats) {
    let mut o = QDict::default();
    writer::string(o.member("type"), b"linux");
    writer::int(o.member("cpu"), s.cpu);
    let c = &s.columns;
    let col = |i: usize| c.get(i).copied().unwrap_or(0);
    for (i, k) in ["user", "nice", "system", "idle"].into_iter().enumerate() {
        uint(o.member(k), col(i));
    }
    if c.len() > 4 {
        uint(o.member("iowait"), col(4));
    }
    if c.len() > 5 {
        // qemu-ga reports softirq with irq, 0 when the kernel left it out.
        uint(o.member("irq"), col(5));
        uint(o.member("softirq"), col(6));
    }
    if c.len() > 7 {
        uint(o.member("steal"), col(7));
    }
    if c.len() > 8 {
        uint(o.member("guest"), col(8));
    }
    if c.len() > 9 {
        uint(o.member("guestnice"), col(9));
    }
    o.write(out);
}

fn route(out: &mut Vec<u8>, r: &Route) {
    let mut o = QDict::default();
    match r {
        Route::V4 {
            iface,
            destination,
            gateway,
            mask,
            metric,
            flags,
            refcnt,
            use_,
            mtu,
            window,
            irtt,
        } => {
            writer::string(o.member("iface"), iface.as_bytes());
            writer::string(o.member("destination"), destination.as_bytes());
            writer::int(o.member("metric"), *metric);
            writer::string(o.member("gateway"), gateway.as_bytes());
            writer::string(o.member("mask"), mask.as_bytes());
            writer::int(o.member("irtt"), *irtt);
            uint(o.member("flags"), *flags);
            writer::int(o.member("refcnt"), *refcnt);
            writer::int(o.member("use"), *use_);
            writer::int(o.member("window"), *window);
            writer::int(o.member("mtu"), *mtu);
            writer::int(o.member("version"), 4);
        }
        Route::V6 {
            iface,
            destination,
            desprefixlen,
            source,
            srcprefixlen,
            nexthop,
            metric,
            flags,
            refcnt,
            use_,
        } => {
            writer::string(o.member("iface"), iface.as_bytes());
            writer::string(o.member("destination"), destination.as_bytes());
            writer::int(o.member("metric"), *metric);
            uint(o.member("flags"), *flags);
            writer::int(o.member("refcnt"), *refcnt);
            writer::int(o.member("use"), *use_);
            writer::string(o.member("desprefixlen"), desprefixlen.to_string().as_bytes());
            writer::string(o.member("source"), source.as_bytes());
            writer::string(o.member("srcprefixlen"), srcprefixlen.to_string().as_bytes());
            writer::string(o.member("nexthop"), nexthop.as_bytes());
            writer::int(o.member("version"), 6);
        }
    }
    o.write(out);
}

fn disk_address(out: &mut Vec<u8>, d: &DiskAddress) {
    let mut o = QDict::default();
    let mut pci = QDict::default();
    writer::int(pci.member("domain"), d.pci_controller.domain);
    writer::int(pci.member("bus"), d.pci_controller.bus);
    writer::int(pci.member("slot"), d.pci_controller.slot);
    writer::int(pci.member("function"), d.pci_controller.function);
    pci.write(o.member("pci-controller"));
    writer::string(o.member("bus-type"), d.bus_type.name().as_bytes());
    writer::int(o.member("bus"), d.bus);
    writer::int(o.member("target"), d.target);
    writer::int(o.member("unit"), d.unit);
    if let Some(s) = &d.serial {
        writer::string(o.member("serial"), s.as_bytes());
    }
    if let Some(dev) = &d.dev {
        writer::string(o.member("dev"), dev.as_bytes());
    }
    o.write(out);
}

fn exec_status(out: &mut Vec<u8>, s: &ExecStatus) {
    let mut o = writer::Object::new(out);
    // qemu-ga's order is that of its hash table's buckets.
    if let Some(code) = s.exitcode {
        writer::int(o.key("exitcode"), i64::from(code));
    }
    if let Some(d) = &s.err_data {
        base64_string(o.key("err-data"), &d.0);
    }
    if let Some(d) = &s.out_data {
        base64_string(o.key("out-data"), &d.0);
    }
    if let Some(t) = s.err_truncated {
        boolean(o.key("err-truncated"), t);
    }
    if let Some(signal) = s.signal {
        writer::int(o.key("signal"), i64::from(signal));
    }
    if let Some(t) = s.out_truncated {
        boolean(o.key("out-truncated"), t);
    }
    boolean(o.key("exited"), s.exited);
    o.end();
}

fn agent_info(out: &mut Vec<u8>, info: &AgentInfo) {
    let mut obj = writer::Object::new(out);
    writer::string(obj.key("version"), info.version.as_bytes());
    let list = obj.key("supported_commands");
    list.push(b'[');
    // qemu-ga lists commands in reverse registration order.
    for (n, (command, enabled)) in info.commands.iter().rev().enumerate() {
        if n > 0 {
            list.extend_from_slice(b", ");
        }
        let mut c = writer::Object::new(list);
        c.key("enabled").extend_from_slice(if *enabled { b"true" } else { b"false" });
        writer::string(c.key("name"), command.name().as_bytes());
        c.key("success-response").extend_from_slice(if command.success_response() {
            b"true"
        } else {
            b"false"
        });
        c.end();
    }
    list.push(b']');
    obj.end();
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipc::Command;

    #[test]
    fn a_streamed_read_is_the_reply_qemu_ga_writes() {
        let (mut out, tail) = file_read(Some(&Json::Int(7)), 5, true);
        base64_chunk(&mut out, b"hel");
        base64_chunk(&mut out, b"lo");
        out.extend_from_slice(&tail);
        assert_eq!(
            out,
            b"{\"return\": {\"count\": 5, \"buf-b64\": \"aGVsbG8=\", \"eof\": true}, \"id\": 7}\n"
        );
        let (mut out, tail) = file_read(None, 0, false);
        out.extend_from_slice(&tail);
        let mut whole = Vec::new();
        success(&mut whole, None, &Response::FileRead { count: 0, eof: false }, false);
        assert_eq!(out, whole);
        assert_eq!(out, b"{\"return\": {\"count\": 0, \"buf-b64\": \"\", \"eof\": false}}\n");
    }

    #[test]
    fn hotplug_and_network_in_qemu_gas_member_order() {
        // As Debian's qemu-ga 7.2 printed them on this machine.
        let mut out = Vec::new();
        let vcpus = Response::Vcpus(vec![LogicalProcessor {
            logical_id: 1,
            online: true,
            can_offline: Some(true),
        }]);
        success(&mut out, None, &vcpus, false);
        assert_eq!(
            String::from_utf8_lossy(&out),
            "{\"return\": [{\"online\": true, \"can-offline\": true, \"logical-id\": 1}]}\n"
        );
        out.clear();
        let blocks = Response::MemoryBlocks(vec![MemoryBlock {
            phys_index: 188,
            online: true,
            can_offline: Some(true),
        }]);
        success(&mut out, None, &blocks, false);
        assert_eq!(
            String::from_utf8_lossy(&out),
            "{\"return\": [{\"online\": true, \"can-offline\": true, \"phys-index\": 188}]}\n"
        );
        out.clear();
        let net = Response::NetworkInterfaces(vec![NetworkInterface {
            name: "lo".into(),
            hardware_address: Some("00:00:00:00:00:00".into()),
            ip_addresses: Some(vec![ipc::IpAddress {
                address: "127.0.0.1".into(),
                ipv6: false,
                prefix: 8,
            }]),
            statistics: Some(ipc::InterfaceStats {
                rx_bytes: 3193,
                rx_packets: 29,
                rx_errs: 0,
                rx_dropped: 0,
                tx_bytes: 3193,
                tx_packets: 29,
                tx_errs: 0,
                tx_dropped: 0,
            }),
        }]);
        success(&mut out, None, &net, false);
        assert_eq!(
            String::from_utf8_lossy(&out),
            "{\"return\": [{\"name\": \"lo\", \"ip-addresses\": [{\"ip-address-type\": \"ipv4\", \"ip-address\": \"127.0.0.1\", \"prefix\": 8}], \"statistics\": {\"tx-packets\": 29, \"tx-errs\": 0, \"rx-bytes\": 3193, \"rx-dropped\": 0, \"rx-packets\": 29, \"rx-errs\": 0, \"tx-bytes\": 3193, \"tx-dropped\": 0}, \"hardware-address\": \"00:00:00:00:00:00\"}]}\n"
        );
    }

    #[test]
    fn fsinfo_and_fstrim_in_qemu_gas_member_order() {
        // As Debian's qemu-ga 7.2 printed them on this machine.
        let info = Response::Fsinfo(vec![FsInfo {
            name: "vda".into(),
            mountpoint: "/".into(),
            fstype: "ext4".into(),
            used_bytes: Some(20230684672),
            total_bytes: Some(97572749312),
            total_bytes_privileged: None,
            disks: vec![DiskAddress {
                pci_controller: ipc::PciAddress { domain: 0, bus: 0, slot: 2, function: 0 },
                bus_type: ipc::DiskBusType::Virtio,
                bus: 0,
                target: 0,
                unit: 0,
                serial: None,
                dev: Some("/dev/vda".into()),
            }],
        }]);
        let mut out = Vec::new();
        success(&mut out, None, &info, false);
        assert_eq!(
            String::from_utf8_lossy(&out),
            "{\"return\": [{\"name\": \"vda\", \"total-bytes\": 97572749312, \"mountpoint\": \"/\", \"disk\": [{\"bus-type\": \"virtio\", \"bus\": 0, \"unit\": 0, \"pci-controller\": {\"bus\": 0, \"slot\": 2, \"domain\": 0, \"function\": 0}, \"dev\": \"/dev/vda\", \"target\": 0}], \"used-bytes\": 20230684672, \"type\": \"ext4\"}]}\n"
        );
        let trim = Response::Fstrim(vec![
            TrimResult { path: "/a".into(), trimmed: Some(4096), minimum: Some(0), error: None },
            TrimResult {
                path: "/b".into(),
                trimmed: None,
                minimum: None,
                error: Some("trim not supported".into()),
            },
        ]);
        out.clear();
        success(&mut out, None, &trim, false);
        assert_eq!(
            String::from_utf8_lossy(&out),
            "{\"return\": {\"paths\": [{\"minimum\": 0, \"path\": \"/a\", \"trimmed\": 4096}, {\"path\": \"/b\", \"error\": \"trim not supported\"}]}}\n"
        );
        out.clear();
        success(&mut out, None, &Response::FsfreezeStatus(ipc::FreezeStatus::Frozen), false);
        assert_eq!(out, b"{\"return\": \"frozen\"}\n");
    }

    #[test]
    fn shapes_match_qemu_ga() {
        let mut out = Vec::new();
        success(&mut out, None, &Response::Empty, false);
        assert_eq!(out, b"{\"return\": {}}\n");
        out.clear();
        success(&mut out, Some(&Json::Str("abc".into())), &Response::Empty, false);
        assert_eq!(out, b"{\"return\": {}, \"id\": \"abc\"}\n");
        out.clear();
        success(&mut out, None, &Response::Int(125), true);
        assert_eq!(out, b"\xff{\"return\": 125}\n");
        out.clear();
        error(
            &mut out,
            Some(&Json::Int(1)),
            ErrorClass::CommandNotFound,
            b"The command nope has not been found",
        );
        assert_eq!(
            out,
            b"{\"id\": 1, \"error\": {\"class\": \"CommandNotFound\", \"desc\": \"The command nope has not been found\"}}\n"
        );
        out.clear();
        success(&mut out, None, &Response::NoReply, false);
        assert!(out.is_empty());
    }

    #[test]
    fn info_lists_commands_in_reverse() {
        let info = AgentInfo {
            version: "1.2.3".into(),
            commands: vec![(Command::Ping, true), (Command::Shutdown, false)],
        };
        let mut out = Vec::new();
        success(&mut out, None, &Response::Info(info), false);
        assert_eq!(
            String::from_utf8(out).expect("utf8"),
            "{\"return\": {\"version\": \"1.2.3\", \"supported_commands\": [\
             {\"enabled\": false, \"name\": \"guest-shutdown\", \"success-response\": false}, \
             {\"enabled\": true, \"name\": \"guest-ping\", \"success-response\": true}]}}\n"
        );
    }
}
