// SPDX-License-Identifier: LGPL-2.1-or-later
#pragma once

#include <systemd/sd-event.h>

#include <memory>

namespace nsfd::daemon::varlink {

struct EventSourceDeleter {
    void operator()(sd_event_source* source) const noexcept {
        sd_event_source_disable_unref(source);
    }
};
using EventSource = std::unique_ptr<sd_event_source, EventSourceDeleter>;

}  // namespace nsfd::daemon::varlink
