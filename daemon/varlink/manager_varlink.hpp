// SPDX-License-Identifier: LGPL-2.1-or-later
// The Varlink endpoint: org.nsfd1.Manager on a socket, on the same core and
// the same authorization step as the D-Bus endpoint. Every handler has the
// D-Bus one's shape: decode the parameters, authorize once (authorizeThen),
// call the core, encode the reply; any error becomes its named Varlink error
// in one place (replyCurrentError).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "core/manager.hpp"
#include "server.hpp"

namespace nsfd::daemon::varlink {

// A parameter with a value nsfdd cannot use: InvalidArgument naming it.
class ParameterError : public ServiceError {
  public:
    ParameterError(std::string_view parameter, const std::string& message)
        : ServiceError(ErrorKind::InvalidArgs, message), parameter_(parameter) {}
    const std::string& parameter() const noexcept { return parameter_; }

  private:
    std::string parameter_;
};

// Answers `call` with the error of the exception in flight: the one place
// where core errors get their Varlink names. Call it only from a catch block.
void replyCurrentError(varlink::Call& call) noexcept;
// Answers `call` with the error of `kind`.
void replyError(varlink::Call& call, ErrorKind kind, const std::string& message) noexcept;

class VarlinkEndpoint final : public ManagerObserver {
  public:
    // Registers the interface and its methods; serves nothing until listen() or bind().
    VarlinkEndpoint(EventLoop& loop, Manager& manager);
    ~VarlinkEndpoint() override;
    VarlinkEndpoint(const VarlinkEndpoint&) = delete;
    VarlinkEndpoint& operator=(const VarlinkEndpoint&) = delete;

    // A listening socket (from systemd) or a path to bind. Throw std::system_error.
    void listen(UniqueFd socket) { server_.listen(std::move(socket)); }
    void bind(const std::string& path) { server_.bind(path); }

    Manager& core() noexcept { return manager_; }
    // Who is calling, from the socket: SO_PEERCRED, SO_PEERGROUPS, the peer's pidfd.
    Caller callerOf(const varlink::Call& call);

    // The one authorization step of a handler: runs `body(call)` (core,
    // encode) if the Authorizer allowed, or answers with the denial. The
    // answer may come later (polkit): `body` holds what it needs by value.
    template <typename Body>
    void authorizeThen(const varlink::CallPtr& call, const Caller& caller, const Request& request,
                       Body&& body) {
        if (manager_.authorizer().allowsAtOnce(caller, request)) {
            // Most calls: no callback for a decider that may answer later.
            try {
                body(*call);
            } catch (...) {
                replyCurrentError(*call);
            }
            return;
        }
        auto run = std::make_shared<std::decay_t<Body>>(std::forward<Body>(body));
        manager_.authorizer().authorize(caller, request, [call, run](const Decision& decision) {
            if (!decision.allowed) {
                replyError(*call, decision.error, decision.message);
                return;
            }
            try {
                (*run)(*call);
            } catch (...) {
                replyCurrentError(*call);
            }
        });
    }

    // A WatchExits stream: `id` for one process only.
    void watchExits(const varlink::CallPtr& call, const Caller& caller,
                    std::optional<std::uint64_t> id);

    // ManagerObserver: the WatchExits streams.
    void processStateChanged(const TrackedProcess& process) override;
    void processRemoved(const TrackedProcess& process) override;

  private:
    struct Watcher {
        varlink::CallPtr call;
        Caller caller;
        std::optional<std::uint64_t> id;
    };
    struct CachedCaller {
        std::weak_ptr<const varlink::Peer> peer;
        Caller caller;         // without its pidfd, which is the peer's
        bool checked = false;  // identifyProcess() vouched for the peer's pidfd
    };

    Caller identify(const std::shared_ptr<const varlink::Peer>& peer) const;
    // Its connection has ended: the authorization step drops what waits for it.
    void connectionClosed(const std::shared_ptr<const varlink::Peer>& peer) noexcept;

    Manager& manager_;
    varlink::Server server_;
    OwnNamespaces own_;  // nsfdd's pid and user namespaces
    std::unordered_map<const varlink::Peer*, CachedCaller> callers_;
    std::map<std::uint64_t, Watcher> watchers_;
    std::uint64_t nextWatcher_ = 1;
};

// Registers org.nsfd1.Manager's methods on `server` (manager_methods.cpp).
void addManagerMethods(varlink::Server& server, VarlinkEndpoint& endpoint);

}  // namespace nsfd::daemon::varlink
