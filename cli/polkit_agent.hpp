// SPDX-License-Identifier: LGPL-2.1-or-later
// A polkit text authentication agent (pkttyagent) for nsfdctl's own process,
// as systemctl starts one: it asks for the password on the terminal when
// polkit wants the user to authenticate for a call nsfdctl makes.
#pragma once

#include <sys/types.h>

namespace nsfd::cli {

class PolkitAgent {
  public:
    // Starts `pkttyagent --notify-fd FD --process PID` and waits, at most
    // 10 s, until it is registered with polkitd. PID is ours: polkitd asks
    // this agent for nsfdctl's calls only, and before any agent of the user's
    // session (a desktop's), so the prompt is on nsfdctl's terminal. (Not
    // --fallback, as systemctl starts it: polkitd uses a fallback agent only
    // for a subject in a logind session, which ssh without pam_systemd, su
    // and containers lack.) Returns an agent that is not running() if
    // /usr/bin/pkttyagent cannot be executed (polkitd is not installed).
    // Throws std::system_error if pipe2() or fork() fails.
    static PolkitAgent start();

    PolkitAgent(PolkitAgent&& other) noexcept : pid_(other.pid_) { other.pid_ = -1; }
    PolkitAgent& operator=(PolkitAgent&&) = delete;
    PolkitAgent(const PolkitAgent&) = delete;
    PolkitAgent& operator=(const PolkitAgent&) = delete;
    // Stops it (SIGTERM) and reaps it.
    ~PolkitAgent();

    bool running() const noexcept { return pid_ > 0; }

  private:
    explicit PolkitAgent(pid_t pid) : pid_(pid) {}
    pid_t pid_;
};

}  // namespace nsfd::cli
