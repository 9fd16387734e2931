// SPDX-License-Identifier: LGPL-2.1-or-later
// A Varlink server on a real sd-event loop and real AF_UNIX sockets, and a
// plain client for it. Client and server share the test's thread: the client
// turns the loop while it waits.
#pragma once

#include <gtest/gtest.h>
#include <systemd/sd-event.h>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "child.hpp"
#include "nsfd/unique_fd.hpp"
#include "varlink/server.hpp"

namespace nsfd::test {

namespace varlink = nsfd::daemon::varlink;
namespace wire = nsfd::varlink;  // the wire format (../../varlink)
using varlink::Json;

// The interface the protocol tests serve: the server checks calls against it.
inline constexpr const char* kTestIdl = R"idl(interface org.example.Test

method Echo(pid: ?int) -> (echo: object, fileDescriptor: int)

# [Requires 'more' flag]
method Count(to: ?int) -> (n: int)

# [Requires 'more' flag]
method Watch() -> (n: ?int)

method Reverse() -> ()
method NoFds() -> ()
method WhoAmI() -> (uid: int, gid: int, pid: int)
method Later(n: ?int) -> (n: int)
method Now(n: ?int) -> (n: ?int)
method Poke() -> ()
method Throw() -> ()
method TakeFds() -> ()
method Big() -> (data: string)
method Fd() -> (fileDescriptor: int)

error Failed (message: string)
error LimitExceeded (limit: ?string, maximum: ?int)
)idl";

struct Reply {
    Json message;
    std::vector<UniqueFd> fds;
    bool isError() const { return message.contains("error"); }
    std::string error() const { return message.value("error", ""); }
    const Json& parameters() const { return message.at("parameters"); }
};

class VarlinkServerFixture;

class TestClient {
  public:
    // Connects to the fixture's server and turns the loop until it has accepted.
    explicit TestClient(VarlinkServerFixture& test);

    // The bytes as they are (they may be anything), with fds as SCM_RIGHTS.
    void sendRaw(const std::string& bytes, const std::vector<int>& fds = {});
    void call(const std::string& method, const Json& parameters = Json::object(),
              const std::vector<int>& fds = {}, bool more = false, bool oneway = false);
    // The next message, or nullopt once the server closed the connection (or
    // after `timeout` without one: the test fails then).
    std::optional<Reply> read(std::chrono::milliseconds timeout = std::chrono::seconds(5));
    // Turns the loop until the server has read all this client sent (SIOCOUTQ
    // 0): what is sent next starts a read of its own (varlink/codec.hpp's rule).
    bool awaitRead(std::chrono::milliseconds timeout = std::chrono::seconds(5));
    // Nothing arrives within `wait` (the loop turns meanwhile).
    bool silentFor(std::chrono::milliseconds wait);
    // Turns the loop until the server has closed this connection.
    bool awaitClosed(std::chrono::milliseconds timeout = std::chrono::seconds(5));
    void close() { socket_.reset(); }
    int fd() const { return socket_.get(); }

  private:
    // Reads what is there: 1 read something, 0 nothing yet, -1 end of file.
    int receiveSome();

    VarlinkServerFixture& test_;
    UniqueFd socket_;
    std::string buffer_;
    std::vector<std::pair<std::size_t, std::vector<UniqueFd>>> fdsAt_;
};

// A bare varlink::Server on an sd-event loop, no nsfdd: the base of the
// server, limits and Python tests (tests/integration/varlink_test.cpp's
// VarlinkTest is nsfdd's Varlink endpoint).
class VarlinkServerFixture : public LeakCheckedTest {
  protected:
    void SetUp() override;
    void TearDown() override;

    // (Re)creates the server with these limits, bound in a fresh directory.
    void startServer(varlink::ServerLimits limits = {});

  public:
    // One turn of the loop, waiting at most `timeout` for something to happen.
    void turn(std::chrono::milliseconds timeout = std::chrono::milliseconds(10));
    bool turnUntil(const std::function<bool()>& done,
                   std::chrono::milliseconds timeout = std::chrono::seconds(5));

    sd_event* event_ = nullptr;
    std::string dir_;
    std::string path_;
    std::unique_ptr<varlink::Server> server_;
    std::vector<std::string> protocolErrors_;
};

// A pipe; the fds' inode numbers tell which end came back.
struct Pipe {
    UniqueFd read;
    UniqueFd write;
    Pipe();
};

ino_t inodeOf(int fd);
bool isOpen(int fd);

}  // namespace nsfd::test
