// SPDX-License-Identifier: LGPL-2.1-or-later
#include "server.hpp"

#include <algorithm>

#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <system_error>

#include "connection.hpp"
#include "service_idl.hpp"
#include "varlink/errors.hpp"

namespace nsfd::daemon::varlink {

using namespace nsfd::varlink;  // the wire format (../../varlink)

namespace {

constexpr int kAcceptsPerWakeup = 64;
// Out of fds: stop accepting for this long rather than spin on the backlog.
constexpr std::uint64_t kAcceptPauseUsec = 100'000;
constexpr std::string_view kServiceInterface = "org.varlink.service";

[[noreturn]] void fail(int errnum, const std::string& what) {
    throw std::system_error(errnum, std::generic_category(), what);
}

}  // namespace

Server::Server(sd_event* event, ServerInfo info, ServerLimits limits)
    : event_(sd_event_ref(event)), info_(std::move(info)), limits_(limits) {
    addInterface(kServiceIdl);
}

Server::~Server() {
    destroying_ = true;
    acceptSource_.reset();
    resumeSource_.reset();
    auto connections = std::move(connections_);
    for (auto& [raw, connection] : connections) {
        connection->close();
    }
    connections.clear();
    struct stat st {};
    if (!boundPath_.empty() && ::lstat(boundPath_.c_str(), &st) == 0 && st.st_ino == boundInode_) {
        ::unlink(boundPath_.c_str());
    }
    sd_event_unref(event_);
}

void Server::addInterface(std::string description) {
    idl::Interface parsed = idl::parse(description);
    std::string name = parsed.name;
    if (interfaces_.find(name) != interfaces_.end()) {
        throw std::logic_error("Varlink interface " + name + " added twice");
    }
    interfaces_.emplace(std::move(name), Interface{std::move(description), std::move(parsed)});
}

void Server::addMethod(std::string_view method, Handler handler, MethodFlags flags) {
    std::string_view interfaceName = method.substr(0, method.rfind('.'));
    auto interface = interfaces_.find(interfaceName);
    const idl::Method* signature =
        interface == interfaces_.end()
            ? nullptr
            : interface->second.parsed.method(method.substr(interfaceName.size() + 1));
    if (signature == nullptr) {
        throw std::logic_error("Varlink method " + std::string(method) +
                               " is not in an added interface's description");
    }
    methods_.insert_or_assign(std::string(method), Method{std::move(handler), flags,
                                                          &interface->second.parsed, signature});
}

void Server::listen(UniqueFd socket) {
    int flags = ::fcntl(socket.get(), F_GETFL);
    if (flags < 0 || ::fcntl(socket.get(), F_SETFL, flags | O_NONBLOCK) < 0) {
        fail(errno, "Failed to make the Varlink socket non-blocking");
    }
    sd_event_source* source = nullptr;
    int r = sd_event_add_io(event_, &source, socket.get(), EPOLLIN, &Server::onAccept, this);
    if (r < 0) {
        fail(-r, "Failed to watch the Varlink socket");
    }
    acceptSource_.reset(source);
    listening_ = std::move(socket);
}

void Server::bind(const std::string& path) {
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    if (path.empty() || path.size() >= sizeof(address.sun_path)) {
        fail(ENAMETOOLONG, "Failed to bind Varlink socket " + path);
    }
    std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
    std::filesystem::path parent = std::filesystem::path(path).parent_path();
    std::error_code ec;
    if (!parent.empty() && !std::filesystem::create_directories(parent, ec) && ec) {
        fail(ec.value(), "Failed to create " + parent.string());
    }
    UniqueFd socket(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!socket.ok()) {
        fail(errno, "Failed to create the Varlink socket");
    }
    // A socket left by an earlier run would make bind() fail; anything else stays.
    struct stat st {};
    if (::lstat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) {
        ::unlink(path.c_str());
    }
    if (::bind(socket.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)) < 0) {
        fail(errno, "Failed to bind Varlink socket " + path);
    }
    // Everybody may connect: who may do what is decided per call.
    if (::chmod(path.c_str(), 0666) < 0 || ::lstat(path.c_str(), &st) < 0) {
        fail(errno, "Failed to set the mode of " + path);
    }
    if (::listen(socket.get(), SOMAXCONN) < 0) {
        fail(errno, "Failed to listen on " + path);
    }
    boundPath_ = path;
    boundInode_ = st.st_ino;
    listen(std::move(socket));
}

int Server::onAccept(sd_event_source*, int, std::uint32_t, void* userdata) {
    static_cast<Server*>(userdata)->acceptSome();
    return 0;
}

int Server::onResumeAccept(sd_event_source*, std::uint64_t, void* userdata) {
    auto* server = static_cast<Server*>(userdata);
    sd_event_source_set_enabled(server->acceptSource_.get(), SD_EVENT_ON);
    server->resumeSource_.reset();
    return 0;
}

void Server::pauseAccepting() {
    sd_event_source* timer = nullptr;
    if (sd_event_add_time_relative(event_, &timer, CLOCK_MONOTONIC, kAcceptPauseUsec, 0,
                                   &Server::onResumeAccept, this) >= 0) {
        resumeSource_.reset(timer);
        sd_event_source_set_enabled(acceptSource_.get(), SD_EVENT_OFF);
    }
}

void Server::acceptSome() {
    for (int i = 0; i < kAcceptsPerWakeup; ++i) {
        UniqueFd socket(
            ::accept4(listening_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
        if (!socket.ok()) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                pauseAccepting();
            }
            if (errno == ECONNABORTED || errno == EINTR) {
                continue;
            }
            return;
        }
        Peer peer;
        try {
            peer = readPeer(socket.get());
        } catch (const std::system_error&) {
            continue;  // closing it is all we can do
        }
        // Refused connections are simply closed: the client sees end of file.
        // The last rootConnections are root's: others cannot lock it out.
        std::size_t room = peer.uid == 0
                               ? limits_.maxConnections
                               : limits_.maxConnections -
                                     std::min(limits_.rootConnections, limits_.maxConnections);
        if (connections_.size() >= room) {
            report(peer, "connection refused: too many connections");
            continue;
        }
        // A user's rootless containers count as that user.
        std::size_t& count = perUid_[peer.account];
        if (count >= limits_.maxConnectionsPerUid) {
            report(peer, peer.account == peer.uid
                             ? "connection refused: too many connections of this uid"
                             : "connection refused: too many connections of uid " +
                                   std::to_string(peer.account) +
                                   ", which owns this uid's user namespace");
            if (count == 0) {
                perUid_.erase(peer.account);
            }
            continue;
        }
        auto connection = std::make_shared<Connection>(
            *this, std::move(socket), std::make_shared<const Peer>(std::move(peer)));
        try {
            connection->start(event_);
        } catch (const std::system_error&) {
            continue;
        }
        ++count;
        connections_.emplace(connection.get(), std::move(connection));
    }
}

void Server::connectionClosed(Connection& connection) {
    if (destroying_) {
        return;
    }
    auto it = connections_.find(&connection);
    if (it == connections_.end()) {
        return;
    }
    auto uid = perUid_.find(connection.peer().account);
    if (uid != perUid_.end() && --uid->second == 0) {
        perUid_.erase(uid);
    }
    std::shared_ptr<Connection> closed = std::move(it->second);
    connections_.erase(it);  // the caller holds its own reference until it returns
    if (closedHook_) {
        closedHook_(closed->sharedPeer());
    }
}

void Server::report(const Peer& peer, std::string_view what) const {
    if (hook_) {
        hook_(peer, what);
    }
}

void Server::dispatch(const CallPtr& call) {
    const std::string& name = call->method();
    std::string_view interfaceName = std::string_view(name).substr(0, name.rfind('.'));
    const idl::Interface* interface = nullptr;
    const idl::Method* signature = nullptr;
    const Method* method = nullptr;
    bool builtin = interfaceName == kServiceInterface;
    if (builtin) {
        interface = &interfaces_.find(interfaceName)->second.parsed;
        signature = interface->method(std::string_view(name).substr(interfaceName.size() + 1));
    } else if (auto found = methods_.find(name); found != methods_.end()) {
        method = &found->second;
        interface = method->interface;
        signature = method->signature;
    }
    if (signature == nullptr) {
        if (interfaces_.find(interfaceName) == interfaces_.end()) {
            call->error(error::kInterfaceNotFound, {{"interface", std::string(interfaceName)}});
        } else {
            call->error(error::kMethodNotFound, {{"method", name}});
        }
        return;
    }
    if (method == nullptr || !method->flags.acceptsFds) {
        call->message_.fds.clear();
    }
    if (call->message_.upgrade) {
        call->invalidParameter("upgrade");  // no method here upgrades the connection
        return;
    }
    // As sd-varlink (varlink_idl_validate_method_call): the signature first, so
    // that a handler sees only calls its IDL allows.
    if (signature->more == idl::More::Requires && !call->more()) {
        call->error(error::kExpectedMore);
        return;
    }
    if (signature->more == idl::More::None && call->more()) {
        call->invalidParameter("more");  // it would get one reply, never "continues"
        return;
    }
    if (std::optional<std::string> bad =
            idl::checkInput(*interface, *signature, call->parameters())) {
        call->invalidParameter(*bad);
        return;
    }
    if (builtin) {
        this->builtin(call);
        return;
    }
    try {
        method->handler(call);
    } catch (const std::exception& e) {
        report(call->peer(), std::string("handler of ") + name + " threw: " + e.what());
        call->error(info_.failedError, {{"message", e.what()}});
    }
}

void Server::builtin(const CallPtr& call) {
    const std::string& name = call->method();
    if (name == "org.varlink.service.GetInfo") {
        Json interfaces = Json::array();
        for (const auto& [interface, entry] : interfaces_) {
            interfaces.push_back(interface);
        }
        call->reply({{"vendor", info_.vendor},
                     {"product", info_.product},
                     {"version", info_.version},
                     {"url", info_.url},
                     {"interfaces", interfaces}});
    } else if (name == "org.varlink.service.GetInterfaceDescription") {
        const std::string& interface =
            call->parameters().at("interface").get_ref<const std::string&>();
        auto found = interfaces_.find(interface);
        if (found == interfaces_.end()) {
            call->error(error::kInterfaceNotFound, {{"interface", interface}});
            return;
        }
        call->reply({{"description", found->second.description}});
    } else {
        call->error(error::kMethodNotFound, {{"method", name}});
    }
}

}  // namespace nsfd::daemon::varlink
