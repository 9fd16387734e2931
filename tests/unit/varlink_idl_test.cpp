// SPDX-License-Identifier: LGPL-2.1-or-later
// The Varlink IDL parser and the call check derived from it (varlink/idl.hpp).
#include "varlink/idl.hpp"

#include <gtest/gtest.h>

#include "varlink/manager_idl.hpp"
#include "varlink/service_idl.hpp"

namespace nsfd::test {
namespace {

namespace idl = nsfd::varlink::idl;
using nsfd::varlink::Json;
using nsfd::varlink::Parameters;

constexpr const char* kIdl = R"idl(# A test interface.
interface org.example.Shapes

type Kind (circle, square)
type Point (x: int, y: int, label: ?string)

# [Supports 'more' flag]
method List(kinds: ?[]Kind, near: ?Point) -> (names: []string)

# [Requires 'more' flag]
method Watch() -> (name: string)

method Scale(factor: float, by: [string]int, options: ?object, inline: ?(a: bool)) -> ()

error NoSuchShape (name: string)
)idl";

std::optional<std::string> check(const idl::Interface& interface, const std::string& method,
                                 const Json& parameters) {
    return idl::checkInput(interface, *interface.method(method), Parameters::fromJson(parameters));
}

TEST(VarlinkIdlParser, ParsesTypesMethodsErrorsAndMoreFlags) {
    idl::Interface interface = idl::parse(kIdl);
    EXPECT_EQ(interface.name, "org.example.Shapes");
    EXPECT_EQ(interface.types.size(), 2u);
    EXPECT_EQ(interface.types.at("Kind").enumValues,
              (std::vector<std::string>{"circle", "square"}));
    ASSERT_EQ(interface.methods.size(), 3u);
    EXPECT_EQ(interface.method("List")->more, idl::More::Supports);
    EXPECT_EQ(interface.method("Watch")->more, idl::More::Requires);
    EXPECT_EQ(interface.method("Scale")->more, idl::More::None);
    EXPECT_EQ(interface.method("Scale")->input.size(), 4u);
    EXPECT_EQ(interface.errors.count("NoSuchShape"), 1u);
}

TEST(VarlinkIdlParser, NsfdsAndTheServiceInterfaceParse) {
    EXPECT_EQ(idl::parse(nsfd::daemon::varlink::kManagerIdl).name, "org.nsfd1.Manager");
    EXPECT_EQ(idl::parse(nsfd::daemon::varlink::kServiceIdl).methods.size(), 2u);
}

TEST(VarlinkIdlParser, RefusesBrokenDescriptionsWithTheirLine) {
    auto lineOf = [](const char* text) {
        try {
            idl::parse(text);
        } catch (const idl::ParseError& e) {
            return static_cast<int>(e.line());
        }
        return -1;
    };
    EXPECT_EQ(lineOf("interface a.b\nmethod F(x: int -> ()\n"), 2);
    EXPECT_EQ(lineOf("interface a.b\n\nmethod F(x: wat) -> ()\n"), 3);
    EXPECT_EQ(lineOf("interface a.b\nmethod F() -> ()\nmethod F() -> ()\n"), 3);
    EXPECT_EQ(lineOf("interface a.b\nmethod F(x: int, x: int) -> ()\n"), 2);
    EXPECT_EQ(lineOf("interface a.b\nfrobnicate F() -> ()\n"), 2);
    EXPECT_EQ(lineOf("interface ..\n"), 1);
    EXPECT_EQ(lineOf("interface a.b\nmethod F(p: Undefined) -> ()\n"), 0);  // found at the end
    EXPECT_EQ(lineOf("interface a.b\nmethod F(p: int) -> ()\n"), -1);
}

TEST(VarlinkIdlCheck, NamesTheFirstBadParameter) {
    idl::Interface interface = idl::parse(kIdl);
    EXPECT_EQ(check(interface, "List", Json::object()), std::nullopt);
    EXPECT_EQ(check(interface, "List", {{"kinds", {"circle"}}, {"near", nullptr}}), std::nullopt);
    EXPECT_EQ(check(interface, "List", {{"kinds", {"circle", "hexagon"}}}), "kinds");
    EXPECT_EQ(check(interface, "List", {{"near", {{"x", 1}}}}), "near");  // y missing
    EXPECT_EQ(check(interface, "List", {{"near", {{"x", 1}, {"y", 2}, {"z", 3}}}}), "near");
    EXPECT_EQ(check(interface, "List", {{"near", {{"x", 1}, {"y", 2}, {"label", "o"}}}}),
              std::nullopt);
    EXPECT_EQ(check(interface, "List", {{"shape", 1}}), "shape");

    Json scale = {{"factor", 2}, {"by", {{"a", 1}}}};
    EXPECT_EQ(check(interface, "Scale", scale), std::nullopt);  // an int is a float
    scale["factor"] = 2.5;
    EXPECT_EQ(check(interface, "Scale", scale), std::nullopt);
    EXPECT_EQ(check(interface, "Scale", {{"by", Json::object()}}), "factor");
    EXPECT_EQ(check(interface, "Scale", {{"factor", nullptr}, {"by", Json::object()}}), "factor");
    EXPECT_EQ(check(interface, "Scale", {{"factor", "2"}, {"by", Json::object()}}), "factor");
    EXPECT_EQ(check(interface, "Scale", {{"factor", 1}, {"by", {{"a", 1.5}}}}), "by");
    EXPECT_EQ(check(interface, "Scale", {{"factor", 1}, {"by", Json::array()}}), "by");
    EXPECT_EQ(check(interface, "Scale", {{"factor", 1}, {"by", Json::object()}, {"options", 1}}),
              "options");
    EXPECT_EQ(check(interface, "Scale",
                    {{"factor", 1}, {"by", Json::object()}, {"inline", {{"a", "yes"}}}}),
              "inline");
    // Parameters are an object, or the decoder refused the call (InvalidField).
    EXPECT_THROW(Parameters::fromJson(Json::array()), std::invalid_argument);
}

}  // namespace
}  // namespace nsfd::test
