// SPDX-License-Identifier: LGPL-2.1-or-later
// libnsfd-client: nsfdd from C++ programs, over its Varlink socket or D-Bus
// (the same API and the same answers on both).
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
    // The D-Bus error name, e.g. "org.nsfd1.Error.NoSuchProcess", whatever the
    // transport: over Varlink, the D-Bus name of the same error of the contract
    // (nsfd/contract.hpp); Varlink's own errors keep their name
    // ("org.varlink.service.MethodNotFound"); "System.Error.ECONNREFUSED" and
    // the like when the socket failed.
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
// org.nsfd1.Error.OutsidePidNamespace: the process is alive but outside
// nsfdd's pid namespace (nsfdd runs in a child pid namespace, or was handed a
// pidfd from an ancestor's): nsfdd cannot see it
class OutsidePidNamespace : public Error {
  public:
    using Error::Error;
};
// org.nsfd1.Error.CallerOutOfFds, raised by the client itself, never sent by
// nsfdd: this process could not receive the fds of nsfdd's reply (the kernel
// dropped them, MSG_CTRUNC; sd-bus says EXFULL) or open a pidfd to pass
// (EMFILE, ENFILE). what() gives the process's RLIMIT_NOFILE. nsfdd did its part.
// Over Varlink the connection carries on; over D-Bus sd-bus read and dropped the
// reply with its fds, so its connection is out of step: make a new Client.
class CallerOutOfFds : public Error {
  public:
    using Error::Error;
};
// org.nsfd1.Error.SocketFailed: socket(2), made as the caller in the target's
// network namespace, failed there; what() names the errno
class SocketFailed : public Error {
  public:
    using Error::Error;
};
// no bus, no nsfdd on it, or the bus failed to start it (D-Bus activation);
// no Varlink socket, nobody listening, nsfdd hung up during the call (it
// stopped or restarted: the call may or may not have been done), or no answer
// within 25 s
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

namespace detail {
class SpawnStream;
}

// What Client::spawn runs (Varlink's org.nsfd1.Manager.Spawn). The fds are
// the caller's, not taken: nsfdd gets copies.
struct SpawnOptions {
    std::vector<NsType> namespaces;        // among Net, Uts and Ipc, each once
    std::vector<std::string> argv;         // argv[0] searched in environment's PATH
    std::vector<std::string> environment;  // "NAME=VALUE", exactly these
    int stdinFd = 0;
    int stdoutFd = 1;
    int stderrFd = 2;
    int workingDirectory = -1;  // a directory fd; -1: this process's own (".")
};

// A command nsfdd's helper runs for the caller (Client::spawn), as exactly
// the caller, in the caller's mount namespace. Move-only. Destroying it (or
// the process dying) before the command ended ends the run: the helper
// SIGKILLs the command and everything it started.
class SpawnedCommand {
  public:
    SpawnedCommand(SpawnedCommand&&) noexcept;
    SpawnedCommand& operator=(SpawnedCommand&&) noexcept;
    ~SpawnedCommand();

    // The accessors below are for a SpawnedCommand that has not been moved
    // from (a moved-from one holds nothing; only destroying or assigning it
    // is defined).
    // In the caller's pid namespace (Spawn needs the caller in nsfdd's).
    pid_t pid() const noexcept;
    // The command's pidfd: signal it as the caller (pidfd_send_signal, the
    // kernel's kill(2) rule), poll it for its exit.
    const PidFd& pidFd() const noexcept;
    // Poll for POLLIN: nsfdd's last answer (or its hang-up) has come.
    int eventFd() const noexcept;
    // Its wait status once nsfdd sent it (waitpid(2)'s; 127 << 8 when argv[0]
    // was not found, 126 << 8 when it could not be run); never blocks.
    // Throws Error (Failed) when the run failed after it started (nsfd-helper
    // killed: the command died with it), DaemonUnavailable when nsfdd hung up.
    std::optional<int> poll();
    // As poll(), waiting as long as the command runs.
    int wait();

  private:
    friend class Client;
    explicit SpawnedCommand(std::unique_ptr<detail::SpawnStream> stream);
    std::unique_ptr<detail::SpawnStream> stream_;
};

// How a Client reaches nsfdd.
enum class TransportKind {
    Varlink,  // nsfdd's socket, /run/nsfd/org.nsfd1.Manager (nsfdd.socket)
    Bus,      // D-Bus, through the bus daemon
};

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
    // socket(family, type, protocol) inside the process's network namespace,
    // made by nsfdd's helper as exactly this caller (its uids, gids, groups; no
    // capability; no_new_privs): what the caller could do if it lived there.
    // `type` without SOCK_NONBLOCK/SOCK_CLOEXEC (InvalidArgument): set them
    // on the socket returned, which is close-on-exec and the caller's.
    // SocketFailed when socket(2) itself fails there (its errno in what()),
    // AccessDenied when no decider allows (nsfdd.conf `sockets`, polkit
    // org.nsfd1.open-socket, or the kernel's setns rule).
    UniqueFd openSocket(int family, int type, int protocol = 0) const;
    UniqueFd fd(int targetFd) const;  // root only
    // Calls `callback(waitStatus)` once, from the client's event processing, when
    // the process has been reaped (at once, on the next processing, if it already was).
    void onExit(std::function<void(int)> callback) const;
    void untrack() const;

  private:
    friend class Client;

    struct Shared;
    TrackedProcess(std::shared_ptr<Shared> shared, pid_t pid, std::uint64_t id);

    std::shared_ptr<Shared> shared_;
    std::string path_;
    pid_t pid_;
    std::uint64_t id_;
};

class Client {
  public:
    // nsfdd on this machine: over its Varlink socket when something listens
    // there ($NSFD_VARLINK_SOCKET if set, else /run/nsfd/org.nsfd1.Manager)
    // and nsfdd keeps the connection (it closes one past its connection
    // limits at once: one GetServiceInfo round trip tells), else over the
    // system bus ($DBUS_SYSTEM_BUS_ADDRESS if set).
    // Throws DaemonUnavailable when neither can be reached.
    static Client system();
    // The Varlink socket at `socketPath` only. Throws DaemonUnavailable (with
    // "System.Error.ENOENT", "System.Error.ECONNREFUSED", ...) if it cannot connect.
    static Client varlink(const std::string& socketPath = nsfd::varlink::kSocketPath);
    // The system bus only ($DBUS_SYSTEM_BUS_ADDRESS if set). Throws DaemonUnavailable.
    static Client bus();
    // A bus at a D-Bus address, e.g. "unix:path=/run/dbus/system_bus_socket".
    static Client connect(const std::string& address);

    Client(Client&&) noexcept;
    // Destroying or assigning over a Client drops the callbacks it holds
    // (onExit, onProcessExited); its TrackedProcess copies still work.
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
    // TrackedProcess::openSocket of a process named by pid (a pidfd opened
    // here, OpenSocketByPidFd): no tracking involved.
    UniqueFd openSocket(pid_t pid, int family, int type, int protocol = 0);
    // Runs `options.argv` in `options.namespaces` of `pid` (a pidfd opened
    // here) as exactly this caller, brokered by nsfdd's helper; returns once
    // the command runs. Varlink only: NotSupported on the bus transport (D-Bus
    // has no streamed reply, and a call's end is not tied to the caller's
    // connection). AccessDenied (no decider allowed the action "enter"),
    // LimitExceeded (argv and environment over 48 KiB or 4096 strings, checked
    // here; 16 runs of this uid at once), InvalidArgument (empty argv, a type
    // other than net, uts, ipc), NotSupported (this process lives in a user or
    // pid namespace other than nsfdd's), Error (Failed: the helper could not
    // enter or become the caller; nothing ran); as every call by pid,
    // NoSuchProcess (no process `pid`) and ProcessExited (it exited before
    // nsfdd held it); DaemonUnavailable if nsfdd hangs up, or has not said the
    // command runs within 25 s (130 s for an interactive client, beyond
    // nsfdd's 2 minutes for a polkit prompt).
    SpawnedCommand spawn(pid_t pid, const SpawnOptions& options);

    // -- a target as users name it, resolved by nsfdd (README, "Naming a
    // process"), so that a caller in any pid namespace can name it --
    // `selector`: container:ID (a container by its full id or a unique prefix:
    // its main process), cgroup:PATH (a cgroup's main process, PATH from the
    // cgroup2 root), unit:NAME (a systemd unit's main process), machine:NAME
    // (machined's leader), or PID:ID (the process with that pid, in the
    // caller's pid namespace, while its pidfs id is ID: resolved here, by a
    // pidfd). Each throws NoSuchProcess when nothing matches or the caller may
    // not read the info of what matches (nsfdd tells the two apart for nobody),
    // InvalidArgument for a malformed selector or an ambiguous container
    // prefix (what() names each match's 12-character short id), NotSupported
    // when nsfdd cannot ask systemd (unit:, machine:) or finds no cgroup2;
    // then as the same call by pid.
    TrackedProcess track(const std::string& selector);
    NsFd namespaceFd(const std::string& selector, NsType type);
    std::map<NsType, NsFd> namespaceFds(const std::string& selector,
                                        std::span<const NsType> types = {});
    // A caller in another pid namespace than nsfdd's is shown pid 0 (and
    // parent 0), as by nsfdd's other answers.
    ProcessInfo info(const std::string& selector);
    void sendSignal(const std::string& selector, int signal);

    std::string daemonVersion();
    std::vector<std::string> kernelFeatures();
    unsigned trackedCount();

    TransportKind transport() const noexcept;
    // Lets polkit ask the user to authenticate during the calls made from now
    // on (Varlink's allowInteractiveAuthentication): an authentication agent
    // (pkttyagent, a desktop's) must be running for the user, and a call may
    // then take as long as the user takes (nsfdd waits 2 minutes at most). Off by default:
    // without it, a call polkit would allow after authentication fails with
    // InteractiveAuthorizationRequired. Throws NotSupported on the bus
    // transport: sdbus-c++ 1.2 cannot set a call's
    // ALLOW_INTERACTIVE_AUTHORIZATION flag.
    void allowInteractiveAuthorization(bool allow);

    // Every ProcessExited of a process the caller may see, from the client's
    // event processing (the first listener subscribes: Manager.Subscribe).
    void onProcessExited(std::function<void(const ExitEvent&)> callback);

    // For the caller's own loop: poll this fd for `pollEvents()`, with
    // `pollTimeout()`, then call processEvents().
    int eventFd() const;
    short pollEvents() const;
    std::optional<std::chrono::microseconds> pollTimeout() const;
    // Handles what has arrived; never blocks. Over Varlink, when nsfdd
    // restarted, it watches again (socket activation keeps the socket) and asks
    // nsfdd about each process an onExit() waits for, so none is missed; an
    // onProcessExited() listener misses the exits of the restart's gap. Throws
    // DaemonUnavailable while nsfdd cannot be reached (and tries again at the
    // next call, pollTimeout() asking for one within a second).
    // Callbacks run here, one at a time, outside the transport's own
    // processing: they may call the client (track, onExit, stopEventLoop). One
    // that throws: the exception leaves processEvents(), and the callbacks
    // still due run at the next call.
    void processEvents();
    // Or let the client run the loop: until stopEventLoop() (from a callback) or `timeout`.
    void runEventLoop(std::optional<std::chrono::milliseconds> timeout = std::nullopt);
    void stopEventLoop();

  private:
    friend class TrackedProcess;
    explicit Client(std::shared_ptr<TrackedProcess::Shared> shared);
    // `pid`: the pid of the process when the caller named it (else asked).
    TrackedProcess tracked(std::uint64_t id, std::optional<pid_t> pid = std::nullopt);

    std::shared_ptr<TrackedProcess::Shared> shared_;
};

}  // namespace nsfd
