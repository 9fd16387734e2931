// SPDX-License-Identifier: LGPL-2.1-or-later
#include "serve.hpp"

#include <spdlog/spdlog.h>

#include <csignal>
#include <cstring>
#include <memory>
#include <optional>

#include "core/manager.hpp"
#include "dbus/endpoint.hpp"
#include "nsfd/dbus_names.hpp"
#include "nsfd/features.hpp"
#include "polkit/polkit_decider.hpp"
#include "varlink/manager_varlink.hpp"
#include "version.hpp"

namespace nsfd::daemon {

namespace {

int onStopSignal(sd_event_source* source, const signalfd_siginfo* info, void* /*userdata*/) {
    spdlog::info("Received {}, stopping", strsignal(static_cast<int>(info->ssi_signo)));
    sd_event_exit(sd_event_source_get_event(source), 0);
    return 0;
}

EventSource addStopSignal(EventLoop& loop, int signal) {
    sd_event_source* source = nullptr;
    checkEvent(sd_event_add_signal(loop.get(), &source, signal, onStopSignal, nullptr),
               "Failed to handle the stop signals");
    return EventSource(source);
}

}  // namespace

namespace {

// The socket systemd passed (nsfdd.socket), or `path` if given: then nsfdd binds it.
void startVarlink(varlink::VarlinkEndpoint& varlink, Manager& manager, const std::string& path) {
    UniqueFd passed = manager.takeInheritedSocket(FdStore::kVarlinkSocketName);
    if (!path.empty()) {
        varlink.bind(path);
        spdlog::info("Serving Varlink on {}", path);
    } else if (passed.ok()) {
        varlink.listen(std::move(passed));
        spdlog::info("Serving Varlink on the socket systemd passed");
    }
}

// A decider the Authorizer asks for as long as this lives.
class AddedDecider {
  public:
    AddedDecider(Authorizer& authorizer, Decider& decider)
        : authorizer_(authorizer), decider_(decider) {
        authorizer_.add(decider_);
    }
    ~AddedDecider() { authorizer_.remove(decider_); }
    AddedDecider(const AddedDecider&) = delete;
    AddedDecider& operator=(const AddedDecider&) = delete;

  private:
    Authorizer& authorizer_;
    Decider& decider_;
};

}  // namespace

int serve(const std::string& bus, const std::string& varlinkPath, const Config& config) {
    EventLoop loop;
    EventSource sigterm = addStopSignal(loop, SIGTERM);
    EventSource sigint = addStopSignal(loop, SIGINT);
    Notifier notifier;
    Manager manager(loop, config, notifier);
    varlink::VarlinkEndpoint varlink(loop, manager);
    BusEndpoint endpoint(openBus(bus), loop, manager);
    // polkit decides for both endpoints, after the kernel rule and nsfdd.conf's
    // grants. It asks polkitd on the bus connection and answers the endpoints'
    // calls, so it goes first: its checks in flight are dropped unanswered.
    std::unique_ptr<PolkitDecider> polkit;
    std::optional<AddedDecider> polkitAdded;
    if (config.polkit) {
        polkit = std::make_unique<PolkitDecider>(
            endpoint.bus(), PolkitClient::Options{config.polkitTimeout,
                                                  PolkitClient::Options().interactiveTimeout});
        polkitAdded.emplace(manager.authorizer(), *polkit);
    }
    manager.restore();
    startVarlink(varlink, manager, varlinkPath);
    endpoint.requestName();
    // Subscribers of the nsfdd before this one hear of what it missed.
    endpoint.callers().keepSubscribersIn(manager.fdStore().file("subscribers"));
    manager.reportRestored();
    std::string features;
    for (std::string_view name : kernelFeatures().names()) {
        features += features.empty() ? "" : " ";
        features += name;
    }
    spdlog::info("nsfdd {} ready on the bus as {}, kernel features: {}", kVersion,
                 nsfd::dbus::kBusName, features);
    notifier.send("READY=1");
    manager.publishStatus();
    int code = loop.run();
    notifier.send("STOPPING=1");
    return code;
}

}  // namespace nsfd::daemon
