// SPDX-License-Identifier: LGPL-2.1-or-later
// The client's API on a transport (transport.hpp): what both transports share
// (pidfds opened here, exit callbacks, the event loop) is written once here.
#include "nsfd/client.hpp"

#include <poll.h>
#include <sys/resource.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <deque>

#include "nsfd/dbus_names.hpp"
#include "transport.hpp"

namespace nsfd {

namespace detail {

void throwErrorOf(ErrorKind kind, const std::string& message) {
    std::string name(dbusErrorName(kind));
    switch (kind) {
        case ErrorKind::AccessDenied:
            throw AccessDenied(name, message);
        case ErrorKind::InteractiveAuthorizationRequired:
            throw InteractiveAuthorizationRequired(name, message);
        case ErrorKind::NoSuchProcess:
            throw NoSuchProcess(name, message);
        case ErrorKind::ProcessExited:
            throw ProcessExited(name, message);
        case ErrorKind::NotTracked:
            throw NotTracked(name, message);
        case ErrorKind::NotSupported:
            throw NotSupported(name, message);
        case ErrorKind::LimitExceeded:
            throw LimitExceeded(name, message);
        case ErrorKind::InvalidArgs:
            throw InvalidArgument(name, message);
        case ErrorKind::ForeignPidNamespace:
            throw ForeignPidNamespace(name, message);
        case ErrorKind::OutsidePidNamespace:
            throw OutsidePidNamespace(name, message);
        case ErrorKind::CallerOutOfFds:
            throw CallerOutOfFds(name, message);
        case ErrorKind::SocketFailed:
            throw SocketFailed(name, message);
        case ErrorKind::Failed:
            break;
    }
    throw Error(name, message);
}

void throwCallerOutOfFds(const std::string& what) {
    rlimit limit{};
    std::string limits = "RLIMIT_NOFILE unknown";
    if (::getrlimit(RLIMIT_NOFILE, &limit) == 0) {
        auto text = [](rlim_t value) {
            return value == RLIM_INFINITY ? std::string("unlimited") : std::to_string(value);
        };
        limits = "RLIMIT_NOFILE " + text(limit.rlim_cur) + ", hard " + text(limit.rlim_max);
    }
    throwErrorOf(ErrorKind::CallerOutOfFds,
                 "This process ran out of file descriptors (" + limits + "): " + what);
}

NsFd adoptNsFd(UniqueFd fd, NsType type) {
    try {
        return NsFd::adopt(std::move(fd), type);
    } catch (const std::system_error& e) {
        throwErrorOf(ErrorKind::Failed, std::string("nsfdd answered with a bad fd: ") + e.what());
    }
}

PidFd adoptPidFd(UniqueFd fd) {
    try {
        return PidFd::adopt(std::move(fd));
    } catch (const std::system_error& e) {
        throwErrorOf(ErrorKind::Failed, std::string("nsfdd answered with a bad fd: ") + e.what());
    }
}

}  // namespace detail

namespace {

using detail::ProcessRef;

// A pidfd of `pid` as the caller's own pid namespace sees it: what every
// by-pid call passes to nsfdd, so that a pid means what it means to the caller.
PidFd openPidFd(pid_t pid) {
    try {
        return PidFd::open(pid);
    } catch (const std::system_error& e) {
        if (e.code() == std::errc::no_such_process) {
            detail::throwErrorOf(ErrorKind::NoSuchProcess,
                                 "No such process: " + std::to_string(pid));
        }
        if (e.code() == std::errc::too_many_files_open ||
            e.code() == std::errc::too_many_files_open_in_system) {
            detail::throwCallerOutOfFds("Failed to open a pidfd of pid " + std::to_string(pid) +
                                        ": " + e.code().message());
        }
        detail::throwErrorOf(
            ErrorKind::InvalidArgs,
            "Failed to open a pidfd of pid " + std::to_string(pid) + ": " + e.code().message());
    }
}

// PID:ID, in decimal: resolved here, where the pid means what the caller
// meant (nsfdd takes no pid from another pid namespace). A pidfd of PID if
// its pidfs id is ID; NoSuchProcess otherwise; nullopt for another selector.
std::optional<PidFd> pidWithId(const std::string& selector) {
    std::size_t colon = selector.find(':');
    auto digits = [](std::string_view text) {
        return !text.empty() && text.size() <= 20 &&
               std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; });
    };
    if (colon == std::string::npos || !digits(std::string_view(selector).substr(0, colon)) ||
        !digits(std::string_view(selector).substr(colon + 1))) {
        return std::nullopt;
    }
    std::string pidText = selector.substr(0, colon), idText = selector.substr(colon + 1);
    errno = 0;
    unsigned long long pid = std::strtoull(pidText.c_str(), nullptr, 10);
    unsigned long long id = std::strtoull(idText.c_str(), nullptr, 10);
    if (errno != 0 || pid == 0 || pid > INT_MAX || id == 0 || pidText[0] == '0' ||
        idText[0] == '0') {
        detail::throwErrorOf(ErrorKind::InvalidArgs,
                             "Invalid target '" + selector +
                                 "': expected PID:ID, a pid and its pidfs id in decimal");
    }
    PidFd pidfd = openPidFd(static_cast<pid_t>(pid));
    if (pidfd.id() != id) {
        detail::throwErrorOf(ErrorKind::NoSuchProcess, "No such process: " + selector + " (pid " +
                                                           pidText + " is another process now)");
    }
    return pidfd;
}

}  // namespace

struct TrackedProcess::Shared {
    std::unique_ptr<detail::Transport> transport;
    std::vector<std::function<void(const ExitEvent&)>> exitListeners;
    std::multimap<std::uint64_t, std::function<void(int)>> exitCallbacks;  // by id
    // Callbacks to call, in order, from processEvents(): never from inside a
    // transport's processing (sd-bus's), so that they may use the client,
    // listen for more, and throw without losing the others.
    std::deque<std::function<void()>> due;
    bool stopLoop = false;

    detail::Transport::ExitSink exitSink() {
        return [this](const ExitEvent& event) { dispatchExit(event); };
    }
    detail::Transport::ResubscribedSink resubscribedSink() {
        return [this] { settleAll(); };
    }

    void dispatchExit(const ExitEvent& event) {
        makeDue(event.id, event.waitStatus);
        for (const auto& listener : exitListeners) {
            due.push_back([listener, event] { listener(event); });
        }
    }

    void makeDue(std::uint64_t id, int waitStatus) {
        auto [first, last] = exitCallbacks.equal_range(id);
        for (auto it = first; it != last; ++it) {
            due.push_back([callback = std::move(it->second), waitStatus] { callback(waitStatus); });
        }
        exitCallbacks.erase(first, last);
    }

    // One at a time: one that throws leaves the rest for the next processing.
    void runDue() {
        while (!due.empty()) {
            std::function<void()> callback = std::move(due.front());
            due.pop_front();
            callback();
        }
    }

    // No Client is left to run them: the callbacks go, and what they hold
    // (copies of TrackedProcess, and through them this object and its
    // connections) with them.
    void forgetCallbacks() noexcept {
        auto callbacks = std::move(exitCallbacks);
        auto listeners = std::move(exitListeners);
        auto pending = std::move(due);
        exitCallbacks.clear();
        exitListeners.clear();
        due.clear();
    }

    // The exit callbacks of `id` become due if it was reaped (or is gone)
    // while nobody listened.
    void settleIfReaped(std::uint64_t id) {
        std::optional<int> status;
        try {
            // One call for both (the state, and the status once reaped).
            ProcessInfo info = transport->info(detail::ProcessRef{nullptr, id});
            if (info.state == ProcessState::Reaped) {
                status = info.exitStatus.value_or(kNoExitStatus);
            }
        } catch (const NotTracked&) {
            status = kNoExitStatus;  // gone already; its status is lost to us
        }
        if (status) {
            makeDue(id, *status);
        }
    }

    void settleAll() {
        std::vector<std::uint64_t> ids;
        for (const auto& [id, callback] : exitCallbacks) {
            if (ids.empty() || ids.back() != id) {
                ids.push_back(id);
            }
        }
        for (std::uint64_t id : ids) {
            settleIfReaped(id);
        }
    }
};

// -- TrackedProcess --

TrackedProcess::TrackedProcess(std::shared_ptr<Shared> shared, pid_t pid, std::uint64_t id)
    : shared_(std::move(shared)), path_(nsfd::dbus::processObjectPath(id)), pid_(pid), id_(id) {}

ProcessState TrackedProcess::state() const {
    return shared_->transport->state(id_);
}

std::optional<int> TrackedProcess::exitStatus() const {
    return shared_->transport->exitStatus(id_);
}

NsFd TrackedProcess::namespaceFd(NsType type) const {
    return shared_->transport->namespaceFd(ProcessRef{nullptr, id_}, type);
}

std::map<NsType, NsFd> TrackedProcess::namespaceFds(std::span<const NsType> types) const {
    return shared_->transport->namespaceFds(ProcessRef{nullptr, id_}, types);
}

std::map<NsType, std::uint64_t> TrackedProcess::namespaceIds() const {
    return shared_->transport->namespaceIds(id_);
}

ProcessInfo TrackedProcess::info() const {
    return shared_->transport->info(ProcessRef{nullptr, id_});
}

Credentials TrackedProcess::credentials() const {
    return shared_->transport->credentials(id_);
}

PidFd TrackedProcess::pidFd() const {
    return shared_->transport->pidFd(id_);
}

void TrackedProcess::signal(int signal) const {
    shared_->transport->sendSignal(ProcessRef{nullptr, id_}, signal);
}

UniqueFd TrackedProcess::openSocket(int family, int type, int protocol) const {
    return shared_->transport->openSocket(ProcessRef{nullptr, id_}, family, type, protocol);
}

UniqueFd TrackedProcess::fd(int targetFd) const {
    return shared_->transport->fd(id_, targetFd);
}

void TrackedProcess::onExit(std::function<void(int)> callback) const {
    shared_->transport->subscribe();
    shared_->exitCallbacks.emplace(id_, std::move(callback));
    // It may have been reaped before we listened: ask once.
    shared_->settleIfReaped(id_);
}

void TrackedProcess::untrack() const {
    shared_->transport->untrack(id_);
}

// -- Client --

Client::Client(std::shared_ptr<TrackedProcess::Shared> shared) : shared_(std::move(shared)) {}
Client::Client(Client&&) noexcept = default;

Client& Client::operator=(Client&& other) noexcept {
    if (this != &other) {
        if (shared_) {
            shared_->forgetCallbacks();
        }
        shared_ = std::move(other.shared_);
    }
    return *this;
}

Client::~Client() {
    if (shared_) {
        shared_->forgetCallbacks();
    }
}

Client Client::system() {
    const char* path = std::getenv("NSFD_VARLINK_SOCKET");
    try {
        Client client = varlink(path != nullptr ? path : nsfd::varlink::kSocketPath);
        // nsfdd closes a connection past its bounds (per uid, in all) as soon
        // as it accepts it, before reading a byte: one round trip tells
        // whether it took this one, and nothing has been asked yet.
        (void)client.shared_->transport->daemonVersion();
        return client;
    } catch (const DaemonUnavailable&) {
        // No socket, nobody listens, or nsfdd refused the connection for a
        // limit: nsfdd may still be on the bus, with room there.
        return bus();
    } catch (const InvalidArgument&) {
        return bus();  // a path no socket can have (longer than sun_path)
    }
}

Client Client::varlink(const std::string& socketPath) {
    auto shared = std::make_shared<TrackedProcess::Shared>();
    shared->transport =
        detail::connectVarlink(socketPath, shared->exitSink(), shared->resubscribedSink());
    return Client(std::move(shared));
}

Client Client::bus() {
    auto shared = std::make_shared<TrackedProcess::Shared>();
    shared->transport = detail::connectSystemBus(shared->exitSink(), shared->resubscribedSink());
    return Client(std::move(shared));
}

Client Client::connect(const std::string& address) {
    auto shared = std::make_shared<TrackedProcess::Shared>();
    shared->transport = detail::connectBus(address, shared->exitSink(), shared->resubscribedSink());
    return Client(std::move(shared));
}

TransportKind Client::transport() const noexcept {
    return shared_->transport->kind();
}

void Client::allowInteractiveAuthorization(bool allow) {
    shared_->transport->allowInteractiveAuthorization(allow);
}

TrackedProcess Client::tracked(std::uint64_t id, std::optional<pid_t> pid) {
    // Ask the daemon only for what the caller cannot know.
    if (!pid) {
        pid = shared_->transport->pid(id);
    }
    return TrackedProcess(shared_, *pid, id);
}

TrackedProcess Client::track(pid_t pid) {
    return track(openPidFd(pid));
}

TrackedProcess Client::track(const PidFd& pidfd) {
    return tracked(shared_->transport->track(pidfd), pidfd.pid());
}

TrackedProcess Client::process(pid_t pid) {
    std::optional<PidFd> pidfd;
    try {
        pidfd.emplace(openPidFd(pid));
    } catch (const NoSuchProcess&) {
        // No process has the pid: nsfdd may keep the one reaped last that had it.
        return tracked(shared_->transport->trackedWithPid(pid), pid);
    }
    TrackedProcess process = tracked(pidfd->id(), pid);
    process.state();  // NotTracked unless tracked and visible to us
    return process;
}

TrackedProcess Client::processWithId(std::uint64_t id) {
    return tracked(id);
}

std::vector<ProcessEntry> Client::list() {
    return shared_->transport->list();
}

NsFd Client::namespaceFd(pid_t pid, NsType type) {
    PidFd pidfd = openPidFd(pid);
    return shared_->transport->namespaceFd(ProcessRef{&pidfd, 0}, type);
}

std::map<NsType, NsFd> Client::namespaceFds(pid_t pid, std::span<const NsType> types) {
    PidFd pidfd = openPidFd(pid);
    return shared_->transport->namespaceFds(ProcessRef{&pidfd, 0}, types);
}

ProcessInfo Client::info(pid_t pid) {
    std::optional<PidFd> opened;
    try {
        opened.emplace(openPidFd(pid));
    } catch (const NoSuchProcess&) {
        // No process has the pid now: a tracked one reaped last with it is
        // still kept (its state and exit status), for the retention time.
        try {
            return process(pid).info();
        } catch (const NotTracked&) {
            detail::throwErrorOf(ErrorKind::NoSuchProcess,
                                 "No such process: " + std::to_string(pid));
        }
    }
    ProcessInfo info = shared_->transport->info(ProcessRef{&*opened, 0});
    if (info.pid == 0) {
        // nsfdd shows a caller in another pid namespace no pid; we know ours.
        info.pid = info.threadGroupId = pid;
    }
    return info;
}

UniqueFd Client::openSocket(pid_t pid, int family, int type, int protocol) {
    PidFd pidfd = openPidFd(pid);
    return shared_->transport->openSocket(ProcessRef{&pidfd, 0}, family, type, protocol);
}

SpawnedCommand Client::spawn(pid_t pid, const SpawnOptions& options) {
    std::size_t bytes = 0;
    for (const auto* list : {&options.argv, &options.environment}) {
        for (const std::string& entry : *list) {
            bytes += entry.size() + 1;
        }
    }
    std::size_t strings = options.argv.size() + options.environment.size();
    // nsfdd would refuse it too; past 64 KiB it would not read the call at all.
    if (bytes > spawn_limit::kArgumentBytes || strings > spawn_limit::kStrings) {
        detail::throwErrorOf(ErrorKind::LimitExceeded,
                             "argv and environment take " + std::to_string(bytes) + " bytes in " +
                                 std::to_string(strings) + " strings; Spawn takes at most " +
                                 std::to_string(spawn_limit::kArgumentBytes) + " bytes in " +
                                 std::to_string(spawn_limit::kStrings));
    }
    PidFd pidfd = openPidFd(pid);
    return SpawnedCommand(shared_->transport->spawn(ProcessRef{&pidfd, 0}, options));
}

SpawnedCommand::SpawnedCommand(std::unique_ptr<detail::SpawnStream> stream)
    : stream_(std::move(stream)) {}
SpawnedCommand::SpawnedCommand(SpawnedCommand&&) noexcept = default;
SpawnedCommand& SpawnedCommand::operator=(SpawnedCommand&&) noexcept = default;
SpawnedCommand::~SpawnedCommand() = default;

pid_t SpawnedCommand::pid() const noexcept {
    return stream_->pid();
}

const PidFd& SpawnedCommand::pidFd() const noexcept {
    return stream_->pidFd();
}

int SpawnedCommand::eventFd() const noexcept {
    return stream_->eventFd();
}

std::optional<int> SpawnedCommand::poll() {
    return stream_->poll(false);
}

int SpawnedCommand::wait() {
    return *stream_->poll(true);
}

void Client::sendSignal(pid_t pid, int signal) {
    PidFd pidfd = openPidFd(pid);
    shared_->transport->sendSignal(ProcessRef{&pidfd, 0}, signal);
}

TrackedProcess Client::track(const std::string& selector) {
    if (std::optional<PidFd> pidfd = pidWithId(selector)) {
        return track(*pidfd);
    }
    return tracked(shared_->transport->trackSelector(selector));
}

NsFd Client::namespaceFd(const std::string& selector, NsType type) {
    std::optional<PidFd> pidfd = pidWithId(selector);
    return shared_->transport->namespaceFd(
        pidfd ? ProcessRef{&*pidfd, 0} : ProcessRef{nullptr, 0, &selector}, type);
}

std::map<NsType, NsFd> Client::namespaceFds(const std::string& selector,
                                            std::span<const NsType> types) {
    std::optional<PidFd> pidfd = pidWithId(selector);
    return shared_->transport->namespaceFds(
        pidfd ? ProcessRef{&*pidfd, 0} : ProcessRef{nullptr, 0, &selector}, types);
}

ProcessInfo Client::info(const std::string& selector) {
    std::optional<PidFd> pidfd = pidWithId(selector);
    ProcessInfo info = shared_->transport->info(pidfd ? ProcessRef{&*pidfd, 0}
                                                      : ProcessRef{nullptr, 0, &selector});
    if (pidfd && info.pid == 0) {
        info.pid = info.threadGroupId = pidfd->pid();  // ours, as for a pid
    }
    return info;
}

void Client::sendSignal(const std::string& selector, int signal) {
    std::optional<PidFd> pidfd = pidWithId(selector);
    shared_->transport->sendSignal(
        pidfd ? ProcessRef{&*pidfd, 0} : ProcessRef{nullptr, 0, &selector}, signal);
}

std::string Client::daemonVersion() {
    return shared_->transport->daemonVersion();
}

std::vector<std::string> Client::kernelFeatures() {
    return shared_->transport->kernelFeatures();
}

unsigned Client::trackedCount() {
    return shared_->transport->trackedCount();
}

void Client::onProcessExited(std::function<void(const ExitEvent&)> callback) {
    shared_->transport->subscribe();
    shared_->exitListeners.push_back(std::move(callback));
}

int Client::eventFd() const {
    return shared_->transport->eventFd();
}

short Client::pollEvents() const {
    return shared_->transport->pollEvents();
}

std::optional<std::chrono::microseconds> Client::pollTimeout() const {
    if (!shared_->due.empty()) {
        return std::chrono::microseconds(0);
    }
    return shared_->transport->pollTimeout();
}

void Client::processEvents() {
    shared_->runDue();
    shared_->transport->processEvents();
    shared_->runDue();
}

void Client::runEventLoop(std::optional<std::chrono::milliseconds> timeout) {
    shared_->stopLoop = false;
    auto deadline = timeout ? std::chrono::steady_clock::now() + *timeout
                            : std::chrono::steady_clock::time_point::max();
    for (;;) {
        processEvents();
        if (shared_->stopLoop || std::chrono::steady_clock::now() >= deadline) {
            return;
        }
        int wait = -1;
        if (std::optional<std::chrono::microseconds> t = pollTimeout()) {
            wait = static_cast<int>(std::chrono::ceil<std::chrono::milliseconds>(*t).count());
        }
        if (timeout) {
            auto left = std::chrono::ceil<std::chrono::milliseconds>(
                deadline - std::chrono::steady_clock::now());
            int leftMs = static_cast<int>(std::max<long long>(0, left.count()));
            wait = wait < 0 ? leftMs : std::min(wait, leftMs);
        }
        struct pollfd pfd = {eventFd(), pollEvents(), 0};
        if (::poll(&pfd, 1, wait) < 0 && errno != EINTR) {
            throw DaemonUnavailable("System.Error", "Failed to poll nsfdd's connection");
        }
    }
}

void Client::stopEventLoop() {
    shared_->stopLoop = true;
}

}  // namespace nsfd
