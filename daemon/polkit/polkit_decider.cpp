// SPDX-License-Identifier: LGPL-2.1-or-later
#include "polkit_decider.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <system_error>
#include <vector>

#include "nsfd/socket_names.hpp"

namespace nsfd::daemon {

namespace {

// Every unique name that leaves the bus: its NameOwnerChanged has no new owner.
constexpr const char* kDepartures =
    "type='signal',sender='org.freedesktop.DBus',path='/org/freedesktop/DBus',"
    "interface='org.freedesktop.DBus',member='NameOwnerChanged',arg2=''";

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
    : client_(bus, options), bus_(bus), limits_(limits) {
    // One match for every unique name that leaves the bus (arg2: no new
    // owner), whoever called: its cost is one signal per departure on the
    // bus, and one lookup here. With an install callback a refusal is ours to
    // handle, not a reason for sd-bus to drop the connection.
    sd_bus_slot* slot = nullptr;
    int r = sd_bus_add_match_async(bus, &slot, kDepartures, &onNameOwnerChanged,
                                   &onDeparturesWatched, this);
    if (r < 0) {
        spdlog::warn(
            "Failed to watch callers leaving the bus, ignoring: their polkit checks "
            "are dropped only when their turn comes: {}",
            std::strerror(-r));
    } else {
        departures_.reset(slot);
    }
}

PolkitDecider::~PolkitDecider() = default;

std::string PolkitDecider::connectionOf(const Caller& caller) {
    if (!caller.busName.empty()) {
        return caller.busName;  // ":1.42": unique, never reused
    }
    return "varlink@" + std::to_string(reinterpret_cast<std::uintptr_t>(caller.pidfd.get()));
}

int PolkitDecider::onDeparturesWatched(sd_bus_message* reply, void* /*userdata*/,
                                       sd_bus_error* /*error*/) {
    if (const sd_bus_error* error = sd_bus_message_get_error(reply)) {
        spdlog::warn(
            "The bus refused to tell nsfdd of callers leaving it, ignoring: their polkit "
            "checks are dropped only when their turn comes: {}: {}",
            error->name != nullptr ? error->name : "",
            error->message != nullptr ? error->message : "");
    }
    return 0;
}

int PolkitDecider::onNameOwnerChanged(sd_bus_message* message, void* userdata,
                                      sd_bus_error* /*error*/) {
    auto* self = static_cast<PolkitDecider*>(userdata);
    const char *name = nullptr, *oldOwner = nullptr, *newOwner = nullptr;
    if (sd_bus_message_read(message, "sss", &name, &oldOwner, &newOwner) >= 0 && name[0] == ':' &&
        newOwner[0] == '\0') {
        self->dropConnection(name);
    }
    return 0;
}

void PolkitDecider::callerGone(const Caller& caller) noexcept {
    try {
        dropConnection(connectionOf(caller));
    } catch (const std::exception&) {
        // Out of memory for the key: the decisions go when their turn comes.
    }
}

void PolkitDecider::dropConnection(const std::string& connection) noexcept {
    auto it = connections_.find(connection);
    if (it == connections_.end()) {
        return;
    }
    ConnectionCount& count = it->second;
    if (count.waiting > 0) {
        auto queue = waitingOf_.find(count.uid);
        if (queue != waitingOf_.end()) {
            // Their answers go with them: nobody is left to tell.
            waiting_ -= std::erase_if(
                queue->second, [&](const Queued& each) { return each.connection == connection; });
            if (queue->second.empty()) {
                waitingOf_.erase(queue);
            }
        }
        count.waiting = 0;
    }
    if (count.inFlight == 0) {
        connections_.erase(it);
        return;
    }
    for (auto& [id, decision] : inFlightDecisions_) {
        if (decision.connection == connection && decision.answer) {
            decision.answer = nullptr;
            if (decision.interactive && decision.check != 0) {
                client_.withdraw(decision.check);
            }
        }
    }
}

void PolkitDecider::release(const std::string& connection, bool waited) noexcept {
    auto it = connections_.find(connection);
    if (it == connections_.end()) {
        return;
    }
    std::size_t& count = waited ? it->second.waiting : it->second.inFlight;
    if (count > 0) {
        --count;
    }
    if (it->second.waiting == 0 && it->second.inFlight == 0) {
        connections_.erase(it);
    }
}

void PolkitDecider::decide(const Caller& caller, const Request& request, Answer answer) {
    if (polkitActionOf(request.action).empty()) {
        answer(Verdict::Pass, {});
        return;
    }
    if (std::string why = unaskable(caller); !why.empty()) {
        answer(Verdict::Deny, why);
        return;
    }
    uid_t uid = caller.account();  // a user namespace's uids share their user's bounds
    auto queue = waitingOf_.find(uid);
    bool othersOfUidWait = queue != waitingOf_.end() && !queue->second.empty();
    auto ofUid = inFlightOf_.find(uid);
    std::size_t inFlightOfUid = ofUid == inFlightOf_.end() ? 0 : ofUid->second;
    if (!othersOfUidWait && inFlight_ < limits_.inFlight &&
        inFlightOfUid < limits_.inFlightPerUser) {
        start(Queued{caller, request, std::move(answer), false, connectionOf(caller)});
        return;
    }
    std::size_t waitingOfUid = othersOfUidWait ? queue->second.size() : 0;
    if (waitingOfUid >= limits_.waitingPerUser || waiting_ >= limits_.waiting) {
        answer(Verdict::Busy, std::to_string(waitingOfUid) + " of its and " +
                                  std::to_string(waiting_) + " in all wait already");
        return;
    }
    std::string connection = connectionOf(caller);
    ConnectionCount& count = connections_[connection];
    count.uid = uid;
    ++count.waiting;
    waitingOf_[uid].push_back(Queued{caller, request, std::move(answer), true, connection});
    ++waiting_;
}

void PolkitDecider::start(Queued decision) {
    uid_t uid = decision.caller.account();
    std::uint64_t id = nextDecision_++;
    ConnectionCount& count = connections_[decision.connection];
    count.uid = uid;
    ++count.inFlight;
    ++inFlight_;
    ++inFlightOf_[uid];
    inFlightDecisions_.emplace(id, InFlight{decision.connection, uid, std::move(decision.answer), 0,
                                            decision.caller.allowInteractive});
    if (!decision.waited || decision.caller.busName.empty()) {
        ask(id, decision.caller, decision.request, 0);
        return;
    }
    // It waited: is its caller still on the bus? (GetNameOwner is answered
    // by the bus itself, and counts against no limit of pending replies.)
    // The departure match tells this too, unless the bus refused it.
    auto pending = std::make_unique<OwnerCheck>();
    pending->self = this;
    pending->decision = id;
    pending->caller = std::move(decision.caller);
    pending->request = std::move(decision.request);
    sd_bus_slot* slot = nullptr;
    int r = sd_bus_call_method_async(bus_, &slot, "org.freedesktop.DBus", "/org/freedesktop/DBus",
                                     "org.freedesktop.DBus", "GetNameOwner", &onOwnerChecked,
                                     pending.get(), "s", pending->caller.busName.c_str());
    if (r < 0) {
        finish(id, Verdict::Unavailable,
               std::string("Failed to ask the bus whether the caller is still there: ") +
                   std::strerror(-r));
        return;
    }
    pending->slot.reset(slot);
    ownerChecks_.emplace(id, std::move(pending));
}

int PolkitDecider::onOwnerChecked(sd_bus_message* reply, void* userdata,
                                  sd_bus_error* /*error*/) noexcept {
    auto* pending = static_cast<OwnerCheck*>(userdata);
    PolkitDecider* self = pending->self;
    auto node = self->ownerChecks_.extract(pending->decision);  // sd-bus holds the slot meanwhile
    OwnerCheck& check = *node.mapped();
    if (sd_bus_message_is_method_error(reply, nullptr) != 0) {
        // It hung up before polkit was asked: nobody to answer.
        auto it = self->inFlightDecisions_.find(check.decision);
        if (it != self->inFlightDecisions_.end()) {
            it->second.answer = nullptr;
        }
        self->finish(check.decision, Verdict::Unavailable, {});
        return 0;
    }
    self->ask(check.decision, check.caller, check.request, 0);
    return 0;
}

void PolkitDecider::ask(std::uint64_t id, const Caller& caller, const Request& request,
                        std::size_t namespaceIndex) noexcept {
    auto it = inFlightDecisions_.find(id);
    if (it == inFlightDecisions_.end()) {
        return;
    }
    if (!it->second.answer) {
        finish(id, Verdict::Unavailable, {});  // its caller has gone: polkitd is not asked
        return;
    }
    try {
        check(id, caller, request, namespaceIndex);
    } catch (const std::exception& e) {  // out of memory
        finish(id, Verdict::Unavailable, e.what());
    }
}

void PolkitDecider::finish(std::uint64_t id, Verdict verdict, std::string_view note) {
    auto node = inFlightDecisions_.extract(id);
    if (node.empty()) {
        return;
    }
    std::string why(note);  // `note` may live in what goes below
    InFlight& decision = node.mapped();
    --inFlight_;
    auto it = inFlightOf_.find(decision.uid);
    if (it != inFlightOf_.end() && --it->second == 0) {
        inFlightOf_.erase(it);
    }
    release(decision.connection, /*waited=*/false);
    startWaiting();
    if (decision.answer) {
        decision.answer(verdict, why);
    }
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
        release(decision.connection, /*waited=*/true);
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

void PolkitDecider::check(std::uint64_t id, const Caller& caller, const Request& request,
                          std::size_t namespaceIndex) {
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
    PolkitClient::CheckId check =
        client_.check(ask, [this, id, caller, request, namespaceIndex](const PolkitAnswer& reply) {
            answered(id, caller, request, namespaceIndex, reply);
        });
    auto it = inFlightDecisions_.find(id);
    if (it != inFlightDecisions_.end()) {
        it->second.check = check;
    }
}

void PolkitDecider::answered(std::uint64_t id, const Caller& caller, const Request& request,
                             std::size_t namespaceIndex, const PolkitAnswer& reply) {
    auto it = inFlightDecisions_.find(id);
    if (it == inFlightDecisions_.end() || !it->second.answer) {
        finish(id, Verdict::Unavailable, {});  // its caller has gone: not asked further
        return;
    }
    // polkitd read /proc/PID meanwhile: its answer is about our caller only
    // if the caller's process has not exited since (no other can have the pid).
    if (reply.result != PolkitResult::Unavailable) {
        if (std::string why = unaskable(caller); !why.empty()) {
            finish(id, Verdict::Deny, why);
            return;
        }
    }
    switch (reply.result) {
        case PolkitResult::Authorized:
            if (request.action == Action::GetNamespace &&
                namespaceIndex + 1 < request.namespaces.size()) {
                ask(id, caller, request, namespaceIndex + 1);
                return;
            }
            finish(id, Verdict::Allow, {});
            return;
        case PolkitResult::NotAuthorized:
            finish(id, Verdict::Deny, "not authorized");
            return;
        case PolkitResult::Challenge:
            // With the flag, polkit already asked (or had no agent to ask):
            // that is a plain no.
            if (caller.allowInteractive) {
                finish(id, Verdict::Deny, "authentication failed or no agent to ask");
            } else {
                finish(id, Verdict::Challenge, {});
            }
            return;
        case PolkitResult::Unavailable:
            finish(id, Verdict::Unavailable, reply.message);
            return;
    }
}

}  // namespace nsfd::daemon
