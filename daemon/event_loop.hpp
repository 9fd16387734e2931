// SPDX-License-Identifier: LGPL-2.1-or-later
// The daemon's single event loop: sd-event, with the sdbus-c++ connection on it.
#pragma once

#include <systemd/sd-event.h>

#include <cstdint>
#include <exception>
#include <memory>

namespace sdbus {
class IConnection;
}

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

    // Dispatches the connection's messages from this loop. A lost connection
    // ends the loop with exit code 1.
    void attachBus(sdbus::IConnection& connection);

    // Ends run() with `code` after the current iteration.
    void exit(int code);
    // Runs until exit(); returns its code.
    int run();

  private:
    static int onBusPrepare(sd_event_source* source, void* userdata);
    static int onBusEvent(sd_event_source* source, int fd, uint32_t revents, void* userdata);
    static int onBusTimeout(sd_event_source* source, uint64_t usec, void* userdata);
    void processBus();
    // Ends the loop with 1 (systemd restarts nsfdd).
    void lostBus(const std::exception& e);

    sd_event* event_ = nullptr;
    sdbus::IConnection* connection_ = nullptr;
    EventSource busIo_;
    EventSource busTimer_;
};

}  // namespace nsfd::daemon
