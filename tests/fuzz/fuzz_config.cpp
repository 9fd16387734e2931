// SPDX-License-Identifier: LGPL-2.1-or-later
// libFuzzer: nsfdd.conf parsing. Any input either parses or is refused with a
// ConfigError naming FILE:LINE; anything else (another exception, a crash, a
// sanitizer report) is a bug.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "core/config.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::string_view text(reinterpret_cast<const char*>(data), size);
    try {
        (void)nsfd::daemon::parseConfig(text, "fuzz.conf");
    } catch (const nsfd::daemon::ConfigError& e) {
        if (std::string_view(e.what()).rfind("fuzz.conf", 0) != 0) {
            std::abort();  // every refusal names the file
        }
    }
    return 0;
}
