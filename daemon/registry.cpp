// SPDX-License-Identifier: LGPL-2.1-or-later
#include "registry.hpp"

#include <cstring>

#include "nsfd/dbus_names.hpp"

namespace nsfd::daemon {

TrackedProcess::TrackedProcess(PidFd pidfd, uid_t trackedBy, pid_t knownPid)
    : pidfd_(std::move(pidfd)),
      id_(pidfd_.id()),
      pid_(pidfd_.pid() > 0 ? pidfd_.pid() : knownPid),
      trackedBy_(trackedBy),
      lastInfo_(pidfd_.info()) {
    exitStatus_ = lastInfo_.exitStatus();
    if (exitStatus_) {
        state_ = ProcessState::Reaped;
    } else if (pidfd_.hasExited()) {
        state_ = ProcessState::Exited;
    }
}

TrackedProcess::~TrackedProcess() = default;

std::string TrackedProcess::objectPath() const {
    return nsfd::dbus::processObjectPath(id_);
}

Info TrackedProcess::info() {
    if (state_ != ProcessState::Reaped) {
        try {
            Info fresh = pidfd_.info();
            if (fresh.credentials()) {
                lastInfo_ = fresh;
            }
        } catch (const std::system_error&) {
            // Gone since: the last known info is the answer.
        }
    }
    return lastInfo_;
}

Credentials TrackedProcess::lastCredentials() const {
    return lastInfo_.credentials().value_or(Credentials{});
}

bool TrackedProcess::updateState(bool readable, bool hungUp) {
    ProcessState before = state_;
    if (hungUp && state_ != ProcessState::Reaped) {
        try {
            exitStatus_ = pidfd_.info(InfoFlags::Exit).exitStatus();
        } catch (const std::system_error&) {
            exitStatus_.reset();  // a kernel without exit info
        }
        state_ = ProcessState::Reaped;
    } else if (readable && state_ == ProcessState::Running) {
        state_ = ProcessState::Exited;
    }
    return state_ != before;
}

TrackedProcess* Registry::find(std::uint64_t id) const {
    auto it = byId_.find(id);
    return it == byId_.end() ? nullptr : it->second.get();
}

TrackedProcess* Registry::findByPid(pid_t pid) const {
    TrackedProcess* best = nullptr;
    auto [first, last] = byPid_.equal_range(pid);
    for (auto it = first; it != last; ++it) {
        TrackedProcess* candidate = find(it->second);
        if (best == nullptr ||
            (candidate->state() != ProcessState::Reaped && best->state() == ProcessState::Reaped) ||
            (candidate->state() == best->state() && candidate->id() > best->id())) {
            best = candidate;
        }
    }
    return best;
}

TrackedProcess& Registry::add(std::unique_ptr<TrackedProcess> process) {
    TrackedProcess& ref = *process;
    byPid_.emplace(ref.pid(), ref.id());
    ++countByUid_[ref.trackedBy()];
    byId_.emplace(ref.id(), std::move(process));
    return ref;
}

void Registry::remove(std::uint64_t id) {
    auto it = byId_.find(id);
    if (it == byId_.end()) {
        return;
    }
    TrackedProcess& process = *it->second;
    auto [first, last] = byPid_.equal_range(process.pid());
    for (auto pidIt = first; pidIt != last; ++pidIt) {
        if (pidIt->second == id) {
            byPid_.erase(pidIt);
            break;
        }
    }
    if (--countByUid_[process.trackedBy()] == 0) {
        countByUid_.erase(process.trackedBy());
    }
    byId_.erase(it);
}

std::size_t Registry::countTrackedBy(uid_t uid) const {
    auto it = countByUid_.find(uid);
    return it == countByUid_.end() ? 0 : it->second;
}

std::vector<TrackedProcess*> Registry::all() const {
    std::vector<TrackedProcess*> out;
    out.reserve(byId_.size());
    for (const auto& [id, process] : byId_) {
        out.push_back(process.get());
    }
    return out;
}

}  // namespace nsfd::daemon
