// SPDX-License-Identifier: LGPL-2.1-or-later
// A Varlink server on sd-event: listens on an AF_UNIX stream socket, accepts
// clients with their identity read from the socket, checks each call against
// its method's signature in the interface description (varlink/idl.hpp, as
// sd-varlink does), and only then dispatches it to the handler registered for
// its "interface.Method". Answers org.varlink.service.GetInfo and
// GetInterfaceDescription itself.
//
// Every bound here is per connection or per uid, so no client can stall or
// starve another: a client that breaks one is disconnected, alone.
//
//   Server server(loop.get(), {"nsfd", "nsfdd", version, url});
//   server.addInterface(std::string(idl));              // "interface org.example.Foo ..."
//   server.addMethod("org.example.Foo.Get", [&](const CallPtr& call) {
//       // call->parameters() already matches Get's input in the IDL
//       call->reply({{"fileDescriptor", 0}}, std::move(fds));   // now, or later on the loop
//   }, kTakesFds);
//   server.bind("/run/example/org.example.Foo");   // or listen(fd from sd_listen_fds)
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>

#include "call.hpp"
#include "event_source.hpp"
#include "peer.hpp"
#include "varlink/codec.hpp"
#include "varlink/idl.hpp"

namespace nsfd::daemon::varlink {

struct ServerInfo {
    std::string vendor;
    std::string product;
    std::string version;
    std::string url;
    // The served interface's own errors that the server sends itself: for a
    // handler's exception ("org.example.Foo.Failed", with {"message": what()})
    // and for a call with more fds than DecodeLimits allow (with {"limit":
    // "fileDescriptors", "maximum": N}).
    std::string failedError;
    std::string limitExceededError;
};

struct ServerLimits {
    DecodeLimits decode;
    // Connections cost an fd and a few KiB each; the per-uid bound keeps one
    // user from taking them all. Worst case held fds: maxConnections *
    // (1 + maxUnsentFds) = 66,000, under the 524,288 systemd gives a service.
    std::size_t maxConnections = 512;
    // Per user: a peer in a user namespace below nsfdd's counts as the
    // namespace's user (Peer::account), whichever of its uids it runs as.
    std::size_t maxConnectionsPerUid = 64;
    // Of maxConnections, those only root may take (and root's own uid bound
    // is maxConnectionsPerUid as for everyone).
    std::size_t rootConnections = 32;
    // Replies a client has not read yet, fds included (each held fd counts
    // against nsfdd's RLIMIT_NOFILE). Beyond either bound the client is
    // disconnected. 4 MiB holds ListProcesses of 100,000 processes.
    std::size_t maxUnsentBytes = 4 * 1024 * 1024;
    std::size_t maxUnsentFds = 128;
    // Calls read but not answered yet (pipelined, or waiting for authorization):
    // beyond this the connection is simply not read until some are answered.
    std::size_t maxPendingCalls = 64;
};

// What the IDL does not say of a method. (Whether it streams, the IDL says:
// see idl::More.)
struct MethodFlags {
    // Fds sent with a call of a method without this are closed before dispatch.
    bool acceptsFds = false;
};
inline constexpr MethodFlags kTakesFds{.acceptsFds = true};

// Answers `call` now (call->reply(...)) or keeps it to answer later. Its
// parameters match the method's input in the IDL. Must not throw: an exception
// is answered with ServerInfo::failedError, and reported.
using Handler = std::function<void(const CallPtr& call)>;

// What a client did wrong, or a limit it hit; for the daemon to log.
using ProtocolErrorHook = std::function<void(const Peer& peer, std::string_view what)>;

// A connection has ended (the client hung up, or was disconnected), with its
// peer: for what the daemon still holds for it elsewhere, such as calls
// waiting for an authorization check. Must not throw.
using ConnectionClosedHook = std::function<void(const std::shared_ptr<const Peer>& peer)>;

class Server final {
  public:
    Server(sd_event* event, ServerInfo info, ServerLimits limits = {});
    ~Server();
    Server(const Server&) = delete;
    Server& operator=(const Server&) = delete;

    // An interface, by its description (IDL): calls of its methods are checked
    // against it, and GetInterfaceDescription returns it. Throws
    // idl::ParseError if it does not parse, std::logic_error if an interface
    // of that name was added before.
    void addInterface(std::string description);
    // "interface.Method", a method of an added interface. Throws
    // std::logic_error if the interface's description has no such method.
    void addMethod(std::string_view method, Handler handler, MethodFlags flags = {});
    void setProtocolErrorHook(ProtocolErrorHook hook) { hook_ = std::move(hook); }
    void setConnectionClosedHook(ConnectionClosedHook hook) { closedHook_ = std::move(hook); }

    // Serves on a listening socket (from socket activation). Throws std::system_error.
    void listen(UniqueFd socket);
    // Creates the socket at `path` (mode 0666, parent directories made, a stale
    // socket replaced) and serves on it; removes it again on destruction.
    void bind(const std::string& path);

    std::size_t connectionCount() const noexcept { return connections_.size(); }
    const ServerLimits& limits() const noexcept { return limits_; }
    const ServerInfo& info() const noexcept { return info_; }

  private:
    friend class Connection;
    struct Interface {
        std::string description;
        nsfd::varlink::idl::Interface parsed;
    };
    struct Method {
        Handler handler;
        MethodFlags flags;
        const nsfd::varlink::idl::Interface* interface;  // in interfaces_, whose nodes never move
        const nsfd::varlink::idl::Method* signature;
    };

    static int onAccept(sd_event_source* source, int fd, std::uint32_t revents, void* userdata);
    static int onResumeAccept(sd_event_source* source, std::uint64_t usec, void* userdata);
    void acceptSome();
    void pauseAccepting();
    void dispatch(const CallPtr& call);
    void builtin(const CallPtr& call);
    void connectionClosed(Connection& connection);
    void report(const Peer& peer, std::string_view what) const;

    sd_event* event_;
    ServerInfo info_;
    ServerLimits limits_;
    ProtocolErrorHook hook_;
    ConnectionClosedHook closedHook_;
    std::map<std::string, Interface, std::less<>> interfaces_;
    // By full name ("org.nsfd1.Manager.GetNamespace"), looked up once per call:
    // a hash and one compare, not five compares of a shared 18-byte prefix.
    std::unordered_map<std::string, Method> methods_;
    UniqueFd listening_;
    EventSource acceptSource_;
    EventSource resumeSource_;
    std::string boundPath_;
    ino_t boundInode_ = 0;
    std::map<Connection*, std::shared_ptr<Connection>> connections_;
    std::map<uid_t, std::size_t> perUid_;
    bool destroying_ = false;
};

}  // namespace nsfd::daemon::varlink
