// SPDX-License-Identifier: LGPL-2.1-or-later
#include "polkit_decider.hpp"

#include <algorithm>
#include <cstring>
#include <string>
#include <system_error>
#include <vector>

#include "nsfd/socket_names.hpp"

namespace nsfd::daemon {

namespace {

// A Varlink caller (a process, no bus name) is there while its process runs
// with the start time it had when it called.
bool processStillThere(const Caller& caller) {
    if (caller.startTime == 0) {
        return true;  // nothing to compare: polkit will say
    }
    try {
        return processStartTime(caller.pid) == caller.startTime;
    } catch (const std::system_error&) {
        return false;
    }
}

}  // namespace

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
        case Action::Enter:
            return "org.nsfd1.enter";
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

PolkitDecider::PolkitDecider(sd_bus* bus, PolkitClient::Options options, Limits limits)
    : client_(bus, options), bus_(bus), limits_(limits) {}

PolkitDecider::~PolkitDecider() = default;

void PolkitDecider::decide(const Caller& caller, const Request& request, Answer answer) {
    if (polkitActionOf(request.action).empty()) {
        answer(Verdict::Pass, {});
        return;
    }
    if (std::string why = unaskable(caller); !why.empty()) {
        answer(Verdict::Deny, why);
        return;
    }
    uid_t uid = caller.uid;
    auto queue = waitingOf_.find(uid);
    bool othersOfUidWait = queue != waitingOf_.end() && !queue->second.empty();
    auto ofUid = inFlightOf_.find(uid);
    std::size_t inFlightOfUid = ofUid == inFlightOf_.end() ? 0 : ofUid->second;
    if (!othersOfUidWait && inFlight_ < limits_.inFlight &&
        inFlightOfUid < limits_.inFlightPerUser) {
        start(Queued{caller, request, std::move(answer), false});
        return;
    }
    std::size_t waitingOfUid = othersOfUidWait ? queue->second.size() : 0;
    if (waitingOfUid >= limits_.waitingPerUser || waiting_ >= limits_.waiting) {
        answer(Verdict::Busy, std::to_string(waitingOfUid) + " of its and " +
                                  std::to_string(waiting_) + " in all wait already");
        return;
    }
    waitingOf_[uid].push_back(Queued{caller, request, std::move(answer), true});
    ++waiting_;
}

void PolkitDecider::start(Queued decision) {
    uid_t uid = decision.caller.uid;
    ++inFlight_;
    ++inFlightOf_[uid];
    Answer done = [this, uid, answer = std::move(decision.answer)](Verdict verdict,
                                                                   std::string_view note) {
        finish(uid, answer, verdict, note);
    };
    if (!decision.waited || decision.caller.busName.empty()) {
        try {
            check(decision.caller, decision.request, 0, done);
        } catch (const std::exception& e) {  // out of memory
            done(Verdict::Unavailable, e.what());
        }
        return;
    }
    // It waited: is its caller still on the bus? (GetNameOwner is answered
    // by the bus itself, and counts against no limit of pending replies.)
    auto pending = std::make_unique<OwnerCheck>();
    pending->self = this;
    pending->key = nextOwnerCheck_++;
    pending->caller = std::move(decision.caller);
    pending->request = std::move(decision.request);
    pending->done = std::move(done);
    sd_bus_slot* slot = nullptr;
    int r = sd_bus_call_method_async(bus_, &slot, "org.freedesktop.DBus", "/org/freedesktop/DBus",
                                     "org.freedesktop.DBus", "GetNameOwner", &onOwnerChecked,
                                     pending.get(), "s", pending->caller.busName.c_str());
    if (r < 0) {
        pending->done(Verdict::Unavailable, std::string("Failed to ask the bus whether the caller "
                                                        "is still there: ") +
                                                std::strerror(-r));
        return;
    }
    pending->slot.reset(slot);
    ownerChecks_.emplace(pending->key, std::move(pending));
}

int PolkitDecider::onOwnerChecked(sd_bus_message* reply, void* userdata,
                                  sd_bus_error* /*error*/) noexcept {
    auto* pending = static_cast<OwnerCheck*>(userdata);
    PolkitDecider* self = pending->self;
    auto node = self->ownerChecks_.extract(pending->key);  // sd-bus holds the slot meanwhile
    OwnerCheck& check = *node.mapped();
    if (sd_bus_message_is_method_error(reply, nullptr) != 0) {
        check.done(Verdict::Unavailable, "the caller hung up before polkit was asked");
        return 0;
    }
    try {
        self->check(check.caller, check.request, 0, check.done);
    } catch (const std::exception& e) {
        check.done(Verdict::Unavailable, e.what());
    }
    return 0;
}

void PolkitDecider::finish(uid_t uid, const Answer& answer, Verdict verdict,
                           std::string_view note) {
    Answer keep = answer;  // `answer` lives in a callback that goes with the check
    std::string why(note);
    --inFlight_;
    auto it = inFlightOf_.find(uid);
    if (it != inFlightOf_.end() && --it->second == 0) {
        inFlightOf_.erase(it);
    }
    startWaiting();
    keep(verdict, why);
}

void PolkitDecider::startWaiting() {
    std::vector<Queued> gone;
    while (inFlight_ < limits_.inFlight && waiting_ > 0) {
        // The next uid after the last one served that has room, round the table.
        auto eligible = [&](const auto& entry) {
            auto ofUid = inFlightOf_.find(entry.first);
            return !entry.second.empty() &&
                   (ofUid == inFlightOf_.end() || ofUid->second < limits_.inFlightPerUser);
        };
        auto it = std::find_if(waitingOf_.upper_bound(lastServed_), waitingOf_.end(), eligible);
        if (it == waitingOf_.end()) {
            it = std::find_if(waitingOf_.begin(), waitingOf_.end(), eligible);
        }
        if (it == waitingOf_.end()) {
            break;  // every uid that waits has its share in flight
        }
        Queued decision = std::move(it->second.front());
        it->second.pop_front();
        --waiting_;
        lastServed_ = it->first;
        if (it->second.empty()) {
            waitingOf_.erase(it);
        }
        if (decision.caller.busName.empty() && !processStillThere(decision.caller)) {
            gone.push_back(std::move(decision));
            continue;
        }
        start(std::move(decision));
    }
    for (Queued& decision : gone) {
        decision.answer(Verdict::Unavailable, "the caller exited before polkit was asked");
    }
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
    if (request.action == Action::Enter) {
        // A rule can allow `ss` and `ip` and nothing else: action.lookup("command").
        std::string types;
        for (NsType type : request.namespaces) {
            types += (types.empty() ? "" : " ") + std::string(toString(type));
        }
        ask.details["namespaces"] = types;
        ask.details["command"] = request.command;
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
