// SPDX-License-Identifier: LGPL-2.1-or-later
#include "nsfd/client.hpp"

#include <fcntl.h>
#include <poll.h>

#include <sdbus-c++/sdbus-c++.h>

#include "nsfd/dbus_names.hpp"
#include "nsfd/generated/manager_proxy.h"
#include "nsfd/generated/process_proxy.h"

namespace nsfd {

namespace {

[[noreturn]] void rethrowTyped(const sdbus::Error& e) {
    const std::string& name = e.getName();
    const std::string& message = e.getMessage().empty() ? name : e.getMessage();
    if (std::optional<ErrorKind> kind = errorKindOfDbusName(name)) {
        switch (*kind) {
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
            case ErrorKind::Failed:
                break;
        }
        throw Error(name, message);
    }
    // Every other error of the bus's own or of systemd's (relayed by the bus when
    // D-Bus activation fails: "Unit dbus-org.nsfd1.service not found.", a masked
    // or broken unit, Spawn.* without systemd) means nsfdd was not reached:
    // nsfdd itself answers only with the contract's names and, through sd-bus,
    // the object layer's.
    auto startsWith = [&name](const char* prefix) { return name.rfind(prefix, 0) == 0; };
    bool fromObjectLayer = name == "org.freedesktop.DBus.Error.UnknownMethod" ||
                           name == "org.freedesktop.DBus.Error.UnknownInterface" ||
                           name == "org.freedesktop.DBus.Error.UnknownProperty" ||
                           name == "org.freedesktop.DBus.Error.PropertyReadOnly";
    if (!fromObjectLayer &&
        (startsWith("org.freedesktop.DBus.Error.") || startsWith("org.freedesktop.systemd1.") ||
         startsWith("System.Error."))) {
        throw DaemonUnavailable(name, "nsfdd is not available: " + message);
    }
    throw Error(name, message);
}

// A pidfd of `pid` as the caller's own pid namespace sees it: what every
// by-pid call passes to nsfdd, so that a pid means what it means to the caller.
PidFd openPidFd(pid_t pid) {
    try {
        return PidFd::open(pid);
    } catch (const std::system_error& e) {
        if (e.code() == std::errc::no_such_process) {
            throw NoSuchProcess(std::string(dbusErrorName(ErrorKind::NoSuchProcess)),
                                "No such process: " + std::to_string(pid));
        }
        throw InvalidArgument(
            std::string(dbusErrorName(ErrorKind::InvalidArgs)),
            "Failed to open a pidfd of pid " + std::to_string(pid) + ": " + e.code().message());
    }
}

sdbus::UnixFd passFd(const PidFd& pidfd) {
    return sdbus::UnixFd(duplicateFd(pidfd.get()).release(), sdbus::adopt_fd);
}

template <typename Body>
auto callDaemon(Body&& body) -> decltype(body()) {
    try {
        return body();
    } catch (const sdbus::Error& e) {
        rethrowTyped(e);
    }
}

// sdbus-c++ 1.2 dup()s received fds without close-on-exec: take it and set the flag.
UniqueFd takeFd(sdbus::UnixFd& fd) {
    UniqueFd owned(fd.release());
    if (owned.ok()) {
        ::fcntl(owned.get(), F_SETFD, FD_CLOEXEC);
    }
    return owned;
}

std::vector<std::string> typeNames(std::span<const NsType> types) {
    std::vector<std::string> out;
    for (NsType type : types) {
        out.emplace_back(toString(type));
    }
    return out;
}

std::map<NsType, NsFd> toNsFds(std::map<std::string, sdbus::UnixFd>& fds) {
    std::map<NsType, NsFd> out;
    for (auto& [name, fd] : fds) {
        std::optional<NsType> type = parseNsType(name);
        UniqueFd owned = takeFd(fd);
        if (type) {
            out.emplace(*type, NsFd::adopt(std::move(owned), *type));
        }
    }
    return out;
}

// An unknown name (from a newer nsfdd) reads as the last state.
ProcessState parseState(const std::string& state) {
    return parseProcessState(state).value_or(ProcessState::Reaped);
}

template <typename T>
T valueOr(const std::map<std::string, sdbus::Variant>& dict, const char* key, T fallback) {
    auto it = dict.find(key);
    return it == dict.end() ? fallback : it->second.get<T>();
}

ProcessInfo toInfo(const std::map<std::string, sdbus::Variant>& dict) {
    ProcessInfo info;
    auto pid = [&](const char* key) { return static_cast<pid_t>(valueOr<uint32_t>(dict, key, 0)); };
    namespace key = nsfd::info_key;
    info.pid = pid(key::kPid);
    info.id = valueOr<uint64_t>(dict, key::kId, 0);
    info.threadGroupId = pid(key::kThreadGroupId);
    info.parentPid = pid(key::kParentPid);
    info.cgroupId = valueOr<uint64_t>(dict, key::kCgroupId, 0);
    if (dict.count(key::kRuid) > 0) {
        auto id = [&](const char* k) { return valueOr<uint32_t>(dict, k, 0); };
        info.credentials =
            Credentials{id(key::kRuid), id(key::kEuid), id(key::kSuid), id(key::kFsuid),
                        id(key::kRgid), id(key::kEgid), id(key::kSgid), id(key::kFsgid)};
    }
    info.state = parseState(
        valueOr<std::string>(dict, key::kState, std::string(toString(ProcessState::Running))));
    if (auto it = dict.find(key::kExitStatus); it != dict.end()) {
        info.exitStatus = it->second.get<int32_t>();
    }
    return info;
}

class ManagerProxy final
    : public sdbus::ProxyInterfaces<org::nsfd1::Manager_proxy, sdbus::Properties_proxy> {
  public:
    ManagerProxy(sdbus::IConnection& connection, std::function<void(const ExitEvent&)> onExit)
        : ProxyInterfaces(connection, nsfd::dbus::kBusName, nsfd::dbus::kManagerPath),
          onExit_(std::move(onExit)) {
        registerProxy();
    }
    ~ManagerProxy() { unregisterProxy(); }

  private:
    void onProcessExited(const sdbus::ObjectPath& process, const uint32_t& pid, const uint64_t& id,
                         const int32_t& waitStatus) override {
        onExit_(ExitEvent{process, static_cast<pid_t>(pid), id, waitStatus});
    }
    void onProcessTracked(const sdbus::ObjectPath&, const uint32_t&, const uint64_t&) override {}
    void onProcessUntracked(const sdbus::ObjectPath&, const uint64_t&) override {}
    void onPropertiesChanged(const std::string&, const std::map<std::string, sdbus::Variant>&,
                             const std::vector<std::string>&) override {}

    std::function<void(const ExitEvent&)> onExit_;
};

// Method calls on one process object. Never registered: it listens to no
// signal, so it costs the bus no match rule (exits come through the manager).
class ProcessCalls final : public sdbus::ProxyInterfaces<org::nsfd1::Process_proxy> {
  public:
    ProcessCalls(sdbus::IConnection& connection, const std::string& path)
        : ProxyInterfaces(connection, nsfd::dbus::kBusName, path) {}

  private:
    void onExited(const int32_t&) override {}
};

}  // namespace

struct TrackedProcess::Shared {
    std::unique_ptr<sdbus::IConnection> connection;
    std::unique_ptr<ManagerProxy> manager;
    std::vector<std::function<void(const ExitEvent&)>> exitListeners;
    std::multimap<std::string, std::function<void(int)>> exitCallbacks;
    std::vector<std::pair<std::function<void(int)>, int>> due;  // already reaped when registered
    bool stopLoop = false;

    explicit Shared(std::unique_ptr<sdbus::IConnection> bus) : connection(std::move(bus)) {
        manager = std::make_unique<ManagerProxy>(
            *connection, [this](const ExitEvent& event) { dispatchExit(event); });
    }

    void dispatchExit(const ExitEvent& event) {
        auto [first, last] = exitCallbacks.equal_range(event.objectPath);
        std::vector<std::function<void(int)>> callbacks;
        for (auto it = first; it != last; ++it) {
            callbacks.push_back(std::move(it->second));
        }
        exitCallbacks.erase(first, last);
        for (auto& callback : callbacks) {
            callback(event.waitStatus);
        }
        for (auto& listener : exitListeners) {
            listener(event);
        }
    }

    ProcessCalls process(const std::string& path) { return ProcessCalls(*connection, path); }

    // nsfdd sends its news only to subscribers (Manager.Subscribe), once.
    void subscribe() {
        if (!subscribed) {
            manager->Subscribe();
            subscribed = true;
        }
    }
    bool subscribed = false;
};

// -- TrackedProcess --

ProcessState TrackedProcess::state() const {
    return callDaemon([&] { return parseState(shared_->process(path_).State()); });
}

std::optional<int> TrackedProcess::exitStatus() const {
    return callDaemon([&]() -> std::optional<int> {
        int32_t status = shared_->process(path_).ExitStatus();
        return status == kNoExitStatus ? std::nullopt : std::optional<int>(status);
    });
}

NsFd TrackedProcess::namespaceFd(NsType type) const {
    return callDaemon([&] {
        sdbus::UnixFd fd = shared_->process(path_).GetNamespace(std::string(toString(type)));
        return NsFd::adopt(takeFd(fd), type);
    });
}

std::map<NsType, NsFd> TrackedProcess::namespaceFds(std::span<const NsType> types) const {
    return callDaemon([&] {
        auto fds = shared_->process(path_).GetNamespaces(typeNames(types));
        return toNsFds(fds);
    });
}

std::map<NsType, std::uint64_t> TrackedProcess::namespaceIds() const {
    return callDaemon([&] {
        std::map<NsType, std::uint64_t> out;
        for (const auto& [name, id] : shared_->process(path_).GetNamespaceIds()) {
            if (std::optional<NsType> type = parseNsType(name)) {
                out.emplace(*type, id);
            }
        }
        return out;
    });
}

ProcessInfo TrackedProcess::info() const {
    return callDaemon([&] { return toInfo(shared_->process(path_).GetInfo()); });
}

Credentials TrackedProcess::credentials() const {
    return callDaemon([&] {
        auto c = shared_->process(path_).Credentials();
        return Credentials{c.get<0>(), c.get<1>(), c.get<2>(), c.get<3>(),
                           c.get<4>(), c.get<5>(), c.get<6>(), c.get<7>()};
    });
}

PidFd TrackedProcess::pidFd() const {
    return callDaemon([&] {
        sdbus::UnixFd fd = shared_->process(path_).GetPidFd();
        return PidFd::adopt(takeFd(fd));
    });
}

void TrackedProcess::signal(int signal) const {
    callDaemon([&] { shared_->process(path_).SendSignal(signal); });
}

UniqueFd TrackedProcess::fd(int targetFd) const {
    return callDaemon([&] {
        sdbus::UnixFd fd = shared_->process(path_).GetFd(targetFd);
        return takeFd(fd);
    });
}

void TrackedProcess::onExit(std::function<void(int)> callback) const {
    callDaemon([&] { shared_->subscribe(); });
    shared_->exitCallbacks.emplace(path_, std::move(callback));
    // It may have been reaped before we listened: ask once.
    std::optional<int> status;
    try {
        if (state() == ProcessState::Reaped) {
            status = exitStatus().value_or(kNoExitStatus);
        }
    } catch (const NotTracked&) {
        status = kNoExitStatus;  // gone already; its status is lost to us
    }
    if (status) {
        auto [first, last] = shared_->exitCallbacks.equal_range(path_);
        for (auto it = first; it != last; ++it) {
            shared_->due.emplace_back(std::move(it->second), *status);
        }
        shared_->exitCallbacks.erase(first, last);
    }
}

void TrackedProcess::untrack() const {
    callDaemon([&] { shared_->process(path_).Untrack(); });
}

// -- Client --

Client::Client(std::shared_ptr<TrackedProcess::Shared> shared) : shared_(std::move(shared)) {}
Client::Client(Client&&) noexcept = default;
Client& Client::operator=(Client&&) noexcept = default;
Client::~Client() = default;

Client Client::system() {
    try {
        return Client(std::make_shared<TrackedProcess::Shared>(sdbus::createSystemBusConnection()));
    } catch (const sdbus::Error& e) {
        throw DaemonUnavailable(e.getName(),
                                "Failed to connect to the system bus: " + e.getMessage());
    }
}

Client Client::connect(const std::string& address) {
    try {
        return Client(std::make_shared<TrackedProcess::Shared>(
            sdbus::createSessionBusConnectionWithAddress(address)));
    } catch (const sdbus::Error& e) {
        throw DaemonUnavailable(
            e.getName(), "Failed to connect to the bus at " + address + ": " + e.getMessage());
    }
}

TrackedProcess Client::tracked(const std::string& path, std::optional<pid_t> pid) {
    // The path names the id; ask the daemon only for what the caller cannot know.
    std::optional<std::uint64_t> id = nsfd::dbus::processIdOfPath(path);
    if (!id) {
        throw Error(nsfd::dbus::error::kFailed, "nsfdd answered with a bad object path: " + path);
    }
    if (!pid) {
        pid = static_cast<pid_t>(shared_->process(path).Pid());
    }
    return TrackedProcess(shared_, path, *pid, *id);
}

TrackedProcess Client::track(pid_t pid) {
    return track(openPidFd(pid));
}

TrackedProcess Client::track(const PidFd& pidfd) {
    return callDaemon(
        [&] { return tracked(shared_->manager->TrackProcessByPidFd(passFd(pidfd)), pidfd.pid()); });
}

TrackedProcess Client::process(pid_t pid) {
    return callDaemon([&] {
        std::optional<PidFd> pidfd;
        try {
            pidfd.emplace(openPidFd(pid));
        } catch (const NoSuchProcess&) {
            // No process has the pid: nsfdd may keep the one reaped last that had it.
            return tracked(shared_->manager->GetProcess(static_cast<uint32_t>(pid)), pid);
        }
        TrackedProcess process = tracked(nsfd::dbus::processObjectPath(pidfd->id()), pid);
        process.state();  // NotTracked (UnknownObject) unless tracked and visible to us
        return process;
    });
}

TrackedProcess Client::processWithId(std::uint64_t id) {
    return callDaemon([&] { return tracked(nsfd::dbus::processObjectPath(id)); });
}

std::vector<ProcessEntry> Client::list() {
    return callDaemon([&] {
        std::vector<ProcessEntry> out;
        for (const auto& entry : shared_->manager->ListProcesses()) {
            out.push_back({static_cast<pid_t>(entry.get<0>()), entry.get<1>(), entry.get<2>()});
        }
        return out;
    });
}

NsFd Client::namespaceFd(pid_t pid, NsType type) {
    std::map<NsType, NsFd> fds = namespaceFds(pid, std::span<const NsType>(&type, 1));
    auto it = fds.find(type);
    if (it == fds.end()) {
        throw Error(nsfd::dbus::error::kFailed, "nsfdd answered without the namespace asked for");
    }
    return std::move(it->second);
}

std::map<NsType, NsFd> Client::namespaceFds(pid_t pid, std::span<const NsType> types) {
    PidFd pidfd = openPidFd(pid);
    return callDaemon([&] {
        auto fds = shared_->manager->GetNamespacesByPidFd(passFd(pidfd), typeNames(types));
        return toNsFds(fds);
    });
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
            throw NoSuchProcess(std::string(dbusErrorName(ErrorKind::NoSuchProcess)),
                                "No such process: " + std::to_string(pid));
        }
    }
    PidFd& pidfd = *opened;
    ProcessInfo info =
        callDaemon([&] { return toInfo(shared_->manager->GetProcessInfoByPidFd(passFd(pidfd))); });
    if (info.pid == 0) {
        // nsfdd shows a caller in another pid namespace no pid; we know ours.
        info.pid = info.threadGroupId = pid;
    }
    return info;
}

void Client::sendSignal(pid_t pid, int signal) {
    PidFd pidfd = openPidFd(pid);
    callDaemon([&] { shared_->manager->SendSignalByPidFd(passFd(pidfd), signal); });
}

std::string Client::daemonVersion() {
    return callDaemon([&] { return shared_->manager->Version(); });
}

std::vector<std::string> Client::kernelFeatures() {
    return callDaemon([&] { return shared_->manager->KernelFeatures(); });
}

unsigned Client::trackedCount() {
    return callDaemon([&] { return static_cast<unsigned>(shared_->manager->TrackedProcesses()); });
}

void Client::onProcessExited(std::function<void(const ExitEvent&)> callback) {
    callDaemon([&] { shared_->subscribe(); });
    shared_->exitListeners.push_back(std::move(callback));
}

int Client::eventFd() const {
    return shared_->connection->getEventLoopPollData().fd;
}

short Client::pollEvents() const {
    return shared_->connection->getEventLoopPollData().events;
}

std::optional<std::chrono::microseconds> Client::pollTimeout() const {
    return shared_->connection->getEventLoopPollData().getRelativeTimeout();
}

void Client::processEvents() {
    callDaemon([&] {
        std::vector<std::pair<std::function<void(int)>, int>> due;
        due.swap(shared_->due);
        for (auto& [callback, status] : due) {
            callback(status);
        }
        while (shared_->connection->processPendingRequest()) {
        }
    });
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
        sdbus::IConnection::PollData data = shared_->connection->getEventLoopPollData();
        int wait = data.getPollTimeout();
        if (timeout) {
            auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                deadline - std::chrono::steady_clock::now());
            int leftMs = static_cast<int>(std::max<long long>(0, left.count()));
            wait = wait < 0 ? leftMs : std::min(wait, leftMs);
        }
        struct pollfd pfd = {data.fd, data.events, 0};
        if (::poll(&pfd, 1, shared_->due.empty() ? wait : 0) < 0 && errno != EINTR) {
            throw DaemonUnavailable("System.Error", "Failed to poll the bus connection");
        }
    }
}

void Client::stopEventLoop() {
    shared_->stopLoop = true;
}

}  // namespace nsfd
