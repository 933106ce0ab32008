//! The only vocabulary the qga-warden broker and frontend share: typed
//! messages, their framing and size limits, and descriptor passing. No I/O
//! policy and no JSON live here.

// The one exception is marked in `fdpass`: taking ownership of a descriptor
// the kernel delivered.
#![deny(unsafe_code)]

pub mod codec;
pub mod command;
pub mod fdpass;
pub mod frame;
pub mod limits;
pub mod message;
pub mod ssh_key;

pub use command::Command;
pub use message::*;
