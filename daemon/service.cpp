// SPDX-License-Identifier: LGPL-2.1-or-later
#include "service.hpp"

#include <sys/resource.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>

#include <spdlog/spdlog.h>

#include <algorithm>
#include <climits>
#include <csignal>
#include <cstring>

#include "errors.hpp"
#include "fd_store.hpp"
#include "manager_object.hpp"
#include "nsfd/dbus_names.hpp"
#include "nsfd/features.hpp"
#include "process_objects.hpp"
#include "version.hpp"

namespace nsfd::daemon {

ProcessBinding::ProcessBinding(Service& service, TrackedProcess& process)
    : service_(service), process_(process) {
    if (process.state() == ProcessState::Reaped) {
        return;  // nothing left to watch; the service starts its retention
    }
    // POLLIN (exit) is level-triggered: once seen, only POLLHUP (the reap)
    // is of interest, and epoll always reports that.
    uint32_t events =
        process.state() == ProcessState::Running ? static_cast<uint32_t>(EPOLLIN) : 0U;
    sd_event_source* source = nullptr;
    int r =
        sd_event_add_io(service.loop_.get(), &source, process.pidfd().get(), events, onPidFd, this);
    if (r < 0) {
        throw std::system_error(-r, std::generic_category(), "Failed to watch a pidfd");
    }
    exitWatch_.reset(source);
}

void ProcessBinding::stateChanged() {
    if (process_.state() != ProcessState::Running && exitWatch_) {
        sd_event_source_set_io_events(exitWatch_.get(), 0);
    }
    if (process_.state() == ProcessState::Reaped) {
        exitWatch_.reset();
        startRetention();
    }
    if (!removing_) {
        service_.processObjects_->stateChanged(process_);
    }
}

int ProcessBinding::onPidFd(sd_event_source* /*source*/, int /*fd*/, uint32_t revents,
                            void* userdata) {
    auto* self = static_cast<ProcessBinding*>(userdata);
    if (self->process_.updateState((revents & EPOLLIN) != 0, (revents & EPOLLHUP) != 0)) {
        self->service_.onStateChanged(self->process_);
    }
    return 0;
}

void ProcessBinding::startRetention() {
    uint64_t now = 0;
    sd_event_now(service_.loop_.get(), CLOCK_MONOTONIC, &now);
    uint64_t usec = static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::microseconds>(service_.config_.retention).count());
    sd_event_source* source = nullptr;
    if (sd_event_add_time(service_.loop_.get(), &source, CLOCK_MONOTONIC, now + usec, 0,
                          onRetentionEnd, this) >= 0) {
        retention_.reset(source);
    }
}

int ProcessBinding::onRetentionEnd(sd_event_source* /*source*/, uint64_t /*usec*/, void* userdata) {
    auto* self = static_cast<ProcessBinding*>(userdata);
    spdlog::debug("Retention of reaped pid {} (id {}) ended", self->process_.pid(),
                  self->process_.id());
    self->service_.remove(self->process_.id());  // destroys self
    return 0;
}

namespace {

ProcessBinding& bindingOf(const TrackedProcess& process) {
    return *static_cast<ProcessBinding*>(process.attachment());
}

std::string describe(const PidFd& pidfd) {
    return "pid " + std::to_string(pidfd.pid());
}

}  // namespace

Service::Service(BusPtr bus, Config config)
    : config_(std::move(config)),
      authorizer_(config_),
      bus_(std::move(bus)),
      callers_(bus_.get()),
      fdStore_(notifier_),
      processObjects_(std::make_unique<ProcessObjects>(bus_.get(), *this)),
      manager_(std::make_unique<ManagerObject>(bus_.get(), *this)) {
    raiseFdLimit();
    loop_.attachBus(bus_.get());

    auto onStopSignal = [](sd_event_source* source, const signalfd_siginfo* info, void* userdata) {
        spdlog::info("Received {}, stopping", strsignal(static_cast<int>(info->ssi_signo)));
        static_cast<Service*>(userdata)->notifier_.send("STOPPING=1");
        sd_event_exit(sd_event_source_get_event(source), 0);
        return 0;
    };
    sd_event_source* source = nullptr;
    if (int r = sd_event_add_defer(loop_.get(), &source, onAfterCall, this); r < 0) {
        throw std::system_error(-r, std::generic_category(), "Failed to add the after-call hook");
    }
    afterCall_.reset(source);
    sd_event_source_set_enabled(source, SD_EVENT_OFF);
    // Before the bus's next message, which must not find an untracked object.
    sd_event_source_set_priority(source, SD_EVENT_PRIORITY_IMPORTANT);
    if (sd_event_add_signal(loop_.get(), &source, SIGTERM, onStopSignal, this) >= 0) {
        sigterm_.reset(source);
    }
    if (sd_event_add_signal(loop_.get(), &source, SIGINT, onStopSignal, this) >= 0) {
        sigint_.reset(source);
    }
}

Service::~Service() = default;

void Service::raiseFdLimit() {
    struct rlimit limit {};
    if (::getrlimit(RLIMIT_NOFILE, &limit) == 0) {
        if (limit.rlim_cur < limit.rlim_max) {
            struct rlimit raised = {limit.rlim_max, limit.rlim_max};
            if (::setrlimit(RLIMIT_NOFILE, &raised) == 0) {
                limit = raised;
            } else {
                spdlog::warn("Failed to raise the fd limit to {}, ignoring: {}", limit.rlim_max,
                             std::strerror(errno));
            }
        }
        fdLimit_ = limit.rlim_cur == RLIM_INFINITY ? INT_MAX : limit.rlim_cur;
    }
    spdlog::debug("Fd limit {}", fdLimit_);
}

void Service::restore() {
    std::vector<RestoredPidFd> inherited = fdStore_.takeInherited();
    std::vector<TrackedProcess*> reaped;
    for (RestoredPidFd& entry : inherited) {
        try {
            if (!entry.stored) {
                throw std::runtime_error("not a process nsfdd stored");
            }
            const StoredProcess& stored = *entry.stored;
            auto process = std::make_unique<TrackedProcess>(PidFd::adopt(std::move(entry.fd)),
                                                            stored.trackedBy, stored.pid);
            if (process->id() != stored.id) {
                throw std::runtime_error("its pidfd is of process " +
                                         std::to_string(process->id()));
            }
            if (registry_.find(process->id()) != nullptr) {
                continue;  // stored twice: one is enough
            }
            TrackedProcess& tracked = registry_.add(std::move(process));
            tracked.setAttachment(std::make_unique<ProcessBinding>(*this, tracked));
            if (tracked.state() == ProcessState::Reaped) {
                reaped.push_back(&tracked);
            }
        } catch (const std::exception& e) {
            spdlog::warn("Closing inherited fd '{}': {}", entry.name, e.what());
            fdStore_.discard(entry);
        }
    }
    if (!inherited.empty()) {
        spdlog::info("Restored {} tracked processes from {} inherited fds", registry_.size(),
                     inherited.size());
    }
    // Those reaped while nsfdd was down: report them now, as if it had watched.
    for (TrackedProcess* process : reaped) {
        onStateChanged(*process);
    }
}

int Service::run() {
    restore();
    checkBus(sd_bus_request_name(bus_.get(), nsfd::dbus::kBusName, 0),
             "Failed to take the bus name org.nsfd1");
    std::string features;
    for (std::string_view name : kernelFeatures().names()) {
        features += features.empty() ? "" : " ";
        features += name;
    }
    spdlog::info("nsfdd {} ready on the bus as {}, kernel features: {}", kVersion,
                 nsfd::dbus::kBusName, features);
    notifier_.send("READY=1");
    publishStatus();
    int code = loop_.run();
    notifier_.send("STOPPING=1");
    return code;
}

void Service::publishStatus() {
    notifier_.send("STATUS=Tracking " + std::to_string(registry_.size()) + " processes");
}

const Caller& Service::callerOf(sd_bus_message* call) {
    const char* sender = sd_bus_message_get_sender(call);
    if (sender == nullptr) {
        throw ServiceError(ErrorKind::AccessDenied, "No caller to authorize");
    }
    return callers_.lookup(sender);
}

void Service::deny(const Caller& caller, const std::string& what) const {
    spdlog::warn("Denied uid {} (pid {}) {}", caller.uid, caller.pid, what);
    throw ServiceError(ErrorKind::AccessDenied,
                       "Access denied: uid " + std::to_string(caller.uid) + " may not " + what);
}

PidFd Service::openPid(std::uint32_t pid) const {
    if (pid == 0 || pid > static_cast<std::uint32_t>(INT_MAX)) {
        throw ServiceError(ErrorKind::InvalidArgs, "Invalid pid " + std::to_string(pid));
    }
    try {
        return PidFd::open(static_cast<pid_t>(pid));
    } catch (const std::system_error& e) {
        switch (e.code().value()) {
            case ESRCH:
                throw ServiceError(ErrorKind::NoSuchProcess,
                                   "No such process: " + std::to_string(pid));
            case ENOENT:
                throw ServiceError(
                    ErrorKind::InvalidArgs,
                    "pid " + std::to_string(pid) + " is a thread, not a thread-group leader");
            default:
                throw;
        }
    }
}

PidFd Service::adoptPidFd(UniqueFd fd) const {
    PidFd pidfd = PidFd::adopt(std::move(fd));
    if (pidfd.pid() <= 0) {
        throw ServiceError(ErrorKind::ProcessExited,
                           "The process of the passed pidfd has exited and been reaped");
    }
    std::optional<pid_t> tgid = pidfd.info(InfoFlags::Pid).threadGroupId();
    if (tgid && *tgid != pidfd.pid()) {
        throw ServiceError(ErrorKind::InvalidArgs, "The passed pidfd refers to thread " +
                                                       std::to_string(pidfd.pid()) +
                                                       ", not a thread-group leader");
    }
    return pidfd;
}

void Service::checkFdBudget(std::size_t needed) const {
    if (registry_.size() + needed + kFdReserve > fdLimit_) {
        throw ServiceError(ErrorKind::LimitExceeded,
                           "nsfdd is out of file descriptors (limit " + std::to_string(fdLimit_) +
                               ", " + std::to_string(registry_.size()) + " processes tracked)");
    }
}

TrackedProcess& Service::track(const Caller& caller, PidFd pidfd) {
    if (TrackedProcess* existing = registry_.find(pidfd.id());
        existing != nullptr && !bindingOf(*existing).removing()) {
        requireInfoAccess(caller, *existing, "track " + describe(pidfd));
        return *existing;
    }
    if (TrackedProcess* leaving = registry_.find(pidfd.id())) {
        remove(leaving->id());  // untracked a moment ago; its removal is still pending
    }
    auto process = std::make_unique<TrackedProcess>(std::move(pidfd), caller.uid);
    if (!authorizer_.mayReadInfo(caller, process->lastCredentials())) {
        deny(caller, "track pid " + std::to_string(process->pid()));
    }
    if (registry_.countTrackedBy(caller.uid) >= authorizer_.trackQuota(caller)) {
        throw ServiceError(ErrorKind::LimitExceeded,
                           "uid " + std::to_string(caller.uid) + " already tracks " +
                               std::to_string(registry_.countTrackedBy(caller.uid)) +
                               " processes, its limit");
    }
    if (!fdStore_.hasRoom()) {
        throw ServiceError(ErrorKind::LimitExceeded,
                           "nsfdd tracks " + std::to_string(registry_.size()) +
                               " processes, as many as it can keep across a restart");
    }
    checkFdBudget(1);
    TrackedProcess& tracked = registry_.add(std::move(process));
    try {
        tracked.setAttachment(std::make_unique<ProcessBinding>(*this, tracked));
    } catch (...) {
        registry_.remove(tracked.id());
        throw;
    }
    // Kept across a restart before the caller hears of it.
    fdStore_.add(tracked.pidfd().get(), {tracked.id(), tracked.pid(), tracked.trackedBy()});
    spdlog::info("Tracking pid {} (id {}) for uid {}", tracked.pid(), tracked.id(), caller.uid);
    // The caller's reply first; the news for everyone else right after it.
    pendingAnnouncements_.push_back(tracked.id());
    countChanged_ = true;
    scheduleAfterCall();
    return tracked;
}

void Service::untrack(const Caller& caller, TrackedProcess& process) {
    requireInfoAccess(caller, process, "untrack pid " + std::to_string(process.pid()));
    ProcessBinding& binding = bindingOf(process);
    if (binding.removing()) {
        return;
    }
    binding.removing_ = true;
    // The bus object may be the one handling this very call: remove it once
    // the loop is back in control.
    pendingRemovals_.push_back(process.id());
    scheduleAfterCall();
}

void Service::scheduleAfterCall() {
    sd_event_source_set_enabled(afterCall_.get(), SD_EVENT_ONESHOT);
}

int Service::onAfterCall(sd_event_source* /*source*/, void* userdata) {
    auto* self = static_cast<Service*>(userdata);
    std::vector<std::uint64_t> removals;
    removals.swap(self->pendingRemovals_);
    for (std::uint64_t id : removals) {
        self->remove(id);
    }
    std::vector<std::uint64_t> announcements;
    announcements.swap(self->pendingAnnouncements_);
    for (std::uint64_t id : announcements) {
        if (TrackedProcess* process = self->registry_.find(id);
            process != nullptr && !bindingOf(*process).removing()) {
            self->processObjects_->announceAdded(*process);
        }
    }
    if (self->countChanged_) {
        self->countChanged_ = false;
        self->manager_->trackedCountChanged();
        self->publishStatus();
    }
    return 0;
}

void Service::remove(std::uint64_t id) {
    TrackedProcess* process = registry_.find(id);
    if (process == nullptr) {
        return;
    }
    spdlog::info("No longer tracking pid {} (id {})", process->pid(), id);
    processObjects_->announceRemoved(*process);
    fdStore_.remove(id);
    registry_.remove(id);
    countChanged_ = true;
    scheduleAfterCall();
}

void Service::onStateChanged(TrackedProcess& process) {
    ProcessBinding& binding = bindingOf(process);
    if (process.state() == ProcessState::Reaped && !binding.removing()) {
        // The news most clients wait for goes out first.
        int status = process.exitStatus().value_or(-1);
        manager_->processExited(process);
        spdlog::info("Tracked pid {} (id {}) exited, wait status {}", process.pid(), process.id(),
                     status);
    }
    binding.stateChanged();
}

bool Service::isVisible(const Caller& caller, TrackedProcess& process) {
    return !bindingOf(process).removing() &&
           authorizer_.mayReadInfo(caller, process.lastCredentials());
}

ProcessBinding* Service::bindingAt(std::string_view path, const Caller* caller) {
    std::optional<std::uint64_t> id = nsfd::dbus::processIdOfPath(path);
    TrackedProcess* process = id ? registry_.find(*id) : nullptr;
    if (process == nullptr || bindingOf(*process).removing() ||
        (caller != nullptr && !isVisible(*caller, *process))) {
        return nullptr;
    }
    return &bindingOf(*process);
}

TrackedProcess& Service::processAt(const Caller& caller, const std::string& path) {
    std::optional<std::uint64_t> id = nsfd::dbus::processIdOfPath(path);
    TrackedProcess* process = id ? registry_.find(*id) : nullptr;
    if (process == nullptr || !isVisible(caller, *process)) {
        throw ServiceError(ErrorKind::NotTracked, "No tracked process at " + path);
    }
    return *process;
}

TrackedProcess& Service::processWithPid(const Caller& caller, std::uint32_t pid) {
    TrackedProcess* process = registry_.findByPid(static_cast<pid_t>(pid));
    if (process == nullptr || !isVisible(caller, *process)) {
        throw ServiceError(ErrorKind::NotTracked,
                           "No tracked process with pid " + std::to_string(pid));
    }
    return *process;
}

std::vector<TrackedProcess*> Service::visibleProcesses(const Caller* caller) {
    std::vector<TrackedProcess*> out;
    for (TrackedProcess* process : registry_.all()) {
        if (!bindingOf(*process).removing() &&
            (caller == nullptr || isVisible(*caller, *process))) {
            out.push_back(process);
        }
    }
    return out;
}

void Service::requireInfoAccess(const Caller& caller, TrackedProcess& process,
                                std::string_view what) {
    if (!authorizer_.mayReadInfo(caller, process.lastCredentials())) {
        deny(caller, std::string(what));
    }
}

Target Service::targetOf(const PidFd& pidfd) const {
    Target target;
    target.creds = pidfd.credentials();
    // The entries under /proc/PID belong to root while the process is not
    // dumpable (the directory itself does not change). Only trust the answer
    // if the pid still names our process afterwards.
    struct stat st {};
    std::string path = "/proc/" + std::to_string(pidfd.pid()) + "/status";
    target.dumpable =
        ::stat(path.c_str(), &st) == 0 && st.st_uid == target.creds.euid && !pidfd.hasExited();
    return target;
}

NsFd Service::namespaceFd(const Caller& caller, const PidFd& pidfd, const std::string& type) {
    std::optional<NsType> nsType = parseNsType(type);
    if (!nsType) {
        throw ServiceError(ErrorKind::InvalidArgs, "Unknown namespace type '" + type + "'");
    }
    if (!caller.isRoot() && !authorizer_.mayGetNamespace(caller, targetOf(pidfd), *nsType)) {
        deny(caller, "get the " + type + " namespace of " + describe(pidfd));
    }
    return pidfd.namespaceFd(*nsType);
}

NamespaceFds Service::namespaceFds(const Caller& caller, const PidFd& pidfd,
                                   const std::vector<std::string>& types) {
    std::vector<NsType> wanted;
    bool all = types.empty();
    if (all) {
        wanted.assign(allNsTypes().begin(), allNsTypes().end());
    }
    for (const std::string& type : types) {
        std::optional<NsType> nsType = parseNsType(type);
        if (!nsType) {
            throw ServiceError(ErrorKind::InvalidArgs, "Unknown namespace type '" + type + "'");
        }
        if (std::find(wanted.begin(), wanted.end(), *nsType) == wanted.end()) {
            wanted.push_back(*nsType);  // a dict has each key once
        }
    }
    checkFdBudget(wanted.size());
    std::optional<Target> target;
    if (!caller.isRoot()) {
        target = targetOf(pidfd);
    }
    NamespaceFds fds;
    for (NsType type : wanted) {
        if (target && !authorizer_.mayGetNamespace(caller, *target, type)) {
            deny(caller,
                 "get the " + std::string(toString(type)) + " namespace of " + describe(pidfd));
        }
        try {
            fds.emplace_back(type, pidfd.namespaceFd(type));
        } catch (const std::system_error& e) {
            // "Every type" means every type this kernel has.
            if (!(all && e.code() == std::errc::operation_not_supported)) {
                throw;
            }
        }
    }
    return fds;
}

std::map<std::string, std::uint64_t> Service::namespaceIds(const Caller& caller,
                                                           const PidFd& pidfd) {
    Credentials creds = pidfd.credentials();
    if (!authorizer_.mayReadInfo(caller, creds)) {
        deny(caller, "get the namespace ids of " + describe(pidfd));
    }
    std::map<std::string, std::uint64_t> ids;
    for (NsType type : allNsTypes()) {
        try {
            ids.emplace(toString(type), pidfd.namespaceFd(type).id());
        } catch (const std::system_error& e) {
            if (e.code() != std::errc::operation_not_supported) {
                throw;
            }
        }
    }
    return ids;
}

Info Service::info(const Caller& caller, const PidFd& pidfd) {
    Info info = pidfd.info();
    std::optional<Credentials> creds = info.credentials();
    if (!creds) {
        throw ServiceError(ErrorKind::ProcessExited, describe(pidfd) + " has exited");
    }
    if (!authorizer_.mayReadInfo(caller, *creds)) {
        deny(caller, "get the info of " + describe(pidfd));
    }
    return info;
}

UniqueFd Service::pidFdFor(const Caller& caller, const PidFd& pidfd) {
    if (!caller.isRoot() && !authorizer_.mayGetPidFd(caller, targetOf(pidfd))) {
        deny(caller, "get the pidfd of " + describe(pidfd));
    }
    return duplicateFd(pidfd.get());
}

void Service::sendSignal(const Caller& caller, const PidFd& pidfd, int signal) {
    if (signal < 0 || signal > SIGRTMAX) {
        throw ServiceError(ErrorKind::InvalidArgs,
                           "Invalid signal number " + std::to_string(signal));
    }
    if (!authorizer_.maySignal(caller, pidfd.credentials())) {
        deny(caller, "send signal " + std::to_string(signal) + " to " + describe(pidfd));
    }
    pidfd.sendSignal(signal);
}

UniqueFd Service::getFd(const Caller& caller, const PidFd& pidfd, int targetFd) {
    if (!authorizer_.mayGetFd(caller)) {
        deny(caller, "get fd " + std::to_string(targetFd) + " of " + describe(pidfd));
    }
    if (targetFd < 0) {
        throw ServiceError(ErrorKind::InvalidArgs, "Invalid fd number " + std::to_string(targetFd));
    }
    return pidfd.getFd(targetFd);
}

}  // namespace nsfd::daemon
