// SPDX-License-Identifier: LGPL-2.1-or-later
#include "varlink_test_util.hpp"
#include <linux/sockios.h>
#include <sys/ioctl.h>

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "varlink/codec.hpp"
#include "varlink/socket_io.hpp"

namespace nsfd::test {

using Clock = std::chrono::steady_clock;

Pipe::Pipe() {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) < 0) {
        throw std::system_error(errno, std::generic_category(), "pipe2");
    }
    read.reset(fds[0]);
    write.reset(fds[1]);
}

ino_t inodeOf(int fd) {
    struct stat st {};
    return ::fstat(fd, &st) == 0 ? st.st_ino : 0;
}

bool isOpen(int fd) {
    return ::fcntl(fd, F_GETFD) >= 0;
}

void VarlinkServerFixture::SetUp() {
    LeakCheckedTest::SetUp();
    char dir[] = "/tmp/nsfd-varlink-XXXXXX";
    ASSERT_NE(::mkdtemp(dir), nullptr);
    // Other users (the limit tests connect as nobody) must reach the socket.
    ASSERT_EQ(::chmod(dir, 0755), 0);
    dir_ = dir;
    ASSERT_GE(sd_event_new(&event_), 0);
    startServer();
}

void VarlinkServerFixture::startServer(varlink::ServerLimits limits) {
    server_.reset();
    path_ = dir_ + "/run/org.nsfd1.Manager";
    server_ = std::make_unique<varlink::Server>(
        event_,
        varlink::ServerInfo{"nsfd", "nsfd test", "0.1", "https://example.org/nsfd",
                            "org.example.Test.Failed", "org.example.Test.LimitExceeded"},
        limits);
    server_->setProtocolErrorHook([this](const varlink::Peer&, std::string_view what) {
        protocolErrors_.emplace_back(what);
    });
    server_->bind(path_);
}

void VarlinkServerFixture::TearDown() {
    server_.reset();
    // Let sd-event free the sources the server disabled.
    event_ = sd_event_unref(event_);
    std::filesystem::remove_all(dir_);
    LeakCheckedTest::TearDown();
}

void VarlinkServerFixture::turn(std::chrono::milliseconds timeout) {
    int r = sd_event_run(event_, static_cast<std::uint64_t>(timeout.count()) * 1000);
    ASSERT_GE(r, 0) << std::strerror(-r);
}

bool VarlinkServerFixture::turnUntil(const std::function<bool()>& done,
                                     std::chrono::milliseconds timeout) {
    auto end = Clock::now() + timeout;
    while (!done()) {
        if (Clock::now() > end) {
            return false;
        }
        turn();
    }
    return true;
}

TestClient::TestClient(VarlinkServerFixture& test) : test_(test) {
    socket_.reset(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    EXPECT_TRUE(socket_.ok());
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::strncpy(address.sun_path, test.path_.c_str(), sizeof(address.sun_path) - 1);
    EXPECT_EQ(::connect(socket_.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0)
        << std::strerror(errno);
    // The server accepts (or refuses) on its next turn.
    test.turn(std::chrono::milliseconds(0));
}

void TestClient::sendRaw(const std::string& bytes, const std::vector<int>& fds) {
    std::size_t sent = 0;
    auto end = Clock::now() + std::chrono::seconds(5);
    while (sent < bytes.size()) {
        iovec iov{const_cast<char*>(bytes.data()) + sent, bytes.size() - sent};
        ssize_t n = wire::sendWithFds(socket_.get(), std::span(&iov, 1),
                                      sent == 0 ? std::span(fds) : std::span<const int>());
        if (n == -EAGAIN) {
            ASSERT_LT(Clock::now(), end) << "the server does not read";
            test_.turn();
            continue;
        }
        ASSERT_GT(n, 0) << std::strerror(static_cast<int>(-n));
        sent += static_cast<std::size_t>(n);
    }
}

void TestClient::call(const std::string& method, const Json& parameters,
                      const std::vector<int>& fds, bool more, bool oneway) {
    sendRaw(wire::encodeCall(method, parameters, more, oneway), fds);
}

int TestClient::receiveSome() {
    std::array<char, 65536> chunk;
    wire::Received received;
    int r = wire::receiveWithFds(socket_.get(), chunk, received);
    if (r == -EAGAIN) {
        return 0;
    }
    if (r < 0 || received.bytes == 0) {
        return -1;
    }
    // As sd-varlink does (varlink/codec.hpp): fds belong to the message this
    // read starts with.
    std::size_t start = std::string::npos;
    if (buffer_.empty() || buffer_.back() == '\0') {
        start = buffer_.size();
    }
    buffer_.append(chunk.data(), received.bytes);
    if (!received.fds.empty()) {
        EXPECT_NE(start, std::string::npos);
        fdsAt_.emplace_back(start, std::move(received.fds));
    }
    return 1;
}

std::optional<Reply> TestClient::read(std::chrono::milliseconds timeout) {
    auto end = Clock::now() + timeout;
    for (;;) {
        std::size_t nul = buffer_.find('\0');
        if (nul != std::string::npos) {
            Reply reply;
            wire::DecodeError error{};
            std::optional<Json> message = wire::parseObject(buffer_.substr(0, nul), 64, error);
            EXPECT_TRUE(message.has_value()) << buffer_.substr(0, nul);
            reply.message = message.value_or(Json::object());
            if (!fdsAt_.empty() && fdsAt_.front().first == 0) {
                reply.fds = std::move(fdsAt_.front().second);
                fdsAt_.erase(fdsAt_.begin());
            }
            buffer_.erase(0, nul + 1);
            for (auto& [offset, fds] : fdsAt_) {
                offset -= nul + 1;
            }
            return reply;
        }
        int r = receiveSome();
        if (r < 0) {
            return std::nullopt;
        }
        if (r == 0) {
            if (Clock::now() > end) {
                ADD_FAILURE() << "no reply within the timeout";
                return std::nullopt;
            }
            test_.turn();
        }
    }
}

bool TestClient::awaitRead(std::chrono::milliseconds timeout) {
    return test_.turnUntil(
        [&] {
            int queued = 0;
            return ::ioctl(socket_.get(), SIOCOUTQ, &queued) == 0 && queued == 0;
        },
        timeout);
}

bool TestClient::silentFor(std::chrono::milliseconds wait) {
    auto end = Clock::now() + wait;
    while (Clock::now() < end) {
        test_.turn();
        if (receiveSome() != 0) {
            return false;
        }
    }
    return true;
}

bool TestClient::awaitClosed(std::chrono::milliseconds timeout) {
    auto end = Clock::now() + timeout;
    while (Clock::now() < end) {
        int r = receiveSome();
        if (r < 0) {
            return true;
        }
        if (r == 0) {
            test_.turn();
        }
    }
    return false;
}

}  // namespace nsfd::test
