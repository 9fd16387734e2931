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

namespace names = nsfd::dbus::error;

[[noreturn]] void rethrowTyped(const sdbus::Error& e) {
    const std::string& name = e.getName();
    const std::string& message = e.getMessage().empty() ? name : e.getMessage();
    if (name == names::kAccessDenied) {
        throw AccessDenied(name, message);
    }
    if (name == names::kNoSuchProcess) {
        throw NoSuchProcess(name, message);
    }
    if (name == names::kProcessExited) {
        throw ProcessExited(name, message);
    }
    if (name == names::kNotTracked || name == "org.freedesktop.DBus.Error.UnknownObject") {
        throw NotTracked(name, message);
    }
    if (name == names::kNotSupported) {
        throw NotSupported(name, message);
    }
    if (name == names::kLimitExceeded) {
        throw LimitExceeded(name, message);
    }
    if (name == names::kInvalidArgs) {
        throw InvalidArgument(name, message);
    }
    if (name == "org.freedesktop.DBus.Error.ServiceUnknown" ||
        name == "org.freedesktop.DBus.Error.NameHasNoOwner" ||
        name == "org.freedesktop.DBus.Error.NoReply" ||
        name == "org.freedesktop.DBus.Error.Disconnected" ||
        name == "org.freedesktop.DBus.Error.NoServer" || name.rfind("System.Error.", 0) == 0) {
        throw DaemonUnavailable(name, "nsfdd is not available: " + message);
    }
    throw Error(name, message);
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
    info.pid = pid("Pid");
    info.id = valueOr<uint64_t>(dict, "Id", 0);
    info.threadGroupId = pid("ThreadGroupId");
    info.parentPid = pid("ParentPid");
    info.cgroupId = valueOr<uint64_t>(dict, "CgroupId", 0);
    if (dict.count("Ruid") > 0) {
        auto id = [&](const char* key) { return valueOr<uint32_t>(dict, key, 0); };
        info.credentials = Credentials{id("Ruid"), id("Euid"), id("Suid"), id("Fsuid"),
                                       id("Rgid"), id("Egid"), id("Sgid"), id("Fsgid")};
    }
    info.state = parseState(
        valueOr<std::string>(dict, "State", std::string(toString(ProcessState::Running))));
    if (auto it = dict.find("ExitStatus"); it != dict.end()) {
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
};

// -- TrackedProcess --

ProcessState TrackedProcess::state() const {
    return callDaemon([&] { return parseState(shared_->process(path_).State()); });
}

std::optional<int> TrackedProcess::exitStatus() const {
    return callDaemon([&]() -> std::optional<int> {
        int32_t status = shared_->process(path_).ExitStatus();
        return status < 0 ? std::nullopt : std::optional<int>(status);
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
    shared_->exitCallbacks.emplace(path_, std::move(callback));
    // It may have been reaped before we listened: ask once.
    std::optional<int> status;
    try {
        if (state() == ProcessState::Reaped) {
            status = exitStatus().value_or(-1);
        }
    } catch (const NotTracked&) {
        status = -1;  // gone already; its status is lost to us
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
    return callDaemon(
        [&] { return tracked(shared_->manager->TrackProcess(static_cast<uint32_t>(pid)), pid); });
}

TrackedProcess Client::track(const PidFd& pidfd) {
    return callDaemon([&] {
        return tracked(shared_->manager->TrackProcessByPidFd(
            sdbus::UnixFd(duplicateFd(pidfd.get()).release(), sdbus::adopt_fd)));
    });
}

TrackedProcess Client::process(pid_t pid) {
    return callDaemon(
        [&] { return tracked(shared_->manager->GetProcess(static_cast<uint32_t>(pid)), pid); });
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
    return callDaemon([&] {
        sdbus::UnixFd fd =
            shared_->manager->GetNamespace(static_cast<uint32_t>(pid), std::string(toString(type)));
        return NsFd::adopt(takeFd(fd), type);
    });
}

std::map<NsType, NsFd> Client::namespaceFds(pid_t pid, std::span<const NsType> types) {
    return callDaemon([&] {
        auto fds = shared_->manager->GetNamespaces(static_cast<uint32_t>(pid), typeNames(types));
        return toNsFds(fds);
    });
}

ProcessInfo Client::info(pid_t pid) {
    return callDaemon(
        [&] { return toInfo(shared_->manager->GetProcessInfo(static_cast<uint32_t>(pid))); });
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
