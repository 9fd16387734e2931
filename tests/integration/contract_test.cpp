// SPDX-License-Identifier: LGPL-2.1-or-later
// nsfdd serves the contract with hand-written sd-bus vtables; the XML in dbus/
// is the one source clients are generated from. These tests hold the two
// together: what nsfdd introspects as must be what the XML says, member by
// member, argument names, directions and property annotations included.
#include <fstream>
#include <regex>
#include <set>
#include <sstream>

#include "fixture.hpp"

namespace nsfd::test {
namespace {

// One line per member of interface `interface` in introspection XML, e.g.
// "method GetNamespace(in s type, out h fd)" or "property Pid u read const".
std::set<std::string> membersOf(std::string xml, const std::string& interface) {
    xml = std::regex_replace(xml, std::regex("<!--[^]*?-->"), "");
    static const std::regex tag(R"(<(/?)([a-z]+)((?:\s+[a-z]+="[^"]*")*)\s*(/?)>)");
    static const std::regex attribute(R"re(([a-z]+)="([^"]*)")re");
    std::set<std::string> members;
    bool inInterface = false;
    std::string kind;       // method, signal, property: the member being read
    std::string member;     // its line so far
    std::string arguments;  // of a method or signal
    std::string emits = "true";
    for (auto it = std::sregex_iterator(xml.begin(), xml.end(), tag); it != std::sregex_iterator();
         ++it) {
        bool closing = !(*it)[1].str().empty();
        bool selfClosing = !(*it)[4].str().empty();
        std::string name = (*it)[2];
        std::map<std::string, std::string> attrs;
        std::string attrText = (*it)[3];
        for (auto a = std::sregex_iterator(attrText.begin(), attrText.end(), attribute);
             a != std::sregex_iterator(); ++a) {
            attrs[(*a)[1]] = (*a)[2];
        }
        if (name == "interface") {
            inInterface = !closing && attrs["name"] == interface;
            continue;
        }
        if (!inInterface) {
            continue;
        }
        auto finish = [&] {
            if (kind == "property") {
                members.insert(member + " " + emits);
            } else {
                members.insert(member + "(" + arguments + ")");
            }
            kind.clear();
        };
        if ((name == "method" || name == "signal" || name == "property") && !closing) {
            kind = name;
            arguments.clear();
            emits = "true";
            member = name + " " + attrs["name"];
            if (name == "property") {
                member += " " + attrs["type"] + " " + attrs["access"];
            }
            if (selfClosing) {
                finish();
            }
        } else if (name == "arg" && !kind.empty()) {
            std::string direction = kind == "method" ? attrs.count("direction") != 0
                                                           ? attrs["direction"] + " "
                                                           : std::string("in ")
                                                     : "";
            arguments += (arguments.empty() ? "" : ", ") + direction + attrs["type"] + " " +
                         attrs["name"];
        } else if (name == "annotation" && kind == "property" &&
                   attrs["name"] == "org.freedesktop.DBus.Property.EmitsChangedSignal") {
            emits = attrs["value"];
        } else if (name == "annotation" && !kind.empty()) {
            member += " [" + attrs["name"] + "=" + attrs["value"] + "]";
        } else if (closing && name == kind) {
            finish();
        }
    }
    return members;
}

std::string readFile(const std::string& path) {
    std::ifstream in(path);
    std::ostringstream text;
    text << in.rdbuf();
    return text.str();
}

std::string introspect(sdbus::IConnection& bus, const std::string& path) {
    auto proxy = sdbus::createProxy(bus, nsfd::dbus::kBusName, path);
    std::string xml;
    proxy->callMethod("Introspect")
        .onInterface("org.freedesktop.DBus.Introspectable")
        .storeResultsTo(xml);
    return xml;
}

void expectSameMembers(const std::string& contractFile, const std::string& served,
                       const std::string& interface) {
    std::set<std::string> contract =
        membersOf(readFile(std::string(NSFD_TEST_SOURCE_DIR) + "/dbus/" + contractFile), interface);
    std::set<std::string> actual = membersOf(served, interface);
    ASSERT_GE(contract.size(), 10U) << "the contract file did not parse";
    std::ostringstream missing;
    std::ostringstream extra;
    for (const std::string& line : contract) {
        if (actual.count(line) == 0) {
            missing << "\n  " << line;
        }
    }
    for (const std::string& line : actual) {
        if (contract.count(line) == 0) {
            extra << "\n  " << line;
        }
    }
    EXPECT_TRUE(missing.str().empty() && extra.str().empty())
        << interface << ": in " << contractFile << " but not served:" << missing.str()
        << "\nserved but not in " << contractFile << ":" << extra.str();
}

using ContractTest = DaemonTest;

TEST_F(ContractTest, ManagerIsServedExactlyAsTheXmlSays) {
    expectSameMembers("org.nsfd1.Manager.xml", introspect(*connection_, nsfd::dbus::kManagerPath),
                      nsfd::dbus::kManagerInterface);
}

TEST_F(ContractTest, ProcessIsServedExactlyAsTheXmlSays) {
    Child child = Child::spawn();
    std::string path = manager_->TrackProcess(static_cast<uint32_t>(child.pid()));
    expectSameMembers("org.nsfd1.Process.xml", introspect(*connection_, path),
                      nsfd::dbus::kProcessInterface);
    child.release(0);
    child.reap();
}

TEST_F(ContractTest, TheComparisonSeesADifference) {
    // The checker itself: a served interface that lost an argument name, or a
    // property's annotation, must not compare equal.
    std::string xml = readFile(std::string(NSFD_TEST_SOURCE_DIR) + "/dbus/org.nsfd1.Process.xml");
    std::set<std::string> contract = membersOf(xml, nsfd::dbus::kProcessInterface);
    EXPECT_EQ(contract.count("method GetNamespace(in s type, out h fd)"), 1U);
    EXPECT_EQ(contract.count("property Pid u read const"), 1U);
    EXPECT_EQ(contract.count("property State s read true"), 1U);
    EXPECT_EQ(contract.count("signal Exited(i wait_status)"), 1U);
    std::string renamed = std::regex_replace(xml, std::regex(R"(name="wait_status")"), "name=\"ws\"");
    EXPECT_NE(membersOf(renamed, nsfd::dbus::kProcessInterface), contract);
}

}  // namespace
}  // namespace nsfd::test
