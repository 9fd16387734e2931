// SPDX-License-Identifier: LGPL-2.1-or-later
// A real polkitd (Debian's) on the tests' private bus.
#pragma once

#include <sys/types.h>

#include <string>

namespace nsfd::test {

// polkitd as our child, on the bus at `busAddress`, in a mount namespace of
// its own: there the test's rules file is the only one (over /etc/polkit-1/rules.d,
// with /usr/share/polkit-1/rules.d emptied) and the project's org.nsfd1.policy
// the only action file (over /usr/share/polkit-1/actions). Nothing of the
// machine's polkit configuration applies to the tests or is changed by them.
// The bus's configuration must let user polkitd own org.freedesktop.PolicyKit1
// (system-bus.conf.in includes polkitd's own policy file).
class TestPolkit {
  public:
    // Whether polkitd is installed (tests skip without it).
    static bool installed();

    // Starts polkitd and waits until it owns org.freedesktop.PolicyKit1.
    // `rules`: the text of its one rules file ("" for none: the actions'
    // defaults decide). `verbose`: without --no-debug, with which polkitd
    // sends its stdout and stderr to /dev/null, so that log() has what the
    // rules polkit.log(). Throws std::runtime_error if it does not come up.
    explicit TestPolkit(const std::string& busAddress, const std::string& rules = "",
                        bool verbose = false);
    // Stops it (even a paused one), reaps it and removes its files.
    ~TestPolkit();
    TestPolkit(const TestPolkit&) = delete;
    TestPolkit& operator=(const TestPolkit&) = delete;

    pid_t pid() const noexcept { return pid_; }
    // SIGSTOP: it keeps its name and its connection, and answers nothing.
    void pause();
    // SIGCONT.
    void resume();
    // What it wrote to stdout and stderr.
    std::string log() const;

  private:
    std::string dir_;
    pid_t pid_ = -1;
};

}  // namespace nsfd::test
