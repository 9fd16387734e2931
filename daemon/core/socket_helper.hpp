// SPDX-License-Identifier: LGPL-2.1-or-later
// nsfdd's side of nsfd-helper (helper/): the privileged helper that starts
// socket workers, each a child inside one target's network namespace as
// exactly one caller. nsfdd keeps none of that privilege: under systemd it
// connects to nsfd-helper.socket; run by hand as root (holding CAP_SYS_ADMIN,
// CAP_SETUID, CAP_SETGID, CAP_SETPCAP, CAP_SYS_CHROOT and CAP_KILL: what
// canStartHelper() checks, for runs too), it starts the helper itself over a
// socketpair. A worker is kept for its (network namespace, caller identity)
// while it is used, and nsfdd asks it directly: one round trip per socket.
// Everything runs on the loop, never blocking it; the death or silence of the
// helper or of a worker fails the calls it holds with a named error.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <list>
#include <string>
#include <vector>

#include "authorizer.hpp"
#include "caller.hpp"
#include "event_loop.hpp"
#include "nsfd/ns.hpp"
#include "nsfd/unique_fd.hpp"

namespace nsfd::daemon {

class SocketHelper final {
  public:
    // The socket made, or why not (a ServiceError: SocketFailed with the
    // errno of socket(2), Failed for the helper or the worker, LimitExceeded).
    // Called once, on the loop.
    using Done = std::function<void(UniqueFd socket, std::exception_ptr error)>;

    // How long the helper may take to start a worker before it counts as hung.
    static constexpr std::chrono::seconds kTimeout{10};
    // How long a worker may take for one socket (socket(2) does not block): one
    // its caller stopped (it runs as that caller) is let go after this.
    static constexpr std::chrono::milliseconds kWorkerTimeout{1000};
    // A worker is let go after this long without a call.
    static constexpr std::chrono::seconds kWorkerIdle{3};
    // Workers kept at most (one fd in nsfdd each); past it the least recently
    // used idle one goes, and with none idle the call is LimitExceeded.
    static constexpr std::size_t kMaxWorkers = 64;
    // Calls waiting for the helper or a worker at most; more are LimitExceeded.
    static constexpr std::size_t kMaxQueued = 256;

    // `program`: the helper to start when nsfdd may start it itself.
    SocketHelper(EventLoop& loop, std::string program);
    // Lets every worker go, closes the connection, kills and reaps a helper it
    // started. The calls still waiting get no answer: their endpoints are gone.
    ~SocketHelper();
    SocketHelper(const SocketHelper&) = delete;
    SocketHelper& operator=(const SocketHelper&) = delete;

    // Asks for socket(spec) in `netns` as `caller` (uid, gid, groups).
    // `what` ("open ... in the net namespace of pid 4711") prefixes errors.
    // Throws ServiceError (Failed: no helper to reach, or `netns` cannot be
    // read; LimitExceeded: too many calls waiting, too many groups, every
    // worker busy) before anything is queued; later failures go to `done`.
    void openSocket(NsFd netns, const Caller& caller, const SocketSpec& spec, std::string what,
                    Done done);

    // The helper nsfdd started and talks to now; 0 if none (or systemd's).
    pid_t startedPid() const noexcept { return started_; }
    // Workers kept now, starting ones included.
    std::size_t workerCount() const noexcept { return workers_.size(); }

    // Whether this process holds what the helper needs, so may start it.
    static bool canStartHelper() noexcept;

  private:
    struct Call {
        SocketSpec spec;
        std::string what;
        Done done;
        bool retried = false;  // asked again of a new worker once its worker ended
    };
    // A worker, or one the helper is starting (no connection yet).
    struct Worker {
        dev_t dev = 0;  // the network namespace's nsfs inode: alive while the worker is in it
        ino_t ino = 0;
        uid_t uid = 0;
        gid_t gid = 0;
        std::vector<gid_t> groups;
        UniqueFd netns;  // to start it, and a new one if it ends with calls unanswered
        UniqueFd connection;
        EventSource io;
        std::deque<Call> answering;  // sent, answered in order
        std::deque<Call> held;       // asked while it starts; sent once it is there
        std::uint64_t lastUsed = 0;  // CLOCK_MONOTONIC, us
        std::uint64_t sentAt = 0;    // when answering.front() was sent
    };

    // A worker for the identity and namespace of `like`, its first answer for
    // `first`, then `rest` sent once it is there. If the helper cannot be
    // asked, the worker is let go at once, failing them all.
    void startWorker(Worker&& like, Call first, std::deque<Call> rest = {});
    void connect();
    void sendNextStart();
    void onHelperReply();
    void onWorkerReply(Worker& worker);
    // Sends one socket request to a worker that is there, taking `call`;
    // false, leaving `call`, if it has gone.
    bool ask(Worker& worker, Call& call);
    // Lets `worker` go, failing what it holds with `why` (finish()).
    void drop(Worker& worker, const std::string& why);
    // Answers `call` with `error` on the next loop iteration, never from
    // inside: a door's answer may run the caller's next call at once, which may
    // start or let go workers while this object is walking its lists.
    void finish(Call call, std::exception_ptr error);
    void armFinish();
    void finishFailed();
    // `worker` ended: what it holds is asked once of a new one, then fails.
    void replace(Worker& worker, const std::string& why);
    // Fails every start and every worker with `why`, drops the connection, reaps.
    void fail(const std::string& why) noexcept;
    void disconnect() noexcept;
    void sweep();
    void armSweep();
    std::uint64_t now() const;
    static int onHelperIo(sd_event_source* source, int fd, uint32_t revents, void* userdata);
    static int onWorkerIo(sd_event_source* source, int fd, uint32_t revents, void* userdata);
    static int onSweep(sd_event_source* source, uint64_t usec, void* userdata);
    static int onFinish(sd_event_source* source, void* userdata);

    EventLoop& loop_;
    std::string program_;
    UniqueFd connection_;
    pid_t started_ = 0;
    EventSource io_;
    EventSource sweep_;
    EventSource finish_;
    std::deque<std::pair<Call, std::exception_ptr>> failed_;  // to answer (finish())
    std::list<Worker> workers_;   // stable addresses: the event sources point at them
    std::deque<Worker*> starts_;  // to start; front in flight when startInFlight_
    bool startInFlight_ = false;
    std::uint64_t startSentAt_ = 0;
    std::size_t waiting_ = 0;  // calls held, answering or starting, in all
};

// Where nsfd-helper is for the nsfdd binary at `self` (readlink of
// /proc/self/exe): the build tree's helper for the build tree's nsfdd, the
// installed one (libexec) otherwise.
std::string socketHelperProgram(const std::string& self);

}  // namespace nsfd::daemon
