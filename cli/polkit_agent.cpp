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
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) < 0) {
        throw std::system_error(errno, std::system_category(), "pipe2");
    }
    UniqueFd readEnd(fds[0]), writeEnd(fds[1]);
    std::string self = std::to_string(::getpid());
    std::string notifyFd = std::to_string(writeEnd.get());
    pid_t pid = ::fork();
    if (pid < 0) {
        throw std::system_error(errno, std::system_category(), "fork");
    }
    if (pid == 0) {
        // Only the notify fd crosses the exec; the agent reads the terminal on stdin.
        ::fcntl(writeEnd.get(), F_SETFD, 0);
        ::execl(kAgent, kAgent, "--notify-fd", notifyFd.c_str(), "--process", self.c_str(),
                static_cast<char*>(nullptr));
        ::_exit(127);
    }
    writeEnd.reset();
    // It closes the notify fd once registered; it also closes when it exits.
    pollfd p{readEnd.get(), POLLIN, 0};
    while (::poll(&p, 1, kRegisterTimeoutMs) < 0 && errno == EINTR) {
    }
    PolkitAgent agent(pid);
    int status = 0;
    if (::waitpid(pid, &status, WNOHANG) == pid) {
        agent.pid_ = -1;  // missing (127) or failed: no agent
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
