// SPDX-License-Identifier: LGPL-2.1-or-later
// The one authorization step. Every call of every endpoint asks it once, at
// the top of its handler: an action, the caller, the target. Root passes first;
// then the deciders run in order (the kernel's own rule, nsfdd.conf's grants,
// and an asynchronous one such as polkit) until one allows or denies. A
// decider may answer later: the step never blocks the loop, and the caller's
// reply goes out when the answer comes.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "caller.hpp"
#include "config.hpp"
#include "denial_log.hpp"
#include "nsfd/contract.hpp"
#include "nsfd/info.hpp"
#include "nsfd/ns.hpp"

namespace nsfd::daemon {

enum class Action {
    ReadInfo,      // info, namespace ids, GetProcess/listing of a process
    Track,         // TrackProcess: ReadInfo's rule
    Untrack,       // drop a tracking: the caller's own, or, if it has none, everyone's
    GetNamespace,  // a namespace fd (Request::ns)
    GetPidFd,      // a pidfd of the process
    SendSignal,    // Request::signal
    GetFd,         // pidfd_getfd: root only
    OpenSocket,    // a socket made as the caller in the process's network namespace
    Enter,         // Spawn: a command run as the caller in the process's Request::namespaces
};

// "read the info of", ... for messages: "uid 1000 may not <verb> pid 4711".
std::string_view verbOf(Action action) noexcept;

// socket(2)'s arguments, as OpenSocket takes them: a family and type that
// nsfd/socket_names.hpp names (no type flags), a protocol >= 0.
struct SocketSpec {
    int family = 0;
    int type = 0;
    int protocol = 0;
};

// "inet stream", "netlink raw (protocol 0)": for messages.
std::string describe(const SocketSpec& spec);

// The target, as the deciders see it.
struct Target {
    std::uint64_t id = 0;  // pidfs id
    pid_t pid = 0;         // in nsfdd's pid namespace
    Credentials creds{};   // its last known credentials
    bool dumpable = false;
    std::vector<uid_t> trackers;  // who tracks it (empty if untracked)
    // The caller could name it: it has a pid in the caller's pid namespace or
    // the caller is in nsfdd's (Manager::targetOf). The kernel rule allows
    // nothing on a process the caller cannot see; a grant or polkit may.
    bool visible = false;
    // It is the init of the caller's own pid namespace (a caller outside
    // nsfdd's): from inside, the kernel delivers it only the signals it
    // catches (`caughtSignals`, bit N-1 for signal N), never SIGKILL or SIGSTOP.
    bool isCallersInit = false;
    std::uint64_t caughtSignals = 0;
    // OpenSocket: NS_GET_OWNER_UID of the user namespace that owns its network
    // namespace (NS_GET_USERNS); -1 if unknown.
    uid_t netOwnerUid = static_cast<uid_t>(-1);
    // OpenSocket: its network namespace is the caller's own, where the caller
    // makes any socket itself.
    bool netIsCallers = false;
    // Enter: the types among net, uts and ipc whose namespace of the process
    // the caller could enter itself (through the user namespace it owns: the
    // ptrace rule and NS_GET_OWNER_UID), or lives in already.
    std::vector<NsType> enterable;

    bool isTrackedBy(uid_t uid) const noexcept;
};

struct Request {
    Action action = Action::ReadInfo;
    Target target;
    std::vector<NsType> namespaces;  // GetNamespace: each of these types
    int signal = 0;                  // SendSignal
    SocketSpec socket{};             // OpenSocket
    std::string command{};           // Enter: argv[0], for polkit's "command"
};

// "get the net namespace of pid 4711", for logs and error messages.
std::string describe(const Request& request);

struct Decision {
    bool allowed = false;
    std::string_view decider;                   // who said yes, or the last who said no
    ErrorKind error = ErrorKind::AccessDenied;  // when denied
    std::string message;                        // when denied: for the caller
};

class Decider {
  public:
    enum class Verdict {
        Allow,
        Pass,         // no opinion: the next decider decides
        Deny,         // no, and nobody after is asked
        Challenge,    // only with authentication, which the caller did not allow
        Unavailable,  // could not decide (polkitd absent, timeout): as Pass at the end
        Busy,         // too many of this caller's checks wait already: LimitExceeded
    };
    // `note`: why, for the log and the caller (e.g. "polkitd did not answer").
    using Answer = std::function<void(Verdict, std::string_view note)>;

    virtual ~Decider() = default;
    // "kernel rule", "nsfdd.conf", "polkit": named in denials.
    virtual std::string_view name() const noexcept = 0;
    // Synchronous deciders answer before returning; only they decide what a
    // caller may see in listings and news (decideNow).
    virtual bool synchronous() const noexcept { return true; }
    // Calls `answer` once, now or later: never after the decider is destroyed,
    // nor once the caller has gone (callerGone(), or a departure the decider
    // saw itself): nobody is left to answer, and the decision's place is free.
    virtual void decide(const Caller& caller, const Request& request, Answer answer) = 0;
    // The connection `caller` called on has ended (its peer hung up): what
    // the decider still holds for it is dropped unanswered. Callers are told
    // apart by connection: a bus name, or (Varlink) the connection's pidfd.
    virtual void callerGone(const Caller& /*caller*/) noexcept {}
};

// The kernel's rules, as if the caller asked the kernel itself: ptrace's
// PTRACE_MODE_READ_FSCREDS for namespace fds and pidfds, kill(2)'s for signals,
// the real uid for info, a tracker for its own tracking; and, first, only on a
// process the caller could name (a pid in its pid namespace or one below), and
// none of the signals its own pid namespace's init ignores from inside. Uids
// are compared as the kernel does across user namespaces (as nsfdd's sees
// them); a caller's capabilities in a user namespace of its own count for nothing.
// For OpenSocket, setns(2)'s into the network namespace: ptrace's rule, and
// the caller owns the user namespace that owns it (a rootless container's);
// or the caller lives in that network namespace already. For Enter, the same
// for each namespace type asked for (Target::enterable).
class KernelRule final : public Decider {
  public:
    std::string_view name() const noexcept override { return "kernel rule"; }
    void decide(const Caller& caller, const Request& request, Answer answer) override;
    Verdict decideNow(const Caller& caller, const Request& request) const;
};

// The administrator's [[grant]] tables in nsfdd.conf.
class ConfigGrants final : public Decider {
  public:
    explicit ConfigGrants(const Config& config) : config_(config) {}
    std::string_view name() const noexcept override { return "nsfdd.conf"; }
    void decide(const Caller& caller, const Request& request, Answer answer) override;
    Verdict decideNow(const Caller& caller, const Request& request) const;

  private:
    // The grant names the caller, and is marked `sandboxed` if the caller is one.
    bool isGranted(const Caller& caller, const Grant& grant) const;

    const Config& config_;
};

class Authorizer {
  public:
    using Done = std::function<void(const Decision&)>;

    // The kernel rule and `config`'s grants; add() appends more deciders.
    explicit Authorizer(const Config& config);
    // Logs what the denial log left out.
    ~Authorizer();
    Authorizer(const Authorizer&) = delete;
    Authorizer& operator=(const Authorizer&) = delete;

    // Asks `decider` after the others. It is not owned: remove() it before it
    // goes (an endpoint's decider, such as polkit on the bus).
    void add(Decider& decider) { deciders_.push_back(&decider); }
    void remove(Decider& decider);

    // Decides, then calls `done` once: before returning if no asynchronous
    // decider is asked, later otherwise. Denials are logged here, once, with
    // the decider that said no, a few lines per uid at most (DenialLog).
    void authorize(const Caller& caller, const Request& request, Done done);

    // The synchronous deciders' answer alone (root, kernel rule, grants): what
    // a caller may see of a process in listings, lookups and news, where
    // nobody can wait for polkit.
    bool decideNow(const Caller& caller, const Request& request) const;

    // Whether authorize() would allow at once: root, or a synchronous decider
    // that allows where those before it passed. A door then acts without
    // handing authorize() a callback (a call's hot path); otherwise it calls
    // authorize(), which decides again, asks the asynchronous deciders and
    // says why it denies.
    bool allowsAtOnce(const Caller& caller, const Request& request) const;

    // The connection `caller` called on has ended: every decider drops what
    // it still holds for it (their `done` never runs).
    void callerGone(const Caller& caller) noexcept;

    // Whether any decider will look at the target for this caller: not for
    // root, which passes first.
    bool needsTarget(const Caller& caller) const noexcept { return !caller.isRoot(); }

    // How many processes a caller may track at once; unbounded for root.
    std::size_t trackQuota(const Caller& caller) const;

  private:
    // The synchronous deciders in order, up to the first verdict other than
    // Pass: {the index of the first decider not passing (or of the first
    // asynchronous one), whether that decider allowed}.
    std::pair<std::size_t, bool> decideSynchronously(const Caller& caller,
                                                     const Request& request) const;
    void next(const std::shared_ptr<struct Pending>& pending, std::size_t index);
    void logDenial(const Caller& caller, const Request& request, const std::string& why);

    const Config& config_;
    KernelRule kernelRule_;
    ConfigGrants grants_;
    std::vector<Decider*> deciders_;
    DenialLog denials_;
};

}  // namespace nsfd::daemon
