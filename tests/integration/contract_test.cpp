// SPDX-License-Identifier: LGPL-2.1-or-later
// nsfdd serves the contract with hand-written sd-bus vtables; the XML in dbus/
// is the one source clients are generated from. These tests hold the two
// together: what nsfdd introspects as must be what the XML says, member by
// member, argument names, directions and property annotations included.
#include <fstream>
#include <set>
#include <sstream>

#include "fixture.hpp"

namespace nsfd::test {
namespace {

// The elements of introspection XML in order, each with its attributes;
// comments and declarations skipped. Enough for the D-Bus introspection format.
struct Tag {
    std::string name;
    bool closing = false;      // </name>
    bool selfClosing = false;  // <name ... />
    std::map<std::string, std::string> attributes;
};

std::vector<Tag> tagsOf(const std::string& xml) {
    std::vector<Tag> tags;
    for (std::size_t at = xml.find('<'); at != std::string::npos; at = xml.find('<', at)) {
        if (xml.compare(at, 4, "<!--") == 0) {
            at = xml.find("-->", at);
            continue;
        }
        std::size_t end = xml.find('>', at);
        if (end == std::string::npos) {
            break;
        }
        std::string text = xml.substr(at + 1, end - at - 1);
        at = end;
        if (text.empty() || text[0] == '!' || text[0] == '?') {
            continue;
        }
        Tag tag;
        tag.closing = text[0] == '/';
        tag.selfClosing = text.back() == '/';
        std::istringstream words(text.substr(tag.closing ? 1 : 0));
        words >> tag.name;
        for (std::size_t eq = text.find("=\""); eq != std::string::npos;
             eq = text.find("=\"", eq + 1)) {
            std::size_t nameStart = text.find_last_of(" \t\n", eq) + 1;
            std::size_t valueEnd = text.find('"', eq + 2);
            tag.attributes[text.substr(nameStart, eq - nameStart)] =
                text.substr(eq + 2, valueEnd - eq - 2);
        }
        tags.push_back(std::move(tag));
    }
    return tags;
}

// One line per member of interface `interface` in introspection XML, e.g.
// "method GetNamespace(in s type, out h fd)" or "property Pid u read const".
std::set<std::string> membersOf(const std::string& xml, const std::string& interface) {
    std::set<std::string> members;
    bool inInterface = false;
    std::string kind;       // method, signal, property: the member being read
    std::string member;     // its line so far
    std::string arguments;  // of a method or signal
    std::string emits = "true";
    auto finish = [&] {
        members.insert(kind == "property" ? member + " " + emits : member + "(" + arguments + ")");
        kind.clear();
    };
    for (Tag& tag : tagsOf(xml)) {
        auto& attrs = tag.attributes;
        if (tag.name == "interface") {
            inInterface = !tag.closing && attrs["name"] == interface;
        } else if (!inInterface) {
            continue;
        } else if ((tag.name == "method" || tag.name == "signal" || tag.name == "property") &&
                   !tag.closing) {
            kind = tag.name;
            arguments.clear();
            emits = "true";
            member = tag.name + " " + attrs["name"];
            if (tag.name == "property") {
                member += " " + attrs["type"] + " " + attrs["access"];
            }
            if (tag.selfClosing) {
                finish();
            }
        } else if (tag.name == "arg" && !kind.empty()) {
            std::string direction;
            if (kind == "method") {
                direction = (attrs.count("direction") != 0 ? attrs["direction"] : "in") + " ";
            }
            arguments +=
                (arguments.empty() ? "" : ", ") + direction + attrs["type"] + " " + attrs["name"];
        } else if (tag.name == "annotation" && kind == "property" &&
                   attrs["name"] == "org.freedesktop.DBus.Property.EmitsChangedSignal") {
            emits = attrs["value"];
        } else if (tag.name == "annotation" && !kind.empty()) {
            member += " [" + attrs["name"] + "=" + attrs["value"] + "]";
        } else if (tag.closing && tag.name == kind) {
            finish();
        }
    }
    return members;
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
    std::string renamed = xml;
    renamed.replace(renamed.find("name=\"wait_status\""), 18, "name=\"ws\"");
    EXPECT_NE(membersOf(renamed, nsfd::dbus::kProcessInterface), contract);
    std::string notConst = xml;
    notConst.replace(notConst.find("value=\"const\""), 13, "value=\"false\"");
    EXPECT_NE(membersOf(notConst, nsfd::dbus::kProcessInterface), contract);
}

}  // namespace
}  // namespace nsfd::test
