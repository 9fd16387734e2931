// SPDX-License-Identifier: LGPL-2.1-or-later
// nsfd-helper's Spawn: one command per connection, run as exactly the caller
// in the target's namespaces (net, uts, ipc) and the caller's own mount
// namespace, root and working directory. The helper is its parent and a
// child subreaper: whatever the command starts stays below the helper, so that
// when the run ends (the command exited, nsfdd hung up, or the caller went and
// nsfdd with it closed the connection) everything left is SIGKILLed. Under
// nsfd-run@.service the unit is the run's cgroup; by hand the helper makes
// the run one of its own (run_cgroup.hpp), with the unit's limits.
#include "spawn.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "nsfd-helper/become.hpp"
#include "nsfd-helper/protocol.hpp"
#include "run_cgroup.hpp"

namespace nsfd::helper {

namespace {

struct SpawnRequest {
    SpawnHeader header;
    char rest[kMaxGroups * sizeof(std::uint32_t) + kMaxSpawnPayload];
};

int reply(int connection, const SpawnReply& answer, int fd = -1) {
    return sendMessage(connection, &answer, sizeof(answer), fd);
}

int fail(int connection, Step step, int error) {
    SpawnReply answer;
    answer.kind = SpawnReply::Kind::Failed;
    answer.step = step;
    answer.error = error;
    return reply(connection, answer);
}

void closeAll(const int* fds, std::size_t count) {
    for (std::size_t i = 0; i < count; ++i) {
        ::close(fds[i]);
    }
}

// The pids of our children now (CONFIG_PROC_CHILDREN); the helper has one thread.
std::vector<pid_t> children() {
    std::vector<pid_t> out;
    std::string path = "/proc/self/task/" + std::to_string(::getpid()) + "/children";
    FILE* file = std::fopen(path.c_str(), "re");
    if (file == nullptr) {
        return out;
    }
    for (int pid = 0; std::fscanf(file, "%d", &pid) == 1;) {
        out.push_back(pid);
    }
    (void)std::fclose(file);  // read-only: nothing to lose
    return out;
}

// SIGKILL to every process below the helper, until none is left: each one
// killed hands its own children to the helper (a subreaper), which kills them
// in the next round. Reaps them all.
void killEverything() {
    for (;;) {
        std::vector<pid_t> left = children();
        if (left.empty()) {
            break;
        }
        for (pid_t pid : left) {
            ::kill(pid, SIGKILL);
        }
        for (pid_t pid : left) {
            int status = 0;
            while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
            }
        }
    }
}

// How often the command's orphans that have exited are reaped while it runs
// (ms): they count against the run's task limit until they are.
constexpr int kReapPeriodMs = 200;

// Reaps the command's orphans that have exited (the helper is their
// subreaper), leaving the command itself to its pidfd's turn.
void reapOrphans(pid_t command) {
    for (;;) {
        siginfo_t info{};
        if (::waitid(P_ALL, 0, &info, WEXITED | WNOHANG | WNOWAIT) < 0 || info.si_pid == 0 ||
            info.si_pid == command) {
            return;
        }
        while (::waitpid(info.si_pid, nullptr, WNOHANG) < 0 && errno == EINTR) {
        }
    }
}

// execvpe(3) with `envp`'s PATH (the caller's), as a shell searches; in the
// child, after it became the caller. Never returns: 127 if nothing was
// found, 126 if something was found but could not be run.
[[noreturn]] void execCommand(char* const* argv, char* const* envp) {
    const char* name = argv[0];
    int error = ENOENT;
    if (std::strchr(name, '/') != nullptr) {
        ::execve(name, argv, envp);
        error = errno;
    } else {
        const char* path = "/usr/local/bin:/usr/bin:/bin";
        for (char* const* e = envp; *e != nullptr; ++e) {
            if (std::strncmp(*e, "PATH=", 5) == 0) {
                path = *e + 5;
            }
        }
        bool found = false;
        for (const char* start = path;; ++start) {
            const char* end = ::strchrnul(start, ':');
            std::string candidate(start, static_cast<std::size_t>(end - start));
            candidate = (candidate.empty() ? "." : candidate) + "/" + name;
            ::execve(candidate.c_str(), argv, envp);
            // As a shell: a directory the caller cannot search (EACCES, the
            // file not there for it) is passed over; a file found but not
            // executable is remembered (126) while the search goes on.
            int tried = errno;
            if (tried == EACCES && ::access(candidate.c_str(), F_OK) < 0) {
                tried = ENOENT;
            }
            errno = tried;
            if (errno != ENOENT && errno != ENOTDIR) {
                found = true;
                error = errno;
                if (errno != EACCES) {
                    break;
                }
            }
            if (*end == '\0') {
                break;
            }
            start = end;
        }
        if (!found) {
            error = ENOENT;
        }
    }
    (void)std::fprintf(stderr, "nsfd: failed to run %s: %s\n", name, std::strerror(error));
    ::_exit(error == ENOENT ? 127 : 126);
}

// The command's side of the fork: never returns. Reports a failure before
// exec on `report` (close-on-exec: it closes unread when exec succeeds).
[[noreturn]] void child(const SpawnRequest& request, const int* fds, char* const* argv,
                        char* const* envp, int report, pid_t helper, const RunCgroup* cgroup) {
    const SpawnHeader& h = request.header;
    auto failed = [report](Step step) {
        SpawnReply answer;
        answer.kind = SpawnReply::Kind::Failed;
        answer.step = step;
        answer.error = errno;
        (void)!::write(report, &answer, sizeof(answer));
        ::_exit(1);
    };
    // First, while root: all the command starts is born in the run's cgroup.
    if (cgroup != nullptr && (errno = cgroup->join()) != 0) {
        failed(Step::JoinCgroup);
    }
    sigset_t none;
    ::sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    (void)::signal(SIGPIPE, SIG_DFL);
    NamespaceToEnter namespaces[kMaxSpawnNamespaces + 1];
    std::uint32_t n = 0;
    for (; n < h.namespaceCount; ++n) {
        namespaces[n] = {fds[n], h.namespaceTypes[n]};
    }
    const int* fixed = fds + h.namespaceCount;  // mnt, root, cwd, stdin, stdout, stderr
    namespaces[n++] = {fixed[0], CLONE_NEWNS};
    Identity identity{h.uid, h.gid, {reinterpret_cast<const gid_t*>(request.rest), h.groupCount}};
    Step step = enterAndBecome({namespaces, n}, identity, fixed[1]);
    if (step != Step::None) {
        failed(step);
    }
    // As the caller: the kernel decides whether it may be there.
    if (::fchdir(fixed[2]) < 0) {
        failed(Step::ChangeDirectory);
    }
    // Dies with the helper. Set after the last credential change, which clears it.
    if (::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0) {
        failed(Step::DeathSignal);
    }
    if (::getppid() != helper) {
        errno = ESRCH;
        failed(Step::DeathSignal);
    }
    for (int i = 0; i < 3; ++i) {
        if (::dup2(fixed[3 + i], i) < 0) {
            failed(Step::Stdio);
        }
    }
    // Nothing of the helper's but the report and the stdio goes past exec.
    ::syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC);
    execCommand(argv, envp);
}

// The strings after the groups: exactly argc + envc, each NUL-terminated.
bool splitStrings(SpawnRequest& request, std::vector<char*>& argv, std::vector<char*>& envp) {
    const SpawnHeader& h = request.header;
    char* p = request.rest + h.groupCount * sizeof(std::uint32_t);
    char* end = p + h.payloadBytes;
    for (std::uint32_t i = 0; i < h.argc + h.envc; ++i) {
        char* nul = static_cast<char*>(std::memchr(p, '\0', static_cast<std::size_t>(end - p)));
        if (nul == nullptr) {
            return false;
        }
        (i < h.argc ? argv : envp).push_back(p);
        p = nul + 1;
    }
    argv.push_back(nullptr);
    envp.push_back(nullptr);
    return p == end && argv[0][0] != '\0';
}

}  // namespace

int serveSpawn(int connection) {
    static SpawnRequest request;
    int fds[kMaxSpawnFds];
    std::size_t count = 0;
    ssize_t n =
        receiveMessageFds(connection, &request, sizeof(request), fds, kMaxSpawnFds, &count, 0);
    if (n <= 0) {
        return n == -EMSGSIZE && fail(connection, Step::Request, EINVAL) == 0 ? 0 : 1;
    }
    const SpawnHeader& h = request.header;
    auto size = static_cast<std::size_t>(n);
    std::vector<char*> argv, envp;
    bool valid = size >= sizeof(h) && h.magic == kMagic && h.operation == Operation::Spawn &&
                 h.groupCount <= kMaxGroups && h.namespaceCount <= kMaxSpawnNamespaces &&
                 h.argc >= 1 && h.argc <= kMaxSpawnStrings &&
                 h.envc <= kMaxSpawnStrings - h.argc &&  // no wrap of argc + envc
                 h.payloadBytes <= kMaxSpawnPayload &&
                 size == sizeof(h) + h.groupCount * sizeof(std::uint32_t) + h.payloadBytes &&
                 count == h.namespaceCount + kSpawnFixedFds;
    if (valid) {
        argv.reserve(h.argc + 1);
        envp.reserve(h.envc + 1);
        valid = splitStrings(request, argv, envp);
    }
    if (!valid) {
        closeAll(fds, count);
        return fail(connection, Step::Request,
                    count < h.namespaceCount + kSpawnFixedFds && size >= sizeof(h) ? EBADF
                                                                                   : EINVAL) == 0
                   ? 0
                   : 1;
    }
    // Orphans of the command come to the helper, not to PID 1: they are its to kill.
    if (::prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) < 0) {
        int error = errno;
        closeAll(fds, count);
        return fail(connection, Step::Fork, error) == 0 ? 0 : 1;
    }
    int report[2];
    if (::pipe2(report, O_CLOEXEC) < 0) {
        int error = errno;
        closeAll(fds, count);
        return fail(connection, Step::Fork, error) == 0 ? 0 : 1;
    }
    pid_t helper = ::getpid();
    // By hand the run gets a cgroup of its own here; under nsfd-run@.service
    // it is the unit's.
    std::optional<RunCgroup> cgroup;
    if (runCgroupPlacement() == RunCgroupPlacement::OwnCgroup) {
        cgroup.emplace(helper);
        if (!cgroup->missing().empty()) {
            (void)std::fprintf(stderr, "nsfd-helper: %s runs with limits missing: %s.\n", argv[0],
                               cgroup->missing().c_str());
        }
    }
    // Everything the command started is dead and reaped, and its cgroup gone,
    // before nsfdd hears that the run ended.
    auto end = [&cgroup] {
        killEverything();
        if (cgroup) {
            cgroup->remove();
        }
    };
    pid_t pid = ::fork();
    if (pid == 0) {
        ::close(connection);
        ::close(report[0]);
        child(request, fds, argv.data(), envp.data(), report[1], helper,
              cgroup ? &*cgroup : nullptr);
    }
    int forkError = errno;
    ::close(report[1]);
    closeAll(fds, count);  // the command has its own copies
    if (pid < 0) {
        ::close(report[0]);
        return fail(connection, Step::Fork, forkError) == 0 ? 0 : 1;
    }
    // The child reports a failure before exec, or the pipe closes at exec.
    // Meanwhile nsfdd may hang up (its caller gone): the child may hang in
    // exec (a binary on a FUSE mount that never answers), so it is killed then.
    SpawnReply failed;
    ssize_t got = -1;
    for (;;) {
        pollfd pfds[2] = {{report[0], POLLIN, 0}, {connection, POLLIN, 0}};
        if (::poll(pfds, 2, -1) < 0 && errno == EINTR) {
            continue;
        }
        if (pfds[0].revents == 0) {
            ::close(report[0]);
            killEverything();  // nsfdd hung up (or poll failed): the run ends
            return 0;
        }
        do {
            got = ::read(report[0], &failed, sizeof(failed));
        } while (got < 0 && errno == EINTR);
        break;
    }
    ::close(report[0]);
    if (got == static_cast<ssize_t>(sizeof(failed))) {
        end();
        return reply(connection, failed) == 0 ? 0 : 1;
    }
    // Our unreaped child: the pid names it until we wait for it.
    int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
    SpawnReply started;
    started.kind = SpawnReply::Kind::Started;
    started.pid = pid;
    if (pidfd < 0 || reply(connection, started, pidfd) < 0) {
        if (pidfd >= 0) {
            ::close(pidfd);
        }
        end();
        return 1;
    }
    for (;;) {
        pollfd pfds[2] = {{connection, POLLIN, 0}, {pidfd, POLLIN, 0}};
        int ready = ::poll(pfds, 2, kReapPeriodMs);
        if (ready < 0 && errno != EINTR) {
            break;
        }
        reapOrphans(pid);
        if (ready <= 0) {
            continue;
        }
        if (pfds[0].revents != 0) {
            break;  // nsfdd hung up (or broke the protocol): the run ends
        }
        if (pfds[1].revents != 0) {
            int status = 0;
            pid_t r;
            do {
                r = ::waitpid(pid, &status, 0);
            } while (r < 0 && errno == EINTR);
            ::close(pidfd);
            end();
            SpawnReply exited;
            exited.kind = SpawnReply::Kind::Exited;
            exited.pid = pid;
            exited.waitStatus = status;
            return reply(connection, exited) == 0 ? 0 : 1;
        }
    }
    ::close(pidfd);
    end();
    return 0;
}

}  // namespace nsfd::helper
