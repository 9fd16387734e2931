// SPDX-License-Identifier: LGPL-2.1-or-later
#include "manager_varlink.hpp"

#include <spdlog/spdlog.h>

#include <system_error>
#include <vector>

#include "varlink/manager_idl.hpp"
#include "version.hpp"

namespace nsfd::daemon::varlink {

void replyError(Call& call, ErrorKind kind, const std::string& message) noexcept {
    try {
        call.error(varlinkErrorName(kind), {{"message", message}});
    } catch (...) {
        spdlog::warn("Failed to answer {} with an error", call.method());
    }
}

void replyCurrentError(Call& call) noexcept {
    try {
        throw;
    } catch (const ParameterError& e) {
        try {
            call.error(varlinkErrorName(e.kind()),
                       {{"parameter", e.parameter()}, {"message", std::string(e.what())}});
        } catch (...) {
            spdlog::warn("Failed to answer {} with an error", call.method());
        }
    } catch (const SocketError& e) {
        try {
            call.error(varlinkErrorName(e.kind()),
                       {{"errno", e.error()}, {"message", std::string(e.what())}});
        } catch (...) {
            spdlog::warn("Failed to answer {} with an error", call.method());
        }
    } catch (...) {
        auto [kind, message] = currentError();
        replyError(call, kind, message);
    }
}

VarlinkEndpoint::VarlinkEndpoint(EventLoop& loop, Manager& manager)
    : manager_(manager),
      server_(loop.get(),
              {"nsfd", "nsfdd", kVersion, "", std::string(varlinkErrorName(ErrorKind::Failed)),
               std::string(varlinkErrorName(ErrorKind::LimitExceeded))}),
      own_(OwnNamespaces::ofSelf()) {
    server_.setProtocolErrorHook([](const varlink::Peer& peer, std::string_view what) {
        spdlog::info("Varlink client pid {} uid {}: {}", peer.pid, peer.uid, what);
    });
    server_.setConnectionClosedHook(
        [this](const std::shared_ptr<const varlink::Peer>& peer) { connectionClosed(peer); });
    server_.addInterface(std::string(varlink::kManagerIdl));
    addManagerMethods(server_, *this);
    manager_.addObserver(*this);
}

VarlinkEndpoint::~VarlinkEndpoint() {
    manager_.removeObserver(*this);
    // The streams end with the server's connections; nobody needs telling.
    for (auto& [key, watcher] : watchers_) {
        watcher.call->onDisconnect(nullptr);
    }
    watchers_.clear();
}

Caller VarlinkEndpoint::identify(const std::shared_ptr<const varlink::Peer>& peer) const {
    Caller caller;
    caller.uid = peer->uid;
    caller.gid = peer->gid;
    caller.pid = peer->pid;
    caller.groups = peer->groups;
    // The peer's pidfd (SO_PEERPIDFD, held since connect and for the
    // connection's life) cannot name another process. Without it (a kernel
    // before 6.5) nothing is checked, and the caller fails closed.
    std::shared_ptr<const PidFd> pidfd;
    if (peer->pidfd) {
        pidfd = std::shared_ptr<const PidFd>(peer, &*peer->pidfd);  // lives with the connection
    }
    // Fails closed: a process gone or unchecked leaves a caller from a foreign
    // pid namespace (no raw pids), in a sandbox, with no start time for polkit.
    // Its ids stay SO_PEERCRED's, fixed at connect: never the process's ids of
    // now, which a setuid or setgid program it has exec'd since (while a child
    // of it keeps the connection) would have changed.
    identifyProcess(caller, std::move(pidfd), own_);
    return caller;
}

Caller VarlinkEndpoint::callerOf(const Call& call) {
    const std::shared_ptr<const varlink::Peer>& peer = call.sharedPeer();
    auto it = callers_.find(peer.get());
    // A live weak_ptr at the same address is the same connection.
    if (it == callers_.end() || it->second.peer.lock() != peer) {
        if (callers_.size() > 2 * server_.connectionCount() + 16) {
            std::erase_if(callers_, [](const auto& entry) { return entry.second.peer.expired(); });
        }
        Caller identified = identify(peer);
        bool checked = identified.pidfd != nullptr;
        identified.pidfd.reset();  // the cache must not keep the connection's peer alive
        it = callers_
                 .insert_or_assign(peer.get(), CachedCaller{peer, std::move(identified), checked})
                 .first;
    }
    Caller caller = it->second.caller;
    if (it->second.checked) {
        caller.pidfd = std::shared_ptr<const PidFd>(peer, &*peer->pidfd);
    }
    const Json* interactive = call.parameters().find(nsfd::varlink::kAllowInteractive);
    caller.allowInteractive =
        interactive != nullptr && interactive->is_boolean() && interactive->get<bool>();
    return caller;
}

void VarlinkEndpoint::connectionClosed(const std::shared_ptr<const varlink::Peer>& peer) noexcept {
    auto it = callers_.find(peer.get());
    if (it == callers_.end() || it->second.peer.lock() != peer) {
        return;  // it never called
    }
    if (it->second.checked) {  // unchecked callers are never queued (fail closed)
        try {
            Caller caller = it->second.caller;
            caller.pidfd = std::shared_ptr<const PidFd>(peer, &*peer->pidfd);
            manager_.authorizer().callerGone(caller);
        } catch (const std::exception&) {
            // Out of memory: its checks go when their turn comes.
        }
    }
    callers_.erase(it);
}

namespace {

Json exitOf(const Manager& core, const Caller& caller, const TrackedProcess& process) {
    return {{"id", process.id()},
            {"pid", core.pidFor(caller, process.pid())},
            {"waitStatus", process.exitStatus().value_or(kNoExitStatus)}};
}

}  // namespace

void VarlinkEndpoint::watchExits(const CallPtr& call, const Caller& caller,
                                 std::optional<std::uint64_t> id) {
    // The first reply says the watch is in place: from then on no exit is missed.
    const Json ready = {{"ready", true}};
    if (id) {
        TrackedProcess& process = manager_.tracked(caller, *id);
        if (process.state() == ProcessState::Reaped) {
            call->notify(ready);
            call->reply(exitOf(manager_, caller, process));
            return;
        }
    }
    std::uint64_t key = nextWatcher_++;
    watchers_.emplace(key, Watcher{call, caller, id});
    call->onDisconnect([this, key] { watchers_.erase(key); });
    call->notify(ready);
}

void VarlinkEndpoint::processStateChanged(const TrackedProcess& process) {
    if (process.state() != ProcessState::Reaped) {
        return;
    }
    std::vector<std::uint64_t> keys;
    for (const auto& [key, watcher] : watchers_) {
        keys.push_back(key);
    }
    // A client over its bound is disconnected while told: its watcher goes meanwhile.
    for (std::uint64_t key : keys) {
        auto it = watchers_.find(key);
        if (it == watchers_.end() || (it->second.id && *it->second.id != process.id()) ||
            !manager_.isVisible(it->second.caller, process)) {
            continue;
        }
        Json exit = exitOf(manager_, it->second.caller, process);
        if (it->second.id) {
            CallPtr call = std::move(it->second.call);
            watchers_.erase(it);
            call->reply(exit);
        } else {
            it->second.call->notify(exit);
        }
    }
}

void VarlinkEndpoint::processRemoved(const TrackedProcess& process) {
    // A stream of one process that goes before it is reaped (untracked) ends.
    std::vector<CallPtr> ended;
    std::erase_if(watchers_, [&](auto& entry) {
        if (entry.second.id != process.id()) {
            return false;
        }
        ended.push_back(std::move(entry.second.call));
        return true;
    });
    for (const CallPtr& call : ended) {
        replyError(*call, ErrorKind::NotTracked,
                   "Process " + std::to_string(process.id()) + " is no longer tracked");
    }
}

}  // namespace nsfd::daemon::varlink
