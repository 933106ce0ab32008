//! guest-info: the version and every command with whether it is enabled.

use ipc::{AgentInfo, Command};

pub fn agent_info(enabled: impl Fn(Command) -> bool) -> AgentInfo {
    AgentInfo {
        version: super::VERSION.to_owned(),
        commands: Command::ALL.iter().map(|&c| (c, enabled(c))).collect(),
    }
}
