// SPDX-License-Identifier: LGPL-2.1-or-later
#include "connection.hpp"

#include <linux/sockios.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <span>
#include <system_error>

#include "server.hpp"
#include "varlink/socket_io.hpp"

namespace nsfd::daemon::varlink {

using namespace nsfd::varlink;  // the wire format (../../varlink)

namespace {

// Bytes read per recvmsg, and reads and bytes per wakeup: one busy client
// cannot keep the loop from the others for long. A client that waits for each
// reply sends its next call while nsfdd is still in this loop (on one CPU, it
// runs as soon as the reply wakes it), so its calls are read here without a
// trip through epoll: one in 16, not one in 4 (figure 11b). A read brings one
// call for such a client, and for one that sends an fd with each call (a read
// ends after the bytes an fd came with): those get up to 16 calls a turn, where
// they had 4. A client that pipelines plain calls is bounded by the bytes,
// 64 KiB a turn, as with 4 full reads before.
constexpr std::size_t kReadChunk = 16 * 1024;
constexpr int kReadsPerWakeup = 16;
constexpr std::size_t kBytesPerWakeup = 4 * kReadChunk;
constexpr std::size_t kMaxIovecs = 64;
// How often to look whether the peer has read the replies in front of one with
// fds: from 100 us, doubling, to 50 ms (a peer that does not read at all is
// dropped by the unsent bounds).
constexpr std::uint64_t kUnreadWaitFirstUsec = 100;
constexpr std::uint64_t kUnreadWaitMaxUsec = 50'000;

}  // namespace

Connection::Connection(Server& server, UniqueFd socket, std::shared_ptr<const Peer> peer)
    : server_(server),
      socket_(std::move(socket)),
      peer_(std::move(peer)),
      decoder_(server.limits().decode) {}

void Connection::start(sd_event* event) {
    sd_event_source* source = nullptr;
    int r = sd_event_add_io(event, &source, socket_.get(), EPOLLIN, &Connection::onIo, this);
    if (r < 0) {
        throw std::system_error(-r, std::generic_category(), "Failed to watch a Varlink client");
    }
    source_.reset(source);
    event_ = event;
    events_ = EPOLLIN;
}

int Connection::onIo(sd_event_source*, int, std::uint32_t revents, void* userdata) {
    // Whatever happens below may close the connection and make the server drop
    // it: hold it until the end of this callback.
    std::shared_ptr<Connection> self = static_cast<Connection*>(userdata)->shared_from_this();
    if (revents & EPOLLOUT) {
        self->flush();
    }
    if (self->open() && (revents & EPOLLIN)) {
        self->readSome();
    }
    // EPOLLHUP: the peer closed its socket entirely, so nothing more can reach it.
    if (self->open() && (revents & (EPOLLHUP | EPOLLERR)) && !self->reading()) {
        self->close();
    }
    return 0;
}

bool Connection::reading() const {
    return open() && !readEof_ && !decoder_.hasNext() && !decoder_.failed() &&
           inFlight_.size() < server_.limits().maxPendingCalls;
}

void Connection::readSome() {
    std::array<char, kReadChunk> buffer;
    std::size_t bytes = 0;
    for (int round = 0; round < kReadsPerWakeup && bytes < kBytesPerWakeup && reading(); ++round) {
        Received received;
        std::span<char> room(buffer.data(), std::min(buffer.size(), kBytesPerWakeup - bytes));
        int r = receiveWithFds(socket_.get(), room, received);
        if (r == -EAGAIN || r == -EINTR) {
            break;
        }
        if (r < 0) {
            close();
            return;
        }
        if (received.bytes == 0) {
            readEof_ = true;
            if (decoder_.midMessage()) {
                close("hung up in the middle of a message");
                return;
            }
            break;
        }
        bytes += received.bytes;
        decoder_.feed(std::string_view(buffer.data(), received.bytes), std::move(received.fds),
                      received.fdsNotReceived);
        dispatchReady();
        if (!open()) {
            return;
        }
    }
    updateEvents();
    finishIfDone();
}

void Connection::dispatchReady() {
    if (dispatching_) {
        return;  // a handler answered at once; the loop below goes on
    }
    dispatching_ = true;
    while (open() && decoder_.hasNext() && inFlight_.size() < server_.limits().maxPendingCalls) {
        Decoded decoded = *decoder_.next();
        if (auto* error = std::get_if<DecodeError>(&decoded)) {
            close(toString(*error));
            break;
        }
        auto& message = std::get<CallMessage>(decoded);
        FdLoss fdLoss = message.fdLoss;
        auto call = std::make_shared<Call>(weak_from_this(), peer_, std::move(message));
        if (!call->oneway()) {
            inFlight_.push_back(Pending{call, {}, false});
        }
        if (fdLoss == FdLoss::TooMany) {
            server_.report(*peer_, toString(DecodeError::TooManyFds));
            call->error(server_.info().limitExceededError,
                        {{"limit", "fileDescriptors"},
                         {"maximum", server_.limits().decode.maxFdsPerMessage}});
            continue;
        }
        if (fdLoss == FdLoss::NotReceived) {
            // nsfdd's own fd limit: the call cannot be served as sent, nothing else is lost.
            call->error(server_.info().limitExceededError,
                        {{"limit", "fileDescriptors"},
                         {"message",
                          "nsfdd could not receive the fds sent with the call: it "
                          "is at its own fd limit"}});
            continue;
        }
        server_.dispatch(call);
    }
    dispatching_ = false;
    updateEvents();
}

bool Connection::submit(Call& call, Outgoing reply, bool final) {
    if (!open()) {
        return false;
    }
    unsentBytes_ += reply.bytes().size();
    unsentFds_ += reply.fds.size();
    if (!inFlight_.empty() && inFlight_.front().call.get() == &call) {
        output_.push_back(std::move(reply));
        if (final) {
            inFlight_.pop_front();
            advance();
        }
    } else {
        auto pending = std::find_if(inFlight_.begin(), inFlight_.end(),
                                    [&](const Pending& each) { return each.call.get() == &call; });
        if (pending == inFlight_.end()) {
            unsentBytes_ -= reply.bytes().size();
            unsentFds_ -= reply.fds.size();
            return false;
        }
        pending->held.push_back(std::move(reply));
        pending->finished = final;
    }
    flush();
    if (!open()) {
        return false;
    }
    const ServerLimits& limits = server_.limits();
    if (unsentBytes_ > limits.maxUnsentBytes || unsentFds_ > limits.maxUnsentFds) {
        close("does not read its replies");
        return false;
    }
    if (final) {
        dispatchReady();  // room for a call the pending bound held back
        finishIfDone();
    }
    return true;
}

// The front call is answered: its successors' held replies may go now.
void Connection::advance() {
    while (!inFlight_.empty()) {
        Pending& front = inFlight_.front();
        for (Outgoing& reply : front.held) {
            output_.push_back(std::move(reply));
        }
        front.held.clear();
        if (!front.finished) {
            break;
        }
        inFlight_.pop_front();
    }
}

// Bytes this socket sent that the peer has not read yet (SIOCOUTQ: the
// memory of unconsumed skbs, 0 once the peer read them all).
bool Connection::peerHasUnread() const {
    int queued = 0;
    return ::ioctl(socket_.get(), SIOCOUTQ, &queued) == 0 && queued > 0;
}

void Connection::waitForPeerToRead() {
    if (unreadWait_ != nullptr || event_ == nullptr) {
        return;
    }
    unreadWaitUsec_ = unreadWaitUsec_ == 0 ? kUnreadWaitFirstUsec
                                           : std::min(unreadWaitUsec_ * 2, kUnreadWaitMaxUsec);
    sd_event_source* source = nullptr;
    if (sd_event_add_time_relative(event_, &source, CLOCK_MONOTONIC, unreadWaitUsec_, 0,
                                   &Connection::onPeerMayHaveRead, this) < 0) {
        close("Failed to wait for the client to read");
        return;
    }
    unreadWait_.reset(source);
}

int Connection::onPeerMayHaveRead(sd_event_source*, std::uint64_t, void* userdata) {
    std::shared_ptr<Connection> self = static_cast<Connection*>(userdata)->shared_from_this();
    self->unreadWait_.reset();
    self->flush();
    return 0;
}

void Connection::flush() {
    while (open() && !output_.empty() && unreadWait_ == nullptr) {
        std::array<iovec, kMaxIovecs> iov{};
        std::size_t count = 0;
        std::span<const UniqueFd> fds;
        Outgoing& front = output_.front();
        // sd-varlink gives a read's fds to the message the read starts with
        // (varlink/codec.hpp), and the kernel glues a write with fds to unread
        // bytes before it into one read: so a reply with fds waits until the
        // peer has read every earlier byte (systemd#43823, the reply side).
        if (!front.fds.empty() && peerHasUnread()) {
            waitForPeerToRead();
            break;
        }
        if (!front.fds.empty()) {
            unreadWaitUsec_ = 0;
            // A reply with fds goes alone, so that its fds arrive with its first byte.
            std::string_view bytes = front.bytes().substr(front.offset);
            iov[count++] = {const_cast<char*>(bytes.data()), bytes.size()};
            fds = front.fds;
        } else {
            for (Outgoing& reply : output_) {
                if (count == kMaxIovecs || !reply.fds.empty()) {
                    break;
                }
                std::string_view bytes = reply.bytes().substr(reply.offset);
                iov[count++] = {const_cast<char*>(bytes.data()), bytes.size()};
            }
        }
        ssize_t sent = sendWithFds(socket_.get(), std::span(iov.data(), count), fds);
        if (sent == -EAGAIN || sent == -EINTR) {
            break;
        }
        if (sent < 0) {
            close();
            return;
        }
        // The kernel holds its own references to the fds now.
        unsentFds_ -= front.fds.size();
        front.fds.clear();
        auto done = static_cast<std::size_t>(sent);
        unsentBytes_ -= done;
        while (done > 0) {
            Outgoing& reply = output_.front();
            std::size_t left = reply.bytes().size() - reply.offset;
            if (done < left) {
                reply.offset += done;
                break;
            }
            done -= left;
            output_.pop_front();
        }
    }
    updateEvents();
}

void Connection::updateEvents() {
    if (!open()) {
        return;
    }
    std::uint32_t want =
        (reading() ? std::uint32_t{EPOLLIN} : 0) | (output_.empty() ? 0 : std::uint32_t{EPOLLOUT});
    if (want != events_ && sd_event_source_set_io_events(source_.get(), want) >= 0) {
        events_ = want;
    }
}

// A client that shut down its sending side is served until its last reply is out.
void Connection::finishIfDone() {
    if (open() && readEof_ && inFlight_.empty() && output_.empty() && !decoder_.hasNext()) {
        close();
    }
}

void Connection::close(const char* why) {
    if (closed_) {
        return;
    }
    closed_ = true;
    if (why != nullptr) {
        server_.report(*peer_, why);
    }
    source_.reset();
    unreadWait_.reset();
    socket_.reset();
    output_.clear();
    std::deque<Pending> pending = std::move(inFlight_);
    inFlight_.clear();
    unsentBytes_ = 0;
    unsentFds_ = 0;
    for (Pending& each : pending) {
        each.call->disconnected();
    }
    server_.connectionClosed(*this);
}

}  // namespace nsfd::daemon::varlink
