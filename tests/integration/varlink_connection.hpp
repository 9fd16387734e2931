// SPDX-License-Identifier: LGPL-2.1-or-later
// What the Varlink tests share: a raw connection to nsfdd that sends calls and
// reads replies with their fds, a line reader for a child's output, and the
// children of a process (nsfdd's helpers, a helper's workers).
#pragma once

#include <sys/types.h>

#include <nlohmann/json.hpp>

#include <chrono>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "child.hpp"
#include "nsfd/unique_fd.hpp"

namespace nsfd::test {

// A Varlink connection to nsfdd's socket, opened by the calling thread: its
// credentials (runAsUser's) are what SO_PEERCRED gives nsfdd.
class VarlinkConnection {
  public:
    // Throws std::system_error if the socket cannot be made or connected.
    explicit VarlinkConnection(const std::string& path);

    int get() const { return fd_.get(); }
    // Closes the connection: nsfdd sees the caller hang up.
    void close() { fd_.reset(); }

    // Sends one call ({"method", "parameters"}, and "more" if asked), `fds`
    // as SCM_RIGHTS with it. Returns false if nsfdd hung up or the send
    // stalled for 30 s (sendAllWithFds).
    [[nodiscard]] bool send(const std::string& method, const nlohmann::json& parameters,
                            const std::vector<int>& fds = {}, bool more = false);

    using Reply = std::pair<nlohmann::json, std::vector<UniqueFd>>;
    // The next reply and the fds that came with it (owned by the caller), or
    // nullopt once nsfdd closed the connection. Throws WaitTimedOut, naming
    // the connection's path, if nothing comes within `timeout`.
    std::optional<Reply> next(std::chrono::milliseconds timeout = kWaitLimit);
    // next(), but throws std::runtime_error if nsfdd hung up.
    Reply receive(std::chrono::milliseconds timeout = kWaitLimit);
    // send() then receive().
    Reply call(const std::string& method, const nlohmann::json& parameters,
               std::chrono::milliseconds timeout = kWaitLimit);

  private:
    std::string path_;
    UniqueFd fd_;
    std::string buffer_;
};

// The last part of a Varlink error's name ("AccessDenied"), "" for a reply.
std::string errorOf(const nlohmann::json& reply);

// Lines a child writes to a pipe, read with a timeout.
class LineReader {
  public:
    LineReader() = default;
    explicit LineReader(UniqueFd readEnd) : fd_(std::move(readEnd)) {}

    // The next line without its newline; nullopt after `timeout` or at the
    // pipe's end.
    std::optional<std::string> readLine(std::chrono::milliseconds timeout);
    // What was read and not yet given as a line.
    std::string rest() { return std::exchange(buffer_, {}); }

  private:
    UniqueFd fd_;
    std::string buffer_;
};

// The pids of the children of `pid`, of all its threads (from
// /proc/PID/task/TID/children); empty if it is gone.
std::vector<pid_t> childrenOf(pid_t pid);

}  // namespace nsfd::test
