// SPDX-License-Identifier: LGPL-2.1-or-later
// One client connection of a Server (internal): reads and decodes calls, hands
// them to the server's dispatch, and writes the replies in call order.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "call.hpp"
#include "event_source.hpp"
#include "peer.hpp"
#include "varlink/codec.hpp"

namespace nsfd::daemon::varlink {

class Server;

// A reply waiting for the socket; `fds` leave with its first byte. Its bytes
// are `owned`, or, when `shared` is set, bytes encoded once that outlive every
// connection (a function-local static: Call::replyWithFd's).
struct Outgoing {
    std::string owned;
    const std::string* shared = nullptr;
    std::vector<UniqueFd> fds;
    std::size_t offset = 0;  // of bytes() sent

    std::string_view bytes() const noexcept { return shared != nullptr ? *shared : owned; }
};

class Connection final : public std::enable_shared_from_this<Connection> {
  public:
    Connection(Server& server, UniqueFd socket, std::shared_ptr<const Peer> peer);
    Connection(const Connection&) = delete;
    Connection& operator=(const Connection&) = delete;

    // Puts the socket on the loop. Throws std::system_error.
    void start(sd_event* event);
    bool open() const noexcept { return !closed_; }
    const Peer& peer() const noexcept { return *peer_; }
    const std::shared_ptr<const Peer>& sharedPeer() const noexcept { return peer_; }

    // A reply (or error) of `call`: written now if every earlier call is
    // answered, held until then otherwise. False if the connection ended.
    bool submit(Call& call, Outgoing reply, bool final);

    // Ends the connection: closes the socket, drops unsent replies (closing
    // their fds), tells unanswered calls, and has the server forget it.
    // `why` goes to the server's protocol-error hook when not null.
    void close(const char* why = nullptr);

  private:
    struct Pending {
        CallPtr call;
        std::vector<Outgoing> held;  // replies made before the call reached the front
        bool finished = false;
    };

    static int onIo(sd_event_source* source, int fd, std::uint32_t revents, void* userdata);
    static int onPeerMayHaveRead(sd_event_source* source, std::uint64_t usec, void* userdata);
    bool peerHasUnread() const;
    void waitForPeerToRead();
    void readSome();
    void dispatchReady();
    void advance();
    void flush();
    bool reading() const;
    void updateEvents();
    void finishIfDone();

    Server& server_;
    UniqueFd socket_;
    std::shared_ptr<const Peer> peer_;
    nsfd::varlink::Decoder decoder_;
    EventSource source_;
    sd_event* event_ = nullptr;
    // A reply with fds waits for the peer to read what went before it (flush()).
    EventSource unreadWait_;
    std::uint64_t unreadWaitUsec_ = 0;
    std::uint32_t events_ = 0;
    std::deque<Pending> inFlight_;  // calls awaiting their final reply, in call order
    std::deque<Outgoing> output_;   // replies ready for the socket, in order
    std::size_t unsentBytes_ = 0;   // output_ and held replies together
    std::size_t unsentFds_ = 0;
    bool readEof_ = false;
    bool dispatching_ = false;
    bool closed_ = false;
};

}  // namespace nsfd::daemon::varlink
