//! The policy: which commands the host may run, decided in the broker for
//! every request.
//!
//! Pure: no I/O. The broker builds a [`Policy`] at start-up and asks
//! [`Policy::decide`] about each request before running it.

#![forbid(unsafe_code)]

use std::collections::BTreeSet;
use std::fmt;

use ipc::{Command, Request};

/// The verdict on one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// The whole command is disabled; `rule` names why.
    DenyCommand {
        rule: Rule,
    },
}

/// The rule that made a decision, named so that logs, audit records and
/// errors can point at it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    /// The command is not in `--allow-rpcs` / `allow-rpcs`.
    NotInAllowRpcs,
    /// The command is in `--block-rpcs` / `block-rpcs`.
    InBlockRpcs,
    /// Everything is allowed.
    AllowAll,
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Rule::NotInAllowRpcs => "allow-rpcs",
            Rule::InBlockRpcs => "block-rpcs",
            Rule::AllowAll => "allow-all",
        })
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    /// `Some` when an allow list restricts commands to those named.
    allow_rpcs: Option<BTreeSet<Command>>,
    block_rpcs: BTreeSet<Command>,
}

impl Policy {
    /// Every command allowed with any arguments, as upstream qemu-ga behaves.
    pub fn allow_all() -> Self {
        Self::default()
    }

    /// Narrows the policy as qemu-ga's `-a/--allow-rpcs` does: commands not
    /// listed are disabled. Several calls intersect.
    pub fn restrict_to(&mut self, allowed: impl IntoIterator<Item = Command>) {
        let allowed: BTreeSet<Command> = allowed.into_iter().collect();
        self.allow_rpcs = Some(match self.allow_rpcs.take() {
            Some(prev) => prev.intersection(&allowed).copied().collect(),
            None => allowed,
        });
    }

    /// Narrows the policy as qemu-ga's `-b/--block-rpcs` does.
    pub fn block(&mut self, blocked: impl IntoIterator<Item = Command>) {
        self.block_rpcs.extend(blocked);
    }

    /// Whether `command` may run at all, and the rule that says so.
    pub fn command_decision(&self, command: Command) -> Decision {
        if self.block_rpcs.contains(&command) {
            return Decision::DenyCommand {
                rule: Rule::InBlockRpcs,
            };
        }
        if let Some(allowed) = &self.allow_rpcs {
            if !allowed.contains(&command) {
                return Decision::DenyCommand {
                    rule: Rule::NotInAllowRpcs,
                };
            }
        }
        Decision::Allow
    }

    pub fn command_enabled(&self, command: Command) -> bool {
        self.command_decision(command) == Decision::Allow
    }

    /// The commands disabled as a whole.
    pub fn disabled_commands(&self) -> Vec<Command> {
        Command::ALL
            .iter()
            .copied()
            .filter(|&c| !self.command_enabled(c))
            .collect()
    }

    /// The decision for one request.
    pub fn decide(&self, request: &Request) -> Decision {
        self.command_decision(request.command())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_all_allows_everything() {
        let p = Policy::allow_all();
        assert!(Command::ALL.iter().all(|&c| p.command_enabled(c)));
        assert_eq!(p.decide(&Request::Ping), Decision::Allow);
    }

    #[test]
    fn block_and_allow_lists_only_narrow() {
        let mut p = Policy::allow_all();
        p.block([Command::Exec]);
        p.restrict_to([Command::Ping, Command::Exec, Command::Info]);
        p.restrict_to([Command::Ping, Command::Exec]);
        assert_eq!(p.decide(&Request::Ping), Decision::Allow);
        assert_eq!(
            p.command_decision(Command::Exec),
            Decision::DenyCommand {
                rule: Rule::InBlockRpcs
            }
        );
        assert_eq!(
            p.decide(&Request::Info),
            Decision::DenyCommand {
                rule: Rule::NotInAllowRpcs
            }
        );
        assert_eq!(p.disabled_commands().len(), Command::ALL.len() - 1);
    }
}
