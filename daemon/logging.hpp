// SPDX-License-Identifier: LGPL-2.1-or-later
#pragma once

#include <string>

namespace nsfd::daemon {

// Logs to the journal when systemd started us (JOURNAL_STREAM is set), to
// stderr otherwise. Throws std::invalid_argument for an unknown level.
void setUpLogging(const std::string& level);

}  // namespace nsfd::daemon
