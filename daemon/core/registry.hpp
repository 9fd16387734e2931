// SPDX-License-Identifier: LGPL-2.1-or-later
// The tracked processes: each a pidfd, its identity, who tracks it and what is
// known of its life. No IPC here.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <unordered_map>
#include <vector>

#include "nsfd/contract.hpp"
#include "nsfd/info.hpp"
#include "nsfd/pidfd.hpp"

namespace nsfd::daemon {

// Whatever the manager keeps per process (its event sources). Destroyed with
// the process entry, before its pidfd.
class Attachment {
  public:
    virtual ~Attachment() = default;
};

class TrackedProcess {
  public:
    // Reads the process's info now, so that it can be told about after it is gone.
    // `knownPid` names a process the kernel has forgotten the pid of (reaped).
    explicit TrackedProcess(PidFd pidfd, pid_t knownPid = 0);
    ~TrackedProcess();
    TrackedProcess(const TrackedProcess&) = delete;
    TrackedProcess& operator=(const TrackedProcess&) = delete;

    const PidFd& pidfd() const noexcept { return pidfd_; }
    std::uint64_t id() const noexcept { return id_; }
    // In nsfdd's pid namespace; the last one it had once reaped.
    pid_t pid() const noexcept { return pid_; }
    // Who tracks it, by uid, in the order they came; never empty while registered.
    const std::vector<uid_t>& trackers() const noexcept { return trackers_; }
    bool isTrackedBy(uid_t uid) const noexcept;
    ProcessState state() const noexcept { return state_; }
    // The wait(2) status once reaped; nullopt before (and on kernels without exit info).
    std::optional<int> exitStatus() const noexcept { return exitStatus_; }

    // Fresh info while the process runs; the last known one after it exited.
    Info info();
    // The last known credentials (for decisions about processes that have exited).
    Credentials lastCredentials() const;
    // The pid namespaces it has a pid in, innermost first (pidNamespaceChain()),
    // read when it was first tracked: a process never changes them. Empty if
    // it had exited by then.
    const std::vector<std::uint64_t>& pidNamespaces() const noexcept { return pidNamespaces_; }

    // Folds in the pidfd's poll state. Returns true if the state changed.
    bool updateState(bool readable, bool hungUp);

    void setAttachment(std::unique_ptr<Attachment> attachment) {
        attachment_ = std::move(attachment);
    }
    Attachment* attachment() const noexcept { return attachment_.get(); }

  private:
    friend class Registry;

    PidFd pidfd_;
    std::uint64_t id_;
    pid_t pid_;
    std::vector<uid_t> trackers_;
    // Whose quota each tracker's tracking counts against, in trackers_' order.
    std::vector<std::optional<uid_t>> accounts_;
    ProcessState state_ = ProcessState::Running;
    std::optional<int> exitStatus_;
    Info lastInfo_;
    std::vector<std::uint64_t> pidNamespaces_;
    bool counted_ = true;                     // its trackers count against their quotas
    std::unique_ptr<Attachment> attachment_;  // declared last: goes first
};

class Registry {
  public:
    TrackedProcess* find(std::uint64_t id) const;
    // The tracked process that has this pid now (not one reaped since).
    TrackedProcess* findLive(pid_t pid) const;
    // The tracked process reaped last that had this pid.
    TrackedProcess* findReaped(pid_t pid) const;

    // Registers a process with no trackers yet.
    TrackedProcess& add(std::unique_ptr<TrackedProcess> process);
    void remove(std::uint64_t id);
    // Each returns whether anything changed.
    // `account`: whose quota the tracking counts against (Caller::account(),
    // so that the uids of a user namespace share their user's); nullopt for
    // none (root, which has no quota).
    bool addTracker(TrackedProcess& process, uid_t uid, std::optional<uid_t> account);
    bool removeTracker(TrackedProcess& process, uid_t uid);
    // Its trackers' quotas get `process` back (it is being removed).
    void uncount(TrackedProcess& process);

    std::size_t size() const noexcept { return byId_.size(); }
    // Trackings counted against `account` (the processes it tracks under any
    // of its uids), reaped ones in their retention too: what its
    // quota counts. A reaped process holds a slot of the fd store until its
    // retention ends; counting it keeps one user's short-lived processes
    // from filling the store for everyone (issue 22).
    std::size_t countTrackedBy(uid_t account) const;
    std::vector<TrackedProcess*> all() const;

  private:
    void count(const TrackedProcess& process, std::optional<uid_t> account, int delta);

    std::unordered_map<std::uint64_t, std::unique_ptr<TrackedProcess>> byId_;
    std::unordered_multimap<pid_t, std::uint64_t> byPid_;
    std::unordered_map<uid_t, std::size_t> countByUid_;
};

}  // namespace nsfd::daemon
