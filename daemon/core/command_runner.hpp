// SPDX-License-Identifier: LGPL-2.1-or-later
// nsfdd's side of a brokered run (Spawn): a command run by nsfd-helper in a
// target's net, uts and ipc namespaces as exactly the caller, in the caller's
// own mount namespace, root and working directory. One helper connection per
// run: under systemd a fresh nsfd-run@.service instance (its own cgroup, its
// limits), by hand a helper nsfdd starts. Closing that connection ends the run:
// the helper SIGKILLs everything the command started.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "caller.hpp"
#include "event_loop.hpp"
#include "nsfd/contract.hpp"
#include "nsfd/ns.hpp"
#include "nsfd/unique_fd.hpp"

namespace nsfd::daemon {

// What a caller asked to run; the fds are the caller's, passed with the call.
struct SpawnSpec {
    std::vector<NsType> namespaces;  // among net, uts, ipc; each once
    std::vector<std::string> argv;   // argv[0] searched in the environment's PATH
    std::vector<std::string> environment;
    UniqueFd stdinFd, stdoutFd, stderrFd;
    UniqueFd workingDirectory;
};

class CommandRunner final {
  public:
    // Called on the loop: `started` once the command runs (its pid in nsfdd's
    // pid namespace, a pidfd of it); then `exited` with its wait status. Or
    // `failed` alone, with a ServiceError, at any point (after `started`: the
    // helper died, the command with it). Nothing is called after cancel().
    struct Events {
        std::function<void(pid_t pid, UniqueFd pidfd)> started;
        std::function<void(int waitStatus)> exited;
        std::function<void(std::exception_ptr error)> failed;
    };

    // Runs a uid may have at once; more are LimitExceeded.
    static constexpr std::size_t kMaxRunsPerUid = spawn_limit::kRunsPerUid;

    CommandRunner(EventLoop& loop, std::string program);
    // Ends every run (their helpers kill their commands) and reaps the helpers it started.
    ~CommandRunner();
    CommandRunner(const CommandRunner&) = delete;
    CommandRunner& operator=(const CommandRunner&) = delete;

    // Starts `spec` in `targetNamespaces` (one fd per spec.namespaces entry,
    // in order) as `caller`, with `callerMount` (the caller's mount namespace)
    // and `callerRoot` (its root directory). Returns the run's handle for
    // cancel(). Throws ServiceError before anything runs: LimitExceeded (the
    // caller's uid has kMaxRunsPerUid runs), Failed (no helper to reach).
    std::uint64_t spawn(const Caller& caller, std::vector<NsFd> targetNamespaces, NsFd callerMount,
                        UniqueFd callerRoot, SpawnSpec spec, std::string what, Events events);
    // The caller hung up: ends the run (the helper kills the command). No-op
    // for a run that ended already.
    void cancel(std::uint64_t run) noexcept;

    std::size_t runsOf(uid_t uid) const;
    std::size_t runs() const noexcept { return runs_.size(); }

  private:
    struct Run {
        CommandRunner* owner = nullptr;
        std::uint64_t id = 0;
        uid_t uid = 0;
        std::string what;
        UniqueFd connection;
        pid_t helper = 0;  // started by nsfdd: reaped when the run ends
        EventSource io;
        Events events;
        bool started = false;
    };

    // A helper nsfdd started whose run ended: reaped when its pidfd says it exited.
    struct Exiting {
        CommandRunner* owner = nullptr;
        pid_t pid = 0;
        UniqueFd pidfd;
        EventSource io;
    };

    void onReadable(Run& run);
    // Drops the run: closes its connection (the helper ends the command), reaps its helper.
    void finish(std::uint64_t id) noexcept;
    void reapLater(pid_t helper) noexcept;
    static int onIo(sd_event_source* source, int fd, uint32_t revents, void* userdata);
    static int onHelperExit(sd_event_source* source, int fd, uint32_t revents, void* userdata);

    EventLoop& loop_;
    std::string program_;
    std::map<std::uint64_t, std::unique_ptr<Run>> runs_;
    std::uint64_t nextRun_ = 1;
    std::map<pid_t, std::unique_ptr<Exiting>> exiting_;
};

}  // namespace nsfd::daemon
