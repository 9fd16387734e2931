// SPDX-License-Identifier: LGPL-2.1-or-later
// How libnsfd-client reaches nsfdd: one interface, two transports, D-Bus
// (bus_transport.cpp, on the sdbus-c++ proxies generated from the XML) and
// Varlink (varlink_transport.cpp, on nsfdd's socket). Internal: client.hpp is
// the API. Every method throws the nsfd::Error of client.hpp that the
// contract names for nsfdd's answer, DaemonUnavailable when nsfdd was not reached.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "nsfd/client.hpp"

namespace nsfd::detail {

// The process a call names: a pidfd the caller holds (calls that need no
// tracking), the id of a tracked process, or a selector nsfdd resolves
// (container:ID, ...). Exactly one is set.
struct ProcessRef {
    const PidFd* pidfd = nullptr;
    std::uint64_t id = 0;
    const std::string* selector = nullptr;
};

// A Spawn's stream: the first reply came (the command runs); the last is to come.
class SpawnStream {
  public:
    virtual ~SpawnStream() = default;
    virtual pid_t pid() const noexcept = 0;
    virtual const PidFd& pidFd() const noexcept = 0;
    virtual int eventFd() const noexcept = 0;
    // The wait status, once it came; waits for it if `block`.
    virtual std::optional<int> poll(bool block) = 0;
};

class Transport {
  public:
    // Where exits go, from processEvents(), once subscribed.
    using ExitSink = std::function<void(const ExitEvent&)>;
    // Called from processEvents() when the news stream was lost and is back
    // (nsfdd restarted): exits meanwhile may have been missed.
    using ResubscribedSink = std::function<void()>;

    virtual ~Transport() = default;

    virtual TransportKind kind() const noexcept = 0;
    // Varlink: every call from now on lets polkit ask (allowInteractiveAuthentication).
    // D-Bus: NotSupported (sdbus-c++ 1.2 cannot set ALLOW_INTERACTIVE_AUTHORIZATION).
    virtual void allowInteractiveAuthorization(bool allow) = 0;

    // The id of the tracked process (TrackProcess by pidfd).
    virtual std::uint64_t track(const PidFd& pidfd) = 0;
    // The id of the tracked process (TrackProcess by selector).
    virtual std::uint64_t trackSelector(const std::string& selector) = 0;
    virtual void untrack(std::uint64_t id) = 0;
    // The tracked process that has, or last had, `pid` (GetProcess).
    virtual std::uint64_t trackedWithPid(pid_t pid) = 0;
    virtual std::vector<ProcessEntry> list() = 0;

    virtual NsFd namespaceFd(ProcessRef process, NsType type) = 0;
    // Empty `types`: every type the kernel has.
    virtual std::map<NsType, NsFd> namespaceFds(ProcessRef process,
                                                std::span<const NsType> types) = 0;
    virtual ProcessInfo info(ProcessRef process) = 0;
    virtual void sendSignal(ProcessRef process, int signal) = 0;
    // OpenSocket: a socket made as the caller in the process's network namespace.
    virtual UniqueFd openSocket(ProcessRef process, int family, int type, int protocol) = 0;
    // Spawn: once the command runs (its first reply). Checked here already:
    // the bounds of nsfd/contract.hpp (spawn_limit).
    virtual std::unique_ptr<SpawnStream> spawn(ProcessRef process, const SpawnOptions& options) = 0;

    // Tracked processes, by id.
    virtual ProcessState state(std::uint64_t id) = 0;
    virtual std::optional<int> exitStatus(std::uint64_t id) = 0;
    virtual Credentials credentials(std::uint64_t id) = 0;
    virtual pid_t pid(std::uint64_t id) = 0;
    virtual std::map<NsType, std::uint64_t> namespaceIds(std::uint64_t id) = 0;
    virtual PidFd pidFd(std::uint64_t id) = 0;
    virtual UniqueFd fd(std::uint64_t id, int targetFd) = 0;

    virtual std::string daemonVersion() = 0;
    virtual std::vector<std::string> kernelFeatures() = 0;
    virtual unsigned trackedCount() = 0;

    // From now on exits of processes the caller may see go to the ExitSink.
    // Returns once nsfdd has the subscription in place. Idempotent.
    virtual void subscribe() = 0;
    virtual int eventFd() const = 0;
    virtual short pollEvents() const = 0;
    virtual std::optional<std::chrono::microseconds> pollTimeout() const = 0;
    // Handles what has arrived; never blocks on nsfdd's news.
    virtual void processEvents() = 0;
};

std::unique_ptr<Transport> connectSystemBus(Transport::ExitSink onExit,
                                            Transport::ResubscribedSink onResubscribed);
std::unique_ptr<Transport> connectBus(const std::string& address, Transport::ExitSink onExit,
                                      Transport::ResubscribedSink onResubscribed);
std::unique_ptr<Transport> connectVarlink(const std::string& socketPath, Transport::ExitSink onExit,
                                          Transport::ResubscribedSink onResubscribed);

// Throws the nsfd::Error subclass for `kind`, under the D-Bus name of the kind.
[[noreturn]] void throwErrorOf(ErrorKind kind, const std::string& message);
// CallerOutOfFds: "This process ran out of file descriptors (RLIMIT_NOFILE N,
// hard M): " + what.
[[noreturn]] void throwCallerOutOfFds(const std::string& what);

// An fd nsfdd sent as a namespace of `type`, or as a pidfd. nsfd::Error (Failed)
// if it is not one: nsfdd's fault, not the caller's.
NsFd adoptNsFd(UniqueFd fd, NsType type);
PidFd adoptPidFd(UniqueFd fd);

}  // namespace nsfd::detail
