// SPDX-License-Identifier: LGPL-2.1-or-later
// The daemon's single event loop: sd-event. Every endpoint attaches to it.
#pragma once

#include <systemd/sd-event.h>

#include <memory>

namespace nsfd::daemon {

struct EventSourceDeleter {
    void operator()(sd_event_source* source) const noexcept {
        sd_event_source_disable_unref(source);
    }
};
using EventSource = std::unique_ptr<sd_event_source, EventSourceDeleter>;

// Throws std::system_error for a negative sd-event return value.
int checkEvent(int r, const char* what);

class EventLoop final {
  public:
    // Throws std::system_error. Sends watchdog pings itself when WATCHDOG_USEC asks for them.
    EventLoop();
    ~EventLoop();
    EventLoop(const EventLoop&) = delete;
    EventLoop& operator=(const EventLoop&) = delete;

    sd_event* get() const noexcept { return event_; }

    // Ends run() with `code` after the current iteration.
    void exit(int code);
    // Runs until exit(); returns its code.
    int run();

  private:
    sd_event* event_ = nullptr;
};

}  // namespace nsfd::daemon
