// SPDX-License-Identifier: LGPL-2.1-or-later
// The nsfd contract's names, written once for nsfdd and its clients and for
// every endpoint (D-Bus, Varlink): error kinds and their names, the keys of a
// process's info, the process states, and the "no exit status" sentinel.
#pragma once

#include <cstddef>
#include <optional>
#include <string_view>

namespace nsfd {

// The errors nsfdd answers with, whatever the endpoint. Each message names the bad value.
enum class ErrorKind {
    NoSuchProcess,        // no process has that pid
    ProcessExited,        // the process exited (or was reaped) before or during the call
    NotTracked,           // no tracked process the caller may see has that id or path
    NotSupported,         // the running kernel lacks what the call needs
    LimitExceeded,        // a quota, nsfdd's fd budget or the fd store is full
    AccessDenied,         // no decider allowed the call
    InvalidArgs,          // an argument nsfdd cannot take (the message says which and why)
    ForeignPidNamespace,  // a pid from a caller in another pid namespace
    InteractiveAuthorizationRequired,  // polkit would ask; the caller did not allow it
    // OpenSocket: socket(2), made as the caller in the target's network
    // namespace, failed (the message names the errno, e.g. EPERM for a raw
    // socket without CAP_NET_RAW there). No fd.
    SocketFailed,
    Failed,  // anything else
    // A live process outside nsfdd's pid namespace (PIDFD_GET_INFO: EREMOTE,
    // 6.18): nsfdd cannot see it, so it can neither act on it nor watch it.
    OutsidePidNamespace,
    // Never sent by nsfdd: libnsfd-client's own, when the calling process could
    // not receive the fds of a reply (MSG_CTRUNC, EMFILE, ENFILE) or open a
    // pidfd to pass: its RLIMIT_NOFILE (or the system's file limit), not nsfdd's.
    CallerOutOfFds,
};

struct ErrorName {
    ErrorKind kind;
    std::string_view dbus;     // D-Bus error name
    std::string_view varlink;  // Varlink error name (interface org.nsfd1.Manager)
};

// Every kind, once. The first entry of a kind is what nsfdd sends.
inline constexpr ErrorName kErrorNames[] = {
    {ErrorKind::NoSuchProcess, "org.nsfd1.Error.NoSuchProcess", "org.nsfd1.Manager.NoSuchProcess"},
    {ErrorKind::ProcessExited, "org.nsfd1.Error.ProcessExited", "org.nsfd1.Manager.ProcessExited"},
    {ErrorKind::NotTracked, "org.nsfd1.Error.NotTracked", "org.nsfd1.Manager.NotTracked"},
    {ErrorKind::NotSupported, "org.nsfd1.Error.NotSupported", "org.nsfd1.Manager.NotSupported"},
    {ErrorKind::LimitExceeded, "org.nsfd1.Error.LimitExceeded", "org.nsfd1.Manager.LimitExceeded"},
    {ErrorKind::AccessDenied, "org.freedesktop.DBus.Error.AccessDenied",
     "org.nsfd1.Manager.AccessDenied"},
    {ErrorKind::InvalidArgs, "org.freedesktop.DBus.Error.InvalidArgs",
     "org.nsfd1.Manager.InvalidArgument"},
    {ErrorKind::ForeignPidNamespace, "org.nsfd1.Error.ForeignPidNamespace",
     "org.nsfd1.Manager.ForeignPidNamespace"},
    {ErrorKind::InteractiveAuthorizationRequired,
     "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired",
     "org.nsfd1.Manager.InteractiveAuthorizationRequired"},
    {ErrorKind::SocketFailed, "org.nsfd1.Error.SocketFailed", "org.nsfd1.Manager.SocketFailed"},
    {ErrorKind::Failed, "org.nsfd1.Error.Failed", "org.nsfd1.Manager.Failed"},
    {ErrorKind::OutsidePidNamespace, "org.nsfd1.Error.OutsidePidNamespace",
     "org.nsfd1.Manager.OutsidePidNamespace"},
    {ErrorKind::CallerOutOfFds, "org.nsfd1.Error.CallerOutOfFds",
     "org.nsfd1.Manager.CallerOutOfFds"},
};

// What sd-bus answers for a path no object is at; nsfdd answers the same for a
// process the caller may not see. Clients read it as NotTracked.
inline constexpr std::string_view kUnknownObjectError = "org.freedesktop.DBus.Error.UnknownObject";

constexpr std::string_view dbusErrorName(ErrorKind kind) noexcept {
    for (const ErrorName& name : kErrorNames) {
        if (name.kind == kind) {
            return name.dbus;
        }
    }
    return "org.nsfd1.Error.Failed";
}

constexpr std::string_view varlinkErrorName(ErrorKind kind) noexcept {
    for (const ErrorName& name : kErrorNames) {
        if (name.kind == kind) {
            return name.varlink;
        }
    }
    return "org.nsfd1.Manager.Failed";
}

// The kind of a D-Bus error name nsfdd sends; nullopt for any other name.
constexpr std::optional<ErrorKind> errorKindOfDbusName(std::string_view name) noexcept {
    if (name == kUnknownObjectError) {
        return ErrorKind::NotTracked;
    }
    for (const ErrorName& entry : kErrorNames) {
        if (entry.dbus == name) {
            return entry.kind;
        }
    }
    return std::nullopt;
}

// The kind of a Varlink error name nsfdd sends; nullopt for any other name.
constexpr std::optional<ErrorKind> errorKindOfVarlinkName(std::string_view name) noexcept {
    for (const ErrorName& entry : kErrorNames) {
        if (entry.varlink == name) {
            return entry.kind;
        }
    }
    return std::nullopt;
}

// The Varlink endpoint (contract/org.nsfd1.Manager.varlink).
namespace varlink {
inline constexpr std::string_view kInterface = "org.nsfd1.Manager";
// Where nsfdd.socket listens.
inline constexpr const char* kSocketPath = "/run/nsfd/org.nsfd1.Manager";
// The parameter every method takes to let polkit ask the caller to
// authenticate (sd-varlink's name for it).
inline constexpr const char* kAllowInteractive = "allowInteractiveAuthentication";
}  // namespace varlink

// The wait(2) status where there is none yet (or the kernel gives none):
// the ExitStatus property, the Exited and ProcessExited signals.
inline constexpr int kNoExitStatus = -1;

// The keys of a process's info (D-Bus a{sv} of GetInfo and GetProcessInfo;
// the same names in Varlink's info object). Absent keys: not known.
namespace info_key {
inline constexpr const char* kId = "Id";        // t: pidfs id
inline constexpr const char* kState = "State";  // s: toString(ProcessState)
inline constexpr const char* kPid = "Pid";      // u: as the caller sees it, 0 if not
inline constexpr const char* kThreadGroupId = "ThreadGroupId";  // u: as the caller sees it
inline constexpr const char* kParentPid = "ParentPid";          // u: as the caller sees it
inline constexpr const char* kCgroupId = "CgroupId";            // t
inline constexpr const char* kRuid = "Ruid";                    // u, and the seven below
inline constexpr const char* kEuid = "Euid";
inline constexpr const char* kSuid = "Suid";
inline constexpr const char* kFsuid = "Fsuid";
inline constexpr const char* kRgid = "Rgid";
inline constexpr const char* kEgid = "Egid";
inline constexpr const char* kSgid = "Sgid";
inline constexpr const char* kFsgid = "Fsgid";
inline constexpr const char* kExitStatus = "ExitStatus";  // i: the wait(2) status, once reaped
}  // namespace info_key

// The life of a tracked process, as the Process.State property names it.
enum class ProcessState {
    Running,
    Exited,  // a zombie: its parent has not reaped it yet
    Reaped,
};

// "running", "exited", "reaped".
constexpr std::string_view toString(ProcessState state) noexcept {
    switch (state) {
        case ProcessState::Running:
            return "running";
        case ProcessState::Exited:
            return "exited";
        case ProcessState::Reaped:
            break;
    }
    return "reaped";
}

constexpr std::optional<ProcessState> parseProcessState(std::string_view name) noexcept {
    for (ProcessState state : {ProcessState::Running, ProcessState::Exited, ProcessState::Reaped}) {
        if (toString(state) == name) {
            return state;
        }
    }
    return std::nullopt;
}

// Spawn's bounds, for nsfdd and libnsfd-client alike (LimitExceeded past them):
// argv and environment together, each string with its NUL, fit one Varlink
// call (varlink/codec.hpp: 64 KiB); runs of one uid at once.
namespace spawn_limit {
inline constexpr std::size_t kArgumentBytes = 48 * 1024;
inline constexpr std::size_t kStrings = 4096;
inline constexpr std::size_t kRunsPerUid = 16;
}  // namespace spawn_limit

}  // namespace nsfd
