//! The frontend's seccomp allowlist: reviewed data, one entry per system call
//! with the reason it is needed and, where it matters, the only arguments it
//! may be called with. Anything else kills the process.
//!
//! What the frontend does after start-up: `poll` over the channel, its IPC
//! socket and a signalfd; `read`/`recvmsg`/`write` on those; `close` what it is
//! done with; the memory allocator; exit; and `abort()` on a panic (which
//! must end as SIGABRT, not as a seccomp kill, so crashes stay diagnosable).
//! It opens nothing, creates no socket, spawns nothing, signals no one else.

use std::collections::BTreeMap;

use nix::libc;
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

use super::SandboxError;

/// One condition on one argument (all of an alternative must hold).
#[derive(Debug, Clone, Copy)]
pub struct Cond {
    pub arg: u8,
    pub op: Op,
    pub value: Value,
}

#[derive(Debug, Clone, Copy)]
pub enum Op {
    Eq,
    /// The argument, masked, equals the value.
    MaskedEq(u64),
}

#[derive(Debug, Clone, Copy)]
pub enum Value {
    Const(u64),
    /// The frontend's own pid, known when the filter is built.
    OwnPid,
}

/// An allowed system call.
#[derive(Debug, Clone, Copy)]
pub struct Allowed {
    pub name: &'static str,
    pub nr: i64,
    pub why: &'static str,
    /// Alternatives of conditions; empty means any arguments.
    pub only_if: &'static [&'static [Cond]],
}

const fn eq(arg: u8, value: u64) -> Cond {
    Cond { arg, op: Op::Eq, value: Value::Const(value) }
}

/// `arg & mask == 0`
const fn clear(arg: u8, mask: u64) -> Cond {
    Cond { arg, op: Op::MaskedEq(mask), value: Value::Const(0) }
}

const SIGABRT: u64 = libc::SIGABRT as u64;

/// The allowlist.
pub const ALLOWED: &[Allowed] = &[
    Allowed {
        name: "read",
        nr: libc::SYS_read,
        why: "bytes from the host channel; SIGIO from the signalfd while a virtio-serial port is closed",
        only_if: &[],
    },
    Allowed {
        name: "write",
        nr: libc::SYS_write,
        why: "replies to the host, frames to the broker, log lines on standard error",
        only_if: &[],
    },
    Allowed {
        name: "recvmsg",
        nr: libc::SYS_recvmsg,
        why: "frames and channel descriptors from the broker; received descriptors are always close-on-exec",
        only_if: &[&[eq(2, libc::MSG_CMSG_CLOEXEC as u64)]],
    },
    #[cfg(target_arch = "x86_64")]
    Allowed {
        name: "poll",
        nr: libc::SYS_poll,
        why: "the event loop waits on the channel, the IPC socket and the signalfd",
        only_if: &[],
    },
    Allowed {
        name: "ppoll",
        nr: libc::SYS_ppoll,
        why: "the event loop, where the C library implements poll with ppoll",
        only_if: &[],
    },
    Allowed {
        name: "sched_yield",
        nr: libc::SYS_sched_yield,
        why: "while a request is with the broker, the event loop yields instead of sleeping for a few microseconds (a wake-up per hop costs more)",
        only_if: &[],
    },
    Allowed {
        name: "clock_gettime",
        nr: libc::SYS_clock_gettime,
        why: "the monotonic clock bounding that yield loop; the C library reads it from the vDSO, but falls back to the system call where the guest's clock source has no vDSO support (hpet, or a TSC the kernel distrusts, as under QEMU without KVM)",
        only_if: &[&[eq(0, libc::CLOCK_MONOTONIC as u64)]],
    },
    Allowed {
        name: "close",
        nr: libc::SYS_close,
        why: "a closed host connection; a replaced channel descriptor",
        only_if: &[],
    },
    Allowed {
        name: "fcntl",
        nr: libc::SYS_fcntl,
        why: "the standard library checks that a descriptor is open before closing it (F_GETFD only)",
        only_if: &[&[eq(1, libc::F_GETFD as u64)]],
    },
    Allowed { name: "brk", nr: libc::SYS_brk, why: "memory allocator (heap)", only_if: &[] },
    Allowed {
        name: "mmap",
        nr: libc::SYS_mmap,
        why: "memory allocator (large buffers); never executable memory",
        only_if: &[&[clear(2, libc::PROT_EXEC as u64)]],
    },
    Allowed {
        name: "mremap",
        nr: libc::SYS_mremap,
        why: "memory allocator (growing a large buffer in place)",
        only_if: &[],
    },
    Allowed {
        name: "munmap",
        nr: libc::SYS_munmap,
        why: "memory allocator (freeing large buffers)",
        only_if: &[],
    },
    Allowed {
        name: "madvise",
        nr: libc::SYS_madvise,
        why: "memory allocator (returning freed pages)",
        only_if: &[&[eq(2, libc::MADV_DONTNEED as u64)], &[eq(2, libc::MADV_FREE as u64)]],
    },
    Allowed {
        name: "rt_sigprocmask",
        nr: libc::SYS_rt_sigprocmask,
        why: "abort() unblocks SIGABRT",
        only_if: &[],
    },
    Allowed {
        name: "rt_sigaction",
        nr: libc::SYS_rt_sigaction,
        why: "abort() resets the action of SIGABRT, and nothing else",
        only_if: &[&[eq(0, SIGABRT)]],
    },
    Allowed {
        name: "rt_sigreturn",
        nr: libc::SYS_rt_sigreturn,
        why: "return from the stack-overflow handler the Rust runtime installs",
        only_if: &[],
    },
    Allowed {
        name: "sigaltstack",
        nr: libc::SYS_sigaltstack,
        why: "the Rust runtime disables its signal stack when the process exits",
        only_if: &[],
    },
    Allowed {
        name: "getpid",
        nr: libc::SYS_getpid,
        why: "abort() signals its own process",
        only_if: &[],
    },
    Allowed {
        name: "gettid",
        nr: libc::SYS_gettid,
        why: "abort() signals its own thread",
        only_if: &[],
    },
    Allowed {
        name: "tgkill",
        nr: libc::SYS_tgkill,
        why: "abort() raises SIGABRT in this process: no other process, no other signal",
        only_if: &[&[Cond { arg: 0, op: Op::Eq, value: Value::OwnPid }, eq(2, SIGABRT)]],
    },
    Allowed {
        name: "restart_syscall",
        nr: libc::SYS_restart_syscall,
        why: "the kernel resumes an interrupted poll after the process was stopped and continued",
        only_if: &[],
    },
    Allowed {
        name: "exit_group",
        nr: libc::SYS_exit_group,
        why: "exit when the broker goes away",
        only_if: &[],
    },
];

/// Whether argument conditions are compiled in. Only the sandbox tests build
/// the filter without them, to show what the conditions stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conditions {
    Enforced,
    Ignored,
}

fn target_arch() -> TargetArch {
    #[cfg(target_arch = "aarch64")]
    return TargetArch::aarch64;
    #[cfg(target_arch = "riscv64")]
    return TargetArch::riscv64;
    #[cfg(target_arch = "x86_64")]
    return TargetArch::x86_64;
}

/// Builds the BPF program for [`ALLOWED`].
pub fn compile(conditions: Conditions) -> Result<BpfProgram, SandboxError> {
    let pid = u64::from(std::process::id());
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for allowed in ALLOWED {
        let mut chain = Vec::new();
        if conditions == Conditions::Enforced {
            for alternative in allowed.only_if {
                let conds = alternative
                    .iter()
                    .map(|c| {
                        let value = match c.value {
                            Value::Const(v) => v,
                            Value::OwnPid => pid,
                        };
                        let (op, len) = match c.op {
                            Op::Eq => (SeccompCmpOp::Eq, SeccompCmpArgLen::Qword),
                            Op::MaskedEq(mask) => {
                                (SeccompCmpOp::MaskedEq(mask), SeccompCmpArgLen::Qword)
                            }
                        };
                        SeccompCondition::new(c.arg, len, op, value)
                    })
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| SandboxError::Seccomp(e.into()))?;
                chain.push(SeccompRule::new(conds).map_err(|e| SandboxError::Seccomp(e.into()))?);
            }
        }
        rules.insert(allowed.nr, chain);
    }
    let filter =
        SeccompFilter::new(rules, SeccompAction::KillProcess, SeccompAction::Allow, target_arch())
            .map_err(|e| SandboxError::Seccomp(e.into()))?;
    BpfProgram::try_from(filter).map_err(|e| SandboxError::Seccomp(e.into()))
}

/// Installs `program` on the calling thread (the frontend has only one).
pub fn install(program: &BpfProgram) -> Result<(), SandboxError> {
    seccompiler::apply_filter(program).map_err(SandboxError::Seccomp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_entry_has_a_reason_and_a_unique_number() {
        let mut seen = std::collections::HashSet::new();
        for a in ALLOWED {
            assert!(!a.why.is_empty(), "{} has no reason", a.name);
            assert!(seen.insert(a.nr), "{} listed twice", a.name);
        }
    }

    #[test]
    fn dangerous_calls_are_not_listed() {
        for nr in [
            libc::SYS_socket,
            libc::SYS_connect,
            libc::SYS_openat,
            libc::SYS_execve,
            libc::SYS_ptrace,
            libc::SYS_mount,
            libc::SYS_setuid,
            libc::SYS_kill,
            libc::SYS_ioctl,
            libc::SYS_clone,
            libc::SYS_mprotect,
            libc::SYS_prctl,
        ] {
            assert!(ALLOWED.iter().all(|a| a.nr != nr), "syscall {nr} is allowed");
        }
    }

    #[test]
    fn security_md_lists_every_entry() {
        let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../SECURITY.md"))
            .expect("SECURITY.md");
        let table = doc
            .split("### The frontend's system calls")
            .nth(1)
            .and_then(|t| t.split("\n\n").find(|block| block.starts_with("| system call")))
            .expect("the allowlist table in SECURITY.md");
        for a in ALLOWED {
            assert!(
                table.contains(&format!("`{}`", a.name)),
                "SECURITY.md does not list {}",
                a.name
            );
        }
    }

    #[test]
    fn the_filter_compiles_both_ways() {
        assert!(compile(Conditions::Enforced).is_ok());
        assert!(compile(Conditions::Ignored).is_ok());
    }
}
