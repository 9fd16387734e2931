// SPDX-License-Identifier: LGPL-2.1-or-later
#include "systemd_units.hpp"

#include <cstring>

#include "bus.hpp"

namespace nsfd::daemon {

namespace {

// How long nsfdd's loop waits for systemd or machined.
constexpr std::uint64_t kTimeoutUsec = 5'000'000;

constexpr const char* kSystemd = "org.freedesktop.systemd1";
constexpr const char* kSystemdPath = "/org/freedesktop/systemd1";
constexpr const char* kSystemdManager = "org.freedesktop.systemd1.Manager";
constexpr const char* kMachined = "org.freedesktop.machine1";
constexpr const char* kMachinedPath = "/org/freedesktop/machine1";

struct BusErrorFree {
    sd_bus_error error = SD_BUS_ERROR_NULL;
    ~BusErrorFree() { sd_bus_error_free(&error); }
};

// A method call with a bounded wait; its reply, or nullptr with `error` set.
BusMessage call(sd_bus* bus, const char* destination, const char* path, const char* interface,
                const char* member, sd_bus_error* error, const char* types = nullptr,
                const char* argument = nullptr) {
    sd_bus_message* request = nullptr;
    checkBus(sd_bus_message_new_method_call(bus, &request, destination, path, interface, member),
             "Failed to make a call to systemd");
    BusMessage held(request);
    if (types != nullptr) {
        checkBus(sd_bus_message_append(request, types, argument),
                 "Failed to make a call to systemd");
    }
    sd_bus_message* reply = nullptr;
    if (sd_bus_call(bus, request, kTimeoutUsec, error, &reply) < 0) {
        return nullptr;
    }
    return BusMessage(reply);
}

[[noreturn]] void unavailable(const std::string& who, const sd_bus_error& error) {
    throw ServiceError(
        ErrorKind::NotSupported,
        "Failed to ask " + who + ": " + (error.message != nullptr ? error.message : "no answer"));
}

// Property `name` of `interface` at `path`: a reply positioned on its variant's content.
BusMessage property(sd_bus* bus, const char* destination, const std::string& path,
                    const char* interface, const char* name, const char* type,
                    sd_bus_error* error) {
    sd_bus_message* request = nullptr;
    checkBus(sd_bus_message_new_method_call(bus, &request, destination, path.c_str(),
                                            "org.freedesktop.DBus.Properties", "Get"),
             "Failed to make a call to systemd");
    BusMessage held(request);
    checkBus(sd_bus_message_append(request, "ss", interface, name), "Failed to make a call");
    sd_bus_message* reply = nullptr;
    if (sd_bus_call(bus, request, kTimeoutUsec, error, &reply) < 0) {
        return nullptr;
    }
    BusMessage out(reply);
    checkBus(sd_bus_message_enter_container(reply, 'v', type), "Failed to read a property");
    return out;
}

// systemd's interface for the unit type of `name` ("nginx.service": Service).
const char* unitInterface(const std::string& name) {
    static const std::pair<const char*, const char*> kTypes[] = {
        {".service", "org.freedesktop.systemd1.Service"},
        {".scope", "org.freedesktop.systemd1.Scope"},
        {".socket", "org.freedesktop.systemd1.Socket"},
        {".mount", "org.freedesktop.systemd1.Mount"},
        {".swap", "org.freedesktop.systemd1.Swap"},
        {".slice", "org.freedesktop.systemd1.Slice"},
    };
    for (const auto& [suffix, interface] : kTypes) {
        std::size_t n = std::strlen(suffix);
        if (name.size() > n && name.compare(name.size() - n, n, suffix) == 0) {
            return interface;
        }
    }
    return nullptr;
}

}  // namespace

std::optional<UnitDirectory::Unit> SystemdUnits::unit(const std::string& given) {
    // As systemctl: a name without a type is a service.
    std::string name = given.find('.') == std::string::npos ? given + ".service" : given;
    const char* interface = unitInterface(name);
    if (interface == nullptr) {
        return std::nullopt;  // a target, a timer, ...: no processes of its own
    }
    BusErrorFree e;
    BusMessage reply =
        call(bus_, kSystemd, kSystemdPath, kSystemdManager, "GetUnit", &e.error, "s", name.c_str());
    if (!reply) {
        if (sd_bus_error_has_name(&e.error, "org.freedesktop.systemd1.NoSuchUnit")) {
            return std::nullopt;
        }
        unavailable("systemd for unit " + name, e.error);
    }
    const char* path = nullptr;
    checkBus(sd_bus_message_read(reply.get(), "o", &path), "Failed to read systemd's answer");
    std::string unitPath = path;
    Unit unit;
    if (std::strcmp(interface, "org.freedesktop.systemd1.Service") == 0) {
        BusMessage pid = property(bus_, kSystemd, unitPath, interface, "MainPID", "u", &e.error);
        if (!pid) {
            unavailable("systemd for the MainPID of " + name, e.error);
        }
        std::uint32_t mainPid = 0;
        checkBus(sd_bus_message_read(pid.get(), "u", &mainPid), "Failed to read MainPID");
        unit.mainPid = static_cast<pid_t>(mainPid);
    }
    BusMessage cgroup =
        property(bus_, kSystemd, unitPath, interface, "ControlGroup", "s", &e.error);
    if (!cgroup) {
        unavailable("systemd for the ControlGroup of " + name, e.error);
    }
    const char* controlGroup = nullptr;
    checkBus(sd_bus_message_read(cgroup.get(), "s", &controlGroup), "Failed to read ControlGroup");
    unit.controlGroup = controlGroup != nullptr ? controlGroup : "";
    return unit;
}

std::optional<UnitDirectory::Unit> SystemdUnits::machine(const std::string& name) {
    BusErrorFree e;
    BusMessage reply = call(bus_, kMachined, kMachinedPath, "org.freedesktop.machine1.Manager",
                            "GetMachine", &e.error, "s", name.c_str());
    if (!reply) {
        if (sd_bus_error_has_name(&e.error, "org.freedesktop.machine1.NoSuchMachine")) {
            return std::nullopt;
        }
        unavailable("systemd-machined for machine " + name, e.error);
    }
    const char* path = nullptr;
    checkBus(sd_bus_message_read(reply.get(), "o", &path), "Failed to read machined's answer");
    std::string machinePath = path;
    constexpr const char* kMachine = "org.freedesktop.machine1.Machine";
    BusMessage leader = property(bus_, kMachined, machinePath, kMachine, "Leader", "u", &e.error);
    if (!leader) {
        unavailable("systemd-machined for the leader of " + name, e.error);
    }
    std::uint32_t leaderPid = 0;
    checkBus(sd_bus_message_read(leader.get(), "u", &leaderPid), "Failed to read Leader");
    Unit machine;
    machine.mainPid = static_cast<pid_t>(leaderPid);
    // The leader is checked against its unit's cgroup, as a unit's MainPID is.
    BusMessage unitName = property(bus_, kMachined, machinePath, kMachine, "Unit", "s", &e.error);
    const char* unit = nullptr;
    if (unitName && sd_bus_message_read(unitName.get(), "s", &unit) >= 0 && unit != nullptr &&
        *unit != '\0') {
        if (std::optional<Unit> owner = this->unit(unit)) {
            machine.controlGroup = owner->controlGroup;
        }
    }
    return machine;
}

}  // namespace nsfd::daemon
