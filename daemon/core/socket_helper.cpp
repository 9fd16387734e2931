// SPDX-License-Identifier: LGPL-2.1-or-later
#include "socket_helper.hpp"

#include <fcntl.h>
#include <linux/capability.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <cerrno>
#include <cstring>
#include <system_error>

#include "errors.hpp"
#include "helper_connection.hpp"
#include "nsfd-helper/protocol.hpp"

namespace nsfd::daemon {

namespace wire = nsfd::helper;

namespace {

std::string errnoText(int err) {
    return std::string(std::strerror(err)) + " (errno " + std::to_string(err) + ")";
}

std::exception_ptr failure(ErrorKind kind, const std::string& message) {
    return std::make_exception_ptr(ServiceError(kind, message));
}

}  // namespace

std::string socketHelperProgram(const std::string& self) {
    if (self == NSFD_BUILD_NSFDD) {
        return NSFD_BUILD_HELPER;
    }
    return NSFD_INSTALLED_HELPER;
}

bool SocketHelper::canStartHelper() noexcept {
    return daemon::canStartHelper();
}

SocketHelper::SocketHelper(EventLoop& loop, std::string program)
    : loop_(loop), program_(std::move(program)) {}

SocketHelper::~SocketHelper() {
    // The endpoints whose calls wait here are gone already: nobody to answer.
    disconnect();
    queue_.clear();
}

void SocketHelper::connect() {
    if (connection_.ok()) {
        return;
    }
    HelperConnection helper = connectHelper(program_, wire::kSocketPath, "nsfd-helper.socket");
    connection_ = std::move(helper.socket);
    started_ = helper.started;
    if (started_ > 0) {
        spdlog::info("Started nsfd-helper {} (pid {})", program_, started_);
    }
    ::fcntl(connection_.get(), F_SETFL, O_NONBLOCK);
    sd_event_source* source = nullptr;
    int r = sd_event_add_io(loop_.get(), &source, connection_.get(), EPOLLIN, onIo, this);
    if (r < 0) {
        disconnect();
        throw ServiceError(ErrorKind::Failed,
                           "Failed to watch the connection to nsfd-helper: " + errnoText(-r));
    }
    io_.reset(source);
}

void SocketHelper::openSocket(NsFd netns, const Caller& caller, const SocketSpec& spec,
                              std::string what, Done done) {
    if (caller.gid == static_cast<gid_t>(-1)) {
        throw ServiceError(ErrorKind::Failed,
                           "Failed to " + what + ": the caller's gid is not known");
    }
    if (caller.groups.size() > wire::kMaxGroups) {
        throw ServiceError(ErrorKind::LimitExceeded,
                           "Failed to " + what + ": the caller has " +
                               std::to_string(caller.groups.size()) +
                               " supplementary groups, more than nsfd-helper takes (" +
                               std::to_string(wire::kMaxGroups) + ")");
    }
    if (queue_.size() >= kMaxQueued) {
        throw ServiceError(ErrorKind::LimitExceeded, "Failed to " + what + ": " +
                                                         std::to_string(queue_.size()) +
                                                         " requests already wait for nsfd-helper");
    }
    connect();
    wire::RequestHeader header;
    header.operation = wire::Operation::OpenSocket;
    header.uid = caller.uid;
    header.gid = caller.gid;
    header.family = spec.family;
    header.type = spec.type;
    header.protocol = spec.protocol;
    header.groupCount = static_cast<std::uint32_t>(caller.groups.size());
    std::string message(reinterpret_cast<const char*>(&header), sizeof(header));
    for (gid_t group : caller.groups) {
        auto value = static_cast<std::uint32_t>(group);
        message.append(reinterpret_cast<const char*>(&value), sizeof(value));
    }
    queue_.push_back(
        Pending{std::move(message), UniqueFd(netns.release()), std::move(what), std::move(done)});
    sendNext();
}

void SocketHelper::sendNext() {
    if (inFlight_ || queue_.empty() || !connection_.ok()) {
        return;
    }
    Pending& next = queue_.front();
    int r = wire::sendMessage(connection_.get(), next.message.data(), next.message.size(),
                              next.netns.get());
    if (r < 0) {
        fail("Failed to send the request to nsfd-helper: " + errnoText(-r));
        return;
    }
    inFlight_ = true;
    next.netns.reset();  // the helper has its own copy now
    uint64_t now = 0;
    sd_event_now(loop_.get(), CLOCK_MONOTONIC, &now);
    auto deadline = now + std::chrono::duration_cast<std::chrono::microseconds>(kTimeout).count();
    if (timer_) {
        sd_event_source_set_time(timer_.get(), deadline);
        sd_event_source_set_enabled(timer_.get(), SD_EVENT_ONESHOT);
        return;
    }
    sd_event_source* source = nullptr;
    if (sd_event_add_time(loop_.get(), &source, CLOCK_MONOTONIC, deadline, 0, onTimeout, this) <
        0) {
        fail("Failed to time the request to nsfd-helper");
        return;
    }
    timer_.reset(source);
}

int SocketHelper::onIo(sd_event_source* /*source*/, int /*fd*/, uint32_t /*revents*/,
                       void* userdata) {
    static_cast<SocketHelper*>(userdata)->onReply();
    return 0;
}

int SocketHelper::onTimeout(sd_event_source* /*source*/, uint64_t /*usec*/, void* userdata) {
    auto* self = static_cast<SocketHelper*>(userdata);
    self->fail("nsfd-helper did not answer within " + std::to_string(kTimeout.count()) + " s");
    return 0;
}

void SocketHelper::onReply() {
    wire::Reply reply;
    int fd = -1;
    ssize_t n = wire::receiveMessage(connection_.get(), &reply, sizeof(reply), &fd, MSG_DONTWAIT);
    UniqueFd received(fd);
    if (n == -EAGAIN) {
        return;
    }
    if (n <= 0 || !inFlight_) {
        fail(n == 0  ? "nsfd-helper hung up (it died or was killed)"
             : n < 0 ? "Failed to read nsfd-helper's answer: " + errnoText(static_cast<int>(-n))
                     : "nsfd-helper answered a request it was not sent");
        return;
    }
    if (static_cast<std::size_t>(n) != sizeof(reply) || reply.magic != wire::kMagic) {
        fail("nsfd-helper answered with a malformed message");
        return;
    }
    Pending done = std::move(queue_.front());
    queue_.pop_front();
    inFlight_ = false;
    if (timer_) {
        sd_event_source_set_enabled(timer_.get(), SD_EVENT_OFF);
    }
    std::exception_ptr error;
    if (reply.step == wire::Step::Socket) {
        error = std::make_exception_ptr(SocketError(
            reply.error, "Failed to " + done.what + ": socket(2): " + errnoText(reply.error)));
    } else if (reply.step != wire::Step::None || reply.error != 0) {
        error = failure(ErrorKind::Failed, "Failed to " + done.what + ": nsfd-helper could not " +
                                               wire::describe(reply.step) + ": " +
                                               errnoText(reply.error));
    } else if (!received.ok()) {
        error = failure(ErrorKind::Failed,
                        "Failed to " + done.what + ": nsfd-helper answered without the socket");
    }
    sendNext();
    done.done(error ? UniqueFd() : std::move(received), error);
}

void SocketHelper::disconnect() noexcept {
    io_.reset();
    connection_.reset();
    inFlight_ = false;
    if (timer_) {
        sd_event_source_set_enabled(timer_.get(), SD_EVENT_OFF);
    }
    if (started_ > 0) {
        // Its child, if any, dies with it (PR_SET_PDEATHSIG).
        ::kill(started_, SIGKILL);
        int status = 0;
        while (::waitpid(started_, &status, 0) < 0 && errno == EINTR) {
        }
        spdlog::info("nsfd-helper (pid {}) ended, wait status {}", started_, status);
        started_ = 0;
    }
}

void SocketHelper::fail(const std::string& why) noexcept {
    if (!queue_.empty() || connection_.ok()) {
        if (!queue_.empty()) {
            spdlog::warn("nsfd-helper: {}; failing {} request(s)", why, queue_.size());
        }
    }
    disconnect();
    std::deque<Pending> failed;
    failed.swap(queue_);
    for (Pending& pending : failed) {
        try {
            pending.done(UniqueFd(),
                         failure(ErrorKind::Failed, "Failed to " + pending.what + ": " + why));
        } catch (...) {
            spdlog::error("A socket request's answer failed: {}", why);
        }
    }
}

}  // namespace nsfd::daemon
