//! The operations, one module per family, behind one entry point that checks
//! the frozen state and the policy first.

mod disks;
pub mod exec;
#[cfg(test)]
mod fake_sysfs;
mod files;
pub mod fsfreeze;
mod fsinfo;
mod hotplug;
mod info;
mod inventory;
pub mod mounts;
mod network;
mod password;
mod power;
mod ssh;
mod time;

use std::time::Instant;

use ipc::{AgentInfo, Command, CommandStates, OpError, Request, Response};
use policy::audit::Verdict;
use policy::{Decision, Grant, Policy};

use crate::log::debug;

/// The agent's version as `guest-info` reports it (plain MAJOR.MINOR.PATCH).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

pub struct Ops {
    policy: Policy,
    pub freezer: fsfreeze::Freezer,
    files: files::Files,
    pub children: exec::Children,
    /// The bytes of the last guest-file-read, to follow its reply.
    bulk: Option<Vec<u8>>,
}

/// What became of one request, for the reply and the audit trail.
#[derive(Debug)]
pub struct Handled {
    pub result: Result<Response, OpError>,
    pub verdict: Verdict,
    /// The rule that denied it.
    pub rule: Option<String>,
}

/// Whether this build implements `command` (the others answer "not
/// supported" and are listed as disabled by `guest-info`).
pub fn implemented(command: Command) -> bool {
    matches!(
        command,
        Command::Sync
            | Command::SyncDelimited
            | Command::Ping
            | Command::Info
            | Command::GetTime
            | Command::FileOpen
            | Command::FileClose
            | Command::FileRead
            | Command::FileWrite
            | Command::FileSeek
            | Command::FileFlush
            | Command::Exec
            | Command::ExecStatus
            | Command::FsfreezeStatus
            | Command::FsfreezeFreeze
            | Command::FsfreezeFreezeList
            | Command::FsfreezeThaw
            | Command::Fstrim
            | Command::GetFsinfo
            | Command::GetVcpus
            | Command::SetVcpus
            | Command::GetMemoryBlocks
            | Command::SetMemoryBlocks
            | Command::GetMemoryBlockInfo
            | Command::NetworkGetInterfaces
            | Command::SetTime
            | Command::Shutdown
            | Command::SuspendDisk
            | Command::SuspendRam
            | Command::SuspendHybrid
            | Command::SetUserPassword
            | Command::GetDisks
            | Command::GetHostName
            | Command::GetUsers
            | Command::GetTimezone
            | Command::GetOsinfo
            | Command::SshGetAuthorizedKeys
            | Command::SshAddAuthorizedKeys
            | Command::SshRemoveAuthorizedKeys
            | Command::GetDiskstats
            | Command::GetCpustats
            | Command::GetLoad
            | Command::NetworkGetRoute
    )
}

/// Commands qemu-ga registers on Linux but disables for good, as it does:
/// guest-get-devices reports Windows drivers.
pub fn linux_disabled(command: Command) -> bool {
    command == Command::GetDevices
}

/// The audit trail's rule for a [`linux_disabled`] command.
const LINUX_DISABLED: &str = "linux: qemu-ga disables this command on Linux";

impl Ops {
    pub fn new(
        policy: Policy,
        statedir: &std::path::Path,
        fsfreeze_hook: Option<std::path::PathBuf>,
    ) -> Self {
        Ops {
            freezer: fsfreeze::Freezer::new(statedir, fsfreeze_hook, &policy.fsfreeze),
            policy,
            files: files::Files::new(statedir),
            children: exec::Children::default(),
            bulk: None,
        }
    }

    /// Takes back the buffer of a read that has been sent.
    pub fn recycle(&mut self, buf: Vec<u8>) {
        self.files.recycle(buf);
    }

    /// The next time something must be done without a request: a child's
    /// time limit, a spare buffer's release.
    pub fn next_deadline(&self) -> Option<Instant> {
        [self.children.next_deadline(), self.files.spare_deadline(), self.freezer.deadline()]
            .into_iter()
            .flatten()
            .min()
    }

    /// Does what is due at `now`. Returns true when the freeze watchdog is
    /// due: the caller thaws (and records why).
    pub fn expire(&mut self, now: Instant) -> bool {
        self.children.expire(now);
        self.files.expire_spare(now);
        self.freezer.deadline().is_some_and(|d| d <= now)
    }

    /// The data that must follow the reply to the request just handled, as
    /// data frames.
    pub fn take_bulk(&mut self) -> Option<Vec<u8>> {
        self.bulk.take()
    }

    /// Filesystems are frozen: the audit trail and the log must not be written.
    pub fn frozen(&self) -> bool {
        self.freezer.is_frozen()
    }

    /// The freeze watchdog's limit, if it is on.
    pub fn max_frozen(&self) -> Option<std::time::Duration> {
        let s = self.policy.fsfreeze.max_frozen_seconds;
        (s > 0).then(|| std::time::Duration::from_secs(s))
    }

    /// Whether the policy asks for a thaw when the host disconnects.
    pub fn thaw_on_disconnect(&self) -> bool {
        self.policy.fsfreeze.thaw_on_disconnect
    }

    /// What the frontend is told about enabled commands.
    pub fn states(&self) -> CommandStates {
        let mut disabled = self.policy.disabled_commands();
        disabled.extend(Command::ALL.iter().copied().filter(|&c| linux_disabled(c)));
        disabled.sort();
        disabled.dedup();
        CommandStates { disabled, frozen: self.frozen() }
    }

    /// A request for a command the frontend refused as disabled, arguments
    /// unread: the reply, and the attempt for the audit trail.
    pub fn handle_disabled(&mut self, command: Command) -> Handled {
        let (error, rule) = if self.frozen() && !command.allowed_while_frozen() {
            (OpError::Disabled { command, frozen: true }, "frozen".to_owned())
        } else if linux_disabled(command) {
            (OpError::Disabled { command, frozen: false }, LINUX_DISABLED.to_owned())
        } else {
            // Enabled since the frontend was told otherwise (a thaw raced
            // the request): still refused, as its arguments were not read.
            let rule = self.policy.command_rule(command).map_or_else(
                || "frontend: the command was disabled when the request arrived".to_owned(),
                |r| r.to_string(),
            );
            (OpError::Disabled { command, frozen: false }, rule)
        };
        Handled { result: Err(error), verdict: Verdict::Deny, rule: Some(rule) }
    }

    pub fn handle(&mut self, request: &Request) -> Handled {
        let command = request.command();
        debug!("{command} requested");
        let deny = |result: OpError, rule: String| Handled {
            result: Err(result),
            verdict: Verdict::Deny,
            rule: Some(rule),
        };
        if self.frozen() && !command.allowed_while_frozen() {
            return deny(OpError::Disabled { command, frozen: true }, "frozen".into());
        }
        if linux_disabled(command) {
            return deny(OpError::Disabled { command, frozen: false }, LINUX_DISABLED.into());
        }
        let grant = match self.policy.decide(request) {
            Decision::Allow(grant) => grant,
            Decision::DenyCommand(rule) => {
                debug!("{command} disabled by {rule}");
                return deny(OpError::Disabled { command, frozen: false }, rule.to_string());
            }
            Decision::DenyArgument(rule) => {
                debug!("{command} denied by {rule}");
                return deny(OpError::Denied { rule: rule.to_string() }, rule.to_string());
            }
        };
        Handled { result: self.run(request, grant), verdict: Verdict::Allow, rule: None }
    }

    fn run(&mut self, request: &Request, grant: Grant) -> Result<Response, OpError> {
        match (request, grant) {
            (Request::Ping, _) => Ok(Response::Empty),
            (Request::Sync { id, .. }, _) => Ok(Response::Int(*id)),
            (Request::Info, _) => Ok(Response::Info(self.info())),
            (Request::GetTime, _) => time::get_time(),
            (Request::FileOpen { path, mode }, Grant::FileOpen(g)) => {
                self.files.open(path, *mode, &g)
            }
            (Request::FileClose { handle }, _) => self.files.close(*handle),
            (Request::FileRead { handle, count }, _) => {
                let (data, eof) = self.files.read(*handle, *count)?;
                let count = data.len() as u64;
                self.bulk = Some(data);
                Ok(Response::FileRead { count, eof })
            }
            (Request::FileWrite { handle, data, count }, _) => {
                self.files.write(*handle, &data.0, *count)
            }
            (Request::FileSeek { handle, offset, whence }, _) => {
                self.files.seek(*handle, *offset, *whence)
            }
            (Request::FileFlush { handle }, _) => self.files.flush(*handle),
            (Request::Exec(e), Grant::Exec(g)) => self.children.spawn(e, &g),
            (Request::ExecStatus { pid }, _) => self.children.status(*pid),
            (Request::FsfreezeStatus, _) => Ok(Response::FsfreezeStatus(self.freezer.status())),
            (Request::FsfreezeFreeze, Grant::Mounts(g)) => {
                self.freezer.freeze(None, &g).map(Response::Int)
            }
            (Request::FsfreezeFreezeList { mountpoints }, Grant::Mounts(g)) => {
                self.freezer.freeze(mountpoints.as_deref(), &g).map(Response::Int)
            }
            (Request::FsfreezeThaw, _) => self.freezer.thaw().map(Response::Int),
            (Request::Fstrim { minimum }, Grant::Mounts(g)) => {
                fsfreeze::fstrim(*minimum, &g).map(Response::Fstrim)
            }
            (Request::SetTime { time }, Grant::SetTime { max_step_seconds }) => {
                time::set_time(*time, max_step_seconds)
            }
            (Request::Shutdown { mode }, _) => power::shutdown(*mode),
            (Request::SuspendDisk, _) => power::suspend(power::SuspendMode::Disk),
            (Request::SuspendRam, _) => power::suspend(power::SuspendMode::Ram),
            (Request::SuspendHybrid, _) => power::suspend(power::SuspendMode::Hybrid),
            (Request::SetUserPassword { username, password, crypted }, _) => {
                password::set_user_password(username, password, *crypted)
            }
            (Request::GetVcpus, _) => {
                hotplug::get_vcpus(std::path::Path::new(hotplug::SYSTEM)).map(Response::Vcpus)
            }
            (Request::SetVcpus { vcpus }, _) => hotplug::set_vcpus(
                std::path::Path::new(hotplug::SYSTEM),
                vcpus,
                self.policy.vcpus.min_online,
            )
            .map(Response::Int),
            (Request::GetMemoryBlocks, _) => {
                hotplug::get_memory_blocks(std::path::Path::new(hotplug::SYSTEM))
                    .map(Response::MemoryBlocks)
            }
            (Request::SetMemoryBlocks { blocks }, _) => {
                hotplug::set_memory_blocks(std::path::Path::new(hotplug::SYSTEM), blocks)
                    .map(Response::MemoryBlockResponses)
            }
            (Request::GetMemoryBlockInfo, _) => {
                hotplug::get_memory_block_info(std::path::Path::new(hotplug::SYSTEM))
                    .map(|size| Response::MemoryBlockInfo { size })
            }
            (Request::NetworkGetInterfaces, _) => {
                network::interfaces().map(Response::NetworkInterfaces)
            }
            (Request::GetFsinfo, _) => {
                let table = mounts::read().map_err(|e| OpError::MountTable {
                    errno: e.raw_os_error().unwrap_or(nix::libc::EIO),
                })?;
                fsinfo::fsinfo(&table, &fsinfo::SysPaths::system(), fsinfo::space)
                    .map(Response::Fsinfo)
            }
            (Request::GetDisks, _) => {
                disks::disks(&fsinfo::SysPaths::system()).map(Response::Disks)
            }
            (Request::GetHostName, _) => inventory::host_name().map(Response::HostName),
            (Request::GetUsers, _) => {
                inventory::users(std::path::Path::new(inventory::UTMP)).map(Response::Users)
            }
            (Request::GetTimezone, _) => inventory::timezone(),
            (Request::GetOsinfo, _) => {
                Ok(Response::Osinfo(Box::new(inventory::osinfo(std::path::Path::new("/")))))
            }
            (Request::GetDiskstats, _) => {
                inventory::diskstats(std::path::Path::new(inventory::DISKSTATS))
                    .map(Response::Diskstats)
            }
            (Request::GetCpustats, _) => {
                inventory::cpustats(std::path::Path::new(inventory::STAT)).map(Response::Cpustats)
            }
            (Request::GetLoad, _) => inventory::load(std::path::Path::new(inventory::LOADAVG)),
            (Request::NetworkGetRoute, _) => {
                inventory::routes(std::path::Path::new(inventory::PROC_NET)).map(Response::Routes)
            }
            (Request::SshGetAuthorizedKeys { username }, Grant::Ssh(_)) => {
                ssh::get_authorized_keys(username)
            }
            (Request::SshAddAuthorizedKeys { username, keys, reset }, Grant::Ssh(g)) => {
                ssh::add_authorized_keys(username, keys, *reset, &g)
            }
            (Request::SshRemoveAuthorizedKeys { username, keys }, Grant::Ssh(g)) => {
                ssh::remove_authorized_keys(username, keys, &g)
            }
            (r, _) if implemented(r.command()) => Err(OpError::BadRequest),
            _ => Err(OpError::Unsupported),
        }
    }

    fn info(&self) -> AgentInfo {
        info::agent_info(|c| {
            implemented(c)
                && self.policy.command_enabled(c)
                && (!self.frozen() || c.allowed_while_frozen())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocked_commands_are_disabled_and_every_command_is_implemented() {
        let mut policy = Policy::built_in();
        policy.block([Command::Ping]);
        let mut ops = Ops::new(policy, &std::env::temp_dir(), None);
        let h = ops.handle(&Request::Ping);
        assert_eq!(h.result, Err(OpError::Disabled { command: Command::Ping, frozen: false }));
        assert_eq!(h.verdict, Verdict::Deny);
        assert_eq!(h.rule.as_deref(), Some("block-rpcs: the command is disabled"));
        let h = ops.handle(&Request::Sync { id: 7, delimited: true });
        assert_eq!(h.result, Ok(Response::Int(7)));
        assert_eq!(h.rule, None);
        let Ok(Response::Info(info)) = ops.handle(&Request::Info).result else { panic!("no info") };
        assert!(info.commands.contains(&(Command::Ping, false)));
        assert!(info.commands.contains(&(Command::Info, true)));
        assert!(info.commands.contains(&(Command::GetVcpus, true)));
        // The whole 2.5 schema and what came after, but for what qemu-ga
        // itself disables on Linux.
        assert!(Command::ALL.iter().all(|&c| implemented(c) != linux_disabled(c)));
        let h = ops.handle(&Request::GetDevices);
        assert_eq!(
            h.result,
            Err(OpError::Disabled { command: Command::GetDevices, frozen: false })
        );
        assert!(info.commands.contains(&(Command::GetDevices, false)));
        assert!(ops.states().disabled.contains(&Command::GetDevices));
    }

    #[test]
    fn argument_denials_name_the_rule() {
        let mut ops = Ops::new(Policy::permissive(), &std::env::temp_dir(), None);
        let h = ops.handle(&Request::SetVcpus { vcpus: vec![] });
        assert_eq!(h.verdict, Verdict::Allow);
        let mut p = policy::parse("[power]\nmodes = [\"reboot\"]\n", "t").expect("policy");
        p.block([]);
        let mut ops = Ops::new(p, &std::env::temp_dir(), None);
        let h = ops.handle(&Request::Shutdown { mode: ipc::ShutdownMode::Halt });
        assert_eq!(
            h.result,
            Err(OpError::Denied { rule: "power.modes: this mode is not allowed".into() })
        );
    }
}
