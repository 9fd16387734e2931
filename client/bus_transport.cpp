// SPDX-License-Identifier: LGPL-2.1-or-later
// The D-Bus transport: the sdbus-c++ proxies generated from the XML.
#include <fcntl.h>

#include <sdbus-c++/sdbus-c++.h>

#include "nsfd/dbus_names.hpp"
#include "nsfd/generated/manager_proxy.h"
#include "nsfd/generated/process_proxy.h"
#include "transport.hpp"

namespace nsfd::detail {

namespace {

// sd-bus's receive path (recvmsg_safe, src/basic/socket-util.c, systemd 252)
// turns MSG_CTRUNC (fds this process could not take) into EXFULL, after the
// message's bytes were read: that reply is gone, and the stream with it.
constexpr std::string_view kFdsNotReceived = "System.Error.EXFULL";

[[noreturn]] void rethrowTyped(const sdbus::Error& e) {
    const std::string& name = e.getName();
    if (name == "System.Error.EMFILE" || name == "System.Error.ENFILE") {
        throwCallerOutOfFds(e.getMessage());
    }
    if (name == kFdsNotReceived) {
        throwCallerOutOfFds(
            "the kernel could not give it the fds of nsfdd's reply (sd-bus: EXFULL), so the "
            "reply and its D-Bus connection are lost");
    }
    const std::string& message = e.getMessage().empty() ? name : e.getMessage();
    if (std::optional<ErrorKind> kind = errorKindOfDbusName(name)) {
        throwErrorOf(*kind, message);
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

template <typename Body>
auto callDaemon(Body&& body) -> decltype(body()) {
    try {
        return body();
    } catch (const sdbus::Error& e) {
        rethrowTyped(e);
    } catch (const std::system_error& e) {
        // A dup of an fd to pass or received (sdbus-c++ hands over copies).
        if (e.code() == std::errc::too_many_files_open ||
            e.code() == std::errc::too_many_files_open_in_system) {
            throwCallerOutOfFds(e.what());
        }
        throw;
    }
}

sdbus::UnixFd passFd(const PidFd& pidfd) {
    return sdbus::UnixFd(duplicateFd(pidfd.get()).release(), sdbus::adopt_fd);
}

// sdbus-c++ 1.2 dup()s received fds without close-on-exec: take it and set the
// flag. -1: that dup() failed, which for the valid fd sd-bus received means
// EMFILE (sdbus-c++ keeps no errno).
UniqueFd takeFd(sdbus::UnixFd& fd) {
    UniqueFd owned(fd.release());
    if (!owned.ok()) {
        throwCallerOutOfFds("sdbus-c++ could not duplicate the fd of nsfdd's reply");
    }
    ::fcntl(owned.get(), F_SETFD, FD_CLOEXEC);
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
            out.emplace(*type, adoptNsFd(std::move(owned), *type));
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
    ManagerProxy(sdbus::IConnection& connection, Transport::ExitSink onExit)
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

    Transport::ExitSink onExit_;
};

// Method calls on one process object. Never registered: it listens to no
// signal, so it costs the bus no match rule (exits come through the manager).
class ProcessCalls final : public sdbus::ProxyInterfaces<org::nsfd1::Process_proxy> {
  public:
    ProcessCalls(sdbus::IConnection& connection, std::uint64_t id)
        : ProxyInterfaces(connection, nsfd::dbus::kBusName, nsfd::dbus::processObjectPath(id)) {}

  private:
    void onExited(const int32_t&) override {}
};

[[noreturn]] void rethrowConnectError(const sdbus::Error& e, const std::string& what) {
    if (e.getName() == "System.Error.EMFILE" || e.getName() == "System.Error.ENFILE") {
        throwCallerOutOfFds(what + e.getMessage());
    }
    throw DaemonUnavailable(e.getName(), what + e.getMessage());
}

class BusTransport final : public Transport {
  public:
    BusTransport(std::unique_ptr<sdbus::IConnection> connection, ExitSink onExit,
                 ResubscribedSink onResubscribed)
        : connection_(std::move(connection)),
          manager_(std::make_unique<ManagerProxy>(*connection_, std::move(onExit))),
          onResubscribed_(std::move(onResubscribed)) {}

    TransportKind kind() const noexcept override { return TransportKind::Bus; }

    void allowInteractiveAuthorization(bool allow) override {
        if (allow) {
            throwErrorOf(ErrorKind::NotSupported,
                         "Interactive authorization needs the Varlink transport: sdbus-c++ 1.2 "
                         "cannot set a D-Bus call's ALLOW_INTERACTIVE_AUTHORIZATION flag");
        }
    }

    std::uint64_t track(const PidFd& pidfd) override {
        std::string path = callDaemon([&] { return manager_->TrackProcessByPidFd(passFd(pidfd)); });
        return idOfPath(path);
    }
    std::uint64_t trackSelector(const std::string& selector) override {
        return idOfPath(callDaemon([&] { return manager_->TrackProcessBySelector(selector); }));
    }
    void untrack(std::uint64_t id) override {
        callDaemon([&] { process(id).Untrack(); });
    }
    std::uint64_t trackedWithPid(pid_t pid) override {
        return idOfPath(
            callDaemon([&] { return manager_->GetProcess(static_cast<uint32_t>(pid)); }));
    }
    std::vector<ProcessEntry> list() override {
        return callDaemon([&] {
            std::vector<ProcessEntry> out;
            for (const auto& entry : manager_->ListProcesses()) {
                out.push_back({static_cast<pid_t>(entry.get<0>()), entry.get<1>(), entry.get<2>()});
            }
            return out;
        });
    }

    NsFd namespaceFd(ProcessRef ref, NsType type) override {
        if (ref.pidfd || ref.selector) {  // no GetNamespaceByPidFd: GetNamespacesByPidFd of one
            std::map<NsType, NsFd> fds = namespaceFds(ref, std::span<const NsType>(&type, 1));
            auto it = fds.find(type);
            if (it == fds.end()) {
                throwErrorOf(ErrorKind::Failed, "nsfdd answered without the namespace asked for");
            }
            return std::move(it->second);
        }
        return callDaemon([&] {
            sdbus::UnixFd fd = process(ref.id).GetNamespace(std::string(toString(type)));
            return adoptNsFd(takeFd(fd), type);
        });
    }
    std::map<NsType, NsFd> namespaceFds(ProcessRef ref, std::span<const NsType> types) override {
        return callDaemon([&] {
            auto fds =
                ref.pidfd ? manager_->GetNamespacesByPidFd(passFd(*ref.pidfd), typeNames(types))
                : ref.selector ? manager_->GetNamespacesBySelector(*ref.selector, typeNames(types))
                               : process(ref.id).GetNamespaces(typeNames(types));
            return toNsFds(fds);
        });
    }
    ProcessInfo info(ProcessRef ref) override {
        return callDaemon([&] {
            return toInfo(ref.pidfd      ? manager_->GetProcessInfoByPidFd(passFd(*ref.pidfd))
                          : ref.selector ? manager_->GetProcessInfoBySelector(*ref.selector)
                                         : process(ref.id).GetInfo());
        });
    }
    void sendSignal(ProcessRef ref, int signal) override {
        callDaemon([&] {
            if (ref.pidfd) {
                manager_->SendSignalByPidFd(passFd(*ref.pidfd), signal);
            } else if (ref.selector) {
                manager_->SendSignalBySelector(*ref.selector, signal);
            } else {
                process(ref.id).SendSignal(signal);
            }
        });
    }

    std::unique_ptr<SpawnStream> spawn(ProcessRef /*ref*/,
                                       const SpawnOptions& /*options*/) override {
        throwErrorOf(ErrorKind::NotSupported,
                     "Spawn is Varlink-only: D-Bus has no streamed reply for the command's "
                     "start and end, and the end of a call is not tied to the caller's "
                     "connection, which ends the command when the caller goes");
    }

    UniqueFd openSocket(ProcessRef ref, int family, int type, int protocol) override {
        return callDaemon([&] {
            sdbus::UnixFd fd =
                ref.pidfd ? manager_->OpenSocketByPidFd(passFd(*ref.pidfd), family, type, protocol)
                          : process(ref.id).OpenSocket(family, type, protocol);
            return takeFd(fd);
        });
    }

    ProcessState state(std::uint64_t id) override {
        return callDaemon([&] { return parseState(process(id).State()); });
    }
    std::optional<int> exitStatus(std::uint64_t id) override {
        return callDaemon([&]() -> std::optional<int> {
            int32_t status = process(id).ExitStatus();
            return status == kNoExitStatus ? std::nullopt : std::optional<int>(status);
        });
    }
    Credentials credentials(std::uint64_t id) override {
        return callDaemon([&] {
            auto c = process(id).Credentials();
            return Credentials{c.get<0>(), c.get<1>(), c.get<2>(), c.get<3>(),
                               c.get<4>(), c.get<5>(), c.get<6>(), c.get<7>()};
        });
    }
    pid_t pid(std::uint64_t id) override {
        return callDaemon([&] { return static_cast<pid_t>(process(id).Pid()); });
    }
    std::map<NsType, std::uint64_t> namespaceIds(std::uint64_t id) override {
        return callDaemon([&] {
            std::map<NsType, std::uint64_t> out;
            for (const auto& [name, nsId] : process(id).GetNamespaceIds()) {
                if (std::optional<NsType> type = parseNsType(name)) {
                    out.emplace(*type, nsId);
                }
            }
            return out;
        });
    }
    PidFd pidFd(std::uint64_t id) override {
        return callDaemon([&] {
            sdbus::UnixFd fd = process(id).GetPidFd();
            return adoptPidFd(takeFd(fd));
        });
    }
    UniqueFd fd(std::uint64_t id, int targetFd) override {
        return callDaemon([&] {
            sdbus::UnixFd fd = process(id).GetFd(targetFd);
            return takeFd(fd);
        });
    }

    std::string daemonVersion() override {
        return callDaemon([&] { return manager_->Version(); });
    }
    std::vector<std::string> kernelFeatures() override {
        return callDaemon([&] { return manager_->KernelFeatures(); });
    }
    unsigned trackedCount() override {
        return callDaemon([&] { return static_cast<unsigned>(manager_->TrackedProcesses()); });
    }

    // nsfdd sends its news only to subscribers (Manager.Subscribe); the match
    // for ProcessExited is in place since the proxy was made. A new owner of
    // nsfdd's name (a restart by hand, a crash without systemd's fd store, which
    // keeps no subscription) is subscribed to again by processEvents().
    void subscribe() override {
        if (!subscribed_) {
            watchOwner();  // first: an owner change after the Subscribe is seen
            callDaemon([&] { manager_->Subscribe(); });
            subscribed_ = true;
        }
    }
    int eventFd() const override { return connection_->getEventLoopPollData().fd; }
    short pollEvents() const override { return connection_->getEventLoopPollData().events; }
    std::optional<std::chrono::microseconds> pollTimeout() const override {
        if (ownerChanged_) {
            return std::chrono::microseconds(0);
        }
        return connection_->getEventLoopPollData().getRelativeTimeout();
    }
    void processEvents() override {
        callDaemon([&] {
            while (connection_->processPendingRequest()) {
            }
        });
        if (ownerChanged_ && subscribed_) {
            // Not from inside the match's callback: sd-bus is dispatching there.
            callDaemon([&] { manager_->Subscribe(); });
            ownerChanged_ = false;
            onResubscribed_();
        }
    }

  private:
    ProcessCalls process(std::uint64_t id) { return ProcessCalls(*connection_, id); }

    // NameOwnerChanged of nsfdd's name only (arg0), not of every name on the bus.
    void watchOwner() {
        if (ownerMatch_) {
            return;
        }
        std::string rule = std::string("type='signal',sender='org.freedesktop.DBus',") +
                           "path='/org/freedesktop/DBus',interface='org.freedesktop.DBus'," +
                           "member='NameOwnerChanged',arg0='" + nsfd::dbus::kBusName + "'";
        ownerMatch_ = callDaemon([&] {
            return connection_->addMatch(rule, [this](sdbus::Message& message) {
                std::string name, oldOwner, newOwner;
                message >> name >> oldOwner >> newOwner;
                if (!newOwner.empty()) {
                    ownerChanged_ = true;
                }
            });
        });
    }

    static std::uint64_t idOfPath(const std::string& path) {
        std::optional<std::uint64_t> id = nsfd::dbus::processIdOfPath(path);
        if (!id) {
            throwErrorOf(ErrorKind::Failed, "nsfdd answered with a bad object path: " + path);
        }
        return *id;
    }

    std::unique_ptr<sdbus::IConnection> connection_;
    std::unique_ptr<ManagerProxy> manager_;
    ResubscribedSink onResubscribed_;
    sdbus::Slot ownerMatch_;
    bool subscribed_ = false;
    bool ownerChanged_ = false;  // nsfdd's name has a new owner, not subscribed to yet
};

}  // namespace

std::unique_ptr<Transport> connectSystemBus(Transport::ExitSink onExit,
                                            Transport::ResubscribedSink onResubscribed) {
    try {
        return std::make_unique<BusTransport>(sdbus::createSystemBusConnection(), std::move(onExit),
                                              std::move(onResubscribed));
    } catch (const sdbus::Error& e) {
        rethrowConnectError(e, "Failed to connect to the system bus: ");
    }
}

std::unique_ptr<Transport> connectBus(const std::string& address, Transport::ExitSink onExit,
                                      Transport::ResubscribedSink onResubscribed) {
    try {
        return std::make_unique<BusTransport>(sdbus::createSessionBusConnectionWithAddress(address),
                                              std::move(onExit), std::move(onResubscribed));
    } catch (const sdbus::Error& e) {
        rethrowConnectError(e, "Failed to connect to the bus at " + address + ": ");
    }
}

}  // namespace nsfd::detail
