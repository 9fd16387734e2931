// SPDX-License-Identifier: LGPL-2.1-or-later
// Numbers as users write them for pids, pidfs ids and signals, read alike by
// nsfdctl and nsfdd ("PID:ID", "id:N").
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace nsfd {

// `text` as a number: digits only, no sign, no leading zero (unless it is
// "0"), at most `max`; nullopt otherwise. strtoul and friends also take
// "0x9", " 9", "+9", "-9" (wrapped), "9abc" or octal "011": a pid written so
// would name another process, so this takes none of them.
constexpr std::optional<std::uint64_t> parseCanonicalDecimal(std::string_view text,
                                                             std::uint64_t max) noexcept {
    if (text.empty() || (text.size() > 1 && text[0] == '0')) {
        return std::nullopt;
    }
    std::uint64_t value = 0;
    for (char c : text) {
        if (c < '0' || c > '9') {
            return std::nullopt;
        }
        auto digit = static_cast<std::uint64_t>(c - '0');
        if (value > (max - digit) / 10) {
            return std::nullopt;
        }
        value = value * 10 + digit;
    }
    return value;
}

}  // namespace nsfd
