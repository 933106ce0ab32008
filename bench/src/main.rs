//! `cargo run --release -p qga-warden-bench`: starts qga-warden (release
//! build) and Debian's qemu-ga on unix sockets in the same run, measures both
//! the same way, and prints a table with their ratio (also written as JSON).
//!
//! Options: `--quick` (fewer rounds, 5 idle seconds), `--json PATH`
//! (default `bench-results.json`).

#![forbid(unsafe_code)]

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const QEMU_GA: &str = "/usr/sbin/qemu-ga";

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

fn work_dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("qga-warden-bench-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&d);
    d
}

fn wait_for(path: &Path) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !path.exists() {
        if Instant::now() > deadline {
            return Err(format!("{} did not appear", path.display()));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

fn start_ours(dir: &Path) -> Result<Agent, String> {
    let bin = std::env::current_exe().map_err(|e| e.to_string())?.with_file_name("qga-warden");
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["build", "--release", "--quiet", "-p", "qga-warden", "-p", "qga-warden-frontend"])
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
        .status()
        .map_err(|e| format!("cargo build: {e}"))?;
    if !status.success() {
        return Err("building qga-warden failed".into());
    }
    let socket = dir.join("warden.sock");
    let child = Command::new(bin)
        .args(["-m", "unix-listen", "-p"])
        .arg(&socket)
        .env("QGA_CONF", dir.join("none.conf"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("start qga-warden: {e}"))?;
    wait_for(&socket)?;
    Ok(Agent { child, socket })
}

fn start_qemu_ga(dir: &Path) -> Result<Agent, String> {
    if !Path::new(QEMU_GA).exists() {
        return Err(format!("{QEMU_GA} not installed (apt-get install qemu-guest-agent)"));
    }
    let socket = dir.join("qemu-ga.sock");
    let child = Command::new(QEMU_GA)
        .args(["-m", "unix-listen", "-p"])
        .arg(&socket)
        .arg("-t")
        .arg(dir)
        .arg("-f")
        .arg(dir.join("qemu-ga.pid"))
        .env("QGA_CONF", dir.join("none.conf"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("start qemu-ga: {e}"))?;
    wait_for(&socket)?;
    Ok(Agent { child, socket })
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

/// (cpu ticks, context switches, resident KiB) summed over the processes.
fn usage(pids: &[u32]) -> (u64, u64, u64) {
    let mut total = (0, 0, 0);
    for pid in pids {
        if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            let f: Vec<&str> = stat
                .rsplit_once(')')
                .map(|(_, r)| r.split_whitespace().collect())
                .unwrap_or_default();
            total.0 += f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
                + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        }
        if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
            for line in status.lines() {
                let num = |l: &str| {
                    l.split_whitespace().nth(1).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
                };
                if line.starts_with("voluntary_ctxt_switches")
                    || line.starts_with("nonvoluntary_ctxt_switches")
                {
                    total.1 += num(line);
                } else if line.starts_with("VmRSS") {
                    total.2 += num(line);
                }
            }
        }
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
        w.set_read_timeout(Some(Duration::from_secs(10))).map_err(|e| e.to_string())?;
        let r = BufReader::new(w.try_clone().map_err(|e| e.to_string())?);
        Ok(Conn { w, r, line: Vec::new() })
    }

    fn round_trip(&mut self, req: &[u8]) -> Result<(), String> {
        self.w.write_all(req).map_err(|e| e.to_string())?;
        self.line.clear();
        self.r.read_until(b'\n', &mut self.line).map_err(|e| e.to_string())?;
        if self.line.is_empty() {
            return Err("connection closed".into());
        }
        Ok(())
    }
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

struct Row {
    name: &'static str,
    unit: &'static str,
    ours: f64,
    theirs: f64,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let json_path = args
        .iter()
        .position(|a| a == "--json")
        .and_then(|i| args.get(i + 1))
        .map_or_else(|| PathBuf::from("bench-results.json"), PathBuf::from);
    let (rounds, per_round, mut idle_secs) = if quick { (3, 1000, 5) } else { (15, 2000, 30) };
    if let Some(v) = args.iter().position(|a| a == "--idle").and_then(|i| args.get(i + 1)) {
        idle_secs = v.parse().unwrap_or(idle_secs);
    }

    let dir = work_dir();
    let run = || -> Result<Vec<Row>, String> {
        let ours = start_ours(&dir)?;
        let theirs = start_qemu_ga(&dir)?;
        let mut rows = Vec::new();

        // Idle first, before any request has grown a buffer.
        std::thread::sleep(Duration::from_millis(500));
        let (op, tp) = (pids(&ours), pids(&theirs));
        let (o0, t0) = (usage(&op), usage(&tp));
        std::thread::sleep(Duration::from_secs(idle_secs));
        let (o1, t1) = (usage(&op), usage(&tp));
        rows.push(Row {
            name: "idle resident memory",
            unit: "KiB",
            ours: o1.2 as f64,
            theirs: t1.2 as f64,
        });
        rows.push(Row {
            name: "idle CPU ticks",
            unit: "ticks",
            ours: (o1.0 - o0.0) as f64,
            theirs: (t1.0 - t0.0) as f64,
        });
        rows.push(Row {
            name: "idle context switches",
            unit: "count",
            ours: (o1.1 - o0.1) as f64,
            theirs: (t1.1 - t0.1) as f64,
        });

        for (label_med, label_p99, req) in [
            (
                "guest-ping round trip, median",
                "guest-ping round trip, p99",
                &br#"{"execute":"guest-ping"}"#[..],
            ),
            (
                "guest-sync-delimited round trip, median",
                "guest-sync-delimited round trip, p99",
                &br#"{"execute":"guest-sync-delimited","arguments":{"id":1}}"#[..],
            ),
        ] {
            // Interleaved rounds so that both agents see the same machine.
            let (mut om, mut op99, mut tm, mut tp99) = (vec![], vec![], vec![], vec![]);
            for _ in 0..rounds {
                let (m, p) = latency(&ours, req, per_round)?;
                om.push(m);
                op99.push(p);
                let (m, p) = latency(&theirs, req, per_round)?;
                tm.push(m);
                tp99.push(p);
            }
            let med = |v: &mut Vec<f64>| {
                v.sort_by(f64::total_cmp);
                v[v.len() / 2]
            };
            rows.push(Row {
                name: label_med,
                unit: "µs",
                ours: med(&mut om),
                theirs: med(&mut tm),
            });
            rows.push(Row {
                name: label_p99,
                unit: "µs",
                ours: med(&mut op99),
                theirs: med(&mut tp99),
            });
        }
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

    println!("{:<42} {:>12} {:>12} {:>8}", "measure", "qga-warden", "qemu-ga", "ratio");
    let mut json = String::from("[\n");
    for (i, r) in rows.iter().enumerate() {
        let ratio = if r.theirs > 0.0 { r.ours / r.theirs } else { f64::NAN };
        println!(
            "{:<42} {:>9.1} {:<2} {:>9.1} {:<2} {:>8.2}",
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
}
