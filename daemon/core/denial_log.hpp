// SPDX-License-Identifier: LGPL-2.1-or-later
// Denials are logged, not flooded: each account (Caller::account(), a user
// with every uid it owns through user namespaces) gets a few warning lines per
// window, and one line then counts what was left out ("... and 34,000 more
// denials of uid 999 in the last 10 s"). A user who floods nsfdd with calls it
// may not make would otherwise write hundreds of thousands of lines (issue 22),
// and one whose container runs as many subordinate uids would get a window
// for each.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <string>
#include <unordered_map>
#include <vector>

namespace nsfd::daemon {

class DenialLog final {
  public:
    using Clock = std::chrono::steady_clock;

    struct Limits {
        std::chrono::seconds window{10};
        std::size_t linesPerWindow = 10;  // per account
        std::size_t uids = 4096;          // accounts with a window of their own
    };

    struct Admission {
        bool write = false;                  // log this denial
        std::vector<std::string> summaries;  // lines to log first (windows that ended)
    };

    explicit DenialLog(Limits limits) : limits_(limits) {}
    DenialLog() : DenialLog(Limits()) {}

    // One denial at `now` (monotonic) of a caller whose account is `account`
    // (Caller::account()); `ofItsUserNamespace`: the caller ran as a uid of a
    // user namespace the account owns, not as the account's uid itself, which
    // the summary then says. Whether to write it, and the summaries of
    // windows that have ended with denials left out.
    Admission admit(uid_t account, Clock::time_point now, bool ofItsUserNamespace = false);
    // The summaries of every window with denials left out, ended or not (at exit).
    std::vector<std::string> flush(Clock::time_point now);

  private:
    struct Window {
        Clock::time_point start;
        std::size_t written = 0;
        std::size_t left = 0;           // not written
        bool ofUserNamespaces = false;  // some were of uids the account owns through one
    };
    // Where the uids beyond Limits::uids are counted together.
    static constexpr uid_t kOtherUids = static_cast<uid_t>(-1);
    std::string summary(uid_t uid, const Window& window, Clock::time_point now) const;

    Limits limits_;
    std::unordered_map<uid_t, Window> windows_;
};

// 34000 -> "34,000".
std::string withThousands(std::size_t n);

}  // namespace nsfd::daemon
