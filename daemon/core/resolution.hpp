// SPDX-License-Identifier: LGPL-2.1-or-later
// From what a caller named to what the authorization step decides on: both
// doors decode a call into a Named, the core resolves it for one Action into
// a Resolution (the Request with its target, and the process to act on once
// allowed), and the core builds the ProcessView both doors encode. As
// systemd's machine.c serves machine-dbus.c and machine-varlink.c alike.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "authorizer.hpp"
#include "nsfd/contract.hpp"
#include "nsfd/info.hpp"
#include "nsfd/pidfd.hpp"

namespace nsfd::daemon {

class Manager;

// A process as a caller named it, decoded by a door and not yet looked up.
struct Named {
    enum class Kind {
        Pid,         // a pid in nsfdd's pid namespace (Manager::openPid)
        PidFd,       // a pidfd the caller passed, adopted by the door (Manager::adoptPidFd)
        Id,          // a tracked process by its pidfs id (Manager::tracked)
        TrackedPid,  // the tracked process with this pid (Manager::trackedWithPid)
        Selector,    // container:ID, cgroup:PATH, unit:NAME, machine:NAME, PID:ID (resolver.hpp)
    };
    Kind kind = Kind::Pid;
    std::uint32_t pid = 0;         // Pid, TrackedPid
    std::uint64_t id = 0;          // Id
    std::shared_ptr<PidFd> pidfd;  // PidFd: shared, so that a Named can be copied into callbacks
    std::string selector;          // Selector, as the caller wrote it

    static Named byPid(std::uint32_t pid) { return {Kind::Pid, pid, 0, nullptr, {}}; }
    static Named byPidFd(PidFd pidfd) {
        return {Kind::PidFd, 0, 0, std::make_shared<PidFd>(std::move(pidfd)), {}};
    }
    static Named byId(std::uint64_t id) { return {Kind::Id, 0, id, nullptr, {}}; }
    static Named byTrackedPid(std::uint32_t pid) { return {Kind::TrackedPid, pid, 0, nullptr, {}}; }
    static Named bySelector(std::string text) {
        return {Kind::Selector, 0, 0, nullptr, std::move(text)};
    }
};

// The process a call acts on once it is authorized: a pidfd held since it was
// resolved, or a tracked process, looked up again by id because the answer may
// come later (polkit) and the process may have been untracked meanwhile.
// Copyable; the held pidfd is shared by the copies.
class ProcessRef {
  public:
    static ProcessRef held(PidFd pidfd);
    static ProcessRef tracked(const Manager& core, std::uint64_t id);

    // The pidfd to act on. Throws ServiceError(NotTracked) if the tracked
    // process was untracked meanwhile: the one place that says so.
    const PidFd& pidfd() const;
    // The held pidfd itself, for an operation that keeps it (Manager::track);
    // once. Throws std::logic_error for a tracked process, which has none to give.
    PidFd take() const;
    // The tracked process's id; nullopt for a held pidfd.
    std::optional<std::uint64_t> trackedId() const noexcept;

  private:
    std::shared_ptr<PidFd> held_;
    const Manager* core_ = nullptr;
    std::uint64_t id_ = 0;
};

// What the authorization step decides on, and what the operation acts on
// after. The door adds the action's details (Request::namespaces, signal,
// socket) before it authorizes.
struct Resolution {
    Request request;
    ProcessRef process;
};

// A process as a caller sees it: what GetInfo and GetProcessInfo encode (keys:
// nsfd/contract.hpp), pids in the caller's pid namespace (0 where it cannot
// see them).
struct ProcessView {
    Info info;
    std::uint64_t id = 0;
    ProcessState state = ProcessState::Running;
    std::optional<int> exitStatus;  // once reaped (a tracked process)
    std::uint32_t pid = 0;
    std::uint32_t parentPid = 0;
};

// Manager::resolve's continuations: exactly one of them is called, once.
using ResolvedThen = std::function<void(Resolution)>;
// The error in flight as an exception_ptr (a ServiceError, or std::system_error
// from a syscall), for the door to turn into its named error.
using ResolveFailed = std::function<void(std::exception_ptr)>;

}  // namespace nsfd::daemon
