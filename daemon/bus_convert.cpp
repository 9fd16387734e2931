// SPDX-License-Identifier: LGPL-2.1-or-later
#include "bus_convert.hpp"

#include "errors.hpp"

namespace nsfd::daemon {

std::map<std::string, sdbus::Variant> infoDict(const Info& info, std::uint64_t id,
                                               std::string_view state,
                                               std::optional<int> exitStatus) {
    std::map<std::string, sdbus::Variant> dict;
    dict["Id"] = sdbus::Variant(id);
    dict["State"] = sdbus::Variant(std::string(state));
    auto u32 = [](auto value) { return sdbus::Variant(static_cast<uint32_t>(value)); };
    if (info.pid()) {
        dict["Pid"] = u32(*info.pid());
        dict["ThreadGroupId"] = u32(*info.threadGroupId());
        dict["ParentPid"] = u32(*info.parentPid());
    }
    if (info.cgroupId()) {
        dict["CgroupId"] = sdbus::Variant(static_cast<uint64_t>(*info.cgroupId()));
    }
    if (std::optional<Credentials> c = info.credentials()) {
        dict["Ruid"] = u32(c->ruid);
        dict["Euid"] = u32(c->euid);
        dict["Suid"] = u32(c->suid);
        dict["Fsuid"] = u32(c->fsuid);
        dict["Rgid"] = u32(c->rgid);
        dict["Egid"] = u32(c->egid);
        dict["Sgid"] = u32(c->sgid);
        dict["Fsgid"] = u32(c->fsgid);
    }
    if (exitStatus) {
        dict["ExitStatus"] = sdbus::Variant(static_cast<int32_t>(*exitStatus));
    }
    return dict;
}

std::map<std::string, sdbus::UnixFd> fdDict(NamespaceFds&& fds) {
    std::map<std::string, sdbus::UnixFd> dict;
    for (auto& [type, ns] : fds) {
        dict.emplace(std::string(toString(type)), toUnixFd(ns.release()));
    }
    return dict;
}

UniqueFd fromUnixFd(const sdbus::UnixFd& fd) {
    if (!fd.isValid()) {
        throw ServiceError(ErrorKind::InvalidArgs, "Invalid fd");
    }
    return duplicateFd(fd.get());
}

}  // namespace nsfd::daemon
