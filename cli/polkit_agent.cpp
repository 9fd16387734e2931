// SPDX-License-Identifier: LGPL-2.1-or-later
#include "polkit_agent.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <string>
#include <system_error>

#include "nsfd/unique_fd.hpp"

namespace nsfd::cli {

namespace {

constexpr const char* kAgent = "/usr/bin/pkttyagent";
constexpr int kRegisterTimeoutMs = 10'000;

}  // namespace

PolkitAgent PolkitAgent::start() {
    // `notify`: the agent closes it once registered. `execFailed`: closed by a
    // successful execve (close-on-exec), or given its errno if it fails.
    int notify[2], execFailed[2];
    if (::pipe2(notify, O_CLOEXEC) < 0) {
        throw std::system_error(errno, std::system_category(), "pipe2");
    }
    UniqueFd notifyRead(notify[0]), notifyWrite(notify[1]);
    if (::pipe2(execFailed, O_CLOEXEC) < 0) {
        throw std::system_error(errno, std::system_category(), "pipe2");
    }
    UniqueFd execFailedRead(execFailed[0]), execFailedWrite(execFailed[1]);
    std::string self = std::to_string(::getpid());
    std::string notifyFd = std::to_string(notifyWrite.get());
    pid_t pid = ::fork();
    if (pid < 0) {
        throw std::system_error(errno, std::system_category(), "fork");
    }
    if (pid == 0) {
        // Only the notify fd crosses the exec; the agent reads the terminal on stdin.
        ::fcntl(notifyWrite.get(), F_SETFD, 0);
        ::execl(kAgent, kAgent, "--notify-fd", notifyFd.c_str(), "--process", self.c_str(),
                static_cast<char*>(nullptr));
        int error = errno;
        (void)!::write(execFailedWrite.get(), &error, sizeof(error));
        ::_exit(127);
    }
    notifyWrite.reset();
    execFailedWrite.reset();
    PolkitAgent agent(pid);
    int error = 0;
    ssize_t n;
    while ((n = ::read(execFailedRead.get(), &error, sizeof(error))) < 0 && errno == EINTR) {
    }
    if (n > 0) {
        ::waitpid(pid, nullptr, 0);
        agent.pid_ = -1;  // not installed, or not executable
        return agent;
    }
    // Registered, or gone (an agent that exits closes it too).
    pollfd p{notifyRead.get(), POLLIN, 0};
    while (::poll(&p, 1, kRegisterTimeoutMs) < 0 && errno == EINTR) {
    }
    return agent;
}

PolkitAgent::~PolkitAgent() {
    if (pid_ > 0) {
        ::kill(pid_, SIGTERM);
        while (::waitpid(pid_, nullptr, 0) < 0 && errno == EINTR) {
        }
    }
}

}  // namespace nsfd::cli
