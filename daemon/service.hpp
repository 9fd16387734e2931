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
#include "callers.hpp"
#include "config.hpp"
#include "event_loop.hpp"
#include "fd_store.hpp"
#include "registry.hpp"

namespace sdbus {
class IConnection;
class IObject;
}  // namespace sdbus

namespace nsfd::daemon {

class ManagerObject;

using NamespaceFds = std::vector<std::pair<NsType, NsFd>>;

class Service {
  public:
    // Fds kept free for the bus, logs and one GetNamespaces call.
    static constexpr std::size_t kFdReserve = 64;

    Service(std::unique_ptr<sdbus::IConnection> connection, Config config);
    ~Service();

    // Registers the objects, takes the bus name, tells systemd READY=1, and runs
    // until SIGTERM/SIGINT (0) or a lost bus (1).
    int run();

    // -- for the bus objects: each throws ServiceError or std::system_error --
    const Caller& callerOf(const sdbus::IObject& object);

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
    std::vector<TrackedProcess*> visibleProcesses(const Caller& caller);

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
    static int onRemoveLater(sd_event_source* source, void* userdata);

    std::unique_ptr<sdbus::IConnection> connection_;
    Config config_;
    Authorizer authorizer_;
    EventLoop loop_;
    CallerCache callers_;
    FdStore fdStore_;
    Registry registry_;
    std::unique_ptr<ManagerObject> manager_;
    EventSource sigterm_;
    EventSource sigint_;
    EventSource removeLater_;
    std::vector<std::uint64_t> pendingRemovals_;
    std::size_t fdLimit_ = 1024;
};

}  // namespace nsfd::daemon
