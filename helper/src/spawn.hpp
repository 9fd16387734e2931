// SPDX-License-Identifier: LGPL-2.1-or-later
// nsfd-helper's Spawn (protocol.hpp, SpawnHeader): internal to the helper.
#pragma once

namespace nsfd::helper {

// Serves the one Spawn request waiting on `connection`: runs the command,
// answers Started then Exited (or Failed), and kills everything the command
// started when it ends or nsfdd hangs up. Returns the helper's exit code.
int serveSpawn(int connection);

}  // namespace nsfd::helper
