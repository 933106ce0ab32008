//! What crosses the socketpair: typed requests from the frontend, typed replies
//! and control messages from the broker.
//!
//! Every value here is already validated against the QAPI schema by the
//! frontend, and is validated again by the broker, which must assume that any
//! field holds whatever an attacker chose.

use std::fmt;

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::command::Command;

/// Bumped whenever a message changes shape; both binaries ship together, and
/// the frontend refuses to run against a broker that speaks another version.
pub const PROTOCOL_VERSION: u32 = 2;

/// The frontend's exit status when it cannot confine itself as configured
/// (sysexits' EX_CONFIG): the broker stops instead of restarting it.
pub const EXIT_CANNOT_CONFINE: u8 = 78;

/// Frontend to broker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ToBroker {
    /// The first message on a new socketpair, sent once the frontend has
    /// confined itself and can take a channel.
    Ready { protocol_version: u32, sandbox: SandboxReport },
    /// A validated request; the broker answers with [`ToFrontend::Reply`]
    /// carrying the same `seq`, in order.
    Request { seq: u32, request: Request },
    /// A request for a command the frontend was told is disabled; its
    /// arguments were not looked at. The broker answers (with
    /// [`OpError::Disabled`] unless it has since been enabled, in which case
    /// it is refused all the same) and records the attempt.
    Disabled { seq: u32, command: Command },
    /// The host end of the stream channel given with `generation` went away
    /// (EOF or error); the broker may close it and wait for the next client.
    ChannelClosed { generation: u32 },
}

/// What the frontend's confinement enforces, as the frontend found it after
/// entering it (the broker logs and records it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxReport {
    pub uid: u32,
    pub gid: u32,
    pub capabilities_cleared: bool,
    pub no_new_privs: bool,
    /// The Landlock ABI the kernel offered (0: none).
    pub landlock_abi: u8,
    pub landlock: LandlockState,
    pub seccomp: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LandlockState {
    /// Every access right the frontend handles is enforced.
    Full,
    /// Some are (an older kernel).
    Partial,
    /// None are (no Landlock in the kernel, or disabled).
    Unavailable,
}

/// Broker to frontend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ToFrontend {
    /// The first message on a new socketpair.
    Hello(Hello),
    /// A channel to serve; exactly one file descriptor travels with this frame.
    /// It replaces any channel the frontend had. `host_notify`: for a
    /// virtio-serial port, the broker has asked the kernel to signal (SIGIO)
    /// the frontend when the host side opens, so it can wait without polling.
    Channel { kind: ChannelKind, generation: u32, host_notify: bool },
    /// Which commands are enabled right now (sent after `Hello` and whenever it
    /// changes, e.g. on freeze and thaw). The frontend uses it only to order its
    /// errors as qemu-ga does; the broker checks again.
    CommandStates(CommandStates),
    /// The answer to the request with this `seq`.
    Reply { seq: u32, result: Result<Response, OpError> },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    pub protocol_version: u32,
    /// Log debugging detail (the broker was started with `-v`).
    pub verbose: bool,
}

/// How the frontend treats end-of-file on the channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChannelKind {
    /// A virtio-serial port: EOF means the host side is closed; wait for it to
    /// reopen (SIGIO), keep the descriptor.
    VirtioSerial,
    /// A serial line (tty); EOF is reported to the broker.
    Serial,
    /// One accepted unix or vsock connection; EOF is reported to the broker,
    /// which then accepts the next client.
    Stream,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CommandStates {
    /// Commands the configuration or policy disables as a whole.
    pub disabled: Vec<Command>,
    /// Filesystems are frozen: only [`Command::allowed_while_frozen`] commands run.
    pub frozen: bool,
}

impl CommandStates {
    /// Why `command` is refused right now, if it is.
    pub fn refusal(&self, command: Command) -> Option<OpError> {
        if self.frozen && !command.allowed_while_frozen() {
            Some(OpError::Disabled { command, frozen: true })
        } else if self.disabled.contains(&command) {
            Some(OpError::Disabled { command, frozen: false })
        } else {
            None
        }
    }
}

/// One request, its arguments typed as the QAPI schema declares them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Request {
    Sync {
        id: i64,
        delimited: bool,
    },
    Ping,
    GetTime,
    /// Nanoseconds since the epoch; `None` sets the system clock from the hardware clock.
    SetTime {
        time: Option<i64>,
    },
    Info,
    Shutdown {
        mode: ShutdownMode,
    },
    FileOpen {
        path: String,
        mode: FileMode,
    },
    FileClose {
        handle: i64,
    },
    FileRead {
        handle: i64,
        count: Option<i64>,
    },
    FileWrite {
        handle: i64,
        data: Bytes,
        count: Option<i64>,
    },
    FileSeek {
        handle: i64,
        offset: i64,
        whence: i64,
    },
    FileFlush {
        handle: i64,
    },
    FsfreezeStatus,
    FsfreezeFreeze,
    FsfreezeFreezeList {
        mountpoints: Option<Vec<String>>,
    },
    FsfreezeThaw,
    Fstrim {
        minimum: Option<i64>,
    },
    SuspendDisk,
    SuspendRam,
    SuspendHybrid,
    NetworkGetInterfaces,
    GetVcpus,
    SetVcpus {
        vcpus: Vec<LogicalProcessor>,
    },
    GetFsinfo,
    SetUserPassword {
        username: String,
        password: Secret,
        crypted: bool,
    },
    GetMemoryBlocks,
    SetMemoryBlocks {
        blocks: Vec<MemoryBlock>,
    },
    GetMemoryBlockInfo,
    ExecStatus {
        pid: i64,
    },
    Exec(ExecRequest),
    GetDisks,
    GetHostName,
    GetUsers,
    GetTimezone,
    GetOsinfo,
    GetDevices,
    SshGetAuthorizedKeys {
        username: String,
    },
    SshAddAuthorizedKeys {
        username: String,
        keys: Vec<SshKey>,
        reset: bool,
    },
    SshRemoveAuthorizedKeys {
        username: String,
        keys: Vec<SshKey>,
    },
    GetDiskstats,
    GetCpustats,
    GetLoad,
    NetworkGetRoute,
}

impl Request {
    /// The command this request invokes.
    pub fn command(&self) -> Command {
        match self {
            Request::Sync { delimited: true, .. } => Command::SyncDelimited,
            Request::Sync { delimited: false, .. } => Command::Sync,
            Request::Ping => Command::Ping,
            Request::GetTime => Command::GetTime,
            Request::SetTime { .. } => Command::SetTime,
            Request::Info => Command::Info,
            Request::Shutdown { .. } => Command::Shutdown,
            Request::FileOpen { .. } => Command::FileOpen,
            Request::FileClose { .. } => Command::FileClose,
            Request::FileRead { .. } => Command::FileRead,
            Request::FileWrite { .. } => Command::FileWrite,
            Request::FileSeek { .. } => Command::FileSeek,
            Request::FileFlush { .. } => Command::FileFlush,
            Request::FsfreezeStatus => Command::FsfreezeStatus,
            Request::FsfreezeFreeze => Command::FsfreezeFreeze,
            Request::FsfreezeFreezeList { .. } => Command::FsfreezeFreezeList,
            Request::FsfreezeThaw => Command::FsfreezeThaw,
            Request::Fstrim { .. } => Command::Fstrim,
            Request::SuspendDisk => Command::SuspendDisk,
            Request::SuspendRam => Command::SuspendRam,
            Request::SuspendHybrid => Command::SuspendHybrid,
            Request::NetworkGetInterfaces => Command::NetworkGetInterfaces,
            Request::GetVcpus => Command::GetVcpus,
            Request::SetVcpus { .. } => Command::SetVcpus,
            Request::GetFsinfo => Command::GetFsinfo,
            Request::SetUserPassword { .. } => Command::SetUserPassword,
            Request::GetMemoryBlocks => Command::GetMemoryBlocks,
            Request::SetMemoryBlocks { .. } => Command::SetMemoryBlocks,
            Request::GetMemoryBlockInfo => Command::GetMemoryBlockInfo,
            Request::ExecStatus { .. } => Command::ExecStatus,
            Request::Exec(_) => Command::Exec,
            Request::GetDisks => Command::GetDisks,
            Request::GetHostName => Command::GetHostName,
            Request::GetUsers => Command::GetUsers,
            Request::GetTimezone => Command::GetTimezone,
            Request::GetOsinfo => Command::GetOsinfo,
            Request::GetDevices => Command::GetDevices,
            Request::SshGetAuthorizedKeys { .. } => Command::SshGetAuthorizedKeys,
            Request::SshAddAuthorizedKeys { .. } => Command::SshAddAuthorizedKeys,
            Request::SshRemoveAuthorizedKeys { .. } => Command::SshRemoveAuthorizedKeys,
            Request::GetDiskstats => Command::GetDiskstats,
            Request::GetCpustats => Command::GetCpustats,
            Request::GetLoad => Command::GetLoad,
            Request::NetworkGetRoute => Command::NetworkGetRoute,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ShutdownMode {
    Halt,
    Powerdown,
    Reboot,
}

impl ShutdownMode {
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "halt" => Some(Self::Halt),
            "powerdown" => Some(Self::Powerdown),
            "reboot" => Some(Self::Reboot),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Halt => "halt",
            Self::Powerdown => "powerdown",
            Self::Reboot => "reboot",
        }
    }
}

/// An fopen(3) mode string, as qemu-ga accepts them; the spelling is kept
/// because qemu-ga quotes it back in error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FileMode {
    R,
    Rb,
    W,
    Wb,
    A,
    Ab,
    RPlus,
    RbPlus,
    RPlusB,
    WPlus,
    WbPlus,
    WPlusB,
    APlus,
    AbPlus,
    APlusB,
}

impl FileMode {
    const SPELLINGS: [(&'static str, FileMode); 15] = [
        ("r", FileMode::R),
        ("rb", FileMode::Rb),
        ("w", FileMode::W),
        ("wb", FileMode::Wb),
        ("a", FileMode::A),
        ("ab", FileMode::Ab),
        ("r+", FileMode::RPlus),
        ("rb+", FileMode::RbPlus),
        ("r+b", FileMode::RPlusB),
        ("w+", FileMode::WPlus),
        ("wb+", FileMode::WbPlus),
        ("w+b", FileMode::WPlusB),
        ("a+", FileMode::APlus),
        ("ab+", FileMode::AbPlus),
        ("a+b", FileMode::APlusB),
    ];

    pub fn from_name(name: &str) -> Option<Self> {
        Self::SPELLINGS.iter().find(|(s, _)| *s == name).map(|&(_, m)| m)
    }

    pub fn name(self) -> &'static str {
        Self::SPELLINGS.iter().find(|(_, m)| *m == self).map_or("r", |&(s, _)| s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogicalProcessor {
    pub logical_id: i64,
    pub online: bool,
    pub can_offline: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryBlock {
    pub phys_index: u64,
    pub online: bool,
    pub can_offline: Option<bool>,
}

/// Which output streams `guest-exec` captures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CaptureOutput {
    None,
    Stdout,
    Stderr,
    Separated,
    Merged,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecRequest {
    pub path: String,
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub input: Option<Bytes>,
    pub capture: CaptureOutput,
}

/// A successful result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Response {
    /// `{}`
    Empty,
    /// A bare integer.
    Int(i64),
    Info(AgentInfo),
    /// Nothing at all is sent to the host (commands without a success response).
    NoReply,
    /// The bytes read follow this message as `count` bytes of data frames
    /// (see [`crate::frame`]).
    FileRead {
        count: u64,
        eof: bool,
    },
    FileWrite {
        count: u64,
        eof: bool,
    },
    FileSeek {
        position: i64,
        eof: bool,
    },
    Exec {
        pid: i64,
    },
    ExecStatus(ExecStatus),
    FsfreezeStatus(FreezeStatus),
    Fstrim(Vec<TrimResult>),
    Fsinfo(Vec<FsInfo>),
    Vcpus(Vec<LogicalProcessor>),
    MemoryBlocks(Vec<MemoryBlock>),
    MemoryBlockResponses(Vec<MemoryBlockResponse>),
    MemoryBlockInfo {
        size: u64,
    },
    NetworkInterfaces(Vec<NetworkInterface>),
    Disks(Vec<DiskInfo>),
    HostName(String),
    Users(Vec<User>),
    Timezone {
        /// The abbreviation in effect (`CET`), when known.
        zone: Option<String>,
        /// Seconds east of UTC.
        offset: i64,
    },
    Osinfo(Box<OsInfo>),
    AuthorizedKeys(Vec<String>),
    Diskstats(Vec<DiskStatsInfo>),
    Cpustats(Vec<CpuStats>),
    Load {
        load1m: f64,
        load5m: f64,
        load15m: f64,
    },
    Routes(Vec<Route>),
}

/// One key of a guest-ssh-add/remove-authorized-keys request: the line as
/// the host sent it, and the key blob the frontend decoded from its base64
/// body (see [`crate::ssh_key`]), `None` when the line holds no key. The
/// broker never decodes base64: it checks the blob against the line by
/// encoding it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SshKey {
    pub line: String,
    pub blob: Option<Bytes>,
}

/// `GuestUser`: one entry per user, with the earliest login.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct User {
    pub user: String,
    /// Seconds since the epoch, with microseconds (utmp's `ut_tv`).
    pub login_time: f64,
}

/// `GuestOSInfo`: each member absent when the guest does not say.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct OsInfo {
    pub kernel_release: Option<String>,
    pub kernel_version: Option<String>,
    pub machine: Option<String>,
    pub id: Option<String>,
    pub name: Option<String>,
    pub pretty_name: Option<String>,
    pub version: Option<String>,
    pub version_id: Option<String>,
    pub variant: Option<String>,
    pub variant_id: Option<String>,
}

/// `GuestDiskInfo`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskInfo {
    /// The device node (`/dev/vda`, `/dev/dm-0`).
    pub name: String,
    pub partition: bool,
    /// Device nodes this one lies on (device-mapper slaves, md members,
    /// the disk of a partition).
    pub dependencies: Option<Vec<String>>,
    pub address: Option<DiskAddress>,
    /// The device-mapper name.
    pub alias: Option<String>,
    pub smart: Option<NvmeSmart>,
}

/// `GuestNVMeSmart` (the SMART / Health Information log page).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct NvmeSmart {
    pub critical_warning: i64,
    pub temperature: i64,
    pub available_spare: i64,
    pub available_spare_threshold: i64,
    pub percentage_used: i64,
    /// The 128-bit counters as (lo, hi) pairs, in the schema's order:
    /// data units read, data units written, host read commands, host
    /// write commands, controller busy time, power cycles, power-on hours,
    /// unsafe shutdowns, media errors, error log entries.
    pub counters: [(u64, u64); 10],
}

/// `GuestDiskStatsInfo`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskStatsInfo {
    pub name: String,
    pub major: u64,
    pub minor: u64,
    /// `/proc/diskstats` columns after the name, as many as the kernel gives
    /// (11 before 4.18, 15 with discards, 17 with flushes), in the kernel's
    /// order: read-ios, read-merges, read-sectors, read-ticks, write-ios,
    /// write-merges, write-sectors, write-ticks, ios-pgr, total-ticks,
    /// weight-ticks, discard-ios, discard-merges, discard-sectors,
    /// discard-ticks, flush-ios, flush-ticks.
    pub stats: Vec<u64>,
}

/// `GuestLinuxCpuStats`: `/proc/stat` columns for one processor, as many as
/// the kernel gives (at least 4: user, nice, system, idle; then iowait, irq,
/// softirq, steal, guest, guestnice).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuStats {
    pub cpu: i64,
    pub columns: Vec<u64>,
}

/// `GuestNetworkRoute` (QEMU 9.1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Route {
    V4 {
        iface: String,
        destination: String,
        gateway: String,
        mask: String,
        metric: i64,
        flags: u64,
        refcnt: i64,
        use_: i64,
        mtu: i64,
        window: i64,
        irtt: i64,
    },
    V6 {
        iface: String,
        destination: String,
        desprefixlen: u32,
        source: String,
        srcprefixlen: u32,
        nexthop: String,
        metric: i64,
        flags: u64,
        refcnt: i64,
        use_: i64,
    },
}

/// One block's result in `guest-set-memory-blocks`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryBlockResponse {
    pub phys_index: u64,
    pub response: MemoryBlockResponseType,
    pub error_code: Option<i64>,
}

/// `GuestMemoryBlockResponseType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MemoryBlockResponseType {
    Success,
    NotFound,
    OperationNotSupported,
    OperationFailed,
}

impl MemoryBlockResponseType {
    pub fn name(self) -> &'static str {
        match self {
            MemoryBlockResponseType::Success => "success",
            MemoryBlockResponseType::NotFound => "not-found",
            MemoryBlockResponseType::OperationNotSupported => "operation-not-supported",
            MemoryBlockResponseType::OperationFailed => "operation-failed",
        }
    }
}

/// One interface in `guest-network-get-interfaces`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkInterface {
    pub name: String,
    /// `aa:bb:cc:dd:ee:ff`.
    pub hardware_address: Option<String>,
    /// Absent (not empty) when the interface has no address, as qemu-ga.
    pub ip_addresses: Option<Vec<IpAddress>>,
    pub statistics: Option<InterfaceStats>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpAddress {
    pub address: String,
    pub ipv6: bool,
    pub prefix: i64,
}

/// `GuestNetworkInterfaceStat` (qemu-ga 2.11 and later).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct InterfaceStats {
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub rx_errs: u64,
    pub rx_dropped: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub tx_errs: u64,
    pub tx_dropped: u64,
}

/// `guest-fsfreeze-status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FreezeStatus {
    Thawed,
    Frozen,
}

impl FreezeStatus {
    pub fn name(self) -> &'static str {
        match self {
            FreezeStatus::Thawed => "thawed",
            FreezeStatus::Frozen => "frozen",
        }
    }
}

/// One mount point's result in `guest-fstrim`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrimResult {
    pub path: String,
    pub trimmed: Option<i64>,
    pub minimum: Option<i64>,
    pub error: Option<String>,
}

/// One filesystem in `guest-get-fsinfo`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FsInfo {
    /// The device's name (`vda1`, `dm-0`).
    pub name: String,
    pub mountpoint: String,
    /// The filesystem type (`type` on the wire).
    pub fstype: String,
    pub used_bytes: Option<u64>,
    pub total_bytes: Option<u64>,
    /// The size including the blocks reserved for the superuser (QEMU 9.2's
    /// `total-bytes-privileged`).
    pub total_bytes_privileged: Option<u64>,
    /// The disks the filesystem lies on (`disk`), as qemu-ga lists them.
    pub disks: Vec<DiskAddress>,
}

/// `GuestDiskAddress`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskAddress {
    pub pci_controller: PciAddress,
    pub bus_type: DiskBusType,
    pub bus: i64,
    pub target: i64,
    pub unit: i64,
    pub serial: Option<String>,
    pub dev: Option<String>,
}

/// `GuestPCIAddress`; -1 in every member when unknown, as qemu-ga reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PciAddress {
    pub domain: i64,
    pub bus: i64,
    pub slot: i64,
    pub function: i64,
}

impl PciAddress {
    pub const UNKNOWN: PciAddress = PciAddress { domain: -1, bus: -1, slot: -1, function: -1 };
}

/// `GuestDiskBusType` (the 2.5 schema's values, and `nvme` as qemu-ga 7.2
/// reports it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DiskBusType {
    Ide,
    Fdc,
    Scsi,
    Virtio,
    Xen,
    Usb,
    Uml,
    Sata,
    Sd,
    Unknown,
    Ieee1394,
    Ssa,
    Fibre,
    Raid,
    Iscsi,
    Sas,
    Mmc,
    Virtual,
    FileBackedVirtual,
    Nvme,
}

impl DiskBusType {
    pub fn name(self) -> &'static str {
        match self {
            DiskBusType::Ide => "ide",
            DiskBusType::Fdc => "fdc",
            DiskBusType::Scsi => "scsi",
            DiskBusType::Virtio => "virtio",
            DiskBusType::Xen => "xen",
            DiskBusType::Usb => "usb",
            DiskBusType::Uml => "uml",
            DiskBusType::Sata => "sata",
            DiskBusType::Sd => "sd",
            DiskBusType::Unknown => "unknown",
            DiskBusType::Ieee1394 => "ieee1394",
            DiskBusType::Ssa => "ssa",
            DiskBusType::Fibre => "fibre",
            DiskBusType::Raid => "raid",
            DiskBusType::Iscsi => "iscsi",
            DiskBusType::Sas => "sas",
            DiskBusType::Mmc => "mmc",
            DiskBusType::Virtual => "virtual",
            DiskBusType::FileBackedVirtual => "file-backed-virtual",
            DiskBusType::Nvme => "nvme",
        }
    }
}

/// `guest-exec-status`; the optional members are absent when `None`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ExecStatus {
    pub exited: bool,
    pub exitcode: Option<i32>,
    pub signal: Option<i32>,
    pub out_data: Option<Bytes>,
    pub err_data: Option<Bytes>,
    pub out_truncated: Option<bool>,
    pub err_truncated: Option<bool>,
}

/// Which file operation failed, for qemu-ga's texts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FileOp {
    Read,
    Write,
    Seek,
    Flush,
    Close,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentInfo {
    pub version: String,
    /// Every command the agent knows, in [`Command::ALL`] order, with whether
    /// it is enabled.
    pub commands: Vec<(Command, bool)>,
}

/// Why a request failed. The frontend turns each variant into qemu-ga's error
/// class and text in one place.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum OpError {
    /// Disabled by configuration or policy, or because filesystems are frozen.
    Disabled {
        command: Command,
        frozen: bool,
    },
    /// Known command this agent does not implement.
    Unsupported,
    /// Refused by a policy rule on its arguments; `rule` names the rule.
    Denied {
        rule: String,
    },
    /// qemu-ga's "Invalid parameter '...'".
    InvalidParameter {
        name: String,
    },
    /// qemu-ga's "Guest agent command failed, error was '...'".
    CommandFailed {
        message: String,
    },
    /// The broker could not process the frame it received.
    BadRequest,
    /// The audit trail cannot take another record (filesystems are frozen
    /// and the memory it may hold is full): the request is not run.
    AuditFull,
    /// No open file has this handle.
    HandleNotFound(i64),
    /// A `count` out of range.
    InvalidCount(i64),
    InvalidWhence(i64),
    FileOpen {
        path: String,
        mode: FileMode,
        errno: i32,
    },
    FileIo {
        op: FileOp,
        errno: i32,
    },
    /// As many files are open as the policy allows.
    TooManyHandles {
        max: u32,
    },
    /// The program could not be started.
    ExecSpawn {
        path: String,
        errno: i32,
    },
    /// As many guest-exec children run as the policy allows.
    TooManyChildren {
        max: u32,
    },
    /// The account the policy names for programs does not exist.
    NoSuchAccount(String),
    /// The freeze hook is not executable.
    HookAccess {
        path: String,
        errno: i32,
    },
    /// The freeze hook was killed by a signal (or could not be waited for).
    HookAbnormal,
    /// The freeze hook exited with this status.
    HookFailed {
        status: i32,
    },
    /// A mount point could not be opened for an fsfreeze ioctl.
    MountOpen {
        path: String,
        errno: i32,
    },
    /// FIFREEZE failed on a mount point.
    Freeze {
        path: String,
        errno: i32,
    },
    /// A mount point named in guest-fsfreeze-freeze-list is not a mounted
    /// filesystem that can be frozen.
    NotFreezable {
        path: String,
    },
    /// The mount table could not be read.
    MountTable {
        errno: i32,
    },
    /// A sysfs lookup failed, as qemu-ga words it (`what` is e.g.
    /// `realpath("/sys/dev/block/8:0")` or `open("/sys/devices/system/cpu/cpu9/")`).
    Sysfs {
        what: String,
        errno: i32,
    },
    /// qemu-ga's error without an error number (`pread(".../online"):
    /// unexpected EOF`, `guest reported zero memory blocks!`).
    SysfsText {
        message: String,
    },
    /// guest-set-vcpus: a processor without an `online` file (cpu0).
    VcpuCannotOffline {
        id: i64,
    },
    /// guest-set-vcpus would leave fewer vCPUs online than the policy keeps.
    TooFewVcpus {
        min: u32,
    },
    /// guest-set-time: a time that does not fit a time_t.
    TimeTooLarge(i64),
    /// guest-set-time: outside 1970..2070 (qemu-ga appends the text of
    /// whatever errno held, nothing when it was 0, as it usually is).
    InvalidTime {
        errno: i32,
    },
    /// guest-set-time: settimeofday failed.
    SetTimeFailed {
        errno: i32,
    },
    /// guest-set-time: the policy's largest step is exceeded.
    TimeStepTooLarge {
        max_seconds: u64,
    },
    /// `hwclock` exited with an error.
    HwclockFailed,
    /// A helper program (shutdown, hwclock, chpasswd, the sysfs suspend
    /// child) was killed by a signal.
    ChildAbnormal,
    /// A helper program could not be started.
    ChildSpawn {
        errno: i32,
    },
    /// `shutdown` exited with an error.
    ShutdownFailed,
    /// No suspend mechanism (systemd, pm-utils, /sys/power/state) offers the mode.
    SuspendUnsupported,
    /// A suspend helper failed; qemu-ga's text for how.
    SuspendFailed {
        message: String,
    },
    /// The decoded password holds a newline.
    PasswordForbidden,
    /// The username holds a newline or a colon.
    UsernameForbidden,
    /// No chpasswd in PATH.
    NoChpasswd,
    /// chpasswd could not be given the password.
    PasswordWrite {
        errno: i32,
    },
    /// chpasswd exited with an error.
    PasswordFailed,
    /// guest-ssh-*: no such account in the passwd database.
    SshNoUser {
        username: String,
    },
    /// guest-ssh-*: a key qemu-ga would refuse (empty, a comment, a newline),
    /// or one that is not a public key line (our own checks).
    SshInvalidKey {
        key: String,
    },
    /// guest-ssh-*: `authorized_keys` could not be read.
    SshRead {
        path: String,
        errno: i32,
    },
    /// guest-ssh-*: `.ssh` could not be made.
    SshMkdir {
        path: String,
        errno: i32,
    },
    /// guest-ssh-*: `authorized_keys` could not be written.
    SshWrite {
        path: String,
        errno: i32,
    },
    /// guest-get-load: the load average could not be read.
    LoadAverage {
        errno: i32,
    },
}

/// The C library's text for an error number (as `strerror` gives it).
pub fn errno_text(errno: i32) -> String {
    let text = std::io::Error::from_raw_os_error(errno).to_string();
    match text.rfind(" (os error ") {
        Some(at) => text[..at].to_owned(),
        None => text,
    }
}

impl fmt::Display for OpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpError::Disabled { command, frozen: false } => {
                write!(f, "Command {command} has been disabled")
            }
            OpError::Disabled { command, frozen: true } => {
                write!(f, "Command {command} has been disabled: the agent is in frozen state")
            }
            OpError::Unsupported => {
                f.write_str("this feature or command is not currently supported")
            }
            OpError::Denied { rule } => write!(f, "denied by policy rule {rule}"),
            OpError::InvalidParameter { name } => write!(f, "Invalid parameter '{name}'"),
            OpError::CommandFailed { message } => {
                write!(f, "Guest agent command failed, error was '{message}'")
            }
            OpError::BadRequest => f.write_str("the request could not be decoded by the broker"),
            OpError::AuditFull => {
                f.write_str("the audit trail is full while filesystems are frozen; thaw them first")
            }
            OpError::HandleNotFound(h) => write!(f, "handle '{h}' has not been found"),
            OpError::InvalidCount(c) => write!(f, "value '{c}' is invalid for argument count"),
            OpError::InvalidWhence(w) => write!(f, "invalid whence code {w}"),
            OpError::FileOpen { path, mode, errno } => write!(
                f,
                "failed to open file '{path}' (mode: '{}'): {}",
                mode.name(),
                errno_text(*errno)
            ),
            OpError::FileIo { op, errno } => {
                let what = match op {
                    FileOp::Read => "failed to read file",
                    FileOp::Write => "failed to write to file",
                    FileOp::Seek => "failed to seek file",
                    FileOp::Flush => "failed to flush file",
                    FileOp::Close => "failed to close handle",
                };
                write!(f, "{what}: {}", errno_text(*errno))
            }
            OpError::TooManyHandles { max } => {
                write!(f, "too many open files (the policy allows {max})")
            }
            OpError::ExecSpawn { path, errno } => write!(
                f,
                "Guest agent command failed, error was 'Failed to execute child process \u{201c}{path}\u{201d} ({})'",
                errno_text(*errno)
            ),
            OpError::TooManyChildren { max } => {
                write!(
                    f,
                    "too many guest-exec processes running or not yet collected with guest-exec-status (the policy allows {max})"
                )
            }
            OpError::HookAccess { path, errno } => {
                write!(f, "can't access fsfreeze hook '{path}': {}", errno_text(*errno))
            }
            OpError::HookAbnormal => f.write_str("fsfreeze hook has terminated abnormally"),
            OpError::HookFailed { status } => {
                write!(f, "fsfreeze hook has failed with status {status}")
            }
            OpError::MountOpen { path, errno } => {
                write!(f, "failed to open {path}: {}", errno_text(*errno))
            }
            OpError::Freeze { path, errno } => {
                write!(f, "failed to freeze {path}: {}", errno_text(*errno))
            }
            OpError::NotFreezable { path } => {
                write!(f, "'{path}' is not a mounted filesystem that can be frozen")
            }
            OpError::Sysfs { what, errno } => write!(f, "{what}: {}", errno_text(*errno)),
            OpError::SysfsText { message } => f.write_str(message),
            OpError::VcpuCannotOffline { id } => {
                write!(f, "logical processor #{id} can't be offlined")
            }
            OpError::TooFewVcpus { min } => {
                write!(
                    f,
                    "denied by policy rule vcpus.min_online: at least {min} vCPUs stay online"
                )
            }
            OpError::TimeTooLarge(t) => write!(f, "Time {t} is too large"),
            // As QEMU's error_setg_errno: no ": text" for errno 0.
            OpError::InvalidTime { errno: 0 } => f.write_str("Invalid time"),
            OpError::InvalidTime { errno } => write!(f, "Invalid time: {}", errno_text(*errno)),
            OpError::SetTimeFailed { errno } => {
                write!(f, "Failed to set time to guest: {}", errno_text(*errno))
            }
            OpError::TimeStepTooLarge { max_seconds } => write!(
                f,
                "denied by policy rule time.max_step_seconds: the clock may move by at most {max_seconds} s"
            ),
            OpError::HwclockFailed => {
                f.write_str("hwclock failed to set hardware clock to system time")
            }
            OpError::ChildAbnormal => f.write_str("child process has terminated abnormally"),
            OpError::ChildSpawn { errno } => {
                write!(f, "failed to create child process: {}", errno_text(*errno))
            }
            OpError::ShutdownFailed => f.write_str("child process has failed to shutdown"),
            OpError::SuspendUnsupported => {
                f.write_str("the requested suspend mode is not supported by the guest")
            }
            OpError::SuspendFailed { message } => f.write_str(message),
            OpError::PasswordForbidden => f.write_str("forbidden characters in raw password"),
            OpError::UsernameForbidden => f.write_str("forbidden characters in username"),
            OpError::NoChpasswd => f.write_str("cannot find 'passwd' program in PATH"),
            OpError::PasswordWrite { errno } => {
                write!(f, "cannot write new account password: {}", errno_text(*errno))
            }
            OpError::PasswordFailed => f.write_str("child process has failed to set user password"),
            OpError::SshNoUser { username } => {
                // Sic: qemu-ga appends GLib's text, which reads "Success"
                // when getpwnam_r finds no entry.
                write!(f, "failed to lookup user '{username}': Success")
            }
            OpError::SshInvalidKey { key } => write!(f, "invalid OpenSSH public key: '{key}'"),
            OpError::SshRead { path, errno } => write!(
                f,
                "failed to read '{path}': Failed to open file \u{201c}{path}\u{201d}: {}",
                errno_text(*errno)
            ),
            OpError::SshMkdir { path, errno } => {
                write!(f, "failed to create directory '{path}': {}", errno_text(*errno))
            }
            OpError::SshWrite { path, errno } => {
                write!(f, "failed to write to '{path}': {}", errno_text(*errno))
            }
            OpError::LoadAverage { errno } => {
                write!(f, "cannot query load average: {}", errno_text(*errno))
            }
            OpError::MountTable { errno } => {
                write!(f, "failed to read the mount table: {}", errno_text(*errno))
            }
            OpError::NoSuchAccount(name) => write!(
                f,
                "Guest agent command failed, error was 'account \"{name}\" does not exist'"
            ),
        }
    }
}

impl OpError {
    /// qemu-ga's error class for this error.
    pub fn class(&self) -> ErrorClass {
        match self {
            OpError::Disabled { .. } => ErrorClass::CommandNotFound,
            _ => ErrorClass::GenericError,
        }
    }
}

/// QMP error classes qemu-ga uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorClass {
    GenericError,
    CommandNotFound,
}

impl ErrorClass {
    pub fn name(self) -> &'static str {
        match self {
            ErrorClass::GenericError => "GenericError",
            ErrorClass::CommandNotFound => "CommandNotFound",
        }
    }
}

/// Bulk bytes (file data, exec input and output), encoded as one byte string
/// rather than element by element.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Bytes(pub Vec<u8>);

impl fmt::Debug for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Bytes(len {})", self.0.len())
    }
}

impl Serialize for Bytes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_byte_buf(BytesVisitor).map(Bytes)
    }
}

struct BytesVisitor;

impl<'de> serde::de::Visitor<'de> for BytesVisitor {
    type Value = Vec<u8>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a byte string")
    }

    fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
        Ok(v.to_vec())
    }

    fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
        Ok(v)
    }
}

/// A secret (a password): wiped from memory when dropped, never printed.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(pub Zeroizing<Vec<u8>>);

impl Secret {
    pub fn new(bytes: Zeroizing<Vec<u8>>) -> Self {
        Secret(bytes)
    }

    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret(redacted, len {})", self.0.len())
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_byte_buf(BytesVisitor).map(|v| Secret(Zeroizing::new(v)))
    }
}
