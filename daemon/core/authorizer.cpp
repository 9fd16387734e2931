// SPDX-License-Identifier: LGPL-2.1-or-later
#include "authorizer.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <limits>

#include "nsfd/socket_names.hpp"

namespace nsfd::daemon {

std::string_view verbOf(Action action) noexcept {
    switch (action) {
        case Action::ReadInfo:
            return "read the info of";
        case Action::Track:
            return "track";
        case Action::Untrack:
            return "drop other users' tracking of";
        case Action::GetNamespace:
            return "get a namespace of";
        case Action::GetPidFd:
            return "get the pidfd of";
        case Action::SendSignal:
            return "send a signal to";
        case Action::GetFd:
            break;
        case Action::OpenSocket:
            return "open a socket in the network namespace of";
        case Action::Enter:
            return "run a command in the namespaces of";
    }
    return "get an fd of";
}

std::string describe(const SocketSpec& spec) {
    std::string family(socketFamilyName(spec.family).value_or("?"));
    std::string type(socketTypeName(spec.type).value_or("?"));
    std::string out = family + " " + type;
    if (spec.protocol != 0) {
        out += " (protocol " + std::to_string(spec.protocol) + ")";
    }
    return out;
}

bool Target::isTrackedBy(uid_t uid) const noexcept {
    return std::find(trackers.begin(), trackers.end(), uid) != trackers.end();
}

std::string describe(const Request& request) {
    std::string pid = "pid " + std::to_string(request.target.pid);
    switch (request.action) {
        case Action::GetNamespace: {
            std::string types;
            for (NsType type : request.namespaces) {
                types += (types.empty() ? "" : ", ") + std::string(toString(type));
            }
            return "get the " + types + " namespace" + (request.namespaces.size() == 1 ? "" : "s") +
                   " of " + pid;
        }
        case Action::SendSignal:
            return "send signal " + std::to_string(request.signal) + " to " + pid;
        case Action::OpenSocket:
            return "open a socket (" + describe(request.socket) + ") in the net namespace of " +
                   pid;
        case Action::Enter: {
            std::string types;
            for (NsType type : request.namespaces) {
                types += (types.empty() ? "" : ", ") + std::string(toString(type));
            }
            return "run " + request.command + " in the " + types + " namespace" +
                   (request.namespaces.size() == 1 ? "" : "s") + " of " + pid;
        }
        default:
            return std::string(verbOf(request.action)) + " " + pid;
    }
}

namespace {

using Verdict = Decider::Verdict;

Verdict allowIf(bool allowed) noexcept {
    return allowed ? Verdict::Allow : Verdict::Pass;
}

// ptrace's PTRACE_MODE_READ_FSCREDS for an unprivileged caller: every uid and
// gid of the target is the caller's, and the target is dumpable.
bool ptraceWouldAllow(const Caller& caller, const Target& target) {
    const Credentials& c = target.creds;
    bool uidsMatch = c.ruid == caller.uid && c.euid == caller.uid && c.suid == caller.uid;
    bool gidsMatch = c.rgid == caller.gid && c.egid == caller.gid && c.sgid == caller.gid;
    return uidsMatch && gidsMatch && target.dumpable;
}

// kill(2) from inside a pid namespace to its init: only a signal it catches
// (the kernel's SIGNAL_UNKILLABLE; SIGKILL and SIGSTOP are never caught).
bool initWouldTake(const Target& target, int signal) {
    if (signal <= 0 || signal > 64) {
        return signal == 0;
    }
    return (target.caughtSignals & (std::uint64_t{1} << (signal - 1))) != 0;
}

}  // namespace

Verdict KernelRule::decideNow(const Caller& caller, const Request& request) const {
    const Target& target = request.target;
    if (request.action == Action::Untrack && target.isTrackedBy(caller.uid)) {
        return Verdict::Allow;  // its own tracking, however it came to see the process
    }
    if (!target.visible) {
        return Verdict::Pass;  // the kernel would not let the caller name it
    }
    switch (request.action) {
        case Action::ReadInfo:
        case Action::Track:
            return allowIf(target.creds.ruid == caller.uid || target.isTrackedBy(caller.uid));
        case Action::Untrack:
            return allowIf(target.isTrackedBy(caller.uid));
        case Action::GetNamespace:
        case Action::GetPidFd:
            return allowIf(ptraceWouldAllow(caller, target));
        case Action::SendSignal:  // kill(2)
            if (target.isCallersInit && !initWouldTake(target, request.signal)) {
                return Verdict::Pass;
            }
            return allowIf(caller.uid == target.creds.ruid || caller.uid == target.creds.suid);
        case Action::OpenSocket:
            return allowIf(target.netIsCallers ||
                           (ptraceWouldAllow(caller, target) && target.netOwnerUid == caller.uid));
        case Action::Enter:
            return allowIf(
                !request.namespaces.empty() &&
                std::all_of(request.namespaces.begin(), request.namespaces.end(), [&](NsType type) {
                    return std::find(target.enterable.begin(), target.enterable.end(), type) !=
                           target.enterable.end();
                }));
        case Action::GetFd:
            break;
    }
    return Verdict::Pass;
}

void KernelRule::decide(const Caller& caller, const Request& request, Answer answer) {
    answer(decideNow(caller, request), {});
}

bool ConfigGrants::isGranted(const Caller& caller, const Grant& grant) const {
    if (caller.isSandboxed() && !grant.sandboxed) {
        return false;
    }
    if (grant.uid) {
        return *grant.uid == caller.uid;
    }
    return grant.gid &&
           (*grant.gid == caller.gid || std::find(caller.groups.begin(), caller.groups.end(),
                                                  *grant.gid) != caller.groups.end());
}

Verdict ConfigGrants::decideNow(const Caller& caller, const Request& request) const {
    auto any = [&](auto&& grants) {
        return allowIf(
            std::any_of(config_.grants.begin(), config_.grants.end(),
                        [&](const Grant& g) { return grants(g) && isGranted(caller, g); }));
    };
    switch (request.action) {
        case Action::ReadInfo:
        case Action::Track:
            return any([](const Grant& g) { return g.info; });
        case Action::GetNamespace:
            // Each type asked for, by some grant of the caller's.
            return allowIf(
                std::all_of(request.namespaces.begin(), request.namespaces.end(), [&](NsType type) {
                    return any([&](const Grant& g) { return g.namespaces.count(type) > 0; }) ==
                           Verdict::Allow;
                }));
        case Action::GetPidFd:
            return any([](const Grant& g) { return g.pidfd; });
        case Action::OpenSocket:
            return any([&](const Grant& g) { return g.sockets.count(request.socket.family) > 0; });
        case Action::Enter:
            // Every type asked for, by one grant of the caller's.
            return allowIf(!request.namespaces.empty() &&
                           any([&](const Grant& g) {
                               return std::all_of(
                                   request.namespaces.begin(), request.namespaces.end(),
                                   [&](NsType type) { return g.enter.count(type) > 0; });
                           }) == Verdict::Allow);
        case Action::Untrack:
        case Action::SendSignal:
        case Action::GetFd:
            break;
    }
    return Verdict::Pass;
}

void ConfigGrants::decide(const Caller& caller, const Request& request, Answer answer) {
    answer(decideNow(caller, request), {});
}

// A decision in progress, kept alive by the deciders' answers.
struct Pending {
    Caller caller;
    Request request;
    Authorizer::Done done;
    std::string_view lastDecider = "kernel rule";
    std::string unavailable;  // why a decider could not answer
};

Authorizer::Authorizer(const Config& config) : config_(config), grants_(config) {
    deciders_.push_back(&kernelRule_);
    deciders_.push_back(&grants_);
}

Authorizer::~Authorizer() {
    for (const std::string& line : denials_.flush(DenialLog::Clock::now())) {
        spdlog::warn("{}", line);
    }
}

void Authorizer::logDenial(const Caller& caller, const Request& request, const std::string& why) {
    // Per account, as every per-user bound: a container's subordinate uids
    // would otherwise each get their own lines.
    const uid_t account = caller.account();
    DenialLog::Admission admission =
        denials_.admit(account, DenialLog::Clock::now(), account != caller.uid);
    for (const std::string& line : admission.summaries) {
        spdlog::warn("{}", line);
    }
    if (admission.write && account != caller.uid) {
        spdlog::warn("Denied uid {} (pid {}; {}) to {} ({})", caller.uid, caller.pid,
                     caller.describeAccount(), describe(request), why);
    } else if (admission.write) {
        spdlog::warn("Denied uid {} (pid {}) to {} ({})", caller.uid, caller.pid, describe(request),
                     why);
    }
}

void Authorizer::remove(Decider& decider) {
    deciders_.erase(std::remove(deciders_.begin(), deciders_.end(), &decider), deciders_.end());
}

void Authorizer::authorize(const Caller& caller, const Request& request, Done done) {
    if (caller.isRoot()) {
        done(Decision{true, "root", ErrorKind::AccessDenied, {}});
        return;
    }
    // The synchronous deciders first, without allocating: most calls end here.
    auto [index, allowed] = decideSynchronously(caller, request);
    if (allowed) {
        done(Decision{true, deciders_[index]->name(), ErrorKind::AccessDenied, {}});
        return;
    }
    auto pending =
        std::make_shared<Pending>(Pending{caller, request, std::move(done), "kernel rule", {}});
    if (index > 0) {
        pending->lastDecider = deciders_[index - 1]->name();
    }
    next(pending, index);
}

void Authorizer::next(const std::shared_ptr<Pending>& pending, std::size_t index) {
    auto deny = [this, pending](std::string_view decider, ErrorKind kind,
                                const std::string& message, const std::string& log) {
        logDenial(pending->caller, pending->request, log);
        pending->done(Decision{false, decider, kind, message});
    };
    std::string mayNot = "Access denied: uid " + std::to_string(pending->caller.uid) + " may not " +
                         describe(pending->request);
    if (index >= deciders_.size()) {
        std::string why = pending->unavailable.empty() ? "" : "; " + pending->unavailable;
        deny(pending->lastDecider, ErrorKind::AccessDenied, mayNot + why,
             "decided by: " + std::string(pending->lastDecider) + why);
        return;
    }
    Decider& decider = *deciders_[index];
    decider.decide(pending->caller, pending->request,
                   [this, pending, index, deny, mayNot, name = decider.name()](
                       Verdict verdict, std::string_view note) {
                       std::string why = note.empty() ? "" : ": " + std::string(note);
                       switch (verdict) {
                           case Verdict::Allow:
                               pending->done(Decision{true, name, ErrorKind::AccessDenied, {}});
                               return;
                           case Verdict::Deny:
                               deny(name, ErrorKind::AccessDenied,
                                    mayNot + " (" + std::string(name) + why + ")",
                                    "decided by: " + std::string(name) + why);
                               return;
                           case Verdict::Challenge:
                               deny(name, ErrorKind::InteractiveAuthorizationRequired,
                                    "Interactive authentication is required to " +
                                        describe(pending->request) + " (" + std::string(name) +
                                        "); allow interactive authorization and retry",
                                    std::string(name) +
                                        " asks for authentication, which the caller did not allow");
                               return;
                           case Verdict::Busy:
                               deny(name, ErrorKind::LimitExceeded,
                                    "Too many authorization checks of " +
                                        pending->caller.describeAccount() + " wait for " +
                                        std::string(name) + why + "; retry later",
                                    std::string(name) + " is busy with this uid's checks" + why);
                               return;
                           case Verdict::Unavailable:
                               pending->unavailable = std::string(name) + why;
                               [[fallthrough]];
                           case Verdict::Pass:
                               pending->lastDecider = name;
                               next(pending, index + 1);
                               return;
                       }
                   });
}

void Authorizer::callerGone(const Caller& caller) noexcept {
    for (Decider* decider : deciders_) {
        decider->callerGone(caller);
    }
}

bool Authorizer::decideNow(const Caller& caller, const Request& request) const {
    if (caller.isRoot()) {
        return true;
    }
    for (const auto& decider : deciders_) {
        if (!decider->synchronous()) {
            continue;
        }
        Verdict verdict = Verdict::Pass;
        decider->decide(caller, request,
                        [&verdict](Verdict v, std::string_view /*note*/) { verdict = v; });
        if (verdict == Verdict::Allow) {
            return true;
        }
        if (verdict == Verdict::Deny) {
            return false;
        }
    }
    return false;
}

std::pair<std::size_t, bool> Authorizer::decideSynchronously(const Caller& caller,
                                                             const Request& request) const {
    std::size_t index = 0;
    for (; index < deciders_.size() && deciders_[index]->synchronous(); ++index) {
        Verdict verdict = Verdict::Pass;
        deciders_[index]->decide(caller, request,
                                 [&verdict](Verdict v, std::string_view /*note*/) { verdict = v; });
        if (verdict == Verdict::Allow) {
            return {index, true};
        }
        if (verdict != Verdict::Pass) {
            break;  // authorize()'s next() asks it again and says why
        }
    }
    return {index, false};
}

bool Authorizer::allowsAtOnce(const Caller& caller, const Request& request) const {
    return caller.isRoot() || decideSynchronously(caller, request).second;
}

std::size_t Authorizer::trackQuota(const Caller& caller) const {
    return caller.isRoot() ? std::numeric_limits<std::size_t>::max() : config_.trackedPerUser;
}

}  // namespace nsfd::daemon
