// SPDX-License-Identifier: LGPL-2.1-or-later
// The tracked processes: each a pidfd, its identity and what is known of its
// life. No bus here; the service hangs its bus object on each entry.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "nsfd/dbus_names.hpp"
#include "nsfd/info.hpp"
#include "nsfd/pidfd.hpp"

namespace nsfd::daemon {

// Whatever the service layer keeps per process (its bus object, event sources).
// Destroyed with the process entry, before its pidfd.
class Attachment {
  public:
    virtual ~Attachment() = default;
};

class TrackedProcess {
  public:
    // Reads the process's info now, so that it can be told about after it is gone.
    // `knownPid` names a process the kernel has forgotten the pid of (reaped).
    TrackedProcess(PidFd pidfd, uid_t trackedBy, pid_t knownPid = 0);
    ~TrackedProcess();
    TrackedProcess(const TrackedProcess&) = delete;
    TrackedProcess& operator=(const TrackedProcess&) = delete;

    const PidFd& pidfd() const noexcept { return pidfd_; }
    std::uint64_t id() const noexcept { return id_; }
    pid_t pid() const noexcept { return pid_; }
    uid_t trackedBy() const noexcept { return trackedBy_; }
    ProcessState state() const noexcept { return state_; }
    // The wait(2) status once reaped; nullopt before (and on kernels without exit info).
    std::optional<int> exitStatus() const noexcept { return exitStatus_; }
    std::string objectPath() const;

    // Fresh info while the process runs; the last known one after it exited.
    Info info();
    // The last known credentials (for decisions about processes that have exited).
    Credentials lastCredentials() const;

    // Folds in the pidfd's poll state. Returns true if the state changed.
    bool updateState(bool readable, bool hungUp);

    void setAttachment(std::unique_ptr<Attachment> attachment) {
        attachment_ = std::move(attachment);
    }
    Attachment* attachment() const noexcept { return attachment_.get(); }

  private:
    PidFd pidfd_;
    std::uint64_t id_;
    pid_t pid_;
    uid_t trackedBy_;
    ProcessState state_ = ProcessState::Running;
    std::optional<int> exitStatus_;
    Info lastInfo_;
    std::unique_ptr<Attachment> attachment_;  // declared last: goes first
};

class Registry {
  public:
    TrackedProcess* find(std::uint64_t id) const;
    // The tracked process with this pid: a running one if any, else the one reaped last.
    TrackedProcess* findByPid(pid_t pid) const;

    TrackedProcess& add(std::unique_ptr<TrackedProcess> process);
    void remove(std::uint64_t id);

    std::size_t size() const noexcept { return byId_.size(); }
    std::size_t countTrackedBy(uid_t uid) const;
    std::vector<TrackedProcess*> all() const;

  private:
    std::unordered_map<std::uint64_t, std::unique_ptr<TrackedProcess>> byId_;
    std::unordered_multimap<pid_t, std::uint64_t> byPid_;
    std::unordered_map<uid_t, std::size_t> countByUid_;
};

}  // namespace nsfd::daemon
