// SPDX-License-Identifier: LGPL-2.1-or-later
// nsfdd's core: the tracked processes, who may do what to them, and their
// lives on the event loop. The bus objects call in here with the caller.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "authorizer.hpp"
#include "bus.hpp"
#include "callers.hpp"
#include "config.hpp"
#include "event_loop.hpp"
#include "fd_store.hpp"
#include "notifier.hpp"
#include "registry.hpp"

namespace nsfd::daemon {

class ManagerObject;
class ProcessObjects;
class Service;

using NamespaceFds = std::vector<std::pair<NsType, NsFd>>;

// What the service keeps per tracked process besides the process itself: the
// watch on its pidfd and, once reaped, the end of its retention. Its bus
// object's calls find it (ProcessObjects).
class ProcessBinding final : public Attachment {
  public:
    ProcessBinding(Service& service, TrackedProcess& process);

    Service& service() const noexcept { return service_; }
    TrackedProcess& process() const noexcept { return process_; }
    // Untracked; its removal waits for the loop. No call finds it meanwhile.
    bool removing() const noexcept { return removing_; }

  private:
    friend class Service;

    void stateChanged();
    void startRetention();
    static int onPidFd(sd_event_source* source, int fd, uint32_t revents, void* userdata);
    static int onRetentionEnd(sd_event_source* source, uint64_t usec, void* userdata);

    Service& service_;
    TrackedProcess& process_;
    bool removing_ = false;
    EventSource exitWatch_;
    EventSource retention_;
};

class Service {
  public:
    // Fds kept free for the bus, logs and one GetNamespaces call.
    static constexpr std::size_t kFdReserve = 64;

    Service(BusPtr bus, Config config);
    ~Service();

    // Registers the objects, takes the bus name, tells systemd READY=1, and runs
    // until SIGTERM/SIGINT (0) or a lost bus (1).
    int run();

    // -- for the bus objects: each throws ServiceError or std::system_error --
    // The sender of a call being handled.
    const Caller& callerOf(sd_bus_message* call);

    // pidfd_open with the errors a client expects of a bad pid.
    PidFd openPid(std::uint32_t pid) const;
    // Takes a pidfd a client passed.
    PidFd adoptPidFd(UniqueFd fd) const;

    TrackedProcess& track(const Caller& caller, PidFd pidfd);
    void untrack(const Caller& caller, TrackedProcess& process);
    // The tracked process at `path` if the caller may see it; NotTracked otherwise.
    TrackedProcess& processAt(const Caller& caller, const std::string& path);
    // Tracked, not being removed, and the caller may read its info.
    bool isVisible(const Caller& caller, TrackedProcess& process);
    TrackedProcess& processWithPid(const Caller& caller, std::uint32_t pid);
    // The tracked processes the caller may see; with no caller (nsfdd's own
    // signals), every one not being removed.
    std::vector<TrackedProcess*> visibleProcesses(const Caller* caller);
    // The process object at `path` as `caller` sees it (see visibleProcesses); nullptr if none.
    ProcessBinding* bindingAt(std::string_view path, const Caller* caller);

    NsFd namespaceFd(const Caller& caller, const PidFd& pidfd, const std::string& type);
    // Empty `types`: every type this kernel has.
    NamespaceFds namespaceFds(const Caller& caller, const PidFd& pidfd,
                              const std::vector<std::string>& types);
    std::map<std::string, std::uint64_t> namespaceIds(const Caller& caller, const PidFd& pidfd);
    Info info(const Caller& caller, const PidFd& pidfd);
    void requireInfoAccess(const Caller& caller, TrackedProcess& process, std::string_view what);
    UniqueFd pidFdFor(const Caller& caller, const PidFd& pidfd);
    void sendSignal(const Caller& caller, const PidFd& pidfd, int signal);
    UniqueFd getFd(const Caller& caller, const PidFd& pidfd, int targetFd);

    std::size_t trackedCount() const noexcept { return registry_.size(); }

  private:
    friend class ProcessBinding;

    Target targetOf(const PidFd& pidfd) const;
    [[noreturn]] void deny(const Caller& caller, const std::string& what) const;
    void checkFdBudget(std::size_t needed) const;
    void onStateChanged(TrackedProcess& process);
    void remove(std::uint64_t id);
    void publishStatus();
    void raiseFdLimit();
    // Takes back the processes a previous nsfdd left in systemd's fd store.
    void restore();
    // Runs onAfterCall once the call being handled has its reply, before the next message.
    void scheduleAfterCall();
    static int onAfterCall(sd_event_source* source, void* userdata);

    Config config_;
    Authorizer authorizer_;
    EventLoop loop_;
    BusPtr bus_;  // after the loop: detached from it before it goes
    CallerCache callers_;
    Notifier notifier_;
    FdStore fdStore_;
    std::unique_ptr<ProcessObjects> processObjects_;
    std::unique_ptr<ManagerObject> manager_;
    Registry registry_;  // goes first: its bindings hold event sources of the loop
    EventSource sigterm_;
    EventSource sigint_;
    EventSource afterCall_;
    std::vector<std::uint64_t> pendingRemovals_;       // untracked
    std::vector<std::uint64_t> pendingAnnouncements_;  // newly tracked: InterfacesAdded
    bool countChanged_ = false;                        // TrackedProcesses, STATUS=
    std::size_t fdLimit_ = 1024;
};

}  // namespace nsfd::daemon
