// SPDX-License-Identifier: LGPL-2.1-or-later
// Names of the nsfd D-Bus contract shared by nsfdd and libnsfd-client.
#pragma once

#include <charconv>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace nsfd::dbus {

inline constexpr const char* kBusName = "org.nsfd1";
inline constexpr const char* kManagerPath = "/org/nsfd1";
inline constexpr const char* kProcessPathPrefix = "/org/nsfd1/process/";
inline constexpr const char* kManagerInterface = "org.nsfd1.Manager";
inline constexpr const char* kProcessInterface = "org.nsfd1.Process";

// "/org/nsfd1/process/ID", ID being the process's pidfs id in decimal.
inline std::string processObjectPath(std::uint64_t id) {
    return kProcessPathPrefix + std::to_string(id);
}

// The id in a process object path, if it is one. Only the path
// processObjectPath() makes: "/org/nsfd1/process/007" names nothing.
inline std::optional<std::uint64_t> processIdOfPath(std::string_view path) {
    std::string_view prefix = kProcessPathPrefix;
    if (path.substr(0, prefix.size()) != prefix || path.size() == prefix.size()) {
        return std::nullopt;
    }
    path.remove_prefix(prefix.size());
    if (path[0] == '0') {
        return std::nullopt;  // a leading zero, or id 0, which pidfs never gives
    }
    std::uint64_t id = 0;
    auto [end, ec] = std::from_chars(path.data(), path.data() + path.size(), id);
    if (ec != std::errc() || end != path.data() + path.size()) {
        return std::nullopt;
    }
    return id;
}

// The errors nsfdd replies with. Each message names the bad value.
namespace error {
inline constexpr const char* kNoSuchProcess = "org.nsfd1.Error.NoSuchProcess";
inline constexpr const char* kProcessExited = "org.nsfd1.Error.ProcessExited";
inline constexpr const char* kNotTracked = "org.nsfd1.Error.NotTracked";
inline constexpr const char* kNotSupported = "org.nsfd1.Error.NotSupported";
inline constexpr const char* kLimitExceeded = "org.nsfd1.Error.LimitExceeded";
inline constexpr const char* kFailed = "org.nsfd1.Error.Failed";
inline constexpr const char* kAccessDenied = "org.freedesktop.DBus.Error.AccessDenied";
inline constexpr const char* kInvalidArgs = "org.freedesktop.DBus.Error.InvalidArgs";
}  // namespace error

}  // namespace nsfd::dbus

namespace nsfd {

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

inline std::optional<ProcessState> parseProcessState(std::string_view name) noexcept {
    for (ProcessState state : {ProcessState::Running, ProcessState::Exited, ProcessState::Reaped}) {
        if (toString(state) == name) {
            return state;
        }
    }
    return std::nullopt;
}

}  // namespace nsfd
