// SPDX-License-Identifier: LGPL-2.1-or-later
#pragma once

#include <string>

#include "core/config.hpp"

namespace nsfd::daemon {

// nsfdd's life: the loop, the core, its endpoints; restores what systemd kept,
// takes the bus name, tells systemd READY=1, and runs until SIGTERM/SIGINT
// (returns 0) or a lost bus (1). Serves Varlink on the socket systemd passed
// (FileDescriptorName=varlink) or, if `varlinkPath` is not empty, on a socket it
// binds there. Throws std::system_error if it cannot start.
int serve(const std::string& bus, const std::string& varlinkPath, const Config& config);

}  // namespace nsfd::daemon
