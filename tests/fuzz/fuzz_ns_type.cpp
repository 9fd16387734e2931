// SPDX-License-Identifier: LGPL-2.1-or-later
// libFuzzer: namespace type names. A name parses exactly when it is one of the
// ten, and parses to the type whose name it is.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "nsfd/ns.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::string_view name(reinterpret_cast<const char*>(data), size);
    std::optional<nsfd::NsType> type = nsfd::parseNsType(name);
    bool known = false;
    for (nsfd::NsType each : nsfd::allNsTypes()) {
        known = known || nsfd::toString(each) == name;
    }
    if (type.has_value() != known || (type && nsfd::toString(*type) != name)) {
        std::abort();
    }
    return 0;
}
