// SPDX-License-Identifier: LGPL-2.1-or-later
#include "registry.hpp"

#include <algorithm>

#include "caller.hpp"  // pidNamespaceChain

namespace nsfd::daemon {

TrackedProcess::TrackedProcess(PidFd pidfd, pid_t knownPid)
    : pidfd_(std::move(pidfd)),
      id_(pidfd_.id()),
      pid_(pidfd_.pid() > 0 ? pidfd_.pid() : knownPid),
      lastInfo_(pidfd_.info()),
      pidNamespaces_(pidNamespaceChain(pidfd_)) {
    exitStatus_ = lastInfo_.exitStatus();
    if (exitStatus_) {
        state_ = ProcessState::Reaped;
    } else if (pidfd_.hasExited()) {
        state_ = ProcessState::Exited;
    }
}

TrackedProcess::~TrackedProcess() = default;

bool TrackedProcess::isTrackedBy(uid_t uid) const noexcept {
    return std::find(trackers_.begin(), trackers_.end(), uid) != trackers_.end();
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

TrackedProcess* Registry::findLive(pid_t pid) const {
    auto [first, last] = byPid_.equal_range(pid);
    for (auto it = first; it != last; ++it) {
        TrackedProcess* candidate = find(it->second);
        if (candidate->state() != ProcessState::Reaped) {
            return candidate;  // a pid names one process at a time
        }
    }
    return nullptr;
}

TrackedProcess* Registry::findReaped(pid_t pid) const {
    TrackedProcess* best = nullptr;
    auto [first, last] = byPid_.equal_range(pid);
    for (auto it = first; it != last; ++it) {
        TrackedProcess* candidate = find(it->second);
        if (candidate->state() == ProcessState::Reaped &&
            (best == nullptr || candidate->id() > best->id())) {
            best = candidate;
        }
    }
    return best;
}

TrackedProcess& Registry::add(std::unique_ptr<TrackedProcess> process) {
    TrackedProcess& ref = *process;
    byPid_.emplace(ref.pid(), ref.id());
    byId_.emplace(ref.id(), std::move(process));
    return ref;
}

void Registry::count(const TrackedProcess& process, std::optional<uid_t> account, int delta) {
    if (!process.counted_ || !account) {
        return;
    }
    std::size_t& n = countByUid_[*account];
    n += static_cast<std::size_t>(delta);
    if (n == 0) {
        countByUid_.erase(*account);
    }
}

bool Registry::addTracker(TrackedProcess& process, uid_t uid, std::optional<uid_t> account) {
    if (process.isTrackedBy(uid)) {
        return false;
    }
    process.accounts_.reserve(process.trackers_.size() + 1);
    process.trackers_.push_back(uid);
    process.accounts_.push_back(account);
    count(process, account, +1);
    return true;
}

bool Registry::removeTracker(TrackedProcess& process, uid_t uid) {
    auto it = std::find(process.trackers_.begin(), process.trackers_.end(), uid);
    if (it == process.trackers_.end()) {
        return false;
    }
    auto account = process.accounts_.begin() + (it - process.trackers_.begin());
    count(process, *account, -1);
    process.trackers_.erase(it);
    process.accounts_.erase(account);
    return true;
}

void Registry::uncount(TrackedProcess& process) {
    if (!process.counted_) {
        return;
    }
    for (const std::optional<uid_t>& account : process.accounts_) {
        count(process, account, -1);
    }
    process.counted_ = false;
}

void Registry::remove(std::uint64_t id) {
    auto it = byId_.find(id);
    if (it == byId_.end()) {
        return;
    }
    TrackedProcess& process = *it->second;
    uncount(process);
    auto [first, last] = byPid_.equal_range(process.pid());
    for (auto pidIt = first; pidIt != last; ++pidIt) {
        if (pidIt->second == id) {
            byPid_.erase(pidIt);
            break;
        }
    }
    byId_.erase(it);
}

std::size_t Registry::countTrackedBy(uid_t account) const {
    auto it = countByUid_.find(account);
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
