// SPDX-License-Identifier: LGPL-2.1-or-later
// One method call, handed to a handler. The handler may answer at once or keep
// the CallPtr and answer later (after an asynchronous authorization step, say):
// replies on a connection still leave in the order the calls came.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "peer.hpp"
#include "varlink/codec.hpp"

namespace nsfd::daemon::varlink {

// The wire format's names this layer speaks in (../../varlink).
using nsfd::varlink::CallMessage;
using nsfd::varlink::DecodeLimits;
using nsfd::varlink::Json;
using nsfd::varlink::Parameters;

class Connection;
struct Outgoing;

class Call final {
  public:
    Call(std::weak_ptr<Connection> connection, std::shared_ptr<const Peer> peer,
         CallMessage message);
    Call(const Call&) = delete;
    Call& operator=(const Call&) = delete;

    const std::string& method() const noexcept { return message_.method; }
    // By name (Parameters::find); by dispatch they match the method's input in the IDL.
    const Parameters& parameters() const noexcept { return message_.parameters; }
    bool more() const noexcept { return message_.more; }
    bool oneway() const noexcept { return message_.oneway; }
    const Peer& peer() const noexcept { return *peer_; }
    // The same peer, shared by every call of the connection: lives as long as it.
    const std::shared_ptr<const Peer>& sharedPeer() const noexcept { return peer_; }

    // The fds sent with the call (none unless the method accepts fds); the
    // parameters name them by index. Takes the one at `index`: not ok() if
    // there is none, or it was taken already.
    std::size_t fdCount() const noexcept { return message_.fds.size(); }
    UniqueFd takeFd(std::size_t index);

    // False once the client has gone (or was disconnected): replies are then
    // dropped and their fds closed.
    bool connected() const;

    // The final reply. `fds` go with it; `parameters` refers to them by index.
    // Each returns false when the reply was dropped (gone, or already answered).
    bool reply(const Json& parameters = Json::object(), std::vector<UniqueFd> fds = {});
    // The final reply of a method that hands out one fd: {"fileDescriptor": 0}
    // with `fd`. Its bytes are made once, and sent from there (figure 11b).
    bool replyWithFd(UniqueFd fd);
    // One of several replies ("continues": true) to a call made with "more".
    bool notify(const Json& parameters, std::vector<UniqueFd> fds = {});
    // The final answer, as an error: error::k... names, or org.nsfd1.Manager.*.
    bool error(std::string_view name, const Json& parameters = Json::object());
    // org.varlink.service.InvalidParameter {"parameter": name}
    bool invalidParameter(std::string_view name);

    // Runs `callback` once if the connection ends before the call is answered:
    // how a stream ("more") learns that its subscriber is gone.
    void onDisconnect(std::function<void()> callback) { onDisconnect_ = std::move(callback); }

  private:
    friend class Connection;
    friend class Server;
    bool send(Outgoing reply, bool final);
    void disconnected();

    std::weak_ptr<Connection> connection_;
    std::shared_ptr<const Peer> peer_;
    CallMessage message_;
    bool answered_ = false;
    std::function<void()> onDisconnect_;
};

using CallPtr = std::shared_ptr<Call>;

}  // namespace nsfd::daemon::varlink
