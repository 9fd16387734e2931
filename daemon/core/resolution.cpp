// SPDX-License-Identifier: LGPL-2.1-or-later
#include "resolution.hpp"

#include <stdexcept>

#include "manager.hpp"

namespace nsfd::daemon {

ProcessRef ProcessRef::held(PidFd pidfd) {
    ProcessRef ref;
    ref.held_ = std::make_shared<PidFd>(std::move(pidfd));
    return ref;
}

ProcessRef ProcessRef::tracked(const Manager& core, std::uint64_t id) {
    ProcessRef ref;
    ref.core_ = &core;
    ref.id_ = id;
    return ref;
}

const PidFd& ProcessRef::pidfd() const {
    if (held_) {
        return *held_;
    }
    TrackedProcess* process = core_->find(id_);
    if (process == nullptr) {
        throw ServiceError(ErrorKind::NotTracked,
                           "Process " + std::to_string(id_) + " was untracked meanwhile");
    }
    return process->pidfd();
}

PidFd ProcessRef::take() const {
    if (!held_) {
        throw std::logic_error("ProcessRef::take() of a tracked process");
    }
    return std::move(*held_);
}

std::optional<std::uint64_t> ProcessRef::trackedId() const noexcept {
    return held_ ? std::nullopt : std::optional(id_);
}

Resolution Manager::resolution(const Caller& caller, PidFd pidfd, Action action) const {
    Resolution out;
    out.request.action = action;
    out.request.target = targetOf(caller, pidfd, action);
    out.process = ProcessRef::held(std::move(pidfd));
    return out;
}

Resolution Manager::resolution(const Caller& caller, TrackedProcess& process, Action action) const {
    Resolution out;
    out.request.action = action;
    out.request.target = targetOf(caller, process, action);
    out.process = ProcessRef::tracked(*this, process.id());
    return out;
}

Resolution Manager::resolveNow(const Caller& caller, const Named& named, Action action) {
    switch (named.kind) {
        case Named::Kind::Pid:
            return resolution(caller, openPid(caller, named.pid), action);
        case Named::Kind::PidFd:
            return resolution(caller, std::move(*named.pidfd), action);
        case Named::Kind::Id:
            return resolution(caller, tracked(caller, named.id), action);
        case Named::Kind::TrackedPid:
            return resolution(caller, trackedWithPid(caller, named.pid), action);
        case Named::Kind::Selector:
            break;
    }
    throw std::logic_error("Manager::resolveNow() of a selector");
}

void Manager::resolve(const Caller& caller, const Named& named, Action action, ResolvedThen then,
                      const ResolveFailed& failed) {
    std::optional<Resolution> now;
    try {
        switch (named.kind) {
            case Named::Kind::Pid:
            case Named::Kind::PidFd:
            case Named::Kind::Id:
            case Named::Kind::TrackedPid:
                now = resolveNow(caller, named, action);
                break;
            case Named::Kind::Selector:
                findSelected(
                    caller, named.selector,
                    [this, caller, action, then = std::move(then), failed](PidFd pidfd) {
                        std::optional<Resolution> found;
                        try {
                            found = resolution(caller, std::move(pidfd), action);
                        } catch (...) {
                            failed(std::current_exception());
                            return;
                        }
                        then(std::move(*found));
                    },
                    [failed](const ServiceError& e) { failed(std::make_exception_ptr(e)); });
                return;
        }
    } catch (...) {
        failed(std::current_exception());
        return;
    }
    then(std::move(*now));
}

ProcessView Manager::view(const Caller& caller, const ProcessRef& process) {
    const PidFd& pidfd = process.pidfd();
    ProcessView view;
    if (std::optional<std::uint64_t> id = process.trackedId()) {
        TrackedProcess& tracked = *find(*id);  // pidfd() found it
        view.info = tracked.info();
        view.id = tracked.id();
        view.state = tracked.state();
        view.exitStatus = tracked.exitStatus();
        view.pid = pidFor(caller, tracked.pid());
    } else {
        view.info = info(pidfd);
        view.id = pidfd.id();
        view.state = pidfd.hasExited() ? ProcessState::Exited : ProcessState::Running;
        view.pid = pidFor(caller, pidfd.pid());
    }
    view.parentPid = pidFor(caller, view.info.parentPid().value_or(0));
    return view;
}

}  // namespace nsfd::daemon
