// SPDX-License-Identifier: LGPL-2.1-or-later
// The daemon's single event loop: sd-event, with the bus connection on it.
#pragma once

#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include <memory>

#include "bus.hpp"

namespace nsfd::daemon {

struct EventSourceDeleter {
    void operator()(sd_event_source* source) const noexcept {
        sd_event_source_disable_unref(source);
    }
};
using EventSource = std::unique_ptr<sd_event_source, EventSourceDeleter>;

class EventLoop {
  public:
    // Throws std::system_error. Sends watchdog pings itself when WATCHDOG_USEC asks for them.
    EventLoop();
    ~EventLoop();
    EventLoop(const EventLoop&) = delete;
    EventLoop& operator=(const EventLoop&) = delete;

    sd_event* get() const noexcept { return event_; }

    // Dispatches the bus's messages from this loop, one per turn (work a
    // handler defers runs before the next message). A lost connection ends the
    // loop with exit code 1, for systemd to restart nsfdd.
    void attachBus(sd_bus* bus);

    // Ends run() with `code` after the current iteration.
    void exit(int code);
    // Runs until exit(); returns its code.
    int run();

  private:
    static int onDisconnected(sd_bus_message* message, void* userdata, sd_bus_error* error);

    sd_event* event_ = nullptr;
    BusSlot disconnected_;
};

}  // namespace nsfd::daemon
