// SPDX-License-Identifier: LGPL-2.1-or-later
#include "socket_helper.hpp"

#include <fcntl.h>
#include <linux/capability.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <algorithm>
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
    for (Worker& worker : workers_) {
        worker.answering.clear();
        worker.held.clear();
    }
    workers_.clear();
    starts_.clear();
    disconnect();
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
    int r = sd_event_add_io(loop_.get(), &source, connection_.get(), EPOLLIN, onHelperIo, this);
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
    if (waiting_ >= kMaxQueued) {
        throw ServiceError(ErrorKind::LimitExceeded, "Failed to " + what + ": " +
                                                         std::to_string(waiting_) +
                                                         " calls already wait for nsfd-helper");
    }
    struct stat ns {};
    if (::fstat(netns.get(), &ns) < 0) {
        throw ServiceError(ErrorKind::Failed,
                           "Failed to " + what + ": fstat of the namespace: " + errnoText(errno));
    }
    auto same = [&](const Worker& w) {
        return w.dev == ns.st_dev && w.ino == ns.st_ino && w.uid == caller.uid &&
               w.gid == caller.gid && w.groups == caller.groups;
    };
    Call call{spec, std::move(what), std::move(done)};
    auto kept = std::find_if(workers_.begin(), workers_.end(), same);
    if (kept != workers_.end()) {
        kept->lastUsed = now();
        if (!kept->connection.ok()) {  // starting: sent once it is there
            kept->held.push_back(std::move(call));
            ++waiting_;
            return;
        }
        if (ask(*kept, call)) {
            return;
        }
        // It has gone (its caller may end it: it runs as the caller); a new one.
        drop(*kept, "the socket worker for this caller ended");
    }
    connect();
    if (workers_.size() >= kMaxWorkers) {
        auto idle = workers_.end();
        for (auto it = workers_.begin(); it != workers_.end(); ++it) {
            if (it->connection.ok() && it->answering.empty() &&
                (idle == workers_.end() || it->lastUsed < idle->lastUsed)) {
                idle = it;
            }
        }
        if (idle == workers_.end()) {
            throw ServiceError(ErrorKind::LimitExceeded, "Failed to " + call.what + ": all " +
                                                             std::to_string(kMaxWorkers) +
                                                             " socket workers are busy");
        }
        drop(*idle, "let go for another");
    }
    Worker like;
    like.dev = ns.st_dev;
    like.ino = ns.st_ino;
    like.uid = caller.uid;
    like.gid = caller.gid;
    like.groups = caller.groups;
    like.netns = UniqueFd(netns.release());
    startWorker(std::move(like), std::move(call));
}

void SocketHelper::startWorker(Worker&& like, Call first, std::deque<Call> rest) {
    Worker& worker = workers_.emplace_back();
    worker.dev = like.dev;
    worker.ino = like.ino;
    worker.uid = like.uid;
    worker.gid = like.gid;
    worker.groups = std::move(like.groups);
    worker.netns = std::move(like.netns);
    worker.lastUsed = now();
    // Its first answer is for this call's socket.
    worker.answering.push_back(std::move(first));
    worker.held = std::move(rest);
    waiting_ += 1 + worker.held.size();
    starts_.push_back(&worker);
    armSweep();
    sendNextStart();  // may let every worker go (fail()): `worker` is not used after
}

bool SocketHelper::ask(Worker& worker, Call& call) {
    wire::WorkerRequest request;
    request.family = call.spec.family;
    request.type = call.spec.type;
    request.protocol = call.spec.protocol;
    if (wire::sendMessage(worker.connection.get(), &request, sizeof(request), -1) < 0) {
        return false;
    }
    if (worker.answering.empty()) {
        worker.sentAt = now();
    }
    worker.answering.push_back(std::move(call));
    ++waiting_;
    armSweep();
    return true;
}

void SocketHelper::sendNextStart() {
    if (startInFlight_ || starts_.empty() || !connection_.ok()) {
        return;
    }
    const Worker& worker = *starts_.front();
    const SocketSpec& spec = worker.answering.front().spec;
    wire::RequestHeader header;
    header.operation = wire::Operation::StartSocketWorker;
    header.uid = worker.uid;
    header.gid = worker.gid;
    header.family = spec.family;
    header.type = spec.type;
    header.protocol = spec.protocol;
    header.groupCount = static_cast<std::uint32_t>(worker.groups.size());
    std::string message(reinterpret_cast<const char*>(&header), sizeof(header));
    for (gid_t group : worker.groups) {
        auto value = static_cast<std::uint32_t>(group);
        message.append(reinterpret_cast<const char*>(&value), sizeof(value));
    }
    int r =
        wire::sendMessage(connection_.get(), message.data(), message.size(), worker.netns.get());
    if (r < 0) {
        fail("Failed to send the request to nsfd-helper: " + errnoText(-r));
        return;
    }
    startInFlight_ = true;
    startSentAt_ = now();
}

int SocketHelper::onHelperIo(sd_event_source* /*source*/, int /*fd*/, uint32_t /*revents*/,
                             void* userdata) {
    static_cast<SocketHelper*>(userdata)->onHelperReply();
    return 0;
}

int SocketHelper::onWorkerIo(sd_event_source* source, int /*fd*/, uint32_t /*revents*/,
                             void* userdata) {
    auto* self = static_cast<SocketHelper*>(userdata);
    for (Worker& worker : self->workers_) {
        if (worker.io.get() == source) {
            self->onWorkerReply(worker);
            break;
        }
    }
    return 0;
}

int SocketHelper::onSweep(sd_event_source* /*source*/, uint64_t /*usec*/, void* userdata) {
    static_cast<SocketHelper*>(userdata)->sweep();
    return 0;
}

void SocketHelper::onHelperReply() {
    wire::Reply reply;
    int fd = -1;
    ssize_t n = wire::receiveMessage(connection_.get(), &reply, sizeof(reply), &fd, MSG_DONTWAIT);
    UniqueFd received(fd);
    if (n == -EAGAIN) {
        return;
    }
    if (n <= 0 || !startInFlight_) {
        fail(n == 0  ? "nsfd-helper hung up (it died or was killed)"
             : n < 0 ? "Failed to read nsfd-helper's answer: " + errnoText(static_cast<int>(-n))
                     : "nsfd-helper answered a request it was not sent");
        return;
    }
    if (static_cast<std::size_t>(n) != sizeof(reply) || reply.magic != wire::kMagic) {
        fail("nsfd-helper answered with a malformed message");
        return;
    }
    Worker* started = starts_.front();
    starts_.pop_front();
    startInFlight_ = false;
    sendNextStart();
    if (started == nullptr) {
        return;  // let go meanwhile: so is the connection `received` holds
    }
    Worker& worker = *started;
    if (reply.step != wire::Step::None || reply.error != 0) {
        drop(worker, std::string("nsfd-helper could not ") + wire::describe(reply.step) + ": " +
                         errnoText(reply.error));
        return;
    }
    if (!received.ok()) {
        drop(worker, "nsfd-helper answered without the worker's connection");
        return;
    }
    ::fcntl(received.get(), F_SETFL, O_NONBLOCK);
    sd_event_source* source = nullptr;
    int r = sd_event_add_io(loop_.get(), &source, received.get(), EPOLLIN, onWorkerIo, this);
    if (r < 0) {
        drop(worker, "Failed to watch the socket worker's connection: " + errnoText(-r));
        return;
    }
    worker.io.reset(source);
    worker.connection = std::move(received);
    worker.sentAt = now();
    while (!worker.held.empty()) {
        Call call = std::move(worker.held.front());
        worker.held.pop_front();
        --waiting_;
        if (!ask(worker, call)) {
            ++waiting_;  // counted again as it fails with the rest
            worker.held.push_front(std::move(call));
            drop(worker, "the socket worker for this caller ended");
            return;
        }
    }
}

// One answer per wakeup (the source is level-triggered): what `done` does may
// change the workers.
void SocketHelper::onWorkerReply(Worker& worker) {
    wire::Reply reply;
    int fd = -1;
    ssize_t n =
        wire::receiveMessage(worker.connection.get(), &reply, sizeof(reply), &fd, MSG_DONTWAIT);
    UniqueFd received(fd);
    if (n == -EAGAIN) {
        return;
    }
    if (n <= 0 || worker.answering.empty() || static_cast<std::size_t>(n) != sizeof(reply) ||
        reply.magic != wire::kMagic) {
        // ECONNRESET: it ended with a request of ours unread.
        if (n == 0 || n == -ECONNRESET) {
            replace(worker,
                    "the socket worker for this caller ended twice (it runs as the "
                    "caller, who may end it)");
        } else {
            drop(worker, n < 0 ? "Failed to read the socket worker's answer: " +
                                     errnoText(static_cast<int>(-n))
                               : "the socket worker answered out of turn or malformed");
        }
        return;
    }
    Call call = std::move(worker.answering.front());
    worker.answering.pop_front();
    --waiting_;
    worker.sentAt = now();
    std::exception_ptr error;
    bool becameCaller = reply.step == wire::Step::None || reply.step == wire::Step::Socket ||
                        reply.step == wire::Step::Request;
    if (reply.step == wire::Step::Socket) {
        error = std::make_exception_ptr(SocketError(
            reply.error, "Failed to " + call.what + ": socket(2): " + errnoText(reply.error)));
    } else if (reply.step != wire::Step::None || reply.error != 0) {
        error = failure(ErrorKind::Failed, "Failed to " + call.what + ": nsfd-helper could not " +
                                               wire::describe(reply.step) + ": " +
                                               errnoText(reply.error));
    } else if (!received.ok()) {
        error = failure(ErrorKind::Failed, "Failed to " + call.what +
                                               ": the socket worker answered without the socket");
    }
    if (!becameCaller) {
        // It could not become the caller, and has exited.
        std::string why = std::string("nsfd-helper could not ") + wire::describe(reply.step) +
                          ": " + errnoText(reply.error);
        drop(worker, why);
        call.done(UniqueFd(), error);
        return;
    }
    call.done(error ? UniqueFd() : std::move(received), error);
}

void SocketHelper::replace(Worker& worker, const std::string& why) {
    std::deque<Call> again;
    auto keep = [&](std::deque<Call>& calls) {
        for (auto it = calls.begin(); it != calls.end();) {
            if (it->retried) {
                ++it;
            } else {
                it->retried = true;
                again.push_back(std::move(*it));
                it = calls.erase(it);
            }
        }
    };
    keep(worker.answering);
    keep(worker.held);
    waiting_ -= again.size();
    Worker like;
    like.dev = worker.dev;
    like.ino = worker.ino;
    like.uid = worker.uid;
    like.gid = worker.gid;
    like.groups = worker.groups;
    like.netns = std::move(worker.netns);
    drop(worker, why);
    bool reachable = !again.empty();
    try {
        if (reachable) {
            connect();
        }
    } catch (const std::exception&) {
        reachable = false;
    }
    if (!reachable) {
        for (Call& call : again) {
            std::string what = call.what;
            finish(std::move(call), failure(ErrorKind::Failed, "Failed to " + what + ": " + why));
        }
        return;
    }
    Call first = std::move(again.front());
    again.pop_front();
    startWorker(std::move(like), std::move(first), std::move(again));
}

void SocketHelper::drop(Worker& worker, const std::string& why) {
    std::deque<Call> failed = std::move(worker.answering);
    for (Call& call : worker.held) {
        failed.push_back(std::move(call));
    }
    waiting_ -= failed.size();
    // A start queued for it goes; one in flight has its answer let go.
    for (auto it = starts_.begin(); it != starts_.end();) {
        if (*it != &worker) {
            ++it;
        } else if (it == starts_.begin() && startInFlight_) {
            *it++ = nullptr;
        } else {
            it = starts_.erase(it);
        }
    }
    workers_.remove_if([&](const Worker& w) { return &w == &worker; });
    for (Call& call : failed) {
        std::string what = call.what;
        finish(std::move(call), failure(ErrorKind::Failed, "Failed to " + what + ": " + why));
    }
}

void SocketHelper::finish(Call call, std::exception_ptr error) {
    failed_.emplace_back(std::move(call), std::move(error));
    armFinish();
}

void SocketHelper::armFinish() {
    if (finish_) {
        sd_event_source_set_enabled(finish_.get(), SD_EVENT_ONESHOT);
        return;
    }
    sd_event_source* source = nullptr;
    int r = sd_event_add_defer(loop_.get(), &source, onFinish, this);
    if (r < 0) {
        // Not even a defer source: answer now rather than never.
        spdlog::error("Failed to defer socket answers: {}; answering at once", errnoText(-r));
        finishFailed();
        return;
    }
    finish_.reset(source);
    sd_event_source_set_enabled(finish_.get(), SD_EVENT_ONESHOT);
}

int SocketHelper::onFinish(sd_event_source* /*source*/, void* userdata) {
    static_cast<SocketHelper*>(userdata)->finishFailed();
    return 0;
}

void SocketHelper::finishFailed() {
    // Answers may add more (a caller's next call failing at once): those wait
    // for the next iteration.
    std::deque<std::pair<Call, std::exception_ptr>> now = std::move(failed_);
    failed_.clear();
    for (auto& [call, error] : now) {
        try {
            call.done(UniqueFd(), error);
        } catch (...) {
            spdlog::error("A socket request's answer failed: {}", call.what);
        }
    }
}

std::uint64_t SocketHelper::now() const {
    uint64_t usec = 0;
    sd_event_now(loop_.get(), CLOCK_MONOTONIC, &usec);
    return usec;
}

void SocketHelper::armSweep() {
    constexpr uint64_t kPeriod = 250'000;  // us: the worker timeout's granularity
    if (sweep_) {
        int enabled = SD_EVENT_OFF;
        sd_event_source_get_enabled(sweep_.get(), &enabled);
        if (enabled == SD_EVENT_OFF) {
            sd_event_source_set_time(sweep_.get(), now() + kPeriod);
            sd_event_source_set_enabled(sweep_.get(), SD_EVENT_ONESHOT);
        }
        return;
    }
    sd_event_source* source = nullptr;
    if (sd_event_add_time(loop_.get(), &source, CLOCK_MONOTONIC, now() + kPeriod, 0, onSweep,
                          this) < 0) {
        spdlog::error("Failed to time nsfd-helper's workers: they are let go only when they end");
        return;
    }
    sweep_.reset(source);
}

void SocketHelper::sweep() {
    using std::chrono::microseconds;
    auto us = [](auto d) { return static_cast<uint64_t>(duration_cast<microseconds>(d).count()); };
    uint64_t t = now();
    if (startInFlight_ && t - startSentAt_ > us(kTimeout)) {
        fail("nsfd-helper did not answer within " + std::to_string(kTimeout.count()) + " s");
    }
    for (auto it = workers_.begin(); it != workers_.end();) {
        Worker& worker = *it++;
        if (!worker.connection.ok()) {
            continue;
        }
        if (!worker.answering.empty() && t - worker.sentAt > us(kWorkerTimeout)) {
            drop(worker, "the socket worker for this caller did not answer within " +
                             std::to_string(kWorkerTimeout.count()) + " ms");
        } else if (worker.answering.empty() && t - worker.lastUsed > us(kWorkerIdle)) {
            drop(worker, "idle");  // holds no call: nobody hears this
        }
    }
    if (!workers_.empty() || startInFlight_) {
        armSweep();
    }
}

void SocketHelper::disconnect() noexcept {
    io_.reset();
    connection_.reset();
    startInFlight_ = false;
    if (started_ > 0) {
        // Its workers, if any, die with it (PR_SET_PDEATHSIG).
        ::kill(started_, SIGKILL);
        int status = 0;
        while (::waitpid(started_, &status, 0) < 0 && errno == EINTR) {
        }
        spdlog::info("nsfd-helper (pid {}) ended, wait status {}", started_, status);
        started_ = 0;
    }
}

void SocketHelper::fail(const std::string& why) noexcept {
    if (waiting_ > 0) {
        spdlog::warn("nsfd-helper: {}; failing {} call(s)", why, waiting_);
    }
    disconnect();
    starts_.clear();
    // Workers it started die with it; systemd's live on, but for simplicity
    // and a clean slate every one goes.
    while (!workers_.empty()) {
        drop(workers_.front(), why);
    }
}

}  // namespace nsfd::daemon
