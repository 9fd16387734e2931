// SPDX-License-Identifier: LGPL-2.1-or-later
#include "call.hpp"

#include "connection.hpp"
#include "varlink/errors.hpp"

namespace nsfd::daemon::varlink {

using namespace nsfd::varlink;  // the wire format (../../varlink)

namespace {

// A reply whose bytes are its own.
Outgoing owning(std::string bytes, std::vector<UniqueFd> fds = {}) {
    return Outgoing{
        .owned = std::move(bytes), .shared = nullptr, .fds = std::move(fds), .offset = 0};
}

}  // namespace

Call::Call(std::weak_ptr<Connection> connection, std::shared_ptr<const Peer> peer,
           CallMessage message)
    : connection_(std::move(connection)), peer_(std::move(peer)), message_(std::move(message)) {
    answered_ = message_.oneway;
}

UniqueFd Call::takeFd(std::size_t index) {
    if (index >= message_.fds.size()) {
        return UniqueFd();
    }
    return std::move(message_.fds[index]);
}

bool Call::connected() const {
    std::shared_ptr<Connection> connection = connection_.lock();
    return connection && connection->open();
}

bool Call::send(Outgoing reply, bool final) {
    if (answered_) {
        return false;  // `reply`'s fds close here
    }
    if (final) {
        answered_ = true;
        onDisconnect_ = nullptr;
    }
    std::shared_ptr<Connection> connection = connection_.lock();
    if (!connection || !connection->open()) {
        return false;
    }
    return connection->submit(*this, std::move(reply), final);
}

bool Call::reply(const Json& parameters, std::vector<UniqueFd> fds) {
    return send(owning(encodeReply(parameters), std::move(fds)), true);
}

bool Call::replyWithFd(UniqueFd fd) {
    static const std::string encoded = encodeReply({{"fileDescriptor", 0}});
    Outgoing reply{.owned = {}, .shared = &encoded, .fds = {}, .offset = 0};
    reply.fds.push_back(std::move(fd));
    return send(std::move(reply), true);
}

bool Call::notify(const Json& parameters, std::vector<UniqueFd> fds) {
    if (!message_.more) {
        return false;
    }
    return send(owning(encodeReply(parameters, true), std::move(fds)), false);
}

bool Call::error(std::string_view name, const Json& parameters) {
    return send(owning(encodeError(name, parameters)), true);
}

bool Call::invalidParameter(std::string_view name) {
    return error(error::kInvalidParameter, {{"parameter", std::string(name)}});
}

void Call::disconnected() {
    if (!answered_ && onDisconnect_) {
        auto callback = std::move(onDisconnect_);
        onDisconnect_ = nullptr;
        callback();
    }
}

}  // namespace nsfd::daemon::varlink
