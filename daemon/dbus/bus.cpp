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

int replyInfo(sd_bus_message* call, const ProcessView& in) {
    namespace key = nsfd::info_key;
    BusMessage reply = newMethodReturn(call);
    sd_bus_message* m = reply.get();
    const char* what = "Failed to build a reply";
    auto u32 = [&](const char* name, auto value) {
        checkBus(sd_bus_message_append(m, "{sv}", name, "u", static_cast<std::uint32_t>(value)),
                 what);
    };
    std::string stateName(toString(in.state));
    checkBus(sd_bus_message_open_container(m, 'a', "{sv}"), what);
    checkBus(sd_bus_message_append(m, "{sv}", key::kId, "t", in.id), what);
    checkBus(sd_bus_message_append(m, "{sv}", key::kState, "s", stateName.c_str()), what);
    if (in.info.pid()) {
        u32(key::kPid, in.pid);
        u32(key::kThreadGroupId, in.pid);  // a tracked process is a thread-group leader
        u32(key::kParentPid, in.parentPid);
    }
    if (in.info.cgroupId()) {
        checkBus(sd_bus_message_append(m, "{sv}", key::kCgroupId, "t",
                                       static_cast<std::uint64_t>(*in.info.cgroupId())),
                 what);
    }
    if (std::optional<Credentials> c = in.info.credentials()) {
        u32(key::kRuid, c->ruid);
        u32(key::kEuid, c->euid);
        u32(key::kSuid, c->suid);
        u32(key::kFsuid, c->fsuid);
        u32(key::kRgid, c->rgid);
        u32(key::kEgid, c->egid);
        u32(key::kSgid, c->sgid);
        u32(key::kFsgid, c->fsgid);
    }
    if (in.exitStatus) {
        checkBus(sd_bus_message_append(m, "{sv}", key::kExitStatus, "i",
                                       static_cast<std::int32_t>(*in.exitStatus)),
                 what);
    }
    checkBus(sd_bus_message_close_container(m), what);
    return sd_bus_send(nullptr, m, nullptr);
}

int setBusErrorFromException(sd_bus_error* error) noexcept {
    auto [kind, message] = currentError();
    std::string name(dbusErrorName(kind));
    int r = sd_bus_error_set(error, name.c_str(), message.c_str());
    return r < 0 ? r : -EIO;
}

int replyError(sd_bus_message* call, ErrorKind kind, const std::string& message) noexcept {
    std::string name(dbusErrorName(kind));
    sd_bus_error error = SD_BUS_ERROR_NULL;
    sd_bus_error_set(&error, name.c_str(), message.c_str());
    int r = sd_bus_reply_method_error(call, &error);
    sd_bus_error_free(&error);
    return r < 0 ? r : 1;
}

}  // namespace nsfd::daemon
