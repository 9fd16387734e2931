// SPDX-License-Identifier: LGPL-2.1-or-later
#include "event_loop.hpp"

#include <sdbus-c++/IConnection.h>
#include <spdlog/spdlog.h>

#include <system_error>

namespace nsfd::daemon {

namespace {

void check(int r, const char* what) {
    if (r < 0) {
        throw std::system_error(-r, std::generic_category(), what);
    }
}

}  // namespace

EventLoop::EventLoop() {
    check(sd_event_new(&event_), "Failed to create the event loop");
    check(sd_event_set_watchdog(event_, 1), "Failed to set up the watchdog");
}

EventLoop::~EventLoop() {
    busIo_.reset();
    busTimer_.reset();
    sd_event_unref(event_);
}

void EventLoop::attachBus(sdbus::IConnection& connection) {
    connection_ = &connection;
    sdbus::IConnection::PollData poll = connection.getEventLoopPollData();
    sd_event_source* io = nullptr;
    check(
        sd_event_add_io(event_, &io, poll.fd, static_cast<uint32_t>(poll.events), onBusEvent, this),
        "Failed to watch the bus connection");
    busIo_.reset(io);
    sd_event_source* timer = nullptr;
    check(sd_event_add_time(event_, &timer, CLOCK_MONOTONIC, UINT64_MAX, 0, onBusTimeout, this),
          "Failed to add the bus timer");
    busTimer_.reset(timer);
    // sd-bus may hold already-read messages; its poll data is only right just
    // before the loop sleeps.
    check(sd_event_source_set_prepare(io, onBusPrepare), "Failed to set the bus prepare hook");
}

int EventLoop::onBusPrepare(sd_event_source* /*source*/, void* userdata) {
    auto* self = static_cast<EventLoop*>(userdata);
    try {
        sdbus::IConnection::PollData poll = self->connection_->getEventLoopPollData();
        sd_event_source_set_io_events(self->busIo_.get(), static_cast<uint32_t>(poll.events));
        sd_event_source_set_time(self->busTimer_.get(), poll.timeout_usec);
        sd_event_source_set_enabled(self->busTimer_.get(), SD_EVENT_ONESHOT);
    } catch (const std::exception& e) {
        self->lostBus(e);  // nothing may unwind through sd-event
    }
    return 0;
}

int EventLoop::onBusEvent(sd_event_source* /*source*/, int /*fd*/, uint32_t /*revents*/,
                          void* userdata) {
    static_cast<EventLoop*>(userdata)->processBus();
    return 0;
}

int EventLoop::onBusTimeout(sd_event_source* /*source*/, uint64_t /*usec*/, void* userdata) {
    static_cast<EventLoop*>(userdata)->processBus();
    return 0;
}

void EventLoop::processBus() {
    // One message per turn of the loop: work a handler deferred (an untracked
    // object's removal) runs before the next message, which must not see it.
    // The prepare hook brings the loop straight back while sd-bus holds more.
    try {
        connection_->processPendingRequest();
    } catch (const std::exception& e) {
        lostBus(e);
    }
}

void EventLoop::lostBus(const std::exception& e) {
    spdlog::critical("Lost the bus connection: {}", e.what());
    exit(1);
}

void EventLoop::exit(int code) {
    sd_event_exit(event_, code);
}

int EventLoop::run() {
    int r = sd_event_loop(event_);
    if (r < 0) {
        spdlog::critical("Event loop failed: {}", std::generic_category().message(-r));
        return 1;
    }
    return r;
}

}  // namespace nsfd::daemon
