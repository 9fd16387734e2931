// SPDX-License-Identifier: LGPL-2.1-or-later
#include "event_loop.hpp"

#include <spdlog/spdlog.h>

#include <cstdlib>
#include <system_error>

namespace nsfd::daemon {

EventLoop::EventLoop() {
    checkBus(sd_event_new(&event_), "Failed to create the event loop");
    checkBus(sd_event_set_watchdog(event_, 1), "Failed to set up the watchdog");
}

EventLoop::~EventLoop() {
    disconnected_.reset();
    sd_event_unref(event_);
}

void EventLoop::attachBus(sd_bus* bus) {
    // sd-bus takes one message per dispatch of its sources, and comes back at
    // once while it holds more.
    checkBus(sd_bus_attach_event(bus, event_, SD_EVENT_PRIORITY_NORMAL),
             "Failed to attach the bus to the event loop");
    sd_bus_slot* slot = nullptr;
    checkBus(
        sd_bus_match_signal(bus, &slot, "org.freedesktop.DBus.Local", nullptr,
                            "org.freedesktop.DBus.Local", "Disconnected", onDisconnected, this),
        "Failed to watch the bus connection");
    disconnected_.reset(slot);
}

int EventLoop::onDisconnected(sd_bus_message* /*message*/, void* userdata,
                              sd_bus_error* /*error*/) {
    spdlog::critical("Lost the bus connection");
    static_cast<EventLoop*>(userdata)->exit(EXIT_FAILURE);
    return 0;
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
