// SPDX-License-Identifier: LGPL-2.1-or-later
// nsfdd's notifications, received as a service manager receives them: on a
// datagram socket with SO_PASSCRED, by path and in the abstract namespace.
#include "core/notifier.hpp"

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <string>

#include "child.hpp"

namespace nsfd::test {
namespace {

using daemon::Notifier;

struct Received {
    std::string message;
    UniqueFd fd;
    pid_t senderPid = 0;
};

// A manager's end of $NOTIFY_SOCKET: `name` is a path, or "@name" for the abstract namespace.
class ManagerSocket {
  public:
    explicit ManagerSocket(const std::string& name) : name_(name) {
        socket_ = UniqueFd(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
        int on = 1;
        ::setsockopt(socket_.get(), SOL_SOCKET, SO_PASSCRED, &on, sizeof(on));
        sockaddr_un address{};
        address.sun_family = AF_UNIX;
        std::memcpy(address.sun_path, name.data(), name.size());
        socklen_t length = offsetof(sockaddr_un, sun_path) + name.size();
        if (name[0] == '@') {
            address.sun_path[0] = '\0';
        } else {
            ++length;
        }
        EXPECT_EQ(::bind(socket_.get(), reinterpret_cast<sockaddr*>(&address), length), 0)
            << std::strerror(errno);
        ::setenv("NOTIFY_SOCKET", name.c_str(), 1);
    }
    ~ManagerSocket() {
        ::unsetenv("NOTIFY_SOCKET");
        if (name_[0] != '@') {
            ::unlink(name_.c_str());
        }
    }

    Received receive() {
        char data[512] = {};
        alignas(cmsghdr) char control[CMSG_SPACE(sizeof(ucred)) + CMSG_SPACE(sizeof(int))] = {};
        iovec io{data, sizeof(data) - 1};
        msghdr header{};
        header.msg_iov = &io;
        header.msg_iovlen = 1;
        header.msg_control = control;
        header.msg_controllen = sizeof(control);
        Received out;
        ssize_t n = ::recvmsg(socket_.get(), &header, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
        if (n < 0) {
            return out;
        }
        out.message.assign(data, static_cast<std::size_t>(n));
        for (cmsghdr* c = CMSG_FIRSTHDR(&header); c != nullptr; c = CMSG_NXTHDR(&header, c)) {
            if (c->cmsg_type == SCM_RIGHTS) {
                int fd = -1;
                std::memcpy(&fd, CMSG_DATA(c), sizeof(fd));
                out.fd = UniqueFd(fd);
            } else if (c->cmsg_type == SCM_CREDENTIALS) {
                ucred credentials{};
                std::memcpy(&credentials, CMSG_DATA(c), sizeof(credentials));
                out.senderPid = credentials.pid;
            }
        }
        return out;
    }

  private:
    std::string name_;
    UniqueFd socket_;
};

class NotifierTest : public LeakCheckedTest {};

TEST_F(NotifierTest, SendsToAPathWithTheFdAndTheSendersCredentials) {
    std::string path = "/tmp/nsfd-notifier-test." + std::to_string(::getpid());
    ManagerSocket manager(path);
    Notifier notifier;
    ASSERT_TRUE(notifier.active());
    notifier.send("STATUS=Tracking 1 processes");
    UniqueFd memfd(::memfd_create("nsfd-notifier-test", MFD_CLOEXEC));
    notifier.send("FDSTORE=1\nFDNAME=state", memfd.get());

    Received status = manager.receive();
    EXPECT_EQ(status.message, "STATUS=Tracking 1 processes");
    EXPECT_FALSE(status.fd.ok());
    EXPECT_EQ(status.senderPid, ::getpid()) << "the manager knows who sent it";
    Received store = manager.receive();
    EXPECT_EQ(store.message, "FDSTORE=1\nFDNAME=state");
    ASSERT_TRUE(store.fd.ok());
    struct stat sent {
    }, got{};
    ASSERT_EQ(::fstat(memfd.get(), &sent), 0);
    ASSERT_EQ(::fstat(store.fd.get(), &got), 0);
    EXPECT_EQ(sent.st_ino, got.st_ino) << "the same file arrived";
}

TEST_F(NotifierTest, SendsToTheAbstractNamespace) {
    std::string name = "@nsfd-notifier-test." + std::to_string(::getpid());
    ManagerSocket manager(name);
    Notifier notifier;
    ASSERT_TRUE(notifier.active());
    notifier.send("READY=1");
    EXPECT_EQ(manager.receive().message, "READY=1");
}

TEST_F(NotifierTest, WithoutAManagerEverySendIsANoOp) {
    ::unsetenv("NOTIFY_SOCKET");
    Notifier notifier;
    EXPECT_FALSE(notifier.active());
    notifier.send("READY=1");                      // nothing to see, nothing to fail
    ::setenv("NOTIFY_SOCKET", "vsock:2:1234", 1);  // a kind nsfdd does not speak
    Notifier vsock;
    EXPECT_FALSE(vsock.active());
    ::unsetenv("NOTIFY_SOCKET");
}

}  // namespace
}  // namespace nsfd::test
