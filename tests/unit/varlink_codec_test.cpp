// SPDX-License-Identifier: LGPL-2.1-or-later
// The Varlink decoder and encoders, fed by hand: framing, bounds, validation
// and which message the fds belong to.
#include <fcntl.h>

#include <string>

#include "varlink/codec.hpp"
#include "varlink_test_util.hpp"

namespace nsfd::test {
namespace {

using varlink::CallMessage;
using wire::Decoded;
using wire::DecodeError;
using wire::Decoder;

class VarlinkCodecTest : public LeakCheckedTest {};

varlink::DecodeLimits maxBytes(std::size_t bytes) {
    varlink::DecodeLimits limits;
    limits.maxMessageBytes = bytes;
    return limits;
}

std::string call(const std::string& json) {
    return json + '\0';
}

std::vector<UniqueFd> devNulls(int count) {
    std::vector<UniqueFd> fds;
    fds.reserve(static_cast<std::size_t>(count));
    for (int i = 0; i < count; ++i) {
        fds.emplace_back(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    }
    return fds;
}

CallMessage expectCall(Decoder& decoder) {
    std::optional<Decoded> decoded = decoder.next();
    EXPECT_TRUE(decoded.has_value());
    if (!decoded) {
        return {};
    }
    if (auto* error = std::get_if<DecodeError>(&*decoded)) {
        ADD_FAILURE() << "decode error " << wire::toString(*error);
        return {};
    }
    return std::move(std::get<CallMessage>(*decoded));
}

DecodeError expectError(Decoder& decoder) {
    std::optional<Decoded> decoded = decoder.next();
    EXPECT_TRUE(decoded.has_value());
    if (!decoded || !std::holds_alternative<DecodeError>(*decoded)) {
        ADD_FAILURE() << "a call decoded";
        return DecodeError::TooManyFds;
    }
    return std::get<DecodeError>(*decoded);
}

DecodeError errorOf(const std::string& text, varlink::DecodeLimits limits = {}) {
    Decoded decoded = wire::decodeCall(text, limits);
    if (!std::holds_alternative<DecodeError>(decoded)) {
        ADD_FAILURE() << "accepted: " << text;
        return DecodeError::TooManyFds;
    }
    return std::get<DecodeError>(decoded);
}

TEST_F(VarlinkCodecTest, DecodesAFullCall) {
    Decoder decoder;
    decoder.feed(call(R"({"method":"org.nsfd1.Manager.GetNamespace","parameters":{"pid":1,)"
                      R"("type":"net"},"more":true,"com.example.trace":{"id":7}})"),
                 {});
    CallMessage message = expectCall(decoder);
    EXPECT_EQ(message.method, "org.nsfd1.Manager.GetNamespace");
    EXPECT_EQ(message.parameters.toJson(), (Json{{"pid", 1}, {"type", "net"}}));
    EXPECT_TRUE(message.more);
    EXPECT_FALSE(message.oneway);
    EXPECT_FALSE(decoder.hasNext());
    EXPECT_FALSE(decoder.midMessage());
}

TEST_F(VarlinkCodecTest, ParametersAreOptional) {
    Decoder decoder;
    decoder.feed(call(R"({"method":"org.varlink.service.GetInfo"})") +
                     call(R"({"method":"a.b.C","parameters":null,"oneway":true})"),
                 {});
    EXPECT_TRUE(expectCall(decoder).parameters.empty());
    CallMessage second = expectCall(decoder);
    EXPECT_TRUE(second.oneway);
    EXPECT_TRUE(second.parameters.empty());
}

// The values a call's parameters hold, as Json, whatever reads the text: a
// non-negative integer unsigned (-0 too), a negative one signed, a fraction a
// double, nested objects and arrays whole, a repeated key its last value. An
// integer beyond int64 and uint64, or a number beyond a double, is refused.
TEST_F(VarlinkCodecTest, ParameterValuesKeepTheirJsonTypes) {
    Decoded decoded = wire::decodeCall(
        R"({"method":"a.b.C","parameters":{"pid":7,"big":18446744073709551615,"neg":-3,)"
        R"("half":0.5,"s":"net\u0000\u00e9","on":true,"none":null,"list":[1,"x",[{}]],)"
        R"("o":{"k":"v"},"k":1,"k":2}})",
        {});
    ASSERT_TRUE(std::holds_alternative<CallMessage>(decoded));
    const Json p = std::get<CallMessage>(decoded).parameters.toJson();
    EXPECT_TRUE(p["pid"].is_number_unsigned());
    EXPECT_EQ(p["pid"].get<std::uint64_t>(), 7u);
    EXPECT_EQ(p["big"].get<std::uint64_t>(), UINT64_MAX);
    EXPECT_TRUE(p["neg"].is_number_integer() && !p["neg"].is_number_unsigned());
    EXPECT_EQ(p["neg"].get<std::int64_t>(), -3);
    EXPECT_TRUE(p["half"].is_number_float());
    EXPECT_EQ(p["s"], std::string("net\0\xc3\xa9", 6));
    EXPECT_EQ(p["on"], true);
    EXPECT_TRUE(p["none"].is_null());
    EXPECT_EQ(p["list"], Json::parse(R"([1,"x",[{}]])"));
    EXPECT_EQ(p["o"], (Json{{"k", "v"}}));
    EXPECT_EQ(p["k"], 2);
    Decoded zero = wire::decodeCall(R"({"method":"a.b.C","parameters":{"n":-0}})", {});
    ASSERT_TRUE(std::holds_alternative<CallMessage>(zero));
    EXPECT_TRUE(std::get<CallMessage>(zero).parameters.at("n").is_number_unsigned());
    Decoded fraction =
        wire::decodeCall(R"({"method":"a.b.C","parameters":{"n":18446744073709551616.0}})", {});
    ASSERT_TRUE(std::holds_alternative<CallMessage>(fraction));
    EXPECT_TRUE(std::get<CallMessage>(fraction).parameters.at("n").is_number_float());
    EXPECT_EQ(errorOf(R"({"method":"a.b.C","parameters":{"n":18446744073709551616}})"),
              DecodeError::InvalidJson);
    EXPECT_EQ(errorOf(R"({"method":"a.b.C","parameters":{"n":-9223372036854775809}})"),
              DecodeError::InvalidJson);
    EXPECT_EQ(errorOf(R"({"method":"a.b.C","parameters":{"n":100000000000000000000}})"),
              DecodeError::InvalidJson);
    EXPECT_EQ(errorOf(R"({"method":"a.b.C","parameters":{"n":1e400}})"), DecodeError::InvalidJson);
    EXPECT_EQ(errorOf("{\"method\":\"a.b.C\",\"parameters\":{\"s\":\"\xff\"}}"),
              DecodeError::InvalidJson);
    EXPECT_EQ(errorOf(R"({"method":"a.b.C","parameters":{"s":"\ud888\u1234"}})"),
              DecodeError::InvalidJson);
    EXPECT_EQ(errorOf(R"({"method":"a.b.C","parameters":{"s":"\udc00"}})"),
              DecodeError::InvalidJson);
    EXPECT_EQ(errorOf(R"({"method":"a.b.C"}{"method":"a.b.C"})"), DecodeError::InvalidJson);
    // At the top level, every occurrence of a key is checked.
    EXPECT_EQ(errorOf(R"({"method":5,"method":"a.b.C"})"), DecodeError::InvalidMethod);
}

// A call's parameters in any order, a name repeated: looked up by name, the
// value that came last kept, and the same object again as Json.
TEST_F(VarlinkCodecTest, ParametersAreFoundByNameInAnyOrder) {
    Decoded decoded = wire::decodeCall(
        R"({"method":"a.b.C","parameters":{"type":"net","pid":7,"type":"ipc","a":[1]}})", {});
    ASSERT_TRUE(std::holds_alternative<CallMessage>(decoded));
    const varlink::Parameters& p = std::get<CallMessage>(decoded).parameters;
    EXPECT_EQ(p.size(), 3u);
    ASSERT_NE(p.find("type"), nullptr);
    EXPECT_EQ(*p.find("type"), "ipc");
    EXPECT_EQ(p.at("pid"), 7);
    EXPECT_EQ(p.find("types"), nullptr);
    EXPECT_EQ(p.find("ty"), nullptr);
    EXPECT_FALSE(p.contains("b"));
    EXPECT_THROW((void)p.at("b"), std::out_of_range);
    std::vector<std::string> names;
    for (const auto& [name, value] : p) {
        names.push_back(name);
    }
    EXPECT_EQ(names, (std::vector<std::string>{"a", "pid", "type"}));
    Json expected = {{"a", {1}}, {"pid", 7}, {"type", "ipc"}};
    EXPECT_EQ(p.toJson(), expected);
    EXPECT_EQ(Json(p), expected);  // an object, not an array of pairs
    EXPECT_EQ(varlink::Parameters::fromJson(expected), p);
}

TEST_F(VarlinkCodecTest, ReplyParametersKeepTheirJsonTypes) {
    wire::DecodedReply decoded =
        wire::decodeReply(R"({"parameters":{"fileDescriptor":0,"pid":-1,"ids":{"net":4026531840}},)"
                          R"("continues":true})",
                          {});
    ASSERT_TRUE(std::holds_alternative<wire::ReplyMessage>(decoded));
    const wire::ReplyMessage& reply = std::get<wire::ReplyMessage>(decoded);
    EXPECT_TRUE(reply.continues);
    EXPECT_FALSE(reply.error.has_value());
    EXPECT_TRUE(reply.parameters["fileDescriptor"].is_number_unsigned());
    EXPECT_EQ(reply.parameters["pid"].get<std::int64_t>(), -1);
    EXPECT_EQ(reply.parameters["ids"]["net"].get<std::uint64_t>(), 4026531840u);
}

TEST_F(VarlinkCodecTest, ReassemblesAMessageSplitAnywhere) {
    std::string stream = call(R"({"method":"a.b.First"})") + call(R"({"method":"a.b.Second"})");
    for (std::size_t step = 1; step <= 7; ++step) {
        Decoder decoder;
        for (std::size_t i = 0; i < stream.size(); i += step) {
            decoder.feed(std::string_view(stream).substr(i, step), {});
        }
        EXPECT_EQ(expectCall(decoder).method, "a.b.First");
        EXPECT_EQ(expectCall(decoder).method, "a.b.Second");
        EXPECT_FALSE(decoder.hasNext());
    }
}

TEST_F(VarlinkCodecTest, RefusesBadCalls) {
    EXPECT_EQ(errorOf(""), DecodeError::InvalidJson);
    EXPECT_EQ(errorOf("\x01\x02garbage"), DecodeError::InvalidJson);
    EXPECT_EQ(errorOf(R"({"method":"a.b.C")"), DecodeError::InvalidJson);
    EXPECT_EQ(errorOf("{\"method\":\"a.b.C\",\"x\":\"\xff\xfe\"}"), DecodeError::InvalidJson);
    EXPECT_EQ(errorOf("[]"), DecodeError::NotAnObject);
    EXPECT_EQ(errorOf("42"), DecodeError::NotAnObject);
    EXPECT_EQ(errorOf("{}"), DecodeError::InvalidMethod);
    EXPECT_EQ(errorOf(R"({"method":7})"), DecodeError::InvalidMethod);
    for (const char* bad : {"Method", "a.method", ".Method", "a..b.C", "a.b.", "1a.b.C", "a-.b.C",
                            "a.b.C-D", "a.Method"}) {
        EXPECT_EQ(errorOf(std::string(R"({"method":")") + bad + "\"}"), DecodeError::InvalidMethod)
            << bad;
    }
    EXPECT_EQ(errorOf(R"({"method":"a.b.C","parameters":[]})"), DecodeError::InvalidField);
    EXPECT_EQ(errorOf(R"({"method":"a.b.C","more":"yes"})"), DecodeError::InvalidField);
    EXPECT_EQ(errorOf(R"({"method":"a.b.C","oneway":1})"), DecodeError::InvalidField);
    EXPECT_EQ(errorOf(R"({"method":"a.b.C","bogus":1})"), DecodeError::UnknownField);
    EXPECT_EQ(errorOf(R"({"method":"a.b.C","oneway":true,"more":true})"),
              DecodeError::ConflictingFlags);
    EXPECT_TRUE(wire::isValidMethodName("io.systemd-x.Machine2.List"));
}

TEST_F(VarlinkCodecTest, DepthIsBoundedWhileParsing) {
    // `depth` objects (or arrays), one in the other, the innermost holding `leaf`.
    auto nested = [](int depth, const std::string& leaf, bool arrays = false) {
        std::string text;
        for (int i = 1; i < depth; ++i) {
            text += arrays ? "[" : R"({"a":)";
        }
        text += leaf;
        text += std::string(static_cast<std::size_t>(depth - 1), arrays ? ']' : '}');
        return text;
    };
    DecodeError error{};
    EXPECT_TRUE(wire::parseObject(nested(16, R"({"b":1})"), 16, error).has_value());
    EXPECT_FALSE(wire::parseObject(nested(17, R"({"b":1})"), 16, error).has_value());
    EXPECT_EQ(error, DecodeError::TooDeep);
    EXPECT_TRUE(wire::parseObject(R"({"a":)" + nested(15, "[1]", true) + "}", 16, error));
    error = {};
    EXPECT_FALSE(wire::parseObject(R"({"a":)" + nested(16, "[1]", true) + "}", 16, error));
    EXPECT_EQ(error, DecodeError::TooDeep);
    // An empty object or array at the bottom holds nothing and does not count.
    EXPECT_TRUE(wire::parseObject(nested(17, "{}"), 16, error).has_value());
    EXPECT_FALSE(wire::parseObject(nested(18, "{}"), 16, error).has_value());
    // Far too deep: refused where it crosses the bound, nothing built below.
    std::string deep = R"({"method":"a.b.C","parameters":{"x":)" + std::string(1000000, '[') +
                       std::string(1000000, ']') + "}}";
    EXPECT_EQ(errorOf(deep, maxBytes(3000000)), DecodeError::TooDeep);
    // ... and not even closed: not JSON at all, refused as such.
    std::string unclosed = R"({"method":"a.b.C","parameters":{"x":)" + std::string(1000000, '[');
    EXPECT_EQ(errorOf(unclosed, maxBytes(2000000)), DecodeError::InvalidJson);
}

TEST_F(VarlinkCodecTest, MessageSizeIsBounded) {
    varlink::DecodeLimits limits = maxBytes(100);
    std::string body = R"({"method":"a.b.C","parameters":{"s":")";
    std::string exact = body + std::string(100 - body.size() - 3, 'x') + "\"}}";
    ASSERT_EQ(exact.size(), 100u);
    Decoder fits(limits);
    fits.feed(call(exact), {});
    EXPECT_EQ(expectCall(fits).method, "a.b.C");

    Decoder tooLarge(limits);
    tooLarge.feed(call(exact + " "), {});
    EXPECT_EQ(expectError(tooLarge), DecodeError::MessageTooLarge);

    // No NUL in sight: refused once the bound is passed, not at the end.
    Decoder endless(limits);
    for (int i = 0; i < 20 && !endless.hasNext(); ++i) {
        endless.feed(std::string(10, ' '), {});
    }
    EXPECT_EQ(expectError(endless), DecodeError::MessageTooLarge);
    EXPECT_TRUE(endless.failed());
}

// sd-varlink's rule (varlink/codec.hpp): the fds of a read go to the message
// that starts at the read's first byte, whatever follows in the same read.
TEST_F(VarlinkCodecTest, FdsBelongToTheMessageStartingTheirRead) {
    Decoder decoder;
    std::vector<UniqueFd> fds = devNulls(2);
    ino_t first = inodeOf(fds[0].get());
    decoder.feed(call(R"({"method":"a.b.WithFds"})") + call(R"({"method":"a.b.Plain"})") +
                     call(R"({"method":"a.b.Plain2"})"),
                 std::move(fds));
    CallMessage withFds = expectCall(decoder);
    EXPECT_EQ(withFds.method, "a.b.WithFds");
    ASSERT_EQ(withFds.fds.size(), 2u);
    EXPECT_EQ(inodeOf(withFds.fds[0].get()), first);
    EXPECT_TRUE(expectCall(decoder).fds.empty());
    EXPECT_TRUE(expectCall(decoder).fds.empty());

    // systemd#43823: a write without fds that the kernel glued in front of one
    // with fds reads as one; sd-varlink gives the fds to the first message too.
    decoder.feed(
        call(R"({"method":"a.b.Oneway","oneway":true})") + call(R"({"method":"a.b.Second"})"),
        devNulls(1));
    EXPECT_EQ(expectCall(decoder).fds.size(), 1u);
    EXPECT_TRUE(expectCall(decoder).fds.empty());

    // A message whose first bytes came with the fds and whose rest came later.
    decoder.feed(R"({"method":"a.b.)", devNulls(1));
    EXPECT_TRUE(decoder.midMessage());
    decoder.feed(call(R"(Split"})") + call(R"({"method":"a.b.After"})"), {});
    EXPECT_EQ(expectCall(decoder).fds.size(), 1u);
    EXPECT_TRUE(expectCall(decoder).fds.empty());
}

TEST_F(VarlinkCodecTest, FdsInTheMiddleOfAMessageEndTheStream) {
    Decoder decoder;
    decoder.feed(R"({"method":"a.b.)", {});
    std::vector<UniqueFd> fds = devNulls(1);
    int raw = fds[0].get();
    decoder.feed(call(R"(C"})"), std::move(fds));
    EXPECT_EQ(expectError(decoder), DecodeError::MisplacedFds);
    EXPECT_FALSE(isOpen(raw));
    // Whatever follows is ignored, its fds closed.
    std::vector<UniqueFd> later = devNulls(1);
    raw = later[0].get();
    decoder.feed(call(R"({"method":"a.b.C"})"), std::move(later));
    EXPECT_FALSE(decoder.hasNext());
    EXPECT_FALSE(isOpen(raw));
}

TEST_F(VarlinkCodecTest, TooManyFdsAreClosedAndTheCallMarked) {
    varlink::DecodeLimits limits;
    limits.maxFdsPerMessage = 3;
    Decoder decoder(limits);
    std::vector<UniqueFd> fds = devNulls(4);
    std::vector<int> raw;
    raw.reserve(fds.size());
    for (auto& fd : fds) {
        raw.push_back(fd.get());
    }
    decoder.feed(call(R"({"method":"a.b.C"})"), std::move(fds));
    CallMessage message = expectCall(decoder);
    EXPECT_EQ(message.fdLoss, wire::FdLoss::TooMany);
    EXPECT_TRUE(message.fds.empty());
    for (int fd : raw) {
        EXPECT_FALSE(isOpen(fd));
    }
    // The kernel could not install them all (MSG_CTRUNC): marked as such, the rest closed.
    std::vector<UniqueFd> some = devNulls(1);
    int kept = some[0].get();
    decoder.feed(call(R"({"method":"a.b.C"})"), std::move(some), true);
    CallMessage lost = expectCall(decoder);
    EXPECT_EQ(lost.fdLoss, wire::FdLoss::NotReceived);
    EXPECT_TRUE(lost.fds.empty());
    EXPECT_FALSE(isOpen(kept));
}

TEST_F(VarlinkCodecTest, EncodesReplies) {
    using namespace std::string_literals;
    EXPECT_EQ(wire::encodeReply({{"id", 7}}), "{\"parameters\":{\"id\":7}}\0"s);
    EXPECT_EQ(wire::encodeReply({{"id", 7}}, true),
              "{\"continues\":true,\"parameters\":{\"id\":7}}\0"s);
    EXPECT_EQ(wire::encodeReply(Json()), "{\"parameters\":{}}\0"s);
    EXPECT_EQ(wire::encodeError("org.nsfd1.Manager.NoSuchProcess", {{"pid", 4711}}),
              "{\"error\":\"org.nsfd1.Manager.NoSuchProcess\",\"parameters\":{\"pid\":4711}}\0"s);
    EXPECT_EQ(wire::encodeCall("a.b.C", Json::object(), true),
              "{\"method\":\"a.b.C\",\"more\":true,\"parameters\":{}}\0"s);
    // Invalid UTF-8 a handler put in a string does not throw.
    std::string reply = wire::encodeReply({{"s", "\xff"}});
    EXPECT_EQ(reply.back(), '\0');
}

}  // namespace
}  // namespace nsfd::test
