// SPDX-License-Identifier: LGPL-2.1-or-later
#include "endpoint.hpp"

#include <spdlog/spdlog.h>

#include <csignal>

#include "manager_object.hpp"
#include "news.hpp"
#include "nsfd/dbus_names.hpp"
#include "process_objects.hpp"
#include "systemd_units.hpp"

namespace nsfd::daemon {

BusEndpoint::BusEndpoint(BusPtr bus, EventLoop& loop, Manager& manager)
    : bus_(std::move(bus)), loop_(loop), manager_(manager), callers_(bus_.get()) {
    // sd-bus takes one message per dispatch of its sources, and comes back at
    // once while it holds more.
    checkBus(sd_bus_attach_event(bus_.get(), loop.get(), SD_EVENT_PRIORITY_NORMAL),
             "Failed to attach the bus to the event loop");
    sd_bus_slot* slot = nullptr;
    checkBus(
        sd_bus_match_signal(bus_.get(), &slot, "org.freedesktop.DBus.Local", nullptr,
                            "org.freedesktop.DBus.Local", "Disconnected", onDisconnected, this),
        "Failed to watch the bus connection");
    disconnected_.reset(slot);
    processObjects_ = std::make_unique<ProcessObjects>(*this);
    managerObject_ = std::make_unique<ManagerObject>(*this);
    news_ = std::make_unique<BusNews>(*this);
    manager_.addObserver(*news_);
    units_ = std::make_unique<SystemdUnits>(bus_.get());
    manager_.resolver().setUnitDirectory(units_.get());
}

BusEndpoint::~BusEndpoint() {
    manager_.resolver().setUnitDirectory(nullptr);
    units_.reset();
    manager_.removeObserver(*news_);
    news_.reset();
    managerObject_.reset();
    processObjects_.reset();
    disconnected_.reset();
    sd_bus_detach_event(bus_.get());
}

void BusEndpoint::requestName() {
    checkBus(sd_bus_request_name(bus_.get(), nsfd::dbus::kBusName, 0),
             "Failed to take the bus name org.nsfd1");
}

int BusEndpoint::onDisconnected(sd_bus_message* /*message*/, void* userdata,
                                sd_bus_error* /*error*/) {
    spdlog::critical("Lost the bus connection");
    static_cast<BusEndpoint*>(userdata)->loop_.exit(EXIT_FAILURE);
    return 0;
}

Named BusEndpoint::processOf(sd_bus_message* call) {
    const char* path = sd_bus_message_get_path(call);
    std::optional<std::uint64_t> id =
        path != nullptr ? nsfd::dbus::processIdOfPath(path) : std::nullopt;
    if (!id) {
        throw ServiceError(ErrorKind::NotTracked,
                           std::string("No tracked process at ") + (path ? path : "?"));
    }
    return Named::byId(*id);
}

namespace {

NsType nsTypeOf(const std::string& name) {
    std::optional<NsType> type = parseNsType(name);
    if (!type) {
        throw ServiceError(ErrorKind::InvalidArgs,
                           "Unknown namespace type '" + name +
                               "' (expected one of: cgroup ipc mnt net pid pid_for_children time "
                               "time_for_children user uts)");
    }
    return *type;
}

}  // namespace

NsType readNsType(sd_bus_message* call) {
    return nsTypeOf(readString(call));
}

std::vector<NsType> readNsTypes(sd_bus_message* call) {
    std::vector<NsType> types;
    for (const std::string& name : readStrings(call)) {
        types.push_back(nsTypeOf(name));
    }
    return types;
}

int readSignal(sd_bus_message* call) {
    int signal = readInt32(call);
    if (signal < 0 || signal > SIGRTMAX) {
        throw ServiceError(ErrorKind::InvalidArgs, "Invalid signal number " +
                                                       std::to_string(signal) + " (expected 0 to " +
                                                       std::to_string(SIGRTMAX) + ")");
    }
    return signal;
}

int authorizeNamespace(BusEndpoint& bus, sd_bus_message* call, const Caller& caller,
                       Resolution resolution, NsType type) {
    resolution.request.namespaces = {type};
    return bus.authorizeThen(
        call, caller, resolution.request,
        [&bus, process = resolution.process, type](sd_bus_message* m) {
            return replyFd(m, UniqueFd(bus.core().namespaceFd(process.pidfd(), type).release()));
        });
}

int authorizeNamespaces(BusEndpoint& bus, sd_bus_message* call, const Caller& caller,
                        Resolution resolution, const std::vector<NsType>& types) {
    resolution.request.namespaces = Manager::requestedTypes(types);
    return bus.authorizeThen(call, caller, resolution.request,
                             [&bus, process = resolution.process, types](sd_bus_message* m) {
                                 return replyNamespaceFds(
                                     m, bus.core().namespaceFds(process.pidfd(), types));
                             });
}

int authorizeSignal(BusEndpoint& bus, sd_bus_message* call, const Caller& caller,
                    Resolution resolution, int signal) {
    resolution.request.signal = signal;
    return bus.authorizeThen(call, caller, resolution.request,
                             [&bus, process = resolution.process, signal](sd_bus_message* m) {
                                 bus.core().sendSignal(process.pidfd(), signal);
                                 return replyEmpty(m);
                             });
}

SocketSpec readSocketSpec(sd_bus_message* call) {
    std::int32_t family = readInt32(call);
    std::int32_t type = readInt32(call);
    std::int32_t protocol = readInt32(call);
    return Manager::socketSpec(family, type, protocol);
}

int authorizeSocket(BusEndpoint& bus, sd_bus_message* call, const Caller& caller,
                    Resolution resolution, const SocketSpec& spec) {
    resolution.request.socket = spec;
    return bus.authorizeThen(call, caller, resolution.request,
                             [&bus, caller, process = resolution.process, spec](sd_bus_message* m) {
                                 // The helper answers later: the reply goes out then.
                                 auto held = std::make_shared<BusMessage>(sd_bus_message_ref(m));
                                 bus.core().openSocket(
                                     caller, process.pidfd(), spec,
                                     [held](UniqueFd socket, std::exception_ptr error) {
                                         serveCall(held->get(), [&] {
                                             if (error) {
                                                 std::rethrow_exception(error);
                                             }
                                             return replyFd(held->get(), std::move(socket));
                                         });
                                     });
                                 return 1;
                             });
}

}  // namespace nsfd::daemon
