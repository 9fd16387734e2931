// SPDX-License-Identifier: LGPL-2.1-or-later
// The Varlink transport: nsfdd's socket (contract/org.nsfd1.Manager.varlink), with
// the wire format nsfdd itself uses (varlink/codec.hpp). Calls go one at a time
// on one connection; the news (WatchExits) has a connection of its own, as a
// stream holds its connection until it ends.
#include <fcntl.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cerrno>
#include <cstring>
#include <limits>
#include <type_traits>
#include <utility>

#include "nsfd/dbus_names.hpp"
#include "transport.hpp"
#include "varlink/codec.hpp"
#include "varlink/errors.hpp"
#include "varlink/socket_io.hpp"

namespace nsfd::detail {

namespace {

using nsfd::varlink::Json;
using nsfd::varlink::ReplyMessage;

// sd-bus's default method call timeout. A call that lets polkit ask a person
// for a password waits a little longer than nsfdd waits for polkit (2 minutes,
// PolkitClient's interactiveTimeout), so that nsfdd's answer ends it.
constexpr auto kCallTimeout = std::chrono::seconds(25);
constexpr auto kInteractiveCallTimeout = std::chrono::seconds(130);
// While the news stream is lost and nsfdd cannot be reached, try again this
// often, for this long (a restart by hand, or systemd's restart of a unit
// without socket activation, leaves no socket meanwhile); then say so.
constexpr auto kResubscribeInterval = std::chrono::seconds(1);
constexpr auto kResubscribeLimit = std::chrono::seconds(30);

// Replies are bigger than calls: ListProcesses of a busy nsfdd, ten fds.
constexpr nsfd::varlink::DecodeLimits kReplyLimits{16 * 1024 * 1024, 16, 16};

std::string systemErrorName(int error) {
    const char* name = ::strerrorname_np(error);
    return std::string("System.Error.") + (name != nullptr ? name : std::to_string(error));
}

[[noreturn]] void throwUnavailable(const std::string& what, int error) {
    if (error == EMFILE || error == ENFILE) {
        throwCallerOutOfFds(what + ": " + std::strerror(error));
    }
    throw DaemonUnavailable(systemErrorName(error),
                            "nsfdd is not available: " + what + ": " + std::strerror(error));
}

// Varlink's own errors (org.varlink.service.*) and nsfdd's, by the contract.
[[noreturn]] void throwReplyError(const std::string& name, const Json& parameters) {
    auto message = parameters.find("message");
    std::string text =
        message != parameters.end() && message->is_string() ? message->get<std::string>() : name;
    if (std::optional<ErrorKind> kind = errorKindOfVarlinkName(name)) {
        throwErrorOf(*kind, text);
    }
    if (name == nsfd::varlink::error::kInvalidParameter) {
        auto parameter = parameters.find("parameter");
        throw InvalidArgument(name,
                              parameter != parameters.end() && parameter->is_string()
                                  ? "Invalid parameter '" + parameter->get<std::string>() + "'"
                                  : text);
    }
    throw Error(name, text);
}

// One connection to nsfdd's socket; blocking sends and receives with a deadline.
class Connection {
  public:
    explicit Connection(const std::string& path) {
        sockaddr_un address{};
        address.sun_family = AF_UNIX;
        if (path.size() >= sizeof(address.sun_path)) {
            throw InvalidArgument(std::string(dbusErrorName(ErrorKind::InvalidArgs)),
                                  "Varlink socket path too long: " + path);
        }
        std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
        socket_ = UniqueFd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
        if (!socket_.ok()) {
            throwUnavailable("socket()", errno);
        }
        // connect(2) waits while the listener's backlog is full (nsfdd hung or
        // stopped, its socket kept): as long as a call waits for its answer at
        // most, then EAGAIN. Sends and receives do not block (MSG_DONTWAIT).
        timeval timeout{std::chrono::seconds(kCallTimeout).count(), 0};
        if (::setsockopt(socket_.get(), SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout)) < 0) {
            throwUnavailable("setsockopt(SO_SNDTIMEO)", errno);
        }
        if (::connect(socket_.get(), reinterpret_cast<const sockaddr*>(&address), sizeof(address)) <
            0) {
            if (errno == EAGAIN) {
                throw DaemonUnavailable(systemErrorName(ETIMEDOUT),
                                        "nsfdd is not available: nobody accepted the connection "
                                        "to " +
                                            path + " in time");
            }
            throwUnavailable("connecting to " + path, errno);
        }
    }

    int fd() const noexcept { return socket_.get(); }

    // True if nsfdd hung up, or sent what nobody asked for (never, while it works).
    bool broken() const {
        pollfd p{socket_.get(), POLLIN | POLLRDHUP, 0};
        return ::poll(&p, 1, 0) != 0;
    }

    void send(const std::string& message, std::span<const int> fds,
              std::chrono::steady_clock::time_point deadline) {
        std::size_t sent = 0;
        while (sent < message.size()) {
            iovec iov{const_cast<char*>(message.data() + sent), message.size() - sent};
            ssize_t n = nsfd::varlink::sendWithFds(socket_.get(), std::span(&iov, 1),
                                                   sent == 0 ? fds : std::span<const int>());
            if (n == -EAGAIN || n == -EINTR) {
                wait(POLLOUT, deadline);
                continue;
            }
            if (n < 0) {
                throwUnavailable("sending to nsfdd", static_cast<int>(-n));
            }
            sent += static_cast<std::size_t>(n);
        }
    }

    // The next reply, waiting until `deadline`.
    ReplyMessage receive(std::chrono::steady_clock::time_point deadline) {
        for (;;) {
            if (std::optional<ReplyMessage> reply = next()) {
                return std::move(*reply);
            }
            wait(POLLIN, deadline);
            if (!readAvailable()) {
                // The reply may have come with the hang-up (nsfdd answered and exited).
                if (std::optional<ReplyMessage> reply = next()) {
                    return std::move(*reply);
                }
                throw DaemonUnavailable(systemErrorName(ECONNRESET),
                                        "the connection to nsfdd closed before it answered "
                                        "(nsfdd stopped, restarted, or could not be started): "
                                        "the call may or may not have been done");
            }
        }
    }

    // A reply already read, if any.
    std::optional<ReplyMessage> next() {
        std::optional<nsfd::varlink::DecodedReply> decoded = decoder_.next();
        if (!decoded) {
            return std::nullopt;
        }
        if (auto* error = std::get_if<nsfd::varlink::DecodeError>(&*decoded)) {
            throwErrorOf(ErrorKind::Failed,
                         std::string("nsfdd sent what is not a Varlink reply (") +
                             nsfd::varlink::toString(*error) + ")");
        }
        return std::move(std::get<ReplyMessage>(*decoded));
    }
    bool hasNext() const noexcept { return decoder_.hasNext(); }

    // Reads what has come, without waiting. False once nsfdd has hung up.
    bool readAvailable() {
        for (;;) {
            nsfd::varlink::Received received;
            int r = nsfd::varlink::receiveWithFds(socket_.get(), buffer_, received);
            if (r == -EAGAIN || r == -EINTR) {
                return true;
            }
            if (r == -ECONNRESET || (r == 0 && received.bytes == 0)) {
                return false;
            }
            if (r < 0) {
                throwUnavailable("reading from nsfdd", -r);
            }
            decoder_.feed(std::string_view(buffer_.data(), received.bytes), std::move(received.fds),
                          received.fdsNotReceived);
            if (received.bytes < buffer_.size()) {
                return true;
            }
        }
    }

  private:
    void wait(short events, std::chrono::steady_clock::time_point deadline) {
        auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline -
                                                                 std::chrono::steady_clock::now());
        if (left.count() <= 0) {
            throw DaemonUnavailable(systemErrorName(ETIMEDOUT), "nsfdd did not answer in time");
        }
        pollfd p{socket_.get(), events, 0};
        if (::poll(&p, 1, static_cast<int>(left.count())) < 0 && errno != EINTR) {
            throwUnavailable("poll()", errno);
        }
    }

    UniqueFd socket_;
    std::vector<char> buffer_ = std::vector<char>(64 * 1024);
    nsfd::varlink::ReplyDecoder decoder_{kReplyLimits};
};

UniqueFd takeFd(ReplyMessage& reply, const Json& index) {
    if (!index.is_number_unsigned() || index.get<std::size_t>() >= reply.fds.size() ||
        !reply.fds[index.get<std::size_t>()].ok()) {
        throwErrorOf(ErrorKind::Failed,
                     "nsfdd answered without the fd " + index.dump() + " its reply refers to");
    }
    return std::move(reply.fds[index.get<std::size_t>()]);
}

// A value of nsfdd's reply; one of another type is nsfdd's fault, named as such.
template <typename T>
T field(const Json& object, const char* key, T fallback) {
    auto it = object.find(key);
    if (it == object.end() || it->is_null()) {
        return fallback;
    }
    auto bad = [&]() -> T {
        throwErrorOf(ErrorKind::Failed,
                     std::string("nsfdd's reply has a bad '") + key + "': " + it->dump());
    };
    if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
        // Integers only, and only those T holds: nlohmann would wrap -1 into
        // an unsigned and cast a float.
        if (it->is_number_unsigned()) {
            auto value = it->get<std::uint64_t>();
            return std::in_range<T>(value) ? static_cast<T>(value) : bad();
        }
        if (it->is_number_integer()) {
            auto value = it->get<std::int64_t>();
            return std::in_range<T>(value) ? static_cast<T>(value) : bad();
        }
        return bad();
    } else {
        try {
            return it->get<T>();
        } catch (const Json::exception&) {
            return bad();
        }
    }
}

template <typename T>
T required(const Json& object, const char* key) {
    if (!object.contains(key) || object[key].is_null()) {
        throwErrorOf(ErrorKind::Failed, std::string("nsfdd's reply lacks '") + key + "'");
    }
    return field<T>(object, key, T{});
}

ProcessInfo toInfo(const Json& object) {
    namespace key = nsfd::info_key;
    ProcessInfo info;
    info.pid = field<pid_t>(object, key::kPid, 0);
    info.id = field<std::uint64_t>(object, key::kId, 0);
    info.threadGroupId = field<pid_t>(object, key::kThreadGroupId, 0);
    info.parentPid = field<pid_t>(object, key::kParentPid, 0);
    info.cgroupId = field<std::uint64_t>(object, key::kCgroupId, 0);
    if (object.contains(key::kRuid)) {
        auto id = [&](const char* k) { return field<std::uint32_t>(object, k, 0); };
        info.credentials =
            Credentials{id(key::kRuid), id(key::kEuid), id(key::kSuid), id(key::kFsuid),
                        id(key::kRgid), id(key::kEgid), id(key::kSgid), id(key::kFsgid)};
    }
    // An unknown name (from a newer nsfdd) reads as the last state.
    info.state = parseProcessState(field<std::string>(object, key::kState, "running"))
                     .value_or(ProcessState::Reaped);
    if (object.contains(key::kExitStatus)) {
        info.exitStatus = field<int>(object, key::kExitStatus, kNoExitStatus);
    }
    return info;
}

Json typeNames(std::span<const NsType> types) {
    Json names = Json::array();
    for (NsType type : types) {
        names.push_back(std::string(toString(type)));
    }
    return names;
}

// Spawn's stream, on a connection of its own: nsfdd ends the run when it closes.
class VarlinkSpawnStream final : public SpawnStream {
  public:
    VarlinkSpawnStream(std::unique_ptr<Connection> connection, pid_t pid, PidFd pidfd)
        : connection_(std::move(connection)), pid_(pid), pidfd_(std::move(pidfd)) {}

    pid_t pid() const noexcept override { return pid_; }
    const PidFd& pidFd() const noexcept override { return pidfd_; }
    int eventFd() const noexcept override { return connection_->fd(); }

    std::optional<int> poll(bool block) override {
        if (status_) {
            return status_;
        }
        for (;;) {
            if (std::optional<ReplyMessage> reply = connection_->next()) {
                if (reply->error) {
                    throwReplyError(*reply->error, reply->parameters);
                }
                if (reply->continues) {
                    throwErrorOf(ErrorKind::Failed, "nsfdd's Spawn sent more than one start");
                }
                status_ = required<int>(reply->parameters, "waitStatus");
                return status_;
            }
            pollfd p{connection_->fd(), POLLIN, 0};
            int ready = ::poll(&p, 1, block ? -1 : 0);
            if (ready < 0 && errno != EINTR) {
                throwUnavailable("poll()", errno);
            }
            if (ready <= 0) {
                if (!block) {
                    return std::nullopt;
                }
                continue;
            }
            if (!connection_->readAvailable() && !connection_->hasNext()) {
                throw DaemonUnavailable(systemErrorName(ECONNRESET),
                                        "the connection to nsfdd closed while the command ran "
                                        "(nsfdd stopped or restarted): its helper killed the "
                                        "command");
            }
        }
    }

  private:
    std::unique_ptr<Connection> connection_;
    pid_t pid_;
    PidFd pidfd_;
    std::optional<int> status_;
};

class VarlinkTransport final : public Transport {
  public:
    VarlinkTransport(std::string path, ExitSink onExit, ResubscribedSink onResubscribed)
        : path_(std::move(path)),
          calls_(std::make_unique<Connection>(path_)),
          onExit_(std::move(onExit)),
          onResubscribed_(std::move(onResubscribed)),
          epoll_(::epoll_create1(EPOLL_CLOEXEC)) {
        if (!epoll_.ok()) {
            throwUnavailable("epoll_create1()", errno);
        }
    }

    TransportKind kind() const noexcept override { return TransportKind::Varlink; }
    void allowInteractiveAuthorization(bool allow) override { interactive_ = allow; }

    std::uint64_t track(const PidFd& pidfd) override {
        int fd = pidfd.get();
        return required<std::uint64_t>(
            call("TrackProcess", {{"pidfd", 0}}, std::span(&fd, 1)).parameters, "id");
    }
    std::uint64_t trackSelector(const std::string& selector) override {
        return required<std::uint64_t>(call("TrackProcess", {{"selector", selector}}).parameters,
                                       "id");
    }
    void untrack(std::uint64_t id) override { call("UntrackProcess", {{"id", id}}); }
    std::uint64_t trackedWithPid(pid_t pid) override {
        return required<std::uint64_t>(call("GetProcess", {{"pid", pid}}).parameters, "id");
    }
    std::vector<ProcessEntry> list() override {
        ReplyMessage reply = call("ListProcesses", Json::object());
        std::vector<ProcessEntry> out;
        for (const Json& entry : required<Json>(reply.parameters, "processes")) {
            auto id = required<std::uint64_t>(entry, "id");
            out.push_back({field<pid_t>(entry, "pid", 0), id, nsfd::dbus::processObjectPath(id)});
        }
        return out;
    }

    NsFd namespaceFd(ProcessRef ref, NsType type) override {
        ReplyMessage reply = callOn(ref, "GetNamespace", {{"type", std::string(toString(type))}});
        return adoptNsFd(takeFd(reply, required<Json>(reply.parameters, "fileDescriptor")), type);
    }
    std::map<NsType, NsFd> namespaceFds(ProcessRef ref, std::span<const NsType> types) override {
        Json parameters = {{"types", typeNames(types)}};
        ReplyMessage reply = callOn(ref, "GetNamespaces", std::move(parameters));
        std::map<NsType, NsFd> out;
        const Json namespaces = required<Json>(reply.parameters, "namespaces");
        for (const auto& [name, index] : namespaces.items()) {
            UniqueFd fd = takeFd(reply, index);
            if (std::optional<NsType> type = parseNsType(name)) {
                out.emplace(*type, adoptNsFd(std::move(fd), *type));
            }
        }
        return out;
    }
    ProcessInfo info(ProcessRef ref) override {
        return toInfo(
            required<Json>(callOn(ref, "GetProcessInfo", Json::object()).parameters, "info"));
    }
    void sendSignal(ProcessRef ref, int signal) override {
        callOn(ref, "SendSignal", {{"signal", signal}});
    }

    std::unique_ptr<SpawnStream> spawn(ProcessRef ref, const SpawnOptions& options) override {
        std::vector<int> fds;
        Json parameters = Json::object();
        if (ref.pidfd) {
            parameters["pidfd"] = fds.size();
            fds.push_back(ref.pidfd->get());
        } else if (ref.selector) {
            parameters["selector"] = *ref.selector;
        } else {
            parameters["id"] = ref.id;
        }
        parameters["namespaces"] = typeNames(options.namespaces);
        parameters["argv"] = options.argv;
        parameters["environment"] = options.environment;
        UniqueFd here;
        int directory = options.workingDirectory;
        if (directory < 0) {
            here.reset(::open(".", O_PATH | O_DIRECTORY | O_CLOEXEC));
            if (!here.ok()) {
                throwErrorOf(ErrorKind::Failed, std::string("Failed to open the working "
                                                            "directory: ") +
                                                    std::strerror(errno));
            }
            directory = here.get();
        }
        for (auto [name, fd] : {std::pair{"stdin", options.stdinFd},
                                {"stdout", options.stdoutFd},
                                {"stderr", options.stderrFd},
                                {"workingDirectory", directory}}) {
            parameters[name] = fds.size();
            fds.push_back(fd);
        }
        if (interactive_) {
            parameters[nsfd::varlink::kAllowInteractive] = true;
        }
        auto deadline = std::chrono::steady_clock::now() +
                        (interactive_ ? kInteractiveCallTimeout : kCallTimeout);
        auto connection = std::make_unique<Connection>(path_);
        connection->send(
            nsfd::varlink::encodeCall(std::string(nsfd::varlink::kInterface) + ".Spawn", parameters,
                                      /*more=*/true),
            fds, deadline);
        ReplyMessage started = connection->receive(deadline);
        if (started.fdLoss == nsfd::varlink::FdLoss::NotReceived) {
            throwCallerOutOfFds("the kernel could not give it the command's pidfd (MSG_CTRUNC)");
        }
        if (started.error) {
            throwReplyError(*started.error, started.parameters);
        }
        if (!started.continues) {
            throwErrorOf(ErrorKind::Failed, "nsfdd's Spawn did not begin with the command's pid");
        }
        auto pid = required<pid_t>(started.parameters, "pid");
        PidFd pidfd = adoptPidFd(takeFd(started, required<Json>(started.parameters, "pidfd")));
        return std::make_unique<VarlinkSpawnStream>(std::move(connection), pid, std::move(pidfd));
    }

    UniqueFd openSocket(ProcessRef ref, int family, int type, int protocol) override {
        ReplyMessage reply =
            callOn(ref, "OpenSocket", {{"family", family}, {"type", type}, {"protocol", protocol}});
        return takeFd(reply, required<Json>(reply.parameters, "fileDescriptor"));
    }

    ProcessState state(std::uint64_t id) override { return info(ProcessRef{nullptr, id}).state; }
    std::optional<int> exitStatus(std::uint64_t id) override {
        return info(ProcessRef{nullptr, id}).exitStatus;
    }
    Credentials credentials(std::uint64_t id) override {
        ProcessInfo i = info(ProcessRef{nullptr, id});
        if (!i.credentials) {
            throwErrorOf(ErrorKind::ProcessExited,
                         "Process " + std::to_string(id) + " was reaped: it has no credentials");
        }
        return *i.credentials;
    }
    pid_t pid(std::uint64_t id) override { return info(ProcessRef{nullptr, id}).pid; }
    std::map<NsType, std::uint64_t> namespaceIds(std::uint64_t id) override {
        ReplyMessage reply = call("GetNamespaceIds", {{"id", id}});
        std::map<NsType, std::uint64_t> out;
        const Json ids = required<Json>(reply.parameters, "ids");
        for (const auto& [name, nsId] : ids.items()) {
            if (std::optional<NsType> type = parseNsType(name)) {
                out.emplace(*type, field<std::uint64_t>(ids, name.c_str(), 0));
            }
        }
        return out;
    }
    PidFd pidFd(std::uint64_t id) override {
        ReplyMessage reply = call("GetPidFd", {{"id", id}});
        return adoptPidFd(takeFd(reply, required<Json>(reply.parameters, "fileDescriptor")));
    }
    UniqueFd fd(std::uint64_t id, int targetFd) override {
        ReplyMessage reply = call("GetFd", {{"id", id}, {"fd", targetFd}});
        return takeFd(reply, required<Json>(reply.parameters, "fileDescriptor"));
    }

    std::string daemonVersion() override { return required<std::string>(serviceInfo(), "version"); }
    std::vector<std::string> kernelFeatures() override {
        return required<std::vector<std::string>>(serviceInfo(), "kernelFeatures");
    }
    unsigned trackedCount() override {
        return required<unsigned>(serviceInfo(), "trackedProcesses");
    }

    void subscribe() override {
        subscribed_ = true;
        if (!news_) {
            watch();
        }
    }
    // Level-triggered: readable while the news connection has something unread.
    int eventFd() const override { return epoll_.get(); }
    short pollEvents() const override { return POLLIN; }
    std::optional<std::chrono::microseconds> pollTimeout() const override {
        if (news_ && news_->hasNext()) {
            return std::chrono::microseconds(0);
        }
        if (subscribed_ && !news_) {
            return std::chrono::duration_cast<std::chrono::microseconds>(kResubscribeInterval);
        }
        return std::nullopt;
    }
    void processEvents() override {
        if (!subscribed_) {
            return;
        }
        if (!news_ && !rewatch()) {
            return;  // nsfdd is still away: try again after kResubscribeInterval
        }
        bool open = true;
        try {
            open = news_->readAvailable();
            while (std::optional<ReplyMessage> reply = news_->next()) {
                if (reply->error) {
                    throwReplyError(*reply->error, reply->parameters);
                }
                auto id = required<std::uint64_t>(reply->parameters, "id");
                onExit_(ExitEvent{nsfd::dbus::processObjectPath(id),
                                  field<pid_t>(reply->parameters, "pid", 0), id,
                                  field<int>(reply->parameters, "waitStatus", kNoExitStatus)});
            }
        } catch (...) {
            // The stream cannot go on (an error, or what is not a reply):
            // the next processing watches again.
            news_.reset();
            throw;
        }
        if (!open) {
            // nsfdd stopped or restarted: watch again at once (socket
            // activation queues the connection).
            news_.reset();
            rewatch();
        }
    }

  private:
    ReplyMessage call(std::string_view method, Json parameters, std::span<const int> fds = {}) {
        if (interactive_) {
            parameters[nsfd::varlink::kAllowInteractive] = true;
        }
        auto deadline = std::chrono::steady_clock::now() +
                        (interactive_ ? kInteractiveCallTimeout : kCallTimeout);
        // A connection that nsfdd closed while we were idle (a restart): a new
        // one, before anything is sent, so that the call is made exactly once.
        if (!calls_ || calls_->broken()) {
            calls_.reset();
            calls_ = std::make_unique<Connection>(path_);
        }
        std::string message = nsfd::varlink::encodeCall(
            std::string(nsfd::varlink::kInterface) + "." + std::string(method), parameters);
        ReplyMessage reply;
        try {
            calls_->send(message, fds, deadline);
            reply = calls_->receive(deadline);
        } catch (...) {
            calls_.reset();  // what is left on it belongs to no call
            throw;
        }
        if (reply.fdLoss == nsfd::varlink::FdLoss::NotReceived) {
            throwCallerOutOfFds(
                "the kernel could not give it the fds of nsfdd's reply "
                "(MSG_CTRUNC)");
        }
        if (reply.continues) {
            calls_.reset();
            throwErrorOf(ErrorKind::Failed, "nsfdd answered a call without \"more\" with a stream");
        }
        if (reply.error) {
            throwReplyError(*reply.error, reply.parameters);
        }
        return reply;
    }

    ReplyMessage callOn(ProcessRef ref, std::string_view method, Json parameters) {
        if (ref.pidfd) {
            int fd = ref.pidfd->get();
            parameters["pidfd"] = 0;
            return call(method, std::move(parameters), std::span(&fd, 1));
        }
        if (ref.selector) {
            parameters["selector"] = *ref.selector;
            return call(method, std::move(parameters));
        }
        parameters["id"] = ref.id;
        return call(method, std::move(parameters));
    }

    Json serviceInfo() { return call("GetServiceInfo", Json::object()).parameters; }

    // A new news stream, in place once nsfdd's first reply ("ready") came.
    // Watches again after the stream was lost, and tells the client to look
    // again at what it waits for. False while nsfdd cannot be reached, for up to
    // kResubscribeLimit; then DaemonUnavailable, at each try until it is back.
    bool rewatch() {
        try {
            watch();
        } catch (const DaemonUnavailable& e) {
            auto now = std::chrono::steady_clock::now();
            if (!lostSince_) {
                lostSince_ = now;
            }
            if (now - *lostSince_ < kResubscribeLimit) {
                return false;
            }
            throw DaemonUnavailable(
                e.dbusName(), std::string("nsfdd has been unreachable for ") +
                                  std::to_string(std::chrono::duration_cast<std::chrono::seconds>(
                                                     now - *lostSince_)
                                                     .count()) +
                                  " s, no exits are watched: " + e.what());
        }
        lostSince_.reset();
        onResubscribed_();
        return true;
    }

    void watch() {
        auto connection = std::make_unique<Connection>(path_);
        auto deadline = std::chrono::steady_clock::now() + kCallTimeout;
        connection->send(
            nsfd::varlink::encodeCall(std::string(nsfd::varlink::kInterface) + ".WatchExits",
                                      Json::object(), /*more=*/true),
            {}, deadline);
        ReplyMessage ready = connection->receive(deadline);
        if (ready.error) {
            throwReplyError(*ready.error, ready.parameters);
        }
        if (!ready.continues || !field<bool>(ready.parameters, "ready", false)) {
            throwErrorOf(ErrorKind::Failed,
                         "nsfdd's WatchExits did not begin with its ready reply");
        }
        epoll_event event{};
        event.events = EPOLLIN;
        if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, connection->fd(), &event) < 0) {
            throwUnavailable("epoll_ctl()", errno);
        }
        news_ = std::move(connection);  // closing it later takes it out of the epoll set
    }

    std::string path_;
    std::unique_ptr<Connection> calls_;
    std::unique_ptr<Connection> news_;
    // Since when the news stream is lost and nsfdd cannot be reached.
    std::optional<std::chrono::steady_clock::time_point> lostSince_;
    ExitSink onExit_;
    ResubscribedSink onResubscribed_;
    UniqueFd epoll_;
    bool interactive_ = false;
    bool subscribed_ = false;
};

}  // namespace

std::unique_ptr<Transport> connectVarlink(const std::string& socketPath, Transport::ExitSink onExit,
                                          Transport::ResubscribedSink onResubscribed) {
    return std::make_unique<VarlinkTransport>(socketPath, std::move(onExit),
                                              std::move(onResubscribed));
}

}  // namespace nsfd::detail
