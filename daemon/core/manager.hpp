// SPDX-License-Identifier: LGPL-2.1-or-later
// nsfdd's core: the tracked processes and their lives on the event loop (the
// pidfd watches, retention after reap), who tracks what (quotas, the fd store,
// restore after a restart), and the operations every endpoint calls after the
// authorization step allowed them. No IPC here: a test can drive it alone.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "authorizer.hpp"
#include "caller.hpp"
#include "command_runner.hpp"
#include "config.hpp"
#include "errors.hpp"
#include "event_loop.hpp"
#include "fd_store.hpp"
#include "notifier.hpp"
#include "registry.hpp"
#include "resolution.hpp"
#include "resolver.hpp"
#include "socket_helper.hpp"

namespace nsfd::daemon {

using NamespaceFds = std::vector<std::pair<NsType, NsFd>>;

// What happens to tracked processes, for the endpoints' news. Called on the
// loop, synchronously; an observer must not track or untrack from a callback.
class ManagerObserver {
  public:
    virtual ~ManagerObserver() = default;
    // A process is tracked that was not before.
    virtual void processTracked(const TrackedProcess& /*process*/) {}
    // Its State changed (to exited, or to reaped with its exit status).
    virtual void processStateChanged(const TrackedProcess& /*process*/) {}
    // It is about to go: untracked by its last tracker, or its retention ended.
    virtual void processRemoved(const TrackedProcess& /*process*/) {}
    // The number of tracked processes changed (at most once per loop turn).
    virtual void trackedCountChanged(std::size_t /*count*/) {}
};

class Manager final {
  public:
    // Fds kept free for the endpoints, logs and one GetNamespaces call.
    static constexpr std::size_t kFdReserve = 64;

    // Raises the soft RLIMIT_NOFILE to the hard one. Throws std::system_error.
    Manager(EventLoop& loop, const Config& config, Notifier& notifier);
    ~Manager();
    Manager(const Manager&) = delete;
    Manager& operator=(const Manager&) = delete;

    void addObserver(ManagerObserver& observer) { observers_.push_back(&observer); }
    void removeObserver(ManagerObserver& observer);

    // Takes back the processes a previous nsfdd left in systemd's fd store.
    // Call once, first.
    void restore();
    // Reports those reaped while nsfdd was down, as if it had watched: call
    // once the endpoints are ready to tell (bus name taken, subscribers back).
    void reportRestored();
    FdStore& fdStore() noexcept { return fdStore_; }
    // A socket the service manager passed by name (FdStore::kVarlinkSocketName),
    // once, after restore(); not ok() if none was.
    UniqueFd takeInheritedSocket(std::string_view name) { return fdStore_.takeSocket(name); }
    // STATUS= for systemd: "Tracking N processes".
    void publishStatus();

    Authorizer& authorizer() noexcept { return authorizer_; }
    const Config& config() const noexcept { return config_; }
    std::size_t trackedCount() const noexcept { return registry_.size(); }

    // -- naming a process; each throws ServiceError --
    // pidfd_open of a pid the caller wrote. ForeignPidNamespace for a caller in
    // another pid namespace, InvalidArgs for 0 or a thread, NoSuchProcess.
    PidFd openPid(const Caller& caller, std::uint32_t pid) const;
    // A pidfd a caller passed: InvalidArgs (the message starting "pidfd: ")
    // unless it is a pidfd of a process (not O_PATH, not PIDFD_THREAD, a
    // thread-group leader), OutsidePidNamespace for a live process nsfdd's pid
    // namespace cannot see, ProcessExited if it was reaped. Takes `fd` in every case.
    PidFd adoptPidFd(UniqueFd fd) const;
    // The tracked process with this id, if the caller may see it; NotTracked otherwise.
    TrackedProcess& tracked(const Caller& caller, std::uint64_t id);
    // The tracked process that has this pid now, or, while no process has it,
    // the one that had it last (reaped, retained); NotTracked otherwise.
    TrackedProcess& trackedWithPid(const Caller& caller, std::uint32_t pid);
    // The caller tracks it and could name it (a pid in its pid namespace or
    // below), or may read its info (without asking asynchronous deciders).
    bool isVisible(const Caller& caller, const TrackedProcess& process);
    // Every tracked process the caller may see; with no caller, every one.
    std::vector<TrackedProcess*> visibleProcesses(const Caller* caller);
    TrackedProcess* find(std::uint64_t id) const { return registry_.find(id); }
    // A pid to show the caller: itself in nsfdd's pid namespace, 0 to a caller
    // in another one (the kernel's answer for a process it cannot see).
    std::uint32_t pidFor(const Caller& caller, pid_t pid) const noexcept;

    // -- what a caller named, resolved for one action (resolution.hpp) --
    // Looks up `named` as the functions above do (a selector as users name it:
    // resolver.hpp) and builds the authorization step's Request for `action`
    // with its target (targetOf), then calls `then` with it: now, or, for a
    // selector, once the process is found and the caller may read its info
    // (asking the authorization step, perhaps polkit, which may answer later).
    // Every error goes to `failed` instead, now or later: the ServiceErrors of
    // openPid, tracked, trackedWithPid and targetOf; for a selector InvalidArgs
    // (malformed, an ambiguous container prefix), NoSuchProcess (nothing
    // matches, or in the words of an absent target what the caller may not
    // see), ForeignPidNamespace (PID:ID from another pid namespace),
    // NotSupported (no cgroup2; unit: or machine: without systemd). `then`
    // must not throw. A pidfd `named` holds is moved out of it (its copies share it).
    // resolve() of what is looked up at once, every kind but a selector: the
    // Resolution is returned, its errors thrown (the ServiceErrors above),
    // with no callbacks to allocate. Throws std::logic_error for a selector.
    Resolution resolveNow(const Caller& caller, const Named& named, Action action);
    void resolve(const Caller& caller, const Named& named, Action action, ResolvedThen then,
                 const ResolveFailed& failed);
    // The process as `caller` sees it now. Throws ServiceError: NotTracked if
    // it was untracked meanwhile, ProcessExited for a held pidfd of a reaped one.
    ProcessView view(const Caller& caller, const ProcessRef& process);
    Resolver& resolver() noexcept { return resolver_; }

    // -- the authorization step's view of a target; throws ServiceError --
    // `action` needs the process alive (GetNamespace, GetPidFd): ProcessExited
    // if it has exited, never a denial because it did.
    // Target::visible follows the caller's pid namespace (as canName() in
    // manager.cpp); a caller in nsfdd's sees every process.
    // Only what a decider may read: nothing for a caller the authorization
    // step lets through before any decider (root), which saves its syscalls.
    Target targetOf(const Caller& caller, const PidFd& pidfd, Action action) const;
    Target targetOf(const Caller& caller, TrackedProcess& process, Action action) const;

    // -- operations, after the authorization step allowed them --
    // Adds the caller as a tracker (LimitExceeded over its quota or nsfdd's).
    TrackedProcess& track(const Caller& caller, PidFd pidfd);
    // Drops the caller's own tracking, or, if it has none, every tracking (the
    // authorization step allowed that). The process goes with its last tracker.
    void untrack(const Caller& caller, std::uint64_t id);
    // PIDFD_GET_INFO: ProcessExited once it is gone.
    Info info(const PidFd& pidfd) const;
    NsFd namespaceFd(const PidFd& pidfd, NsType type) const;
    // `types` empty: every type this kernel has. The types the authorization
    // step was asked about: requestedTypes().
    NamespaceFds namespaceFds(const PidFd& pidfd, const std::vector<NsType>& types) const;
    std::map<std::string, std::uint64_t> namespaceIds(const PidFd& pidfd) const;
    // What a GetNamespaces of `types` asks for: each once, every type for none.
    static std::vector<NsType> requestedTypes(const std::vector<NsType>& types);
    // A close-on-exec duplicate of the pidfd.
    UniqueFd duplicatePidFd(const PidFd& pidfd) const;
    void sendSignal(const PidFd& pidfd, int signal) const;
    UniqueFd getFd(const PidFd& pidfd, int targetFd) const;
    // socket(2)'s arguments as a caller wrote them: InvalidArgs naming the bad
    // one (a family or type nsfd/socket_names.hpp does not name, type flags,
    // a negative protocol).
    static SocketSpec socketSpec(std::int64_t family, std::int64_t type, std::int64_t protocol);
    // OpenSocket: socket(spec) made by nsfd-helper inside the network namespace
    // of `pidfd`'s process as exactly `caller`. `done` gets the socket or the
    // error (SocketFailed with socket(2)'s errno; Failed if the helper failed),
    // later, on the loop. Throws ServiceError for what fails before the helper
    // is asked (ProcessExited, no helper to reach, too many waiting).
    void openSocket(const Caller& caller, const PidFd& pidfd, const SocketSpec& spec,
                    SocketHelper::Done done);
    SocketHelper& socketHelper() noexcept { return socketHelper_; }
    // Spawn, after the authorization step allowed Action::Enter for
    // spec.namespaces: `spec` run by nsfd-helper in those namespaces of
    // `pidfd`'s process as exactly `caller`, in the caller's own mount
    // namespace and root directory (from its pidfd, never from an fd it
    // passed). `events` as CommandRunner's. Returns the run, for
    // CommandRunner::cancel(). Throws ServiceError before anything runs:
    // NotSupported for a caller outside nsfdd's user or pid namespace (the
    // command would leave them), ProcessExited (the target or the caller),
    // LimitExceeded, Failed.
    std::uint64_t spawn(const Caller& caller, const PidFd& pidfd, SpawnSpec spec,
                        CommandRunner::Events events);
    CommandRunner& commandRunner() noexcept { return commandRunner_; }

  private:
    friend class ProcessWatch;

    using Found = std::function<void(PidFd)>;
    using NotFound = std::function<void(const ServiceError&)>;
    // The process `selector` names, if the caller may read its info: calls
    // `found` with its pidfd, or `failed` with NoSuchProcess in the words of an
    // absent target (nobody learns of what it may not see); once, now or later
    // (polkit). Throws before either as resolve() says.
    void findSelected(const Caller& caller, std::string_view selector, Found found,
                      NotFound failed);
    // The Request for `action` on the process, and the process to act on after.
    Resolution resolution(const Caller& caller, PidFd pidfd, Action action) const;
    Resolution resolution(const Caller& caller, TrackedProcess& process, Action action) const;

    // Where the target stands for the caller: visible, its pid namespace's init.
    // `alive`: the process's pidfd while it runs (for /proc), else null.
    void place(const Caller& caller, Target& target,
               const std::vector<std::uint64_t>& pidNamespaces, const PidFd* alive,
               Action action) const;
    void checkFdBudget(std::size_t needed) const;
    void raiseFdLimit();
    TrackedProcess& add(std::unique_ptr<TrackedProcess> process);
    void onStateChanged(TrackedProcess& process);
    void remove(std::uint64_t id);
    void countChanged();
    static int onTurnEnd(sd_event_source* source, void* userdata);

    EventLoop& loop_;
    const Config& config_;
    Notifier& notifier_;
    Authorizer authorizer_;
    FdStore fdStore_;
    std::vector<ManagerObserver*> observers_;
    std::size_t fdLimit_ = 1024;
    EventSource turnEnd_;  // STATUS= and trackedCountChanged once per turn
    bool countChanged_ = false;
    std::vector<std::uint64_t> reapedWhileDown_;  // restore() to reportRestored()
    Resolver resolver_;
    SocketHelper socketHelper_;
    CommandRunner commandRunner_;
    Registry registry_;  // goes first: its watches hold event sources of the loop
};

}  // namespace nsfd::daemon
