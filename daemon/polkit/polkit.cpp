// SPDX-License-Identifier: LGPL-2.1-or-later
#include "polkit.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <sstream>
#include <system_error>
#include <utility>

#include "nsfd/unique_fd.hpp"

namespace nsfd::daemon {

namespace {

constexpr const char* kService = "org.freedesktop.PolicyKit1";
constexpr const char* kPath = "/org/freedesktop/PolicyKit1/Authority";
constexpr const char* kInterface = "org.freedesktop.PolicyKit1.Authority";
constexpr std::uint32_t kAllowUserInteraction = 1;

// Cancellation ids need only be unique among this connection's checks (nsfdd
// runs one thread).
std::uint64_t nextCheckId = 1;

std::string milliseconds(std::chrono::microseconds usec) {
    return std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(usec).count()) +
           " ms";
}

// A method call to polkit's authority that never starts polkitd: "not
// running" must mean "no" at once, not a wait for bus activation.
int newAuthorityCall(sd_bus* bus, const char* member, sd_bus_message** m) {
    int r = sd_bus_message_new_method_call(bus, m, kService, kPath, kInterface, member);
    if (r < 0) {
        return r;
    }
    return sd_bus_message_set_auto_start(*m, 0);
}

int appendSubject(sd_bus_message* m, const PolkitSubject& subject) {
    if (const auto* name = std::get_if<PolkitBusName>(&subject)) {
        return sd_bus_message_append(m, "(sa{sv})", "system-bus-name", 1, "name", "s",
                                     name->name.c_str());
    }
    const auto& process = std::get<PolkitProcess>(subject);
    return sd_bus_message_append(
        m, "(sa{sv})", "unix-process", 3, "pid", "u", static_cast<std::uint32_t>(process.pid),
        "start-time", "t", process.startTime, "uid", "i", static_cast<std::int32_t>(process.uid));
}

int appendDetails(sd_bus_message* m, const std::map<std::string, std::string>& details) {
    int r = sd_bus_message_open_container(m, 'a', "{ss}");
    for (auto it = details.begin(); r >= 0 && it != details.end(); ++it) {
        r = sd_bus_message_append(m, "{ss}", it->first.c_str(), it->second.c_str());
    }
    return r < 0 ? r : sd_bus_message_close_container(m);
}

// The reply's (bba{ss}), or the error it carries.
PolkitAnswer readAnswer(sd_bus_message* reply, std::chrono::microseconds waited,
                        std::chrono::microseconds timeout) {
    PolkitAnswer answer;
    if (const sd_bus_error* error = sd_bus_message_get_error(reply)) {
        if (sd_bus_error_has_names(error, SD_BUS_ERROR_SERVICE_UNKNOWN,
                                   SD_BUS_ERROR_NAME_HAS_NO_OWNER)) {
            answer.message = "polkitd is not running";
        } else if (sd_bus_error_has_name(error, SD_BUS_ERROR_NO_REPLY) && waited >= timeout) {
            answer.message = "polkitd did not answer within " + milliseconds(timeout);
        } else {
            answer.message = std::string("polkitd failed: ") + error->name + ": " +
                             (error->message != nullptr ? error->message : "");
        }
        return answer;
    }
    int authorized = 0, challenge = 0;
    int r = sd_bus_message_enter_container(reply, 'r', "bba{ss}");
    if (r >= 0) {
        r = sd_bus_message_read(reply, "bb", &authorized, &challenge);
    }
    if (r >= 0) {
        r = sd_bus_message_enter_container(reply, 'a', "{ss}");
    }
    while (r >= 0) {
        const char *key = nullptr, *value = nullptr;
        r = sd_bus_message_read(reply, "{ss}", &key, &value);
        if (r <= 0) {
            break;
        }
        answer.details.emplace(key, value);
    }
    if (r < 0) {
        answer.message = std::string("Failed to read polkitd's answer: ") + std::strerror(-r);
        return answer;
    }
    answer.result = authorized != 0  ? PolkitResult::Authorized
                    : challenge != 0 ? PolkitResult::Challenge
                                     : PolkitResult::NotAuthorized;
    return answer;
}

}  // namespace

struct PolkitClient::Pending {
    PolkitClient* client;
    CheckId id;
    Callback done;
    std::string cancellationId;  // interactive checks only
    std::chrono::microseconds timeout;
    std::chrono::steady_clock::time_point sentAt;
    BusSlot call;
    EventSource failedToSend;
    PolkitAnswer failure;  // what failedToSend delivers
};

const char* toString(PolkitResult result) noexcept {
    switch (result) {
        case PolkitResult::Authorized:
            return "authorized";
        case PolkitResult::Challenge:
            return "challenge";
        case PolkitResult::NotAuthorized:
            return "not authorized";
        case PolkitResult::Unavailable:
            return "unavailable";
    }
    return "unknown";
}

PolkitClient::PolkitClient(sd_bus* bus, Options options)
    : bus_(sd_bus_ref(bus)), event_(sd_bus_get_event(bus)), options_(options) {
    if (event_ == nullptr) {
        sd_bus_unref(bus_);
        throw std::system_error(EINVAL, std::generic_category(),
                                "Failed to set up the polkit client: the bus has no event loop");
    }
    sd_event_ref(event_);
}

PolkitClient::~PolkitClient() {
    for (auto& [id, pending] : pending_) {
        withdraw(*pending);
    }
    pending_.clear();  // unrefs every call slot: sd-bus forgets the callbacks
    sd_event_unref(event_);
    sd_bus_unref(bus_);
}

PolkitClient::CheckId PolkitClient::check(const PolkitRequest& request, Callback done) {
    auto pending = std::make_unique<Pending>();
    pending->client = this;
    pending->id = nextCheckId++;
    pending->done = std::move(done);
    pending->timeout = request.allowInteraction ? options_.interactiveTimeout : options_.timeout;
    if (request.allowInteraction) {
        pending->cancellationId = "nsfdd-" + std::to_string(pending->id);
    }

    sd_bus_message* raw = nullptr;
    int r = newAuthorityCall(bus_, "CheckAuthorization", &raw);
    BusMessage call(raw);
    if (r >= 0) {
        r = appendSubject(call.get(), request.subject);
    }
    if (r >= 0) {
        r = sd_bus_message_append(call.get(), "s", request.action.c_str());
    }
    if (r >= 0) {
        r = appendDetails(call.get(), request.details);
    }
    if (r >= 0) {
        r = sd_bus_message_append(call.get(), "us",
                                  request.allowInteraction ? kAllowUserInteraction : 0U,
                                  pending->cancellationId.c_str());
    }
    if (r >= 0) {
        sd_bus_slot* slot = nullptr;
        pending->sentAt = std::chrono::steady_clock::now();
        r = sd_bus_call_async(bus_, &slot, call.get(), &PolkitClient::onReply, pending.get(),
                              static_cast<std::uint64_t>(pending->timeout.count()));
        pending->call.reset(slot);
    }
    if (r < 0) {
        // Answered from the loop all the same: a caller never sees its
        // callback run inside check().
        pending->failure.message =
            std::string("Failed to ask polkitd about ") + request.action + ": " + std::strerror(-r);
        sd_event_source* source = nullptr;
        int s = sd_event_add_defer(event_, &source, &PolkitClient::onFailedToSend, pending.get());
        if (s < 0) {
            throw std::system_error(-s, std::generic_category(),
                                    "Failed to queue the polkit answer for " + request.action);
        }
        pending->failedToSend.reset(source);
    }
    CheckId id = pending->id;
    pending_.emplace(id, std::move(pending));
    return id;
}

void PolkitClient::cancel(CheckId id) noexcept {
    auto it = pending_.find(id);
    if (it == pending_.end()) {
        return;
    }
    withdraw(*it->second);
    pending_.erase(it);
}

void PolkitClient::withdraw(CheckId id) noexcept {
    auto it = pending_.find(id);
    if (it != pending_.end()) {
        withdraw(*it->second);
    }
}

int PolkitClient::onReply(sd_bus_message* reply, void* userdata, sd_bus_error* /*error*/) noexcept {
    auto* pending = static_cast<Pending*>(userdata);
    auto waited = std::chrono::duration_cast<std::chrono::microseconds>(
        std::chrono::steady_clock::now() - pending->sentAt);
    PolkitAnswer answer;
    try {
        answer = readAnswer(reply, waited, pending->timeout);
    } catch (const std::exception& e) {  // out of memory
        answer = PolkitAnswer{PolkitResult::Unavailable, e.what(), {}};
    }
    if (answer.result == PolkitResult::Unavailable && !pending->cancellationId.empty()) {
        pending->client->withdraw(*pending);  // a prompt may still be open after our timeout
    }
    pending->client->finish(pending->id, answer);
    return 0;
}

int PolkitClient::onFailedToSend(sd_event_source* /*source*/, void* userdata) noexcept {
    auto* pending = static_cast<Pending*>(userdata);
    PolkitAnswer answer = std::move(pending->failure);
    pending->client->finish(pending->id, answer);
    return 0;
}

void PolkitClient::finish(CheckId id, const PolkitAnswer& answer) noexcept {
    auto node = pending_.extract(id);
    if (node.empty()) {
        return;
    }
    // `node` keeps the slot (sd-bus holds its own reference while it calls
    // us) and the callback alive until we return, even if the callback
    // destroys this client: nothing here touches `this` after it.
    node.mapped()->done(answer);
}

void PolkitClient::withdraw(const Pending& pending) noexcept {
    if (pending.cancellationId.empty()) {
        return;
    }
    sd_bus_message* raw = nullptr;
    int r = newAuthorityCall(bus_, "CancelCheckAuthorization", &raw);
    BusMessage call(raw);
    if (r >= 0) {
        r = sd_bus_message_append(call.get(), "s", pending.cancellationId.c_str());
    }
    if (r >= 0) {
        r = sd_bus_message_set_expect_reply(call.get(), 0);
    }
    if (r >= 0) {
        (void)sd_bus_send(bus_, call.get(), nullptr);  // best effort: the prompt times out anyway
    }
}

}  // namespace nsfd::daemon
