//! `qga-warden policy ...`: validating a policy file and explaining the
//! decision for one request, for operators.
//!
//! `explain` takes the request as JSON. The broker parses no JSON: it has the
//! frontend turn the text into the same typed request the running agent would
//! receive, then decides it with the real policy code.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{ExitCode, Stdio};

use ipc::ToBroker;
use ipc::frame::FrameReader;
use policy::{Decision, Grant, Policy};

/// Exit status of `explain` when the request is denied.
const EXIT_DENIED: u8 = 3;

pub fn check(file: &Path) -> ExitCode {
    match policy::load(file) {
        Ok(p) => {
            let disabled: Vec<&str> = p.disabled_commands().iter().map(|c| c.name()).collect();
            println!("{}: valid", file.display());
            if let Some(src) = &p.source {
                println!("sha256 {}", src.sha256);
            }
            println!(
                "disabled commands: {}",
                if disabled.is_empty() { "none".to_owned() } else { disabled.join(", ") }
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(1)
        }
    }
}

pub fn explain(file: &Path, request_json: &str, frontend: Option<&Path>) -> ExitCode {
    let policy = match policy::load(file) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(1);
        }
    };
    let request = match parse_with_frontend(request_json, frontend) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("qga-warden: {e}");
            return ExitCode::from(1);
        }
    };
    report(&policy, &request)
}

fn report(policy: &Policy, request: &ipc::Request) -> ExitCode {
    let args = serde_json::to_string(&policy::audit::redact(request)).unwrap_or_default();
    println!("command: {}", request.command());
    println!("arguments: {args}");
    match policy.decide(request) {
        Decision::Allow(grant) => {
            println!("decision: allow");
            match grant {
                Grant::Exec(g) => println!(
                    "runs as: {}; time limit: {}; output captured up to {} bytes per stream",
                    g.run_as,
                    g.timeout_seconds.map_or("none".to_owned(), |t| format!("{t} s")),
                    g.max_output_bytes
                ),
                Grant::FileOpen(g) => println!(
                    "opened beneath {} as {}{}",
                    g.base.display(),
                    g.relative.display(),
                    if g.may_create { " (may be created, mode 0600)" } else { "" }
                ),
                Grant::Mounts(_) => {
                    println!("limited to the mount points [fsfreeze]/[fstrim] allow")
                }
                Grant::Vcpus { min_online } => {
                    println!("never fewer than {min_online} vCPUs online")
                }
                Grant::SetTime { max_step_seconds: Some(s) } => {
                    println!("the clock moves at most {s} s")
                }
                Grant::Ssh(g) => println!(
                    "keys of types [ssh] key_types lists{}",
                    if g.allow_options { ", with options" } else { ", without options" }
                ),
                Grant::SetTime { max_step_seconds: None } | Grant::Plain => {}
            }
            ExitCode::SUCCESS
        }
        Decision::DenyCommand(rule) => {
            println!("decision: deny (the whole command)");
            println!("rule: {rule}");
            ExitCode::from(EXIT_DENIED)
        }
        Decision::DenyArgument(rule) => {
            println!("decision: deny (the arguments)");
            println!("rule: {rule}");
            ExitCode::from(EXIT_DENIED)
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum ExplainError {
    #[error("cannot run the frontend {0}")]
    Spawn(String, #[source] std::io::Error),
    #[error("the request was rejected before the policy: {0}")]
    Rejected(String),
    #[error("the frontend's answer is not a request")]
    NoRequest,
}

fn parse_with_frontend(json: &str, frontend: Option<&Path>) -> Result<ipc::Request, ExplainError> {
    let path = crate::supervisor::locate(frontend)
        .map_err(|e| ExplainError::Spawn("qga-warden-frontend".into(), e))?;
    let spawn_err = |e| ExplainError::Spawn(path.display().to_string(), e);
    let mut child = crate::spawn::clean_command(&path)
        .arg("--parse-request")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn_err)?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(json.as_bytes()).map_err(spawn_err)?;
    }
    let mut out = Vec::new();
    let mut err = String::new();
    if let Some(mut o) = child.stdout.take() {
        o.read_to_end(&mut out).map_err(spawn_err)?;
    }
    if let Some(mut e) = child.stderr.take() {
        e.read_to_string(&mut err).map_err(spawn_err)?;
    }
    let status = child.wait().map_err(spawn_err)?;
    if !status.success() {
        return Err(ExplainError::Rejected(err.trim().to_owned()));
    }
    let mut reader = FrameReader::new();
    reader.extend_from(&out).map_err(|_| ExplainError::NoRequest)?;
    match reader.next_message::<ToBroker>() {
        Ok(Some(ToBroker::Request { request, .. })) => Ok(request),
        _ => Err(ExplainError::NoRequest),
    }
}
