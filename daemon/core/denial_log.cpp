// SPDX-License-Identifier: LGPL-2.1-or-later
#include "denial_log.hpp"

#include <algorithm>

namespace nsfd::daemon {

std::string withThousands(std::size_t n) {
    std::string digits = std::to_string(n);
    std::string out;
    for (std::size_t i = 0; i < digits.size(); ++i) {
        if (i > 0 && (digits.size() - i) % 3 == 0) {
            out += ',';
        }
        out += digits[i];
    }
    return out;
}

std::string DenialLog::summary(uid_t uid, const Window& window, Clock::time_point now) const {
    auto seconds = std::chrono::duration_cast<std::chrono::seconds>(
                       std::min<Clock::duration>(now - window.start, limits_.window))
                       .count();
    return "... and " + withThousands(window.left) + " more denial" +
           (window.left == 1 ? "" : "s") +
           (uid == kOtherUids ? std::string(" of other uids") : " of uid " + std::to_string(uid)) +
           (uid != kOtherUids && window.ofUserNamespaces ? " and the uids of its user namespaces"
                                                         : "") +
           " in the last " + std::to_string(std::max(1L, static_cast<long>(seconds))) + " s";
}

DenialLog::Admission DenialLog::admit(uid_t account, Clock::time_point now,
                                      bool ofItsUserNamespace) {
    Admission admission;
    uid_t uid = account;
    if (windows_.size() >= limits_.uids && windows_.count(uid) == 0) {
        // Many uids at once (subordinate uids of a user namespace, say): sum
        // up the windows that have ended, so that the table stays bounded.
        for (auto it = windows_.begin(); it != windows_.end();) {
            if (now - it->second.start >= limits_.window) {
                if (it->second.left > 0) {
                    admission.summaries.push_back(summary(it->first, it->second, now));
                }
                it = windows_.erase(it);
            } else {
                ++it;
            }
        }
    }
    if (windows_.size() >= limits_.uids && windows_.count(uid) == 0) {
        uid = kOtherUids;  // still full: the rest share one window
    }
    auto [it, added] = windows_.try_emplace(uid, Window{now, 0, 0});
    Window& window = it->second;
    if (!added && now - window.start >= limits_.window) {
        if (window.left > 0) {
            admission.summaries.push_back(summary(uid, window, now));
        }
        window = Window{now, 0, 0};
    }
    window.ofUserNamespaces = window.ofUserNamespaces || ofItsUserNamespace;
    if (window.written < limits_.linesPerWindow) {
        ++window.written;
        admission.write = true;
    } else {
        ++window.left;
    }
    return admission;
}

std::vector<std::string> DenialLog::flush(Clock::time_point now) {
    std::vector<std::string> out;
    for (const auto& [uid, window] : windows_) {
        if (window.left > 0) {
            out.push_back(summary(uid, window, now));
        }
    }
    windows_.clear();
    return out;
}

}  // namespace nsfd::daemon
