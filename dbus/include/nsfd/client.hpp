// SPDX-License-Identifier: LGPL-2.1-or-later
// libnsfd-client: nsfdd from C++ programs.
//
//   nsfd::Client client = nsfd::Client::system();
//   nsfd::TrackedProcess process = client.track(pid);
//   nsfd::NsFd net = process.namespaceFd(nsfd::NsType::Net);
//   process.onExit([](int waitStatus) { ... });
//   client.runEventLoop();
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "nsfd/contract.hpp"  // ProcessState
#include "nsfd/info.hpp"
#include "nsfd/ns.hpp"
#include "nsfd/pidfd.hpp"
#include "nsfd/unique_fd.hpp"

namespace nsfd {

// Every failure of a call to nsfdd. what() is the daemon's message.
class Error : public std::runtime_error {
  public:
    Error(std::string dbusName, const std::string& message)
        : std::runtime_error(message), dbusName_(std::move(dbusName)) {}
    // The D-Bus error name, e.g. "org.nsfd1.Error.NoSuchProcess".
    const std::string& dbusName() const noexcept { return dbusName_; }

  private:
    std::string dbusName_;
};

// org.freedesktop.DBus.Error.AccessDenied
class AccessDenied : public Error {
  public:
    using Error::Error;
};
// org.nsfd1.Error.NoSuchProcess
class NoSuchProcess : public Error {
  public:
    using Error::Error;
};
// org.nsfd1.Error.ProcessExited
class ProcessExited : public Error {
  public:
    using Error::Error;
};
// org.nsfd1.Error.NotTracked, or an object that is not there (UnknownObject)
class NotTracked : public Error {
  public:
    using Error::Error;
};
// org.nsfd1.Error.NotSupported: the kernel lacks it
class NotSupported : public Error {
  public:
    using Error::Error;
};
// org.nsfd1.Error.LimitExceeded
class LimitExceeded : public Error {
  public:
    using Error::Error;
};
// org.freedesktop.DBus.Error.InvalidArgs
class InvalidArgument : public Error {
  public:
    using Error::Error;
};
// org.nsfd1.Error.ForeignPidNamespace: a pid from a caller in another pid
// namespace than nsfdd's, where it would name another process; pass a pidfd
class ForeignPidNamespace : public InvalidArgument {
  public:
    using InvalidArgument::InvalidArgument;
};
// org.freedesktop.DBus.Error.InteractiveAuthorizationRequired: polkit would
// allow it after authentication, which the call did not allow
class InteractiveAuthorizationRequired : public AccessDenied {
  public:
    using AccessDenied::AccessDenied;
};
// no bus, no nsfdd on it, or the bus failed to start it (D-Bus activation)
class DaemonUnavailable : public Error {
  public:
    using Error::Error;
};

// What GetInfo / GetProcessInfo answer.
struct ProcessInfo {
    pid_t pid = 0;
    std::uint64_t id = 0;
    pid_t threadGroupId = 0;
    pid_t parentPid = 0;
    std::uint64_t cgroupId = 0;
    std::optional<Credentials> credentials;  // absent once reaped
    ProcessState state = ProcessState::Running;
    std::optional<int> exitStatus;  // the wait(2) status, once reaped
};

struct ProcessEntry {
    pid_t pid;
    std::uint64_t id;
    std::string objectPath;
};

struct ExitEvent {
    std::string objectPath;
    pid_t pid;
    std::uint64_t id;
    int waitStatus;
};

class Client;

// A process nsfdd tracks for us. Cheap to copy: it names the process, it holds no fd.
class TrackedProcess {
  public:
    pid_t pid() const noexcept { return pid_; }
    std::uint64_t id() const noexcept { return id_; }
    const std::string& objectPath() const noexcept { return path_; }

    ProcessState state() const;
    std::optional<int> exitStatus() const;
    NsFd namespaceFd(NsType type) const;
    // Empty `types`: every type the kernel has.
    std::map<NsType, NsFd> namespaceFds(std::span<const NsType> types = {}) const;
    std::map<NsType, std::uint64_t> namespaceIds() const;
    ProcessInfo info() const;
    Credentials credentials() const;
    PidFd pidFd() const;
    void signal(int signal) const;
    UniqueFd fd(int targetFd) const;  // root only
    // Calls `callback(waitStatus)` once, from the client's event processing, when
    // the process has been reaped (at once, on the next processing, if it already was).
    void onExit(std::function<void(int)> callback) const;
    void untrack() const;

  private:
    friend class Client;
    struct Shared;
    TrackedProcess(std::shared_ptr<Shared> shared, std::string path, pid_t pid, std::uint64_t id)
        : shared_(std::move(shared)), path_(std::move(path)), pid_(pid), id_(id) {}

    std::shared_ptr<Shared> shared_;
    std::string path_;
    pid_t pid_;
    std::uint64_t id_;
};

class Client {
  public:
    // The system bus (DBUS_SYSTEM_BUS_ADDRESS if set). Throws DaemonUnavailable.
    static Client system();
    // A bus at a D-Bus address, e.g. "unix:path=/run/dbus/system_bus_socket".
    static Client connect(const std::string& address);

    Client(Client&&) noexcept;
    Client& operator=(Client&&) noexcept;
    ~Client();

    // Opens a pidfd of `pid` here, in the caller's own pid namespace, and
    // passes it (TrackProcessByPidFd): `pid` means what it means to the caller.
    // NoSuchProcess, InvalidArgument for a thread.
    TrackedProcess track(pid_t pid);
    // Race-free: names the process by a pidfd the caller holds.
    TrackedProcess track(const PidFd& pidfd);
    // An already tracked process, by pid. NotTracked if there is none.
    TrackedProcess process(pid_t pid);
    // An already tracked process, by its nsfd id (the pidfs id, as in its object
    // path). NotTracked if there is none the caller may see.
    TrackedProcess processWithId(std::uint64_t id);
    std::vector<ProcessEntry> list();

    NsFd namespaceFd(pid_t pid, NsType type);
    std::map<NsType, NsFd> namespaceFds(pid_t pid, std::span<const NsType> types = {});
    ProcessInfo info(pid_t pid);
    // kill(2) through nsfdd (Manager.SendSignal): no tracking involved.
    void sendSignal(pid_t pid, int signal);

    std::string daemonVersion();
    std::vector<std::string> kernelFeatures();
    unsigned trackedCount();

    // Every ProcessExited of a process the caller may see, from the client's
    // event processing (the first listener subscribes: Manager.Subscribe).
    void onProcessExited(std::function<void(const ExitEvent&)> callback);

    // For the caller's own loop: poll this fd for `pollEvents()`, with
    // `pollTimeout()`, then call processEvents().
    int eventFd() const;
    short pollEvents() const;
    std::optional<std::chrono::microseconds> pollTimeout() const;
    // Handles what has arrived; never blocks.
    void processEvents();
    // Or let the client run the loop: until stopEventLoop() (from a callback) or `timeout`.
    void runEventLoop(std::optional<std::chrono::milliseconds> timeout = std::nullopt);
    void stopEventLoop();

  private:
    friend class TrackedProcess;
    explicit Client(std::shared_ptr<TrackedProcess::Shared> shared);
    // `pid`: the daemon's pid of the process when the caller named it (else asked).
    TrackedProcess tracked(const std::string& path, std::optional<pid_t> pid = std::nullopt);

    std::shared_ptr<TrackedProcess::Shared> shared_;
};

}  // namespace nsfd
