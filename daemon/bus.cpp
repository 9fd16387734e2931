// SPDX-License-Identifier: LGPL-2.1-or-later
#include "bus.hpp"

#include <fcntl.h>

#include <system_error>

namespace nsfd::daemon {

int checkBus(int r, const char* what) {
    if (r < 0) {
        throw std::system_error(-r, std::generic_category(), what);
    }
    return r;
}

BusPtr openBus(const std::string& bus) {
    sd_bus* raw = nullptr;
    if (bus == "system") {
        checkBus(sd_bus_open_system(&raw), "Failed to connect to the system bus");
        return BusPtr(raw);
    }
    if (bus == "session") {
        checkBus(sd_bus_open_user(&raw), "Failed to connect to the session bus");
        return BusPtr(raw);
    }
    checkBus(sd_bus_new(&raw), "Failed to create a bus connection");
    BusPtr owned(raw);
    checkBus(sd_bus_set_address(raw, bus.c_str()), "Invalid bus address");
    checkBus(sd_bus_set_bus_client(raw, 1), "Failed to set up the bus connection");
    checkBus(sd_bus_negotiate_fds(raw, 1), "Failed to set up the bus connection");
    checkBus(sd_bus_negotiate_creds(raw, 1, SD_BUS_CREDS_UNIQUE_NAME),
             "Failed to set up the bus connection");
    checkBus(sd_bus_start(raw), "Failed to connect to the bus");
    return owned;
}

namespace {

// A string-like argument: 's' or 'o'.
std::string readText(sd_bus_message* m, char type, const char* what) {
    const char* value = nullptr;
    checkBus(sd_bus_message_read_basic(m, type, &value), what);
    return value;
}

}  // namespace

std::string readString(sd_bus_message* m) {
    return readText(m, 's', "Failed to read a string argument");
}

std::string readObjectPath(sd_bus_message* m) {
    return readText(m, 'o', "Failed to read an object path argument");
}

std::uint32_t readUint32(sd_bus_message* m) {
    std::uint32_t value = 0;
    checkBus(sd_bus_message_read_basic(m, 'u', &value), "Failed to read a uint32 argument");
    return value;
}

std::int32_t readInt32(sd_bus_message* m) {
    std::int32_t value = 0;
    checkBus(sd_bus_message_read_basic(m, 'i', &value), "Failed to read an int32 argument");
    return value;
}

std::vector<std::string> readStrings(sd_bus_message* m) {
    std::vector<std::string> out;
    checkBus(sd_bus_message_enter_container(m, 'a', "s"), "Failed to read a string array");
    const char* value = nullptr;
    while (checkBus(sd_bus_message_read_basic(m, 's', &value), "Failed to read a string array") >
           0) {
        out.emplace_back(value);
    }
    checkBus(sd_bus_message_exit_container(m), "Failed to read a string array");
    return out;
}

UniqueFd readFd(sd_bus_message* m) {
    int fd = -1;
    checkBus(sd_bus_message_read_basic(m, 'h', &fd), "Failed to read an fd argument");
    return duplicateFd(fd);
}

int replyEmpty(sd_bus_message* call) {
    return sd_bus_reply_method_return(call, nullptr);
}

int replyObjectPath(sd_bus_message* call, const std::string& path) {
    return sd_bus_reply_method_return(call, "o", path.c_str());
}

int replyFd(sd_bus_message* call, UniqueFd fd) {
    return sd_bus_reply_method_return(call, "h", fd.get());
}

BusMessage newMethodReturn(sd_bus_message* call) {
    sd_bus_message* reply = nullptr;
    checkBus(sd_bus_message_new_method_return(call, &reply), "Failed to create a reply");
    return BusMessage(reply);
}

int replyNamespaceFds(sd_bus_message* call, const std::vector<std::pair<NsType, NsFd>>& fds) {
    BusMessage reply = newMethodReturn(call);
    const char* what = "Failed to build a reply";
    checkBus(sd_bus_message_open_container(reply.get(), 'a', "{sh}"), what);
    for (const auto& [type, ns] : fds) {  // sd-bus sends duplicates; ours close on return
        std::string name(toString(type));
        checkBus(sd_bus_message_append(reply.get(), "{sh}", name.c_str(), ns.get()), what);
    }
    checkBus(sd_bus_message_close_container(reply.get()), what);
    return sd_bus_send(nullptr, reply.get(), nullptr);
}

int replyInfo(sd_bus_message* call, const Info& info, std::uint64_t id, std::string_view state,
              std::optional<int> exitStatus) {
    BusMessage reply = newMethodReturn(call);
    sd_bus_message* m = reply.get();
    const char* what = "Failed to build a reply";
    auto u32 = [&](const char* key, auto value) {
        checkBus(sd_bus_message_append(m, "{sv}", key, "u", static_cast<std::uint32_t>(value)),
                 what);
    };
    std::string stateName(state);
    checkBus(sd_bus_message_open_container(m, 'a', "{sv}"), what);
    checkBus(sd_bus_message_append(m, "{sv}", "Id", "t", id), what);
    checkBus(sd_bus_message_append(m, "{sv}", "State", "s", stateName.c_str()), what);
    if (info.pid()) {
        u32("Pid", *info.pid());
        u32("ThreadGroupId", *info.threadGroupId());
        u32("ParentPid", *info.parentPid());
    }
    if (info.cgroupId()) {
        checkBus(sd_bus_message_append(m, "{sv}", "CgroupId", "t",
                                       static_cast<std::uint64_t>(*info.cgroupId())),
                 what);
    }
    if (std::optional<Credentials> c = info.credentials()) {
        u32("Ruid", c->ruid);
        u32("Euid", c->euid);
        u32("Suid", c->suid);
        u32("Fsuid", c->fsuid);
        u32("Rgid", c->rgid);
        u32("Egid", c->egid);
        u32("Sgid", c->sgid);
        u32("Fsgid", c->fsgid);
    }
    if (exitStatus) {
        checkBus(sd_bus_message_append(m, "{sv}", "ExitStatus", "i",
                                       static_cast<std::int32_t>(*exitStatus)),
                 what);
    }
    checkBus(sd_bus_message_close_container(m), what);
    return sd_bus_send(nullptr, m, nullptr);
}

}  // namespace nsfd::daemon
