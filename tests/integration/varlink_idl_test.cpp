// SPDX-License-Identifier: LGPL-2.1-or-later
// A real nsfdd checks every Varlink call against the IDL it ships
// (contract/org.nsfd1.Manager.varlink) before any handler runs, as sd-varlink
// does: for every method the IDL declares, a call with each required
// parameter missing, each parameter of the wrong type, an undeclared one, and
// "more" where the method does not stream, is answered with
// org.varlink.service.InvalidParameter naming that parameter.
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <fstream>
#include <sstream>

#include "fixture.hpp"
#include "varlink/codec.hpp"
#include "varlink/idl.hpp"
#include "varlink/socket_io.hpp"

namespace nsfd::test {
namespace {

using namespace std::chrono_literals;
using nsfd::varlink::Json;
namespace idl = nsfd::varlink::idl;

constexpr const char* kInvalidParameter = "org.varlink.service.InvalidParameter";

std::string shippedIdl() {
    std::ifstream file(NSFD_TEST_SOURCE_DIR "/contract/org.nsfd1.Manager.varlink");
    std::stringstream text;
    text << file.rdbuf();
    return text.str();
}

class VarlinkIdlTest : public DaemonTest {
  protected:
    std::string varlinkPath() const override { return socket_; }

    void SetUp() override {
        dir_.emplace();
        socket_ = dir_->socket();
        DaemonTest::SetUp();
        connection_ = UniqueFd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
        struct sockaddr_un addr {};
        addr.sun_family = AF_UNIX;
        socket_.copy(addr.sun_path, sizeof(addr.sun_path) - 1);
        ASSERT_TRUE(connection_.ok());
        ASSERT_EQ(::connect(connection_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)),
                  0);
    }

    void TearDown() override {
        connection_.reset();
        DaemonTest::TearDown();
        dir_.reset();
    }

    // One call and its (first) reply; fds that come with it are closed.
    nsfd::varlink::ReplyMessage call(const std::string& method, const Json& parameters,
                                     bool more = false) {
        std::string bytes = nsfd::varlink::encodeCall(method, parameters, more);
        EXPECT_TRUE(sendAllWithFds(connection_.get(), bytes));
        auto deadline = std::chrono::steady_clock::now() + 10s;
        while (std::chrono::steady_clock::now() < deadline) {
            if (std::optional<nsfd::varlink::DecodedReply> reply = decoder_.next()) {
                if (auto* message = std::get_if<nsfd::varlink::ReplyMessage>(&*reply)) {
                    return std::move(*message);
                }
                ADD_FAILURE() << "nsfdd's reply does not decode";
                break;
            }
            struct pollfd pfd = {connection_.get(), POLLIN, 0};
            if (::poll(&pfd, 1, 100) <= 0) {
                continue;
            }
            char buffer[65536];
            nsfd::varlink::Received received;
            int r = nsfd::varlink::receiveWithFds(connection_.get(), buffer, received);
            if (r < 0 || received.bytes == 0) {
                ADD_FAILURE() << "nsfdd hung up on " << method;
                break;
            }
            decoder_.feed(std::string_view(buffer, received.bytes), std::move(received.fds),
                          received.fdsNotReceived);
        }
        ADD_FAILURE() << "no reply to " << method;
        return {};
    }

    // The call is refused with InvalidParameter naming `parameter`.
    void expectInvalidParameter(const std::string& method, const Json& parameters,
                                const std::string& parameter, bool more, const std::string& what) {
        nsfd::varlink::ReplyMessage reply = call(method, parameters, more);
        EXPECT_EQ(reply.error.value_or("(a reply)"), kInvalidParameter)
            << method << " " << what << ": " << parameters.dump();
        EXPECT_EQ(reply.parameters.value("parameter", "(none)"), parameter)
            << method << " " << what << ": " << parameters.dump();
    }

    std::optional<SocketDir> dir_;
    std::string socket_;
    UniqueFd connection_;
    nsfd::varlink::ReplyDecoder decoder_;
};

// A value `type` accepts.
Json validValue(const idl::Interface& interface, const idl::Type& type) {
    switch (type.kind) {
        case idl::Type::Kind::Bool:
            return false;
        case idl::Type::Kind::Int:
        case idl::Type::Kind::Float:
            return 1;
        case idl::Type::Kind::String:
            return "x";
        case idl::Type::Kind::Object:
        case idl::Type::Kind::Map:
            return Json::object();
        case idl::Type::Kind::Array:
            return Json::array();
        case idl::Type::Kind::Enum:
            return type.enumValues.front();
        case idl::Type::Kind::Struct: {
            Json object = Json::object();
            for (const idl::Field& field : type.fields) {
                object[field.name] = validValue(interface, *field.type);
            }
            return object;
        }
        case idl::Type::Kind::Named:
            return validValue(interface, interface.types.at(type.name));
    }
    return nullptr;
}

// A value of another JSON type than `type` takes (never null, which "?" types take).
Json wrongValue(const idl::Interface& interface, const idl::Type& type) {
    switch (type.kind) {
        case idl::Type::Kind::String:
        case idl::Type::Kind::Enum:
            return 7;
        case idl::Type::Kind::Named:
            return wrongValue(interface, interface.types.at(type.name));
        case idl::Type::Kind::Int:
        case idl::Type::Kind::Float:
            return "7";
        default:
            return "not of this type";
    }
}

TEST(VarlinkIdl, TheShippedIdlIsTheOneServed) {
    idl::Interface interface = idl::parse(shippedIdl());
    EXPECT_EQ(interface.name, "org.nsfd1.Manager");
    ASSERT_NE(interface.method("WatchExits"), nullptr);
    EXPECT_EQ(interface.method("WatchExits")->more, idl::More::Requires);
}

TEST_F(VarlinkIdlTest, GetInterfaceDescriptionIsTheShippedFile) {
    nsfd::varlink::ReplyMessage reply =
        call("org.varlink.service.GetInterfaceDescription", {{"interface", "org.nsfd1.Manager"}});
    ASSERT_FALSE(reply.error) << *reply.error;
    EXPECT_EQ(reply.parameters.at("description"), shippedIdl());
}

TEST_F(VarlinkIdlTest, EveryMethodsCallsAreCheckedAgainstTheIdl) {
    idl::Interface interface = idl::parse(shippedIdl());
    ASSERT_GE(interface.methods.size(), 13u);
    int checked = 0;
    for (const auto& [name, method] : interface.methods) {
        std::string full = interface.name + "." + name;
        bool more = method.more == idl::More::Requires;
        Json valid = Json::object();
        for (const idl::Field& field : method.input) {
            valid[field.name] = validValue(interface, *field.type);
        }
        for (const idl::Field& field : method.input) {
            if (!field.type->nullable) {
                Json missing = valid;
                missing.erase(field.name);
                expectInvalidParameter(full, missing, field.name, more, "without " + field.name);
                ++checked;
                Json null = valid;
                null[field.name] = nullptr;
                expectInvalidParameter(full, null, field.name, more, field.name + " null");
                ++checked;
            }
            Json wrong = valid;
            wrong[field.name] = wrongValue(interface, *field.type);
            expectInvalidParameter(full, wrong, field.name, more, field.name + " of a wrong type");
            ++checked;
        }
        Json extra = valid;
        extra["notAParameter"] = 1;
        expectInvalidParameter(full, extra, "notAParameter", more, "with an extra parameter");
        ++checked;
        if (method.more == idl::More::None) {
            expectInvalidParameter(full, valid, "more", true, "with more");
            ++checked;
        } else if (method.more == idl::More::Requires) {
            nsfd::varlink::ReplyMessage reply = call(full, valid, false);
            EXPECT_EQ(reply.error.value_or("(a reply)"), "org.varlink.service.ExpectedMore")
                << full;
        }
    }
    EXPECT_GT(checked, 60);
    nsfd::varlink::ReplyMessage info = call("org.nsfd1.Manager.GetServiceInfo", Json::object());
    EXPECT_FALSE(info.error);
}

TEST_F(VarlinkIdlTest, AnUnknownEnumValueNamesItsParameter) {
    Child target = spawnAs(0);
    expectInvalidParameter("org.nsfd1.Manager.GetNamespace",
                           {{"pid", target.pid()}, {"type", "network"}}, "type", false,
                           "with type network");
    expectInvalidParameter("org.nsfd1.Manager.GetNamespaces",
                           {{"pid", target.pid()}, {"types", {"net", "network"}}}, "types", false,
                           "with types [net, network]");
    target.release(0);
    target.reap();
}

}  // namespace
}  // namespace nsfd::test
