//! `cargo run --release -p qga-warden-bench`: starts qga-warden (release
//! build) and Debian's qemu-ga on unix sockets in the same run, measures both
//! the same way with a Rust client, and prints a table with their ratio
//! (also written as JSON).
//!
//! Options: `--quick` (fewer rounds, 5 idle seconds, a 64 MiB file),
//! `--idle SECONDS`, `--json PATH` (default `bench-results.json`),
//! `--only NAME[,NAME]` (idle, start, ping, pipeline, read, write, exec, memory).
//!
//! qga-warden runs with the permissive example policy (qemu-ga allows
//! everything) and `--frontend-user nobody`, an account in /etc/passwd as
//! the packaged `qga-warden` account is.

#![forbid(unsafe_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;

const QEMU_GA: &str = "/usr/sbin/qemu-ga";
const MIB: usize = 1024 * 1024;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Ours,
    Theirs,
}

struct Agent {
    child: Child,
    socket: PathBuf,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn wait_for(path: &Path) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !path.exists() {
        if Instant::now() > deadline {
            return Err(format!("{} did not appear", path.display()));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(())
}

/// Our two binaries as they are shipped (see README "Packages"): the
/// broker as cargo builds it, and the frontend linked statically
/// (`crt-static`, built for the host triple so that the flag does not reach
/// build scripts and proc macros). Returns the paths of both.
fn build_ours() -> Result<(PathBuf, PathBuf), String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let run = |cmd: &mut Command, what: &str| -> Result<(), String> {
        let status = cmd.current_dir(workspace()).status().map_err(|e| format!("{what}: {e}"))?;
        if status.success() { Ok(()) } else { Err(format!("{what} failed")) }
    };
    run(
        Command::new(&cargo).args(["build", "--release", "--quiet", "-p", "qga-warden"]),
        "building qga-warden",
    )?;
    let rustc = Command::new("rustc").arg("-vV").output().map_err(|e| format!("rustc: {e}"))?;
    let host = String::from_utf8_lossy(&rustc.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_owned))
        .ok_or("rustc -vV names no host")?;
    run(
        Command::new(&cargo)
            .args(["build", "--release", "--quiet", "-p", "qga-warden-frontend", "--target", &host])
            .env("RUSTFLAGS", "-C target-feature=+crt-static"),
        "building the static frontend",
    )?;
    let root = workspace().join("target");
    Ok((root.join("release/qga-warden"), root.join(&host).join("release/qga-warden-frontend")))
}

fn command(kind: Kind, dir: &Path, bin: &(PathBuf, PathBuf)) -> (Command, PathBuf) {
    match kind {
        Kind::Ours => {
            let socket = dir.join("warden.sock");
            let mut c = Command::new(&bin.0);
            c.arg("--frontend").arg(&bin.1);
            c.args(["-m", "unix-listen", "-p"])
                .arg(&socket)
                .args(["--frontend-user", "nobody", "--policy"])
                .arg(workspace().join("examples/policy-permissive.toml"))
                .arg("-t")
                .arg(dir);
            (c, socket)
        }
        Kind::Theirs => {
            let socket = dir.join("qemu-ga.sock");
            let mut c = Command::new(QEMU_GA);
            c.args(["-m", "unix-listen", "-p"])
                .arg(&socket)
                .arg("-t")
                .arg(dir)
                .arg("-f")
                .arg(dir.join("qemu-ga.pid"));
            (c, socket)
        }
    }
}

fn start(kind: Kind, dir: &Path, bin: &(PathBuf, PathBuf)) -> Result<Agent, String> {
    let (mut cmd, socket) = command(kind, dir, bin);
    let _ = std::fs::remove_file(&socket);
    let child = cmd
        .env("QGA_CONF", dir.join("none.conf"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("start: {e}"))?;
    wait_for(&socket)?;
    let agent = Agent { child, socket };
    // Ready when it answers (our socket appears before the frontend runs;
    // qemu-ga's between bind and listen, when a connection is refused).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match Conn::open(&agent.socket) {
            Ok(mut c) => {
                c.round_trip(br#"{"execute":"guest-ping"}"#)?;
                return Ok(agent);
            }
            Err(e) if Instant::now() > deadline => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

/// The agent's processes: the one started and its children.
fn pids(agent: &Agent) -> Vec<u32> {
    let root = agent.child.id();
    let mut out = vec![root];
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            let ppid = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| s.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse::<u32>().ok());
            if ppid == Some(root) {
                out.push(pid);
            }
        }
    }
    out
}

fn status_kib(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// (cpu ticks, context switches, resident KiB) summed over the processes.
fn usage(pids: &[u32]) -> (u64, u64, u64) {
    let mut total = (0, 0, 0);
    for &pid in pids {
        if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            let f: Vec<&str> = stat
                .rsplit_once(')')
                .map(|(_, r)| r.split_whitespace().collect())
                .unwrap_or_default();
            total.0 += f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
                + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        }
        total.1 += status_kib(pid, "voluntary_ctxt_switches")
            + status_kib(pid, "nonvoluntary_ctxt_switches");
        total.2 += status_kib(pid, "VmRSS");
    }
    total
}

struct Conn {
    w: UnixStream,
    r: BufReader<UnixStream>,
    line: Vec<u8>,
}

impl Conn {
    fn open(path: &Path) -> Result<Conn, String> {
        let w = UnixStream::connect(path).map_err(|e| e.to_string())?;
        w.set_read_timeout(Some(Duration::from_secs(60))).map_err(|e| e.to_string())?;
        let r = BufReader::with_capacity(4 * MIB, w.try_clone().map_err(|e| e.to_string())?);
        Ok(Conn { w, r, line: Vec::new() })
    }

    fn send(&mut self, req: &[u8]) -> Result<(), String> {
        self.w.write_all(req).map_err(|e| e.to_string())
    }

    fn recv(&mut self) -> Result<&[u8], String> {
        self.line.clear();
        self.r.read_until(b'\n', &mut self.line).map_err(|e| e.to_string())?;
        if self.line.is_empty() {
            return Err("connection closed".into());
        }
        Ok(&self.line)
    }

    fn round_trip(&mut self, req: &[u8]) -> Result<&[u8], String> {
        self.send(req)?;
        self.recv()
    }

    fn call(&mut self, req: &str) -> Result<String, String> {
        self.round_trip(req.as_bytes()).map(|l| String::from_utf8_lossy(l).into_owned())
    }
}

/// The value of `"key": ` in a flat reply, as text.
fn field<'a>(reply: &'a str, key: &str) -> Option<&'a str> {
    let at = reply.find(&format!("\"{key}\": "))? + key.len() + 4;
    let rest = &reply[at..];
    let end = rest.find([',', '}']).unwrap_or(rest.len());
    Some(rest[..end].trim_matches('"'))
}

/// Median and 99th percentile of sequential round trips, in microseconds.
fn latency(agent: &Agent, req: &[u8], n: usize) -> Result<(f64, f64), String> {
    let mut c = Conn::open(&agent.socket)?;
    for _ in 0..100 {
        c.round_trip(req)?;
    }
    let mut t = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        c.round_trip(req)?;
        t.push(start.elapsed().as_secs_f64() * 1e6);
    }
    t.sort_by(f64::total_cmp);
    Ok((t[n / 2], t[n * 99 / 100]))
}

/// Requests per second with `n` pings sent in one write.
fn pipelined(agent: &Agent, n: usize) -> Result<f64, String> {
    let mut c = Conn::open(&agent.socket)?;
    let batch: Vec<u8> = br#"{"execute":"guest-ping"}"#.repeat(n);
    let start = Instant::now();
    let w = c.w.try_clone().map_err(|e| e.to_string())?;
    let writer = std::thread::spawn(move || {
        let mut w = w;
        w.write_all(&batch)
    });
    for _ in 0..n {
        c.recv()?;
    }
    writer.join().map_err(|_| "writer panicked".to_string())?.map_err(|e| e.to_string())?;
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

/// Receives one `guest-file-read` reply, decoding its base64 as it arrives
/// (as a streaming host would), into `decoded`. Returns whether it said eof.
fn recv_read(c: &mut Conn, decoded: &mut Vec<u8>) -> Result<bool, String> {
    use base64::Engine;
    const KEY: &[u8] = b"\"buf-b64\": \"";
    decoded.clear();
    // Up to the start of the base64 text.
    c.line.clear();
    loop {
        let buf = c.r.fill_buf().map_err(|e| e.to_string())?;
        if buf.is_empty() {
            return Err("connection closed".into());
        }
        let n = buf.len();
        c.line.extend_from_slice(buf);
        c.r.consume(n);
        if let Some(at) = c.line.windows(KEY.len()).position(|w| w == KEY) {
            c.line.drain(..at + KEY.len());
            break;
        }
        if c.line.contains(&b'\n') {
            return Err(format!("read: {}", String::from_utf8_lossy(&c.line)));
        }
    }
    // The text, in whole groups of four as they arrive; `pending` holds what
    // has arrived and is not decoded yet.
    let mut pending = std::mem::take(&mut c.line);
    let end = loop {
        if let Some(q) = pending.iter().position(|&b| b == b'"') {
            break q;
        }
        let whole = pending.len() - pending.len() % 4;
        let start = decoded.len();
        decoded.resize(start + whole / 4 * 3, 0);
        let n = base64::engine::general_purpose::STANDARD
            .decode_slice(&pending[..whole], &mut decoded[start..])
            .map_err(|e| e.to_string())?;
        decoded.truncate(start + n);
        pending.drain(..whole);
        let buf = c.r.fill_buf().map_err(|e| e.to_string())?;
        if buf.is_empty() {
            return Err("connection closed".into());
        }
        let n = buf.len();
        pending.extend_from_slice(buf);
        c.r.consume(n);
    };
    let start = decoded.len();
    decoded.resize(start + end.div_ceil(4) * 3, 0);
    let n = base64::engine::general_purpose::STANDARD
        .decode_slice(&pending[..end], &mut decoded[start..])
        .map_err(|e| e.to_string())?;
    decoded.truncate(start + n);
    // The rest of the reply.
    let mut rest = pending.split_off(end);
    if !rest.contains(&b'\n') {
        c.r.read_until(b'\n', &mut rest).map_err(|e| e.to_string())?;
    }
    c.line = pending;
    let eof = rest.windows(11).any(|w| w == b"\"eof\": true");
    Ok(eof)
}

/// MB/s reading `file` in requests of `chunk` bytes; the client decodes the
/// base64 as it arrives.
fn read_throughput(agent: &Agent, file: &Path, chunk: usize) -> Result<f64, String> {
    let mut c = Conn::open(&agent.socket)?;
    let open = c.call(&format!(
        r#"{{"execute":"guest-file-open","arguments":{{"path":"{}"}}}}"#,
        file.display()
    ))?;
    let handle = field(&open, "return").ok_or(format!("open: {open}"))?.to_owned();
    let req = format!(
        r#"{{"execute":"guest-file-read","arguments":{{"handle":{handle},"count":{chunk}}}}}"#
    );
    let mut total = 0usize;
    let mut decoded = Vec::with_capacity(chunk);
    let start = Instant::now();
    loop {
        c.send(req.as_bytes())?;
        let eof = recv_read(&mut c, &mut decoded)?;
        total += decoded.len();
        if eof || decoded.is_empty() {
            break;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    c.call(&format!(r#"{{"execute":"guest-file-close","arguments":{{"handle":{handle}}}}}"#))?;
    let size = std::fs::metadata(file).map_err(|e| e.to_string())?.len();
    if total as u64 != size {
        return Err(format!("read {total} bytes of a {size}-byte file"));
    }
    Ok(total as f64 / secs / 1e6)
}

/// MB/s writing `total` bytes in requests of `chunk` bytes.
fn write_throughput(agent: &Agent, file: &Path, chunk: usize, total: usize) -> Result<f64, String> {
    let mut c = Conn::open(&agent.socket)?;
    let open = c.call(&format!(
        r#"{{"execute":"guest-file-open","arguments":{{"path":"{}","mode":"w"}}}}"#,
        file.display()
    ))?;
    let handle = field(&open, "return").ok_or(format!("open: {open}"))?.to_owned();
    let data: Vec<u8> = (0..chunk).map(|i| (i * 7 + 13) as u8).collect();
    let b64 = base64::engine::general_purpose::STANDARD.encode(&data);
    let req = format!(
        r#"{{"execute":"guest-file-write","arguments":{{"handle":{handle},"buf-b64":"{b64}"}}}}"#
    );
    let start = Instant::now();
    let mut written = 0;
    while written < total {
        let reply = c.round_trip(req.as_bytes())?;
        if !reply.starts_with(b"{\"return\"") {
            return Err(format!("write: {}", String::from_utf8_lossy(reply)));
        }
        written += chunk;
    }
    let secs = start.elapsed().as_secs_f64();
    c.call(&format!(r#"{{"execute":"guest-file-close","arguments":{{"handle":{handle}}}}}"#))?;
    let _ = std::fs::remove_file(file);
    Ok(written as f64 / secs / 1e6)
}

/// A loop-mounted ext4 image the benchmark makes (root only), unmounted and
/// detached when dropped.
struct Scratch {
    mountpoint: PathBuf,
    device: String,
}

impl Scratch {
    fn new(dir: &Path) -> Result<Scratch, String> {
        let run = |program: &str, args: &[&str]| -> Result<String, String> {
            let out =
                Command::new(program).args(args).output().map_err(|e| format!("{program}: {e}"))?;
            if !out.status.success() {
                return Err(format!("{program}: {}", String::from_utf8_lossy(&out.stderr).trim()));
            }
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        };
        let image = dir.join("freeze.img");
        let mountpoint = dir.join("freeze-mnt");
        std::fs::create_dir_all(&mountpoint).map_err(|e| e.to_string())?;
        let f = std::fs::File::create(&image).map_err(|e| e.to_string())?;
        f.set_len(64 << 20).map_err(|e| e.to_string())?;
        let image_s = image.to_str().ok_or("path")?;
        run("mkfs.ext4", &["-q", "-F", image_s])?;
        let device = run("losetup", &["--find", "--show", image_s])?;
        let scratch = Scratch { mountpoint, device };
        run("mount", &[&scratch.device, scratch.mountpoint.to_str().ok_or("path")?])?;
        Ok(scratch)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let mp = self.mountpoint.to_string_lossy().into_owned();
        let _ = Command::new("fsfreeze").args(["--unfreeze", &mp]).output();
        let _ = Command::new("umount").arg(&mp).output();
        let _ = Command::new("losetup").args(["--detach", &self.device]).output();
    }
}

/// Median milliseconds of guest-fsfreeze-freeze-list of `mountpoint` then
/// guest-fsfreeze-thaw.
fn freeze_round_trip(agent: &Agent, mountpoint: &Path, n: usize) -> Result<f64, String> {
    let mut c = Conn::open(&agent.socket)?;
    let freeze = format!(
        r#"{{"execute":"guest-fsfreeze-freeze-list","arguments":{{"mountpoints":["{}"]}}}}"#,
        mountpoint.display()
    );
    let mut t = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        let r = c.call(&freeze)?;
        if !r.starts_with(r#"{"return": 1}"#) {
            return Err(format!("freeze: {r}"));
        }
        let r = c.call(r#"{"execute":"guest-fsfreeze-thaw"}"#)?;
        if !r.starts_with(r#"{"return": 1}"#) {
            return Err(format!("thaw: {r}"));
        }
        t.push(start.elapsed().as_secs_f64() * 1e3);
    }
    t.sort_by(f64::total_cmp);
    Ok(t[n / 2])
}

/// Median milliseconds from guest-exec of /bin/true to the status that says
/// it exited, polling without delay.
fn exec_round_trip(agent: &Agent, n: usize) -> Result<f64, String> {
    let mut c = Conn::open(&agent.socket)?;
    let mut t = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        let r = c.call(r#"{"execute":"guest-exec","arguments":{"path":"/bin/true"}}"#)?;
        let pid = field(&r, "pid").ok_or(format!("exec: {r}"))?.to_owned();
        let status = format!(r#"{{"execute":"guest-exec-status","arguments":{{"pid":{pid}}}}}"#);
        loop {
            let s = c.call(&status)?;
            if s.contains("\"exited\": true") {
                break;
            }
            if !s.contains("\"exited\": false") {
                return Err(format!("exec-status: {s}"));
            }
        }
        t.push(start.elapsed().as_secs_f64() * 1e3);
    }
    t.sort_by(f64::total_cmp);
    Ok(t[n / 2])
}

/// Milliseconds from starting the agent to its first answered guest-ping.
fn start_time(kind: Kind, dir: &Path, bin: &(PathBuf, PathBuf)) -> Result<f64, String> {
    let (mut cmd, socket) = command(kind, dir, bin);
    let _ = std::fs::remove_file(&socket);
    let start = Instant::now();
    let child = cmd
        .env("QGA_CONF", dir.join("none.conf"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    let agent = Agent { child, socket };
    wait_for(&agent.socket)?;
    loop {
        if let Ok(mut c) = Conn::open(&agent.socket) {
            if c.round_trip(br#"{"execute":"guest-ping"}"#).is_ok() {
                break;
            }
        }
        if start.elapsed() > Duration::from_secs(10) {
            return Err("no answer".into());
        }
    }
    Ok(start.elapsed().as_secs_f64() * 1e3)
}

/// Peak resident memory (MiB, summed over the agent's processes) while
/// reading `file` in 48 MiB requests.
fn peak_memory(agent: &Agent, file: &Path) -> Result<f64, String> {
    let pids = pids(agent);
    for pid in &pids {
        // Resets the peak (VmHWM) to the current resident size.
        let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
    }
    read_throughput(agent, file, 48 * MIB)?;
    let peak: u64 = pids.iter().map(|&p| status_kib(p, "VmHWM")).sum();
    Ok(peak as f64 / 1024.0)
}

/// Measures both agents the same way, ours first.
fn both(
    rows: &mut Vec<Row>,
    name: &str,
    unit: &'static str,
    f: &mut dyn FnMut(Kind) -> Result<f64, String>,
) -> Result<(), String> {
    let ours = f(Kind::Ours)?;
    let theirs = f(Kind::Theirs)?;
    rows.push(Row { name: name.into(), unit, ours, theirs });
    Ok(())
}

struct Row {
    name: String,
    unit: &'static str,
    ours: f64,
    theirs: f64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let arg =
        |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let json_path =
        arg("--json").map_or_else(|| PathBuf::from("bench-results.json"), PathBuf::from);
    let only: Option<Vec<String>> =
        arg("--only").map(|s| s.split(',').map(str::to_owned).collect());
    let want = |name: &str| only.as_ref().is_none_or(|o| o.iter().any(|x| x == name));
    let (rounds, per_round, mut idle_secs, file_mib) =
        if quick { (3, 1000, 5, 64) } else { (15, 2000, 30, 256) };
    if let Some(v) = arg("--idle") {
        idle_secs = v.parse().unwrap_or(idle_secs);
    }

    let dir = std::env::temp_dir().join(format!("qga-warden-bench-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let run = || -> Result<Vec<Row>, String> {
        if !Path::new(QEMU_GA).exists() {
            return Err(format!("{QEMU_GA} not installed (apt-get install qemu-guest-agent)"));
        }
        let bin = build_ours()?;
        let mut rows = Vec::new();
        if want("start") {
            both(&mut rows, "start to first guest-ping, median of 9", "ms", &mut |k| {
                let d = dir.join(format!("start-{}", k as u8));
                let _ = std::fs::create_dir_all(&d);
                Ok(median((0..9).map(|_| start_time(k, &d, &bin)).collect::<Result<_, _>>()?))
            })?;
        }
        let ours_dir = dir.join("ours");
        let theirs_dir = dir.join("theirs");
        let _ = std::fs::create_dir_all(&ours_dir);
        let _ = std::fs::create_dir_all(&theirs_dir);
        let ours = start(Kind::Ours, &ours_dir, &bin)?;
        let theirs = start(Kind::Theirs, &theirs_dir, &bin)?;
        let agent = |k: Kind| if k == Kind::Ours { &ours } else { &theirs };

        if want("idle") {
            std::thread::sleep(Duration::from_millis(500));
            let (op, tp) = (pids(&ours), pids(&theirs));
            let (o0, t0) = (usage(&op), usage(&tp));
            std::thread::sleep(Duration::from_secs(idle_secs));
            let (o1, t1) = (usage(&op), usage(&tp));
            rows.push(Row {
                name: "idle resident memory".into(),
                unit: "KiB",
                ours: o1.2 as f64,
                theirs: t1.2 as f64,
            });
            rows.push(Row {
                name: format!("idle CPU ticks over {idle_secs} s"),
                unit: "ticks",
                ours: (o1.0 - o0.0) as f64,
                theirs: (t1.0 - t0.0) as f64,
            });
            rows.push(Row {
                name: format!("idle wake-ups over {idle_secs} s"),
                unit: "count",
                ours: (o1.1 - o0.1) as f64,
                theirs: (t1.1 - t0.1) as f64,
            });
        }
        if want("ping") {
            for (label, req) in [
                ("guest-ping", &br#"{"execute":"guest-ping"}"#[..]),
                (
                    "guest-sync-delimited",
                    &br#"{"execute":"guest-sync-delimited","arguments":{"id":1}}"#[..],
                ),
            ] {
                // Interleaved rounds, so that both agents see the same machine.
                let (mut om, mut op99, mut tm, mut tp99) = (vec![], vec![], vec![], vec![]);
                for _ in 0..rounds {
                    let (m, p) = latency(&ours, req, per_round)?;
                    om.push(m);
                    op99.push(p);
                    let (m, p) = latency(&theirs, req, per_round)?;
                    tm.push(m);
                    tp99.push(p);
                }
                rows.push(Row {
                    name: format!("{label} round trip, median"),
                    unit: "µs",
                    ours: median(om),
                    theirs: median(tm),
                });
                rows.push(Row {
                    name: format!("{label} round trip, p99"),
                    unit: "µs",
                    ours: median(op99),
                    theirs: median(tp99),
                });
            }
        }
        if want("pipeline") {
            both(&mut rows, "guest-ping pipelined (10000 in one write)", "req/s", &mut |k| {
                pipelined(agent(k), 10_000)
            })?;
        }
        let file = dir.join("bench-file");
        if want("read") || want("memory") {
            let mut data = vec![0u8; file_mib * MIB];
            let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
            for chunk in data.chunks_mut(8) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
            }
            std::fs::write(&file, &data).map_err(|e| e.to_string())?;
        }
        if want("read") {
            for chunk in [4 * MIB, 48 * MIB] {
                both(
                    &mut rows,
                    &format!("guest-file-read of {file_mib} MiB in {} MiB requests", chunk / MIB),
                    "MB/s",
                    &mut |k| {
                        Ok(median(
                            (0..3)
                                .map(|_| read_throughput(agent(k), &file, chunk))
                                .collect::<Result<_, _>>()?,
                        ))
                    },
                )?;
            }
        }
        if want("write") {
            // 47 MiB: the largest write whose base64 fits qemu's 64 MiB
            // request limit (which both agents keep).
            for chunk in [4 * MIB, 47 * MIB] {
                both(
                    &mut rows,
                    &format!(
                        "guest-file-write of {} MiB in {} MiB requests",
                        file_mib.max(48 * 2),
                        chunk / MIB
                    ),
                    "MB/s",
                    &mut |k| {
                        let target = dir.join(format!("written-{}", k as u8));
                        Ok(median(
                            (0..3)
                                .map(|_| {
                                    write_throughput(
                                        agent(k),
                                        &target,
                                        chunk,
                                        file_mib.max(96) * MIB,
                                    )
                                })
                                .collect::<Result<_, _>>()?,
                        ))
                    },
                )?;
            }
        }
        if want("exec") {
            both(&mut rows, "guest-exec /bin/true until exited, median", "ms", &mut |k| {
                exec_round_trip(agent(k), 200)
            })?;
        }
        if want("freeze") {
            match Scratch::new(&dir) {
                Ok(scratch) => {
                    both(
                        &mut rows,
                        "fsfreeze-freeze-list + thaw of a loop ext4, median",
                        "ms",
                        &mut |k| freeze_round_trip(agent(k), &scratch.mountpoint, 50),
                    )?;
                }
                Err(e) => eprintln!("skipped: fsfreeze benchmark: {e}"),
            }
        }
        if want("memory") {
            both(&mut rows, "peak resident memory serving 48 MiB reads", "MiB", &mut |k| {
                peak_memory(agent(k), &file)
            })?;
        }
        let _ = std::fs::remove_file(&file);
        Ok(rows)
    };
    let rows = match run() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("bench: {e}");
            let _ = std::fs::remove_dir_all(&dir);
            std::process::exit(1);
        }
    };
    let _ = std::fs::remove_dir_all(&dir);

    println!("{:<52} {:>14} {:>14} {:>7}", "measure", "qga-warden", "qemu-ga", "ratio");
    let mut json = String::from("[\n");
    for (i, r) in rows.iter().enumerate() {
        let ratio = if r.theirs > 0.0 { r.ours / r.theirs } else { f64::NAN };
        println!(
            "{:<52} {:>9.1} {:<5}{:>9.1} {:<5}{:>6.2}",
            r.name, r.ours, r.unit, r.theirs, r.unit, ratio
        );
        json.push_str(&format!(
            "  {{\"measure\": \"{}\", \"unit\": \"{}\", \"qga-warden\": {}, \"qemu-ga\": {}}}{}\n",
            r.name,
            r.unit,
            r.ours,
            r.theirs,
            if i + 1 < rows.len() { "," } else { "" }
        ));
    }
    json.push_str("]\n");
    if let Err(e) = std::fs::write(&json_path, json) {
        eprintln!("bench: cannot write {}: {e}", json_path.display());
    }
    let _ = std::io::stdout().flush();
    let _ = std::io::stdin().read(&mut [0u8; 0]);
}
