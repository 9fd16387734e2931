// SPDX-License-Identifier: LGPL-2.1-or-later
// nsfdd's side of nsfd-helper (helper/): the privileged worker that makes a
// socket inside a target's network namespace as exactly the caller. nsfdd
// keeps none of that privilege: under systemd it connects to
// nsfd-helper.socket; run by hand as root (holding CAP_SYS_ADMIN, CAP_SETUID,
// CAP_SETGID and CAP_SETPCAP), it starts the helper itself over a socketpair.
// Requests go one at a time, on the loop, never blocking it; the helper's
// death or silence fails the calls in flight with a named error.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <deque>
#include <exception>
#include <functional>
#include <string>

#include "authorizer.hpp"
#include "caller.hpp"
#include "event_loop.hpp"
#include "nsfd/ns.hpp"
#include "nsfd/unique_fd.hpp"

namespace nsfd::daemon {

class SocketHelper final {
  public:
    // The socket made, or why not (a ServiceError: SocketFailed with the
    // errno of socket(2), Failed for the helper). Called once, on the loop.
    using Done = std::function<void(UniqueFd socket, std::exception_ptr error)>;

    // How long the helper may take for one request before it counts as hung.
    static constexpr std::chrono::seconds kTimeout{10};
    // Requests waiting for the helper at most; more are LimitExceeded.
    static constexpr std::size_t kMaxQueued = 256;

    // `program`: the helper to start when nsfdd may start it itself.
    SocketHelper(EventLoop& loop, std::string program);
    // Fails what is queued, closes the connection, kills and reaps a helper it started.
    ~SocketHelper();
    SocketHelper(const SocketHelper&) = delete;
    SocketHelper& operator=(const SocketHelper&) = delete;

    // Asks for socket(spec) in `netns` as `caller` (uid, gid, groups).
    // `what` ("open ... in the net namespace of pid 4711") prefixes errors.
    // Throws ServiceError (Failed: no helper to reach; LimitExceeded: too many
    // queued) before anything is queued; later failures go to `done`.
    void openSocket(NsFd netns, const Caller& caller, const SocketSpec& spec, std::string what,
                    Done done);

    // The helper nsfdd started and talks to now; 0 if none (or systemd's).
    pid_t startedPid() const noexcept { return started_; }

    // Whether this process holds what the helper needs, so may start it.
    static bool canStartHelper() noexcept;

  private:
    struct Pending {
        std::string message;  // the request, groups and all
        UniqueFd netns;       // until sent
        std::string what;
        Done done;
    };

    void connect();
    void sendNext();
    void onReply();
    // Fails every queued request with `why`, drops the connection, reaps.
    void fail(const std::string& why) noexcept;
    void disconnect() noexcept;
    static int onIo(sd_event_source* source, int fd, uint32_t revents, void* userdata);
    static int onTimeout(sd_event_source* source, uint64_t usec, void* userdata);

    EventLoop& loop_;
    std::string program_;
    UniqueFd connection_;
    pid_t started_ = 0;
    EventSource io_;
    EventSource timer_;
    std::deque<Pending> queue_;  // front: in flight when inFlight_
    bool inFlight_ = false;
};

// Where nsfd-helper is for the nsfdd binary at `self` (readlink of
// /proc/self/exe): the build tree's helper for the build tree's nsfdd, the
// installed one (libexec) otherwise.
std::string socketHelperProgram(const std::string& self);

}  // namespace nsfd::daemon
