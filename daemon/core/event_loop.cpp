// SPDX-License-Identifier: LGPL-2.1-or-later
#include "event_loop.hpp"

#include <spdlog/spdlog.h>

#include <system_error>

namespace nsfd::daemon {

int checkEvent(int r, const char* what) {
    if (r < 0) {
        throw std::system_error(-r, std::generic_category(), what);
    }
    return r;
}

EventLoop::EventLoop() {
    checkEvent(sd_event_new(&event_), "Failed to create the event loop");
    checkEvent(sd_event_set_watchdog(event_, 1), "Failed to set up the watchdog");
}

EventLoop::~EventLoop() {
    sd_event_unref(event_);
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
