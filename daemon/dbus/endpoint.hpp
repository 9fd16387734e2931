// SPDX-License-Identifier: LGPL-2.1-or-later
// The D-Bus endpoint: nsfdd's bus connection on the event loop, its objects
// (/org/nsfd1 and /org/nsfd1/process/ID), who calls, and the news for
// subscribers. Every method handler has one shape: decode the arguments,
// authorize (once, visibly: authorizeThen), call the core, encode the reply;
// any error becomes its named D-Bus error in one place (bus.hpp).
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "bus.hpp"
#include "callers.hpp"
#include "core/authorizer.hpp"
#include "core/event_loop.hpp"
#include "core/manager.hpp"

namespace nsfd::daemon {

class ManagerObject;
class ProcessObjects;
class BusNews;
class SystemdUnits;

class BusEndpoint final {
  public:
    // Attaches `bus` to `loop` (a lost connection ends the loop with 1) and
    // registers the objects. Throws std::system_error.
    BusEndpoint(BusPtr bus, EventLoop& loop, Manager& manager);
    ~BusEndpoint();
    BusEndpoint(const BusEndpoint&) = delete;
    BusEndpoint& operator=(const BusEndpoint&) = delete;

    // Takes the bus name org.nsfd1. Throws std::system_error.
    void requestName();

    sd_bus* bus() const noexcept { return bus_.get(); }
    Manager& core() noexcept { return manager_; }
    CallerCache& callers() noexcept { return callers_; }
    BusNews& news() noexcept { return *news_; }

    // The caller of `call`. Throws ServiceError(AccessDenied) if unknown.
    Caller callerOf(sd_bus_message* call) { return callers_.callerOf(call); }
    // The tracked process `call` is addressed to (/org/nsfd1/process/ID), by
    // its id. Throws ServiceError(NotTracked) for a path without one.
    static Named processOf(sd_bus_message* call);

    // The one authorization step of a handler: asks the core's Authorizer,
    // then runs `body(call)` (core, encode) if it allowed, or replies with the
    // denial. The reply may go out later (an asynchronous decider), so `body`
    // must hold what it needs by value and look processes up again by id.
    // Returns what the handler returns.
    template <typename Body>
    int authorizeThen(sd_bus_message* call, const Caller& caller, const Request& request,
                      Body&& body) {
        auto held = std::make_shared<BusMessage>(sd_bus_message_ref(call));
        auto run = std::make_shared<std::decay_t<Body>>(std::forward<Body>(body));
        manager_.authorizer().authorize(caller, request, [held, run](const Decision& decision) {
            sd_bus_message* m = held->get();
            if (!decision.allowed) {
                replyError(m, decision.error, decision.message);
                return;
            }
            serveCall(m, [&] { return (*run)(m); });
        });
        return 1;
    }

    // The process `named` names, resolved by the core for `action`
    // (Manager::resolve): runs `body(call, resolution)` once it is (now, or
    // later for a selector), or replies with the error. `body` then authorizes
    // `resolution.request` (authorizeThen) and acts on `resolution.process`.
    template <typename Body>
    int resolveThen(sd_bus_message* call, const Caller& caller, const Named& named, Action action,
                    Body&& body) {
        auto held = std::make_shared<BusMessage>(sd_bus_message_ref(call));
        auto run = std::make_shared<std::decay_t<Body>>(std::forward<Body>(body));
        manager_.resolve(
            caller, named, action,
            [held, run](Resolution resolution) {
                sd_bus_message* m = held->get();
                serveCall(m, [&] { return (*run)(m, std::move(resolution)); });
            },
            [held](const std::exception_ptr& error) {
                serveCall(held->get(), [&]() -> int { std::rethrow_exception(error); });
            });
        return 1;
    }

    // Both steps at once, for an action that needs nothing but its target:
    // resolves `named` for `action` (resolveThen), authorizes the request
    // (authorizeThen), then runs `body(call, process)` (a ProcessRef).
    template <typename Body>
    int authorizeThen(sd_bus_message* call, const Caller& caller, const Named& named, Action action,
                      Body&& body) {
        return resolveThen(
            call, caller, named, action,
            [this, caller, body = std::forward<Body>(body)](sd_bus_message* m, Resolution r) {
                return authorizeThen(m, caller, r.request,
                                     [body, process = r.process](sd_bus_message* reply) {
                                         return body(reply, process);
                                     });
            });
    }

  private:
    static int onDisconnected(sd_bus_message* message, void* userdata, sd_bus_error* error);

    BusPtr bus_;
    EventLoop& loop_;
    Manager& manager_;
    CallerCache callers_;
    BusSlot disconnected_;
    std::unique_ptr<ProcessObjects> processObjects_;
    std::unique_ptr<ManagerObject> managerObject_;
    std::unique_ptr<BusNews> news_;
    std::unique_ptr<SystemdUnits> units_;  // unit: and machine: for the resolver
};

// The endpoint a vtable's userdata points to.
inline BusEndpoint& endpointOf(void* userdata) {
    return *static_cast<BusEndpoint*>(userdata);
}

// A namespace type argument: InvalidArgs unless it is one of the names
// nsfd/ns.hpp spells (exactly).
NsType readNsType(sd_bus_message* call);
std::vector<NsType> readNsTypes(sd_bus_message* call);

}  // namespace nsfd::daemon

namespace nsfd::daemon {

// A signal number argument: InvalidArgs unless 0..SIGRTMAX.
int readSignal(sd_bus_message* call);

// The handlers that Manager and Process share (decode done, process
// resolved): authorize, then the core, then the reply.
int authorizeNamespace(BusEndpoint& bus, sd_bus_message* call, const Caller& caller,
                       Resolution resolution, NsType type);
int authorizeNamespaces(BusEndpoint& bus, sd_bus_message* call, const Caller& caller,
                        Resolution resolution, const std::vector<NsType>& types);
int authorizeSignal(BusEndpoint& bus, sd_bus_message* call, const Caller& caller,
                    Resolution resolution, int signal);
// OpenSocket's (i family, i type, i protocol): InvalidArgs naming the bad one.
SocketSpec readSocketSpec(sd_bus_message* call);
int authorizeSocket(BusEndpoint& bus, sd_bus_message* call, const Caller& caller,
                    Resolution resolution, const SocketSpec& spec);

}  // namespace nsfd::daemon
