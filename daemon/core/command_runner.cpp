// SPDX-License-Identifier: LGPL-2.1-or-later
#include "command_runner.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <cerrno>
#include <cstring>

#include "errors.hpp"
#include "helper_connection.hpp"
#include "nsfd-helper/protocol.hpp"

namespace nsfd::daemon {

namespace wire = nsfd::helper;

namespace {

std::string errnoText(int err) {
    return std::string(std::strerror(err)) + " (errno " + std::to_string(err) + ")";
}

std::exception_ptr failure(const std::string& message) {
    return std::make_exception_ptr(ServiceError(ErrorKind::Failed, message));
}

// A helper whose run ended kills what the command started, then exits: wait
// for that (off the loop: nsfdd is stopping), SIGKILL it only if it hangs.
// Killing it at once would leave the command's own children to PID 1.
constexpr int kHelperExitMs = 5000;
void awaitHelper(pid_t helper, int pidfd) noexcept {
    pollfd p{pidfd, POLLIN, 0};
    if (pidfd < 0 || ::poll(&p, 1, kHelperExitMs) != 1) {
        spdlog::warn("nsfd-helper (pid {}) did not end its run within {} ms: killing it", helper,
                     kHelperExitMs);
        ::kill(helper, SIGKILL);
    }
    int status = 0;
    while (::waitpid(helper, &status, 0) < 0 && errno == EINTR) {
    }
}

}  // namespace

CommandRunner::CommandRunner(EventLoop& loop, std::string program)
    : loop_(loop), program_(std::move(program)) {}

CommandRunner::~CommandRunner() {
    std::vector<std::uint64_t> ids;
    for (const auto& [id, run] : runs_) {
        ids.push_back(id);
    }
    for (std::uint64_t id : ids) {
        finish(id);
    }
    // nsfdd is going: wait for its helpers, which end their commands first.
    for (auto& [pid, exiting] : exiting_) {
        awaitHelper(pid, exiting->pidfd.get());
    }
}

std::size_t CommandRunner::runsOf(uid_t uid) const {
    std::size_t count = 0;
    for (const auto& [id, run] : runs_) {
        count += run->uid == uid ? 1 : 0;
    }
    return count;
}

// NOLINTNEXTLINE(performance-unnecessary-value-param): a sink, closed once sent
std::uint64_t CommandRunner::spawn(const Caller& caller, std::vector<NsFd> targetNamespaces,
                                   NsFd callerMount, UniqueFd callerRoot, SpawnSpec spec,
                                   std::string what, Events events) {
    if (std::size_t running = runsOf(caller.uid); running >= kMaxRunsPerUid) {
        throw ServiceError(ErrorKind::LimitExceeded,
                           "Failed to " + what + ": uid " + std::to_string(caller.uid) + " has " +
                               std::to_string(running) +
                               " commands running through nsfdd, its limit");
    }
    if (caller.groups.size() > wire::kMaxGroups) {
        throw ServiceError(ErrorKind::LimitExceeded,
                           "Failed to " + what + ": the caller has " +
                               std::to_string(caller.groups.size()) +
                               " supplementary groups, more than nsfd-helper takes (" +
                               std::to_string(wire::kMaxGroups) + ")");
    }
    wire::SpawnHeader header;
    header.uid = caller.uid;
    header.gid = caller.gid;
    header.groupCount = static_cast<std::uint32_t>(caller.groups.size());
    header.namespaceCount = static_cast<std::uint32_t>(spec.namespaces.size());
    for (std::size_t i = 0; i < spec.namespaces.size(); ++i) {
        header.namespaceTypes[i] = cloneFlag(spec.namespaces[i]);
    }
    header.argc = static_cast<std::uint32_t>(spec.argv.size());
    header.envc = static_cast<std::uint32_t>(spec.environment.size());
    std::string payload;
    for (const auto* list : {&spec.argv, &spec.environment}) {
        for (const std::string& entry : *list) {
            payload += entry;
            payload += '\0';
        }
    }
    if (payload.size() > wire::kMaxSpawnPayload ||
        header.argc + header.envc > wire::kMaxSpawnStrings) {
        throw ServiceError(ErrorKind::LimitExceeded,
                           "Failed to " + what + ": argv and environment take " +
                               std::to_string(payload.size()) + " bytes in " +
                               std::to_string(header.argc + header.envc) +
                               " strings, more than nsfd-helper takes");
    }
    header.payloadBytes = static_cast<std::uint32_t>(payload.size());
    std::string message(reinterpret_cast<const char*>(&header), sizeof(header));
    for (gid_t group : caller.groups) {
        auto value = static_cast<std::uint32_t>(group);
        message.append(reinterpret_cast<const char*>(&value), sizeof(value));
    }
    message += payload;
    std::vector<int> fds;
    fds.reserve(targetNamespaces.size() + 6);
    for (const NsFd& ns : targetNamespaces) {
        fds.push_back(ns.get());
    }
    for (int fd : {callerMount.get(), callerRoot.get(), spec.workingDirectory.get(),
                   spec.stdinFd.get(), spec.stdoutFd.get(), spec.stderrFd.get()}) {
        fds.push_back(fd);
    }

    HelperConnection helper = connectHelper(program_, wire::kRunSocketPath, "nsfd-run.socket");
    auto run = std::make_unique<Run>();
    run->owner = this;
    run->id = nextRun_++;
    run->uid = caller.uid;
    run->what = std::move(what);
    run->connection = std::move(helper.socket);
    run->helper = helper.started;
    run->events = std::move(events);
    int r = wire::sendMessageFds(run->connection.get(), message.data(), message.size(), fds.data(),
                                 fds.size());
    if (r < 0) {
        std::uint64_t id = run->id;
        std::string text =
            "Failed to " + run->what + ": sending the request to nsfd-helper: " + errnoText(-r);
        runs_.emplace(id, std::move(run));
        finish(id);
        throw ServiceError(ErrorKind::Failed, text);
    }
    ::fcntl(run->connection.get(), F_SETFL, O_NONBLOCK);
    sd_event_source* source = nullptr;
    r = sd_event_add_io(loop_.get(), &source, run->connection.get(), EPOLLIN, onIo, run.get());
    std::uint64_t id = run->id;
    runs_.emplace(id, std::move(run));
    if (r < 0) {
        finish(id);
        throw ServiceError(ErrorKind::Failed,
                           "Failed to watch the connection to nsfd-helper: " + errnoText(-r));
    }
    runs_[id]->io.reset(source);
    return id;
}

void CommandRunner::cancel(std::uint64_t id) noexcept {
    auto it = runs_.find(id);
    if (it == runs_.end()) {
        return;
    }
    spdlog::info("Ending the run to {}: its caller hung up", it->second->what);
    finish(id);
}

int CommandRunner::onIo(sd_event_source* /*source*/, int /*fd*/, uint32_t /*revents*/,
                        void* userdata) {
    auto* run = static_cast<Run*>(userdata);
    run->owner->onReadable(*run);
    return 0;
}

void CommandRunner::onReadable(Run& run) {
    wire::SpawnReply reply;
    int fd = -1;
    ssize_t n =
        wire::receiveMessage(run.connection.get(), &reply, sizeof(reply), &fd, MSG_DONTWAIT);
    UniqueFd received(fd);
    if (n == -EAGAIN) {
        return;
    }
    std::uint64_t id = run.id;
    Events events = run.events;  // the run may go below
    auto fail = [&](const std::string& why) {
        std::string what = run.what;
        finish(id);
        spdlog::warn("Failed to {}: {}", what, why);
        events.failed(failure("Failed to " + what + ": " + why));
    };
    if (n <= 0) {
        fail(n == 0 ? (run.started ? "nsfd-helper ended while the command ran (it was killed); "
                                     "the command was killed with it"
                                   : "nsfd-helper hung up before it answered")
                    : "Failed to read nsfd-helper's answer: " + errnoText(static_cast<int>(-n)));
        return;
    }
    if (static_cast<std::size_t>(n) != sizeof(reply) || reply.magic != wire::kMagic) {
        fail("nsfd-helper answered with a malformed message");
        return;
    }
    switch (reply.kind) {
        case wire::SpawnReply::Kind::Started:
            if (run.started || !received.ok()) {
                fail("nsfd-helper said twice that the command started, or without its pidfd");
                return;
            }
            run.started = true;
            spdlog::info("Started pid {} to {}", reply.pid, run.what);
            events.started(reply.pid, std::move(received));
            return;
        case wire::SpawnReply::Kind::Exited:
            spdlog::info("pid {} ({}) ended, wait status {}", reply.pid, run.what,
                         reply.waitStatus);
            finish(id);
            events.exited(reply.waitStatus);
            return;
        case wire::SpawnReply::Kind::Failed:
            fail(std::string("nsfd-helper could not ") + wire::describe(reply.step) + ": " +
                 errnoText(reply.error));
            return;
    }
    fail("nsfd-helper answered with an unknown message");
}

void CommandRunner::finish(std::uint64_t id) noexcept {
    auto it = runs_.find(id);
    if (it == runs_.end()) {
        return;
    }
    std::unique_ptr<Run> run = std::move(it->second);
    runs_.erase(it);
    run->io.reset();
    run->connection.reset();  // the helper sees the end and kills what is left
    if (run->helper > 0) {
        reapLater(run->helper);
    }
}

void CommandRunner::reapLater(pid_t helper) noexcept {
    auto exiting = std::make_unique<Exiting>();
    exiting->owner = this;
    exiting->pid = helper;
    exiting->pidfd.reset(static_cast<int>(::syscall(SYS_pidfd_open, helper, 0)));
    sd_event_source* source = nullptr;
    if (!exiting->pidfd.ok() || sd_event_add_io(loop_.get(), &source, exiting->pidfd.get(), EPOLLIN,
                                                onHelperExit, exiting.get()) < 0) {
        // No loop to wait on (nsfdd is stopping): wait now.
        awaitHelper(helper, exiting->pidfd.get());
        return;
    }
    exiting->io.reset(source);
    exiting_[helper] = std::move(exiting);
}

int CommandRunner::onHelperExit(sd_event_source* /*source*/, int /*fd*/, uint32_t /*revents*/,
                                void* userdata) {
    auto* exiting = static_cast<Exiting*>(userdata);
    CommandRunner* self = exiting->owner;
    int status = 0;
    if (::waitpid(exiting->pid, &status, WNOHANG) != 0) {
        self->exiting_.erase(exiting->pid);
    }
    return 0;
}

}  // namespace nsfd::daemon
