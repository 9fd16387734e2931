// SPDX-License-Identifier: LGPL-2.1-or-later
#include "nsfd/info.hpp"

namespace nsfd {

std::optional<pid_t> Info::pid() const noexcept {
    return has(InfoFlags::Pid) ? std::optional<pid_t>(static_cast<pid_t>(raw_.pid)) : std::nullopt;
}

std::optional<pid_t> Info::threadGroupId() const noexcept {
    return has(InfoFlags::Pid) ? std::optional<pid_t>(static_cast<pid_t>(raw_.tgid)) : std::nullopt;
}

std::optional<pid_t> Info::parentPid() const noexcept {
    return has(InfoFlags::Pid) ? std::optional<pid_t>(static_cast<pid_t>(raw_.ppid)) : std::nullopt;
}

std::optional<std::uint64_t> Info::cgroupId() const noexcept {
    return has(InfoFlags::CgroupId) ? std::optional<std::uint64_t>(raw_.cgroupid) : std::nullopt;
}

std::optional<Credentials> Info::credentials() const noexcept {
    if (!has(InfoFlags::Credentials)) {
        return std::nullopt;
    }
    return Credentials{raw_.ruid, raw_.euid, raw_.suid, raw_.fsuid,
                       raw_.rgid, raw_.egid, raw_.sgid, raw_.fsgid};
}

std::optional<int> Info::exitStatus() const noexcept {
    return has(InfoFlags::Exit) ? std::optional<int>(raw_.exit_code) : std::nullopt;
}

std::optional<std::uint32_t> Info::coredumpMask() const noexcept {
    return has(InfoFlags::Coredump) ? std::optional<std::uint32_t>(raw_.coredump_mask)
                                    : std::nullopt;
}

}  // namespace nsfd
