//! The operations, one module per family, behind one entry point that checks
//! the frozen state and the policy first.

mod info;
mod time;

use ipc::{AgentInfo, Command, CommandStates, OpError, Request, Response};
use policy::{Decision, Policy};

use crate::log::debug;

/// The agent's version as `guest-info` reports it (plain MAJOR.MINOR.PATCH).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

pub struct Ops {
    policy: Policy,
    frozen: bool,
}

/// Whether this build implements `command` (the others answer "not
/// supported" and are listed as disabled by `guest-info`).
pub fn implemented(command: Command) -> bool {
    matches!(
        command,
        Command::Sync | Command::SyncDelimited | Command::Ping | Command::Info | Command::GetTime
    )
}

impl Ops {
    pub fn new(policy: Policy) -> Self {
        Ops {
            policy,
            frozen: false,
        }
    }

    /// What the frontend is told about enabled commands.
    pub fn states(&self) -> CommandStates {
        CommandStates {
            disabled: self.policy.disabled_commands(),
            frozen: self.frozen,
        }
    }

    pub fn handle(&mut self, request: &Request) -> Result<Response, OpError> {
        let command = request.command();
        debug!("{command} requested");
        if self.frozen && !command.allowed_while_frozen() {
            return Err(OpError::Disabled {
                command,
                frozen: true,
            });
        }
        match self.policy.decide(request) {
            Decision::Allow => {}
            Decision::DenyCommand { rule } => {
                debug!("{command} denied by {rule}");
                return Err(OpError::Disabled {
                    command,
                    frozen: false,
                });
            }
        }
        match request {
            Request::Ping => Ok(Response::Empty),
            Request::Sync { id, .. } => Ok(Response::Int(*id)),
            Request::Info => Ok(Response::Info(self.info())),
            Request::GetTime => time::get_time(),
            _ => Err(OpError::Unsupported),
        }
    }

    fn info(&self) -> AgentInfo {
        info::agent_info(|c| {
            implemented(c)
                && self.policy.command_enabled(c)
                && (!self.frozen || c.allowed_while_frozen())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocked_commands_are_disabled_and_unimplemented_unsupported() {
        let mut policy = Policy::allow_all();
        policy.block([Command::Ping]);
        let mut ops = Ops::new(policy);
        assert_eq!(
            ops.handle(&Request::Ping),
            Err(OpError::Disabled {
                command: Command::Ping,
                frozen: false
            })
        );
        assert_eq!(
            ops.handle(&Request::Sync {
                id: 7,
                delimited: true
            }),
            Ok(Response::Int(7))
        );
        assert_eq!(
            ops.handle(&Request::FsfreezeStatus),
            Err(OpError::Unsupported)
        );
        let Ok(Response::Info(info)) = ops.handle(&Request::Info) else {
            panic!("no info")
        };
        assert!(info.commands.contains(&(Command::Ping, false)));
        assert!(info.commands.contains(&(Command::Info, true)));
        assert!(info.commands.contains(&(Command::FsfreezeStatus, false)));
    }
}
