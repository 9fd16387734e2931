// SPDX-License-Identifier: LGPL-2.1-or-later
// nsfdd speaks sd-bus directly: every tracked process is served by one
// fallback vtable (no per-process object, which sdbus-c++ 1.2 cannot offer).
// Owners of sd-bus objects, the readers and writers the handlers share, and
// the one place that turns any exception into the D-Bus error a client sees.
#pragma once

#include <systemd/sd-bus.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/errors.hpp"
#include "core/resolution.hpp"
#include "nsfd/info.hpp"
#include "nsfd/ns.hpp"
#include "nsfd/unique_fd.hpp"

namespace nsfd::daemon {

struct BusDeleter {
    void operator()(sd_bus* bus) const noexcept { sd_bus_flush_close_unref(bus); }
};
using BusPtr = std::unique_ptr<sd_bus, BusDeleter>;

struct BusSlotDeleter {
    void operator()(sd_bus_slot* slot) const noexcept { sd_bus_slot_unref(slot); }
};
using BusSlot = std::unique_ptr<sd_bus_slot, BusSlotDeleter>;

struct BusMessageDeleter {
    void operator()(sd_bus_message* message) const noexcept { sd_bus_message_unref(message); }
};
using BusMessage = std::unique_ptr<sd_bus_message, BusMessageDeleter>;

// "system", "session" or a D-Bus address. Throws std::system_error.
BusPtr openBus(const std::string& bus);

struct BusTrackDeleter {
    void operator()(sd_bus_track* track) const noexcept { sd_bus_track_unref(track); }
};
using BusTrack = std::unique_ptr<sd_bus_track, BusTrackDeleter>;

struct BusCredsDeleter {
    void operator()(sd_bus_creds* creds) const noexcept { sd_bus_creds_unref(creds); }
};
using BusCreds = std::unique_ptr<sd_bus_creds, BusCredsDeleter>;

// Throws std::system_error for a negative sd-bus return value.
int checkBus(int r, const char* what);

// -- reading the arguments of a call; each throws std::system_error --
std::string readString(sd_bus_message* m);
std::string readObjectPath(sd_bus_message* m);
std::uint32_t readUint32(sd_bus_message* m);
std::int32_t readInt32(sd_bus_message* m);
std::vector<std::string> readStrings(sd_bus_message* m);
// The fd of an 'h' argument, duplicated (close-on-exec): the message keeps its own.
UniqueFd readFd(sd_bus_message* m);

// -- replies; each returns what a vtable handler returns, and throws
// std::system_error if the reply cannot be built --
// An empty reply to `call`, to append to and send (sd_bus_send).
BusMessage newMethodReturn(sd_bus_message* call);
int replyEmpty(sd_bus_message* call);
int replyObjectPath(sd_bus_message* call, const std::string& path);
// Sends the fd (sd-bus duplicates it) and closes ours.
int replyFd(sd_bus_message* call, UniqueFd fd);
// a{sh}: each fd keyed by its namespace type.
int replyNamespaceFds(sd_bus_message* call, const std::vector<std::pair<NsType, NsFd>>& fds);
// The a{sv} of GetInfo and GetProcessInfo (keys: nsfd/contract.hpp).
int replyInfo(sd_bus_message* call, const ProcessView& view);

// Sets `error` from the exception in flight (core/errors.hpp's currentError,
// named by nsfd/contract.hpp). Returns the negative errno a vtable callback
// returns with it. Call it only from a catch block.
int setBusErrorFromException(sd_bus_error* error) noexcept;
// Replies to `call` with the error of `kind`. Returns what a handler returns.
int replyError(sd_bus_message* call, ErrorKind kind, const std::string& message) noexcept;

// Runs a callback body where sd-bus wants an sd_bus_error (property getters,
// find callbacks): any exception becomes that error (sd-bus is C: nothing may
// unwind through it).
template <typename Body>
int handleCall(sd_bus_error* error, Body&& body) noexcept {
    try {
        return body();
    } catch (...) {
        return setBusErrorFromException(error);
    }
}

// Runs a method handler body: any exception becomes the error reply to `call`.
template <typename Body>
int serveCall(sd_bus_message* call, Body&& body) noexcept {
    try {
        return body();
    } catch (...) {
        auto [kind, message] = currentError();
        return replyError(call, kind, message);
    }
}

}  // namespace nsfd::daemon
