// SPDX-License-Identifier: LGPL-2.1-or-later
#include "polkit_decider.hpp"

#include <string>
#include "nsfd/socket_names.hpp"

namespace nsfd::daemon {

std::string_view polkitActionOf(Action action) noexcept {
    switch (action) {
        case Action::ReadInfo:
        case Action::Track:
            return "org.nsfd1.read-info";
        case Action::Untrack:
            return "org.nsfd1.untrack-any";
        case Action::GetNamespace:
            return "org.nsfd1.get-namespace";
        case Action::GetPidFd:
            return "org.nsfd1.get-pidfd";
        case Action::SendSignal:
            return "org.nsfd1.send-signal";
        case Action::OpenSocket:
            return "org.nsfd1.open-socket";
        case Action::GetFd:
            break;
    }
    return {};
}

namespace {

// Why polkit cannot be asked about the caller's process (a unix-process
// subject, its pid guarded by its start time), "" if it can. polkit 122 takes
// no pidfd in a subject (124 does), so nsfdd holds one: while it shows the
// process alive, no other process can have the pid.
std::string unaskable(const Caller& caller) {
    if (!caller.pidfd || caller.startTime == 0) {
        return "the calling process had exited or could not be checked when its connection "
               "was first seen, so polkit cannot be asked about it";
    }
    if (caller.pidfd->hasExited()) {
        return "the calling process has exited and its pid may name another process now, so "
               "polkit cannot be asked about it (a connection handed on to another process?)";
    }
    return {};
}

const char* boolean(bool value) noexcept {
    return value ? "true" : "false";
}

}  // namespace

void PolkitDecider::decide(const Caller& caller, const Request& request, Answer answer) {
    if (polkitActionOf(request.action).empty()) {
        answer(Verdict::Pass, {});
        return;
    }
    if (std::string why = unaskable(caller); !why.empty()) {
        answer(Verdict::Deny, why);
        return;
    }
    check(caller, request, 0, std::move(answer));
}

void PolkitDecider::check(const Caller& caller, const Request& request, std::size_t namespaceIndex,
                          Answer answer) {
    PolkitRequest ask;
    // Both doors' callers as processes: a bus name would have polkitd look up
    // whichever process has the connection's pid when it asks.
    ask.subject = PolkitProcess{caller.pid, caller.startTime, caller.uid};
    ask.action = std::string(polkitActionOf(request.action));
    ask.details = {{"pid", std::to_string(request.target.pid)},
                   {"id", std::to_string(request.target.id)},
                   {"uid", std::to_string(request.target.creds.ruid)},
                   {"caller-sandboxed", boolean(caller.isSandboxed())},
                   {"caller-user-namespace", std::to_string(caller.userNamespace)},
                   {"caller-pid-namespace", std::to_string(caller.pidNamespace)},
                   {"target-visible", boolean(request.target.visible)}};
    if (request.action == Action::GetNamespace && namespaceIndex < request.namespaces.size()) {
        ask.details["namespace"] = std::string(toString(request.namespaces[namespaceIndex]));
    }
    if (request.action == Action::SendSignal) {
        ask.details["signal"] = std::to_string(request.signal);
    }
    if (request.action == Action::OpenSocket) {
        // By name, so that rules read well: action.lookup("family") == "inet".
        const SocketSpec& socket = request.socket;
        ask.details["family"] = std::string(socketFamilyName(socket.family).value_or(""));
        ask.details["type"] = std::string(socketTypeName(socket.type).value_or(""));
        ask.details["protocol"] = std::to_string(socket.protocol);
    }
    ask.allowInteraction = caller.allowInteractive;
    bool interactive = caller.allowInteractive;
    client_.check(ask, [this, caller, request, namespaceIndex, interactive,
                        answer](const PolkitAnswer& reply) {
        // polkitd read /proc/PID meanwhile: its answer is about our caller only
        // if the caller's process has not exited since (no other can have the pid).
        if (reply.result != PolkitResult::Unavailable) {
            if (std::string why = unaskable(caller); !why.empty()) {
                answer(Verdict::Deny, why);
                return;
            }
        }
        switch (reply.result) {
            case PolkitResult::Authorized:
                if (request.action == Action::GetNamespace &&
                    namespaceIndex + 1 < request.namespaces.size()) {
                    check(caller, request, namespaceIndex + 1, answer);
                    return;
                }
                answer(Verdict::Allow, {});
                return;
            case PolkitResult::NotAuthorized:
                answer(Verdict::Deny, "not authorized");
                return;
            case PolkitResult::Challenge:
                // With the flag, polkit already asked (or had no agent to ask):
                // that is a plain no.
                if (interactive) {
                    answer(Verdict::Deny, "authentication failed or no agent to ask");
                } else {
                    answer(Verdict::Challenge, {});
                }
                return;
            case PolkitResult::Unavailable:
                answer(Verdict::Unavailable, reply.message);
                return;
        }
    });
}

}  // namespace nsfd::daemon
