// SPDX-License-Identifier: LGPL-2.1-or-later
#include "manager.hpp"

#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <climits>
#include <csignal>
#include <cstring>
#include <fstream>
#include <iterator>
#include <sstream>

#include "nsfd/features.hpp"
#include "nsfd/socket_names.hpp"

namespace nsfd::daemon {

// The watch on a tracked process's pidfd and, once it is reaped, the end of
// its retention. Hangs on the registry's entry and goes with it.
class ProcessWatch final : public Attachment {
  public:
    ProcessWatch(Manager& manager, TrackedProcess& process);
    ProcessWatch(const ProcessWatch&) = delete;
    ProcessWatch& operator=(const ProcessWatch&) = delete;

    // Follows the process's new state: stops watching once reaped and starts
    // its retention. Returns false if the retention timer could not start.
    [[nodiscard]] bool follow();

  private:
    static int onPidFd(sd_event_source* source, int fd, uint32_t revents, void* userdata);
    static int onRetentionEnd(sd_event_source* source, uint64_t usec, void* userdata);

    Manager& manager_;
    TrackedProcess& process_;
    EventSource exitWatch_;
    EventSource retention_;
};

ProcessWatch::ProcessWatch(Manager& manager, TrackedProcess& process)
    : manager_(manager), process_(process) {
    if (process.state() == ProcessState::Reaped) {
        return;  // nothing left to watch; follow() starts its retention
    }
    // POLLIN (exit) is level-triggered: once seen, only POLLHUP (the reap)
    // is of interest, and epoll always reports that.
    uint32_t events =
        process.state() == ProcessState::Running ? static_cast<uint32_t>(EPOLLIN) : 0U;
    sd_event_source* source = nullptr;
    checkEvent(
        sd_event_add_io(manager.loop_.get(), &source, process.pidfd().get(), events, onPidFd, this),
        "Failed to watch a pidfd");
    exitWatch_.reset(source);
}

bool ProcessWatch::follow() {
    if (process_.state() != ProcessState::Running && exitWatch_) {
        sd_event_source_set_io_events(exitWatch_.get(), 0);
    }
    if (process_.state() != ProcessState::Reaped || retention_) {
        return true;
    }
    exitWatch_.reset();
    uint64_t now = 0;
    sd_event_now(manager_.loop_.get(), CLOCK_MONOTONIC, &now);
    auto usec = static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::microseconds>(manager_.config_.retention).count());
    sd_event_source* source = nullptr;
    int r = sd_event_add_time(manager_.loop_.get(), &source, CLOCK_MONOTONIC, now + usec, 0,
                              onRetentionEnd, this);
    if (r < 0) {
        spdlog::warn("Failed to start the retention of reaped pid {} (id {}), dropping it now: {}",
                     process_.pid(), process_.id(), std::strerror(-r));
        return false;
    }
    retention_.reset(source);
    return true;
}

int ProcessWatch::onPidFd(sd_event_source* /*source*/, int /*fd*/, uint32_t revents,
                          void* userdata) {
    auto* self = static_cast<ProcessWatch*>(userdata);
    if (self->process_.updateState((revents & EPOLLIN) != 0, (revents & EPOLLHUP) != 0)) {
        self->manager_.onStateChanged(self->process_);  // may destroy self
    }
    return 0;
}

int ProcessWatch::onRetentionEnd(sd_event_source* /*source*/, uint64_t /*usec*/, void* userdata) {
    auto* self = static_cast<ProcessWatch*>(userdata);
    spdlog::debug("Retention of reaped pid {} (id {}) ended", self->process_.pid(),
                  self->process_.id());
    self->manager_.remove(self->process_.id());  // destroys self
    return 0;
}

namespace {

ProcessWatch& watchOf(const TrackedProcess& process) {
    return *static_cast<ProcessWatch*>(process.attachment());
}

std::string describe(const PidFd& pidfd) {
    return "pid " + std::to_string(pidfd.pid());
}

// The errno of a namespace ioctl on a process that was alive a moment ago,
// said as what happened to it.
[[noreturn]] void throwNamespaceError(const std::system_error& e, const PidFd& pidfd) {
    if (e.code() == std::errc::no_such_process) {
        if (!pidfd.hasExited()) {
            // The kernel finds no namespaces on a thread-group leader that
            // called pthread_exit() while other threads run on (nsenter fails too).
            throw ServiceError(ErrorKind::ProcessExited,
                               "The main thread of " + describe(pidfd) +
                                   " has exited while other threads run on: the kernel gives no "
                                   "namespaces of such a process");
        }
        throw ServiceError(ErrorKind::ProcessExited, describe(pidfd) + " has exited");
    }
    throw e;
}

}  // namespace

namespace {

std::string ownExecutable() {
    char path[4096];
    ssize_t n = ::readlink("/proc/self/exe", path, sizeof(path) - 1);
    return n > 0 ? std::string(path, static_cast<std::size_t>(n)) : std::string();
}

}  // namespace

Manager::Manager(EventLoop& loop, const Config& config, Notifier& notifier)
    : loop_(loop),
      config_(config),
      notifier_(notifier),
      authorizer_(config),
      fdStore_(notifier),
      socketHelper_(loop, socketHelperProgram(ownExecutable())),
      commandRunner_(loop, socketHelperProgram(ownExecutable())) {
    raiseFdLimit();
    sd_event_source* source = nullptr;
    checkEvent(sd_event_add_defer(loop_.get(), &source, onTurnEnd, this),
               "Failed to add the end-of-turn hook");
    turnEnd_.reset(source);
    sd_event_source_set_enabled(source, SD_EVENT_OFF);
    // After the reply of the call being handled, before the next message.
    sd_event_source_set_priority(source, SD_EVENT_PRIORITY_IMPORTANT);
}

Manager::~Manager() = default;

void Manager::removeObserver(ManagerObserver& observer) {
    observers_.erase(std::remove(observers_.begin(), observers_.end(), &observer),
                     observers_.end());
}

void Manager::raiseFdLimit() {
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

void Manager::restore() {
    std::vector<RestoredPidFd> inherited = fdStore_.takeInherited();
    std::vector<TrackedProcess*> reaped;
    for (RestoredPidFd& entry : inherited) {
        try {
            if (!entry.stored) {
                throw std::runtime_error("not a process nsfdd stored");
            }
            const StoredProcess& stored = *entry.stored;
            auto process =
                std::make_unique<TrackedProcess>(PidFd::adopt(std::move(entry.fd)), stored.pid);
            if (process->id() != stored.id) {
                throw std::runtime_error("its pidfd is of process " +
                                         std::to_string(process->id()));
            }
            if (registry_.find(process->id()) != nullptr) {
                continue;  // stored twice: one is enough
            }
            TrackedProcess& tracked = add(std::move(process));
            for (std::size_t i = 0; i < stored.trackers.size(); ++i) {
                registry_.addTracker(tracked, stored.trackers[i], stored.accounts[i]);
            }
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
    } else if (notifier_.active()) {
        // systemd 252 keeps the fd store across `systemctl restart` and a crash, but
        // empties it when the unit stops (FileDescriptorStorePreserve= is systemd 254).
        spdlog::info(
            "No tracked processes handed back by systemd: a first start, or a start after a "
            "stop, which empties the fd store (a restart keeps it)");
    }
    for (TrackedProcess* process : reaped) {
        reapedWhileDown_.push_back(process->id());
    }
    countChanged();
}

void Manager::reportRestored() {
    std::vector<std::uint64_t> ids;
    ids.swap(reapedWhileDown_);
    for (std::uint64_t id : ids) {
        if (TrackedProcess* process = registry_.find(id)) {
            onStateChanged(*process);
        }
    }
}

void Manager::publishStatus() {
    notifier_.send("STATUS=Tracking " + std::to_string(registry_.size()) + " processes");
}

void Manager::countChanged() {
    countChanged_ = true;
    sd_event_source_set_enabled(turnEnd_.get(), SD_EVENT_ONESHOT);
}

int Manager::onTurnEnd(sd_event_source* /*source*/, void* userdata) {
    auto* self = static_cast<Manager*>(userdata);
    if (self->countChanged_) {
        self->countChanged_ = false;
        for (ManagerObserver* observer : self->observers_) {
            observer->trackedCountChanged(self->registry_.size());
        }
        self->publishStatus();
    }
    return 0;
}

PidFd Manager::openPid(const Caller& caller, std::uint32_t pid) const {
    if (!caller.inOurPidNamespace) {
        throw ServiceError(ErrorKind::ForeignPidNamespace,
                           "pid " + std::to_string(pid) +
                               " is from another pid namespace than nsfdd's, where it may name "
                               "another process: pass a pidfd instead (TrackProcessByPidFd)");
    }
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

PidFd Manager::adoptPidFd(UniqueFd fd) const {
    // What the fd is, before anything is asked of the process: an O_PATH reopen
    // of a pidfd (open("/proc/self/fd/N", O_PATH)) sits on pidfs too but takes
    // no ioctl (EBADF), and a PIDFD_THREAD pidfd (O_EXCL in its flags) polls
    // readable when its one thread exits, not the process.
    int flags = ::fcntl(fd.get(), F_GETFL);
    if (flags >= 0 && (flags & O_PATH) != 0) {
        throw ServiceError(ErrorKind::InvalidArgs,
                           "pidfd: the passed fd is an O_PATH fd, not a usable pidfd (pass the "
                           "pidfd itself, not a reopen of it)");
    }
    if (flags >= 0 && (flags & O_EXCL) != 0) {
        throw ServiceError(ErrorKind::InvalidArgs,
                           "pidfd: the passed pidfd was opened with PIDFD_THREAD and refers to "
                           "one thread; nsfdd needs a pidfd of the process");
    }
    std::optional<PidFd> pidfd;
    try {
        pidfd.emplace(PidFd::adopt(std::move(fd)));
    } catch (const std::system_error& e) {
        throw ServiceError(ErrorKind::InvalidArgs,
                           std::string("pidfd: the passed fd is not a pidfd (") + e.what() + ")");
    }
    std::optional<pid_t> tgid;
    try {
        tgid = pidfd->info(InfoFlags::Pid).threadGroupId();
    } catch (const std::system_error& e) {
        // PIDFD_GET_INFO on a live process outside our pid namespace: EREMOTE
        // (6.18); before that ESRCH, with fdinfo's "Pid:" 0 where a reaped
        // process has -1.
        if (e.code().value() == EREMOTE ||
            (e.code() == std::errc::no_such_process && pidfd->pid() == 0)) {
            throw ServiceError(ErrorKind::OutsidePidNamespace,
                               "The process of the passed pidfd is alive but outside nsfdd's pid "
                               "namespace, where nsfdd cannot see it");
        }
        if (e.code() == std::errc::no_such_process) {
            throw ServiceError(ErrorKind::ProcessExited,
                               "The process of the passed pidfd has exited and been reaped");
        }
        throw;
    }
    if (tgid && *tgid != pidfd->pid()) {
        throw ServiceError(ErrorKind::InvalidArgs, "pidfd: the passed pidfd refers to thread " +
                                                       std::to_string(pidfd->pid()) +
                                                       ", not a thread-group leader");
    }
    return std::move(*pidfd);
}

namespace {

// The kernel's rule for naming a process: it has a pid in the caller's pid
// namespace or one below it. nsfdd sees only processes of its own pid
// namespace and those below, so a caller in nsfdd's sees them all; a caller
// whose pid namespace is unknown, none.
bool canName(const Caller& caller, const std::vector<std::uint64_t>& pidNamespaces) {
    if (caller.inOurPidNamespace) {
        return true;
    }
    return caller.pidNamespace != 0 && std::find(pidNamespaces.begin(), pidNamespaces.end(),
                                                 caller.pidNamespace) != pidNamespaces.end();
}

}  // namespace

bool Manager::isVisible(const Caller& caller, const TrackedProcess& process) {
    if (caller.isRoot()) {
        return true;
    }
    bool canSee = canName(caller, process.pidNamespaces());
    if (canSee && process.isTrackedBy(caller.uid)) {
        return true;
    }
    Request request{Action::ReadInfo, {}, {}, 0};
    request.target.id = process.id();
    request.target.pid = process.pid();
    request.target.creds = process.lastCredentials();
    request.target.trackers = process.trackers();
    request.target.visible = canSee;
    return authorizer_.decideNow(caller, request);
}

TrackedProcess& Manager::tracked(const Caller& caller, std::uint64_t id) {
    TrackedProcess* process = registry_.find(id);
    if (process == nullptr || !isVisible(caller, *process)) {
        throw ServiceError(ErrorKind::NotTracked,
                           "No tracked process with id " + std::to_string(id));
    }
    return *process;
}

TrackedProcess& Manager::trackedWithPid(const Caller& caller, std::uint32_t pid) {
    if (!caller.inOurPidNamespace) {
        throw ServiceError(ErrorKind::ForeignPidNamespace,
                           "pid " + std::to_string(pid) +
                               " is from another pid namespace than nsfdd's: name the process "
                               "by its id or pass a pidfd");
    }
    auto p = static_cast<pid_t>(pid);
    TrackedProcess* process = p > 0 ? registry_.findLive(p) : nullptr;
    if (process == nullptr && p > 0 && ::kill(p, 0) < 0 && errno == ESRCH) {
        process = registry_.findReaped(p);  // nothing has its pid since
    }
    if (process == nullptr || !isVisible(caller, *process)) {
        throw ServiceError(ErrorKind::NotTracked,
                           "No tracked process has pid " + std::to_string(pid));
    }
    return *process;
}

std::vector<TrackedProcess*> Manager::visibleProcesses(const Caller* caller) {
    std::vector<TrackedProcess*> out;
    for (TrackedProcess* process : registry_.all()) {
        if (caller == nullptr || isVisible(*caller, *process)) {
            out.push_back(process);
        }
    }
    return out;
}

std::uint32_t Manager::pidFor(const Caller& caller, pid_t pid) const noexcept {
    return caller.inOurPidNamespace && pid > 0 ? static_cast<std::uint32_t>(pid) : 0;
}

namespace {

bool needsAlive(Action action) noexcept {
    return action == Action::GetNamespace || action == Action::GetPidFd ||
           action == Action::OpenSocket || action == Action::Enter;
}

// Whether `theirs` is the namespace the caller's process has of its type, read
// through the caller's pidfd (never by its raw pid, which may have been
// reused). Both are held while compared: equal inodes are one namespace. False
// for a caller without a checked process.
bool isCallers(const Caller& caller, const NsFd& theirs) {
    if (!caller.pidfd) {
        return false;
    }
    try {
        NsFd callers = caller.pidfd->namespaceFd(theirs.type());
        struct stat a {};
        struct stat b {};
        return ::fstat(theirs.get(), &a) == 0 && ::fstat(callers.get(), &b) == 0 &&
               a.st_ino == b.st_ino && a.st_dev == b.st_dev;
    } catch (const std::system_error&) {
        return false;  // the caller is gone, or has no namespace of that type
    }
}

// For Enter: the types among net, uts and ipc the caller could enter itself
// (Target::enterable). Needs the ptrace rule's inputs (creds, dumpable) read.
void readEnterable(const Caller& caller, const PidFd& pidfd, Target& target) {
    const Credentials& c = target.creds;
    bool ptrace = c.ruid == caller.uid && c.euid == caller.uid && c.suid == caller.uid &&
                  c.rgid == caller.gid && c.egid == caller.gid && c.sgid == caller.gid &&
                  target.dumpable;
    for (NsType type : {NsType::Net, NsType::Uts, NsType::Ipc}) {
        try {
            NsFd ns = pidfd.namespaceFd(type);
            if (isCallers(caller, ns) ||
                (ptrace && ns.owningUserNamespace().ownerUid() == caller.uid)) {
                target.enterable.push_back(type);
            }
        } catch (const std::system_error& e) {
            if (e.code() == std::errc::no_such_process) {
                throw ServiceError(ErrorKind::ProcessExited, describe(pidfd) + " has exited");
            }
            spdlog::debug("No {} namespace of {} to check: {}", toString(type), describe(pidfd),
                          e.what());
        }
    }
}

// What the kernel rule needs to know of the network namespace of `pidfd`'s
// process for OpenSocket: who owns the user namespace that owns it (the uid
// that may enter it by itself), and whether the caller lives in it.
void readNetNamespace(const Caller& caller, const PidFd& pidfd, Target& target) {
    try {
        NsFd net = pidfd.namespaceFd(NsType::Net);
        target.netOwnerUid = net.owningUserNamespace().ownerUid();
        target.netIsCallers = isCallers(caller, net);
    } catch (const std::system_error& e) {
        if (e.code() == std::errc::no_such_process) {
            throw ServiceError(ErrorKind::ProcessExited, describe(pidfd) + " has exited");
        }
        spdlog::debug("No owner of the net namespace of {}: {}", describe(pidfd), e.what());
    }
}

// ptrace's dumpable flag, as far as a root process can tell from outside: the
// entries under /proc/PID belong to root while the process is not dumpable.
// Trusted only if the pid still names our process afterwards.
bool isDumpable(const PidFd& pidfd, const Credentials& creds) {
    struct stat st {};
    // On every GetNamespace of a non-root caller: neither an allocation nor printf.
    char path[sizeof("/proc/-2147483648/status")] = "/proc/";
    char* end =
        std::to_chars(path + sizeof("/proc/") - 1, std::end(path) - sizeof("/status"), pidfd.pid())
            .ptr;
    std::memcpy(end, "/status", sizeof("/status"));
    return ::stat(path, &st) == 0 && st.st_uid == creds.euid && !pidfd.hasExited();
}

// From /proc/PID/status: whether the process is its pid namespace's init
// (the last NSpid is 1) and the signals it catches (SigCgt). Trusted only if
// the pid still names our process afterwards.
void readInitStatus(const PidFd& pidfd, Target& target) {
    std::ifstream status("/proc/" + std::to_string(pidfd.pid()) + "/status");
    bool isInit = false;
    std::uint64_t caught = 0;
    for (std::string line; std::getline(status, line);) {
        if (line.rfind("NSpid:", 0) == 0) {
            std::istringstream pids(line.substr(6));
            long last = 0;
            for (long pid = 0; pids >> pid;) {
                last = pid;
            }
            isInit = last == 1;
        } else if (line.rfind("SigCgt:", 0) == 0) {
            caught = std::strtoull(line.c_str() + 7, nullptr, 16);
        }
    }
    if (!pidfd.hasExited()) {
        target.isCallersInit = isInit;
        target.caughtSignals = caught;
    }
}

}  // namespace

void Manager::place(const Caller& caller, Target& target,
                    const std::vector<std::uint64_t>& pidNamespaces, const PidFd* alive,
                    Action action) const {
    target.visible = canName(caller, pidNamespaces);
    // Its own pid namespace's init, as the caller sees it: the kernel spares it
    // the signals it does not catch.
    if (action == Action::SendSignal && target.visible && !caller.inOurPidNamespace &&
        !pidNamespaces.empty() && pidNamespaces.front() == caller.pidNamespace) {
        target.isCallersInit = true;  // until /proc says otherwise
        if (alive != nullptr) {
            readInitStatus(*alive, target);
        }
    }
}

void Manager::findSelected(const Caller& caller, std::string_view text, Found found,
                           NotFound failed) {
    Selector selector = parseSelector(text);
    std::optional<PidFd> pidfd;
    if (selector.kind == SelectorKind::PidWithId) {
        pidfd = openPid(caller, static_cast<std::uint32_t>(selector.pid));
        if (pidfd->id() != selector.id) {
            throw ServiceError(ErrorKind::NoSuchProcess,
                               "No such process: " + selector.text + " (pid " +
                                   std::to_string(selector.pid) + " is another process now)");
        }
    } else {
        Resolver::Visible visible;
        if (!caller.isRoot()) {
            visible = [this, &caller](const PidFd& candidate) {
                try {
                    Request request;
                    request.action = Action::ReadInfo;
                    request.target = targetOf(caller, candidate, request.action);
                    return authorizer_.decideNow(caller, request);
                } catch (const ServiceError&) {
                    return false;  // exited
                }
            };
        }
        pidfd = resolver_.resolve(selector, visible);
    }
    std::string absent = "No such process: " + selector.text;
    Request request;
    request.action = Action::ReadInfo;
    try {
        request.target = targetOf(caller, *pidfd, request.action);
    } catch (const ServiceError&) {
        throw ServiceError(ErrorKind::NoSuchProcess, absent);  // exited meanwhile
    }
    auto held = std::make_shared<PidFd>(std::move(*pidfd));
    authorizer_.authorize(caller, request,
                          [held, found = std::move(found), failed = std::move(failed),
                           absent](const Decision& decision) {
                              if (decision.allowed) {
                                  found(std::move(*held));
                              } else {
                                  failed(ServiceError(ErrorKind::NoSuchProcess, absent));
                              }
                          });
}

Target Manager::targetOf(const Caller& caller, const PidFd& pidfd, Action action) const {
    Target target;
    target.pid = pidfd.pid();
    if (!authorizer_.needsTarget(caller)) {
        return target;
    }
    target.id = pidfd.id();
    const TrackedProcess* tracked = registry_.find(target.id);
    if (tracked != nullptr) {
        place(caller, target, tracked->pidNamespaces(), &pidfd, action);
    } else if (caller.inOurPidNamespace) {
        target.visible = true;
    } else {
        place(caller, target, pidNamespaceChain(pidfd), &pidfd, action);
    }
    try {
        target.creds = pidfd.credentials();
    } catch (const std::system_error& e) {
        if (e.code() == std::errc::no_such_process) {
            throw ServiceError(ErrorKind::ProcessExited, describe(pidfd) + " has exited");
        }
        throw;
    }
    if (needsAlive(action)) {
        target.dumpable = isDumpable(pidfd, target.creds);
        if (!target.dumpable && pidfd.hasExited()) {
            throw ServiceError(ErrorKind::ProcessExited, describe(pidfd) + " has exited");
        }
    }
    if (action == Action::OpenSocket) {
        readNetNamespace(caller, pidfd, target);
    }
    if (action == Action::Enter) {
        readEnterable(caller, pidfd, target);
    }
    if (tracked != nullptr) {
        target.trackers = tracked->trackers();
    }
    return target;
}

Target Manager::targetOf(const Caller& caller, TrackedProcess& process, Action action) const {
    if (process.state() != ProcessState::Running && needsAlive(action)) {
        throw ServiceError(ErrorKind::ProcessExited,
                           "pid " + std::to_string(process.pid()) + " has exited");
    }
    if (process.state() == ProcessState::Running && needsAlive(action)) {
        return targetOf(caller, process.pidfd(), action);
    }
    Target target;
    target.id = process.id();
    target.pid = process.pid();
    target.creds = process.info().credentials().value_or(process.lastCredentials());
    target.trackers = process.trackers();
    place(caller, target, process.pidNamespaces(),
          process.state() == ProcessState::Running ? &process.pidfd() : nullptr, action);
    return target;
}

void Manager::checkFdBudget(std::size_t needed) const {
    if (registry_.size() + needed + kFdReserve > fdLimit_) {
        throw ServiceError(ErrorKind::LimitExceeded,
                           "nsfdd is out of file descriptors (limit " + std::to_string(fdLimit_) +
                               ", " + std::to_string(registry_.size()) + " processes tracked)");
    }
}

TrackedProcess& Manager::add(std::unique_ptr<TrackedProcess> process) {
    TrackedProcess& tracked = registry_.add(std::move(process));
    try {
        auto watch = std::make_unique<ProcessWatch>(*this, tracked);
        ProcessWatch& ref = *watch;
        tracked.setAttachment(std::move(watch));
        if (!ref.follow()) {
            throw std::runtime_error("no retention timer");
        }
    } catch (...) {
        registry_.remove(tracked.id());
        throw;
    }
    return tracked;
}

TrackedProcess& Manager::track(const Caller& caller, PidFd pidfd) {
    TrackedProcess* process = registry_.find(pidfd.id());
    if (process != nullptr && process->isTrackedBy(caller.uid)) {
        return *process;
    }
    std::size_t quota = authorizer_.trackQuota(caller);
    // Root has no quota: its trackings count against none.
    std::optional<uid_t> account;
    if (!caller.isRoot()) {
        account = caller.account();
    }
    if (account && registry_.countTrackedBy(*account) >= quota) {
        throw ServiceError(ErrorKind::LimitExceeded,
                           caller.describeAccount() + " already tracks " +
                               std::to_string(registry_.countTrackedBy(*account)) +
                               " processes, its limit");
    }
    bool isNew = process == nullptr;
    if (isNew) {
        if (!fdStore_.hasRoom(caller.isRoot())) {
            throw ServiceError(ErrorKind::LimitExceeded,
                               "nsfdd tracks " + std::to_string(registry_.size()) +
                                   " processes, as many as it can keep across a restart" +
                                   (caller.isRoot() ? "" : " for users other than root"));
        }
        checkFdBudget(1);
        process = &add(std::make_unique<TrackedProcess>(std::move(pidfd)));
    }
    registry_.addTracker(*process, caller.uid, account);
    // Kept across a restart before the caller hears of it.
    fdStore_.add(process->pidfd().get(), process->id(), process->pid(), caller.uid, account);
    spdlog::info("Tracking pid {} (id {}) for uid {}", process->pid(), process->id(), caller.uid);
    if (isNew) {
        for (ManagerObserver* observer : observers_) {
            observer->processTracked(*process);
        }
        countChanged();
    }
    return *process;
}

void Manager::untrack(const Caller& caller, std::uint64_t id) {
    TrackedProcess* process = registry_.find(id);
    if (process == nullptr) {
        return;  // gone meanwhile: nothing left to drop
    }
    std::vector<uid_t> dropped{caller.uid};
    if (!process->isTrackedBy(caller.uid)) {
        dropped = process->trackers();  // the authorization step allowed dropping them all
    }
    for (uid_t uid : dropped) {
        registry_.removeTracker(*process, uid);
        fdStore_.removeTracker(id, uid);
        spdlog::info("uid {} no longer tracks pid {} (id {}){}", uid, process->pid(), id,
                     uid == caller.uid ? "" : ", dropped by uid " + std::to_string(caller.uid));
    }
    if (process->trackers().empty()) {
        remove(id);
    }
}

void Manager::remove(std::uint64_t id) {
    TrackedProcess* process = registry_.find(id);
    if (process == nullptr) {
        return;
    }
    spdlog::info("No longer tracking pid {} (id {})", process->pid(), id);
    for (ManagerObserver* observer : observers_) {
        observer->processRemoved(*process);
    }
    fdStore_.remove(id);
    registry_.remove(id);
    countChanged();
}

void Manager::onStateChanged(TrackedProcess& process) {
    if (process.state() == ProcessState::Reaped) {
        spdlog::info("Tracked pid {} (id {}) exited, wait status {}", process.pid(), process.id(),
                     process.exitStatus().value_or(kNoExitStatus));
    }
    for (ManagerObserver* observer : observers_) {
        observer->processStateChanged(process);
    }
    if (!watchOf(process).follow()) {
        remove(process.id());  // never retained rather than kept for ever
    }
}

Info Manager::info(const PidFd& pidfd) const {
    try {
        Info info = pidfd.info();
        if (info.credentials()) {
            return info;
        }
    } catch (const std::system_error& e) {
        if (e.code() != std::errc::no_such_process) {
            throw;
        }
    }
    throw ServiceError(ErrorKind::ProcessExited, describe(pidfd) + " has exited");
}

std::vector<NsType> Manager::requestedTypes(const std::vector<NsType>& types) {
    if (types.empty()) {
        return {allNsTypes().begin(), allNsTypes().end()};
    }
    std::vector<NsType> wanted;
    for (NsType type : types) {
        if (std::find(wanted.begin(), wanted.end(), type) == wanted.end()) {
            wanted.push_back(type);
        }
    }
    return wanted;
}

NsFd Manager::namespaceFd(const PidFd& pidfd, NsType type) const {
    try {
        return pidfd.namespaceFd(type);
    } catch (const std::system_error& e) {
        throwNamespaceError(e, pidfd);
    }
}

NamespaceFds Manager::namespaceFds(const PidFd& pidfd, const std::vector<NsType>& types) const {
    bool all = types.empty();
    std::vector<NsType> wanted = requestedTypes(types);
    checkFdBudget(wanted.size());
    NamespaceFds fds;
    for (NsType type : wanted) {
        try {
            fds.emplace_back(type, pidfd.namespaceFd(type));
        } catch (const std::system_error& e) {
            // "Every type" means every type this kernel has.
            if (!(all && e.code() == std::errc::operation_not_supported)) {
                throwNamespaceError(e, pidfd);
            }
        }
    }
    return fds;
}

std::map<std::string, std::uint64_t> Manager::namespaceIds(const PidFd& pidfd) const {
    std::map<std::string, std::uint64_t> ids;
    for (NsType type : allNsTypes()) {
        try {
            ids.emplace(toString(type), pidfd.namespaceFd(type).id());
        } catch (const std::system_error& e) {
            if (e.code() != std::errc::operation_not_supported) {
                throwNamespaceError(e, pidfd);
            }
        }
    }
    return ids;
}

UniqueFd Manager::duplicatePidFd(const PidFd& pidfd) const {
    return duplicateFd(pidfd.get());
}

void Manager::sendSignal(const PidFd& pidfd, int signal) const {
    pidfd.sendSignal(signal);
}

UniqueFd Manager::getFd(const PidFd& pidfd, int targetFd) const {
    return pidfd.getFd(targetFd);
}

SocketSpec Manager::socketSpec(std::int64_t family, std::int64_t type, std::int64_t protocol) {
    auto fits = [](std::int64_t v) { return v >= INT_MIN && v <= INT_MAX; };
    if (!fits(family) || !socketFamilyName(static_cast<int>(family))) {
        throw ServiceError(ErrorKind::InvalidArgs,
                           "Unknown socket family " + std::to_string(family) +
                               " (expected an AF_ constant of Linux, 1 to 45)");
    }
    if (fits(type) && (type & (SOCK_NONBLOCK | SOCK_CLOEXEC)) != 0) {
        throw ServiceError(ErrorKind::InvalidArgs,
                           "Socket type " + std::to_string(type) +
                               " has flags (SOCK_NONBLOCK, SOCK_CLOEXEC): set them on the "
                               "received socket instead");
    }
    if (!fits(type) || !socketTypeName(static_cast<int>(type))) {
        throw ServiceError(ErrorKind::InvalidArgs,
                           "Unknown socket type " + std::to_string(type) +
                               " (expected SOCK_STREAM, SOCK_DGRAM, SOCK_RAW, SOCK_RDM, "
                               "SOCK_SEQPACKET, SOCK_DCCP or SOCK_PACKET)");
    }
    if (!fits(protocol) || protocol < 0) {
        throw ServiceError(ErrorKind::InvalidArgs, "Invalid socket protocol " +
                                                       std::to_string(protocol) +
                                                       " (expected 0 or a protocol number)");
    }
    return {static_cast<int>(family), static_cast<int>(type), static_cast<int>(protocol)};
}

void Manager::openSocket(const Caller& caller, const PidFd& pidfd, const SocketSpec& spec,
                         SocketHelper::Done done) {
    NsFd netns = namespaceFd(pidfd, NsType::Net);
    std::string what = "open " + describe(spec) + " socket in the net namespace of " +
                       describe(pidfd) + " as uid " + std::to_string(caller.uid);
    socketHelper_.openSocket(std::move(netns), caller, spec, std::move(what), std::move(done));
}

std::uint64_t Manager::spawn(const Caller& caller, const PidFd& pidfd, SpawnSpec spec,
                             CommandRunner::Events events) {
    std::string types;
    for (NsType type : spec.namespaces) {
        types += (types.empty() ? "" : ",") + std::string(toString(type));
    }
    std::string what = "run " + (spec.argv.empty() ? std::string("?") : spec.argv[0]) + " in the " +
                       types + " namespaces of " + describe(pidfd) + " as uid " +
                       std::to_string(caller.uid);
    // The command takes the caller's place: its uid in nsfdd's user namespace,
    // a pid in nsfdd's pid namespace. A caller in others would leave them.
    if (!caller.inOurUserNamespace || !caller.inOurPidNamespace) {
        throw ServiceError(
            ErrorKind::NotSupported,
            "Failed to " + what +
                ": the caller lives in a user or pid namespace "
                "of its own (a sandbox or container), and a brokered run would leave "
                "it; run nsfdctl from the host's namespaces");
    }
    if (caller.gid == static_cast<gid_t>(-1) || !caller.pidfd) {
        throw ServiceError(ErrorKind::Failed,
                           "Failed to " + what + ": the calling process could not be checked");
    }
    std::vector<NsFd> namespaces;
    for (NsType type : spec.namespaces) {
        namespaces.push_back(namespaceFd(pidfd, type));
    }
    // The caller's own mount namespace and root, from its pidfd, held since
    // its connection was first seen: whatever has its pid now cannot stand in.
    NsFd mount = [&] {
        try {
            return caller.pidfd->namespaceFd(NsType::Mnt);
        } catch (const std::system_error& e) {
            throw ServiceError(ErrorKind::Failed,
                               "Failed to " + what + ": the caller's mount namespace: " + e.what());
        }
    }();
    std::string rootPath = "/proc/" + std::to_string(caller.pidfd->pid()) + "/root";
    UniqueFd root(::open(rootPath.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    int rootError = errno;
    if (caller.pidfd->hasExited()) {
        throw ServiceError(ErrorKind::ProcessExited,
                           "Failed to " + what + ": the calling process has exited");
    }
    if (!root.ok()) {
        throw ServiceError(ErrorKind::Failed, "Failed to " + what + ": open " + rootPath + ": " +
                                                  std::strerror(rootError));
    }
    checkFdBudget(spec.namespaces.size() + 8);
    return commandRunner_.spawn(caller, std::move(namespaces), std::move(mount), std::move(root),
                                std::move(spec), std::move(what), std::move(events));
}

}  // namespace nsfd::daemon
