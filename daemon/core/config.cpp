// SPDX-License-Identifier: LGPL-2.1-or-later
#include "config.hpp"

#include <grp.h>
#include <pwd.h>

#include <toml++/toml.h>
#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "nsfd/socket_names.hpp"

namespace nsfd::daemon {

namespace {

[[noreturn]] void fail(const std::string& path, const toml::source_region& where,
                       const std::string& reason) {
    std::string location = path;
    if (where.begin.line > 0) {
        location += ":" + std::to_string(where.begin.line);
    }
    throw ConfigError(location + ": " + reason);
}

void checkKeys(const toml::table& table, std::initializer_list<std::string_view> known,
               const std::string& path, const std::string& context) {
    for (const auto& [key, node] : table) {
        bool ok = false;
        for (std::string_view name : known) {
            ok = ok || key.str() == name;
        }
        if (!ok) {
            fail(path, node.source(), "unknown key '" + std::string(key.str()) + "' in " + context);
        }
    }
}

// The text of `node` as written in `text` (toml++ keeps where, not how).
std::string_view literalOf(std::string_view text, const toml::node& node) {
    const toml::source_region& where = node.source();
    std::size_t start = 0;
    for (toml::source_index line = 1; line < where.begin.line; ++line) {
        start = text.find('\n', start);
        if (start == std::string_view::npos) {
            return {};
        }
        ++start;
    }
    if (where.end.line != where.begin.line || where.end.column <= where.begin.column) {
        return {};
    }
    return text.substr(std::min(text.size(), start + where.begin.column - 1),
                       where.end.column - where.begin.column);
}

// One spelling: decimal digits as std::to_string writes them. TOML also
// reads 0x3c, 0o74, 0b111100, +60 and 6_0 as 60; each is refused here.
template <typename T>
T integerIn(std::string_view text, const toml::node& node, long long min, long long max,
            const std::string& path, const std::string& name) {
    // Only an integer node: value<long long>() would convert a float, and one
    // out of range (20e67) is undefined behaviour (found by tests/fuzz).
    std::optional<long long> value =
        node.is_integer() ? node.value_exact<long long>() : std::nullopt;
    if (!value || *value < min || *value > max || literalOf(text, node) != std::to_string(*value)) {
        fail(path, node.source(),
             name + " must be an integer from " + std::to_string(min) + " to " +
                 std::to_string(max) + ", in decimal digits (no sign, no leading zero, no '_')");
    }
    return static_cast<T>(*value);
}

bool boolean(const toml::node& node, const std::string& path, const std::string& name) {
    if (!node.is_boolean()) {
        fail(path, node.source(), name + " must be true or false");
    }
    return *node.value<bool>();
}

// `sockets = ["inet", "netlink"]` or `["all"]`: socket(2)'s families by
// nsfd/socket_names.hpp's names, each once, or "all" alone.
std::set<int> parseSocketFamilies(const toml::node& node, const std::string& path) {
    const toml::array* list = node.as_array();
    if (list == nullptr) {
        fail(path, node.source(), "sockets must be a list of socket families (\"inet\", ...)");
    }
    std::set<int> families;
    std::vector<std::string> seen;
    for (const toml::node& item : *list) {
        std::optional<std::string> name =
            item.is_string() ? item.value<std::string>() : std::nullopt;
        if (name && std::find(seen.begin(), seen.end(), *name) != seen.end()) {
            fail(path, item.source(), "socket family '" + *name + "' listed twice");
        }
        if (name && *name == "all") {
            if (list->size() != 1) {
                fail(path, item.source(), "\"all\" stands alone in sockets: [\"all\"]");
            }
            for (const SocketName& family : kSocketFamilies) {
                families.insert(family.value);
            }
            continue;
        }
        std::optional<int> family = name ? socketFamilyOf(*name) : std::nullopt;
        if (!family) {
            fail(path, item.source(),
                 "unknown socket family '" + name.value_or("?") +
                     "' (socket(2)'s AF_ name in lower case without AF_: unix inet inet6 "
                     "netlink packet ..., or all)");
        }
        seen.push_back(*name);
        families.insert(*family);
    }
    return families;
}

// `enter = ["net", "uts", "ipc"]`: the namespace types a brokered run (Spawn)
// enters, each once; no other type is one.
std::set<NsType> parseEnterTypes(const toml::node& node, const std::string& path) {
    const toml::array* list = node.as_array();
    if (list == nullptr) {
        fail(path, node.source(), "enter must be a list of namespace types (\"net\", ...)");
    }
    std::set<NsType> types;
    for (const toml::node& item : *list) {
        std::optional<std::string> name =
            item.is_string() ? item.value<std::string>() : std::nullopt;
        std::optional<NsType> type = name ? parseNsType(*name) : std::nullopt;
        if (!type || (*type != NsType::Net && *type != NsType::Uts && *type != NsType::Ipc)) {
            fail(path, item.source(),
                 "enter takes net, uts and ipc, not '" + name.value_or("?") +
                     "': a brokered run keeps the caller's own mount, pid, user, cgroup and "
                     "time namespaces");
        }
        if (!types.insert(*type).second) {
            fail(path, item.source(), "namespace type '" + *name + "' listed twice in enter");
        }
    }
    return types;
}

Grant parseGrant(const toml::table& table, const std::string& path) {
    checkKeys(table,
              {"user", "group", "namespaces", "info", "pidfd", "sockets", "sandboxed", "enter"},
              path, "[[grant]]");
    Grant grant;
    const toml::node* user = table.get("user");
    const toml::node* group = table.get("group");
    if ((user == nullptr) == (group == nullptr)) {
        fail(path, table.source(), "a [[grant]] names exactly one of user or group");
    }
    if (user != nullptr) {
        std::optional<std::string> name =
            user->is_string() ? user->value<std::string>() : std::nullopt;
        if (!name) {
            fail(path, user->source(), "user must be a user name, as a string (user = \"alice\")");
        }
        struct passwd* pw = ::getpwnam(name->c_str());
        if (pw == nullptr) {
            fail(path, user->source(), "unknown user '" + *name + "'");
        }
        grant.uid = pw->pw_uid;
        grant.subject = "user " + *name;
    } else {
        std::optional<std::string> name =
            group->is_string() ? group->value<std::string>() : std::nullopt;
        if (!name) {
            fail(path, group->source(),
                 "group must be a group name, as a string (group = \"nsfd\")");
        }
        struct group* gr = ::getgrnam(name->c_str());
        if (gr == nullptr) {
            fail(path, group->source(), "unknown group '" + *name + "'");
        }
        grant.gid = gr->gr_gid;
        grant.subject = "group " + *name;
    }
    if (const toml::node* namespaces = table.get("namespaces")) {
        const toml::array* list = namespaces->as_array();
        if (list == nullptr) {
            fail(path, namespaces->source(), "namespaces must be a list of namespace types");
        }
        // One spelling of a set: each type once, or "all" alone.
        std::vector<std::string> seen;
        for (const toml::node& item : *list) {
            std::optional<std::string> name =
                item.is_string() ? item.value<std::string>() : std::nullopt;
            std::optional<NsType> type = name ? parseNsType(*name) : std::nullopt;
            if (name && *name == "all" && list->size() != 1) {
                fail(path, item.source(), "\"all\" stands alone in namespaces: [\"all\"]");
            }
            if (name && std::find(seen.begin(), seen.end(), *name) != seen.end()) {
                fail(path, item.source(), "namespace type '" + *name + "' listed twice");
            }
            if (name) {
                seen.push_back(*name);
            }
            if (name && *name == "all") {
                grant.namespaces.insert(allNsTypes().begin(), allNsTypes().end());
                continue;
            }
            if (!type) {
                fail(path, item.source(),
                     "unknown namespace type '" + name.value_or("?") +
                         "' (cgroup ipc mnt net pid pid_for_children time time_for_children "
                         "user uts, or all)");
            }
            grant.namespaces.insert(*type);
        }
    }
    if (const toml::node* sockets = table.get("sockets")) {
        grant.sockets = parseSocketFamilies(*sockets, path);
    }
    if (const toml::node* enter = table.get("enter")) {
        grant.enter = parseEnterTypes(*enter, path);
    }
    if (const toml::node* info = table.get("info")) {
        grant.info = boolean(*info, path, "info");
    }
    if (const toml::node* pidfd = table.get("pidfd")) {
        grant.pidfd = boolean(*pidfd, path, "pidfd");
    }
    if (const toml::node* sandboxed = table.get("sandboxed")) {
        grant.sandboxed = boolean(*sandboxed, path, "sandboxed");
    }
    return grant;
}

}  // namespace

Config parseConfig(std::string_view text, const std::string& path) {
    toml::table root;
    try {
        root = toml::parse(text, path);
    } catch (const toml::parse_error& e) {
        fail(path, e.source(), std::string(e.description()));
    }
    checkKeys(root, {"limits", "polkit", "grant"}, path, "the top level");
    Config config;
    config.source = path;
    if (const toml::node* limitsNode = root.get("limits")) {
        const toml::table* limits = limitsNode->as_table();
        if (limits == nullptr) {
            fail(path, limitsNode->source(), "[limits] must be a table");
        }
        checkKeys(*limits, {"tracked-per-user", "retention-seconds"}, path, "[limits]");
        if (const toml::node* n = limits->get("tracked-per-user")) {
            config.trackedPerUser =
                integerIn<unsigned>(text, *n, 0, 1'000'000, path, "tracked-per-user");
        }
        if (const toml::node* n = limits->get("retention-seconds")) {
            config.retention = std::chrono::seconds(
                integerIn<long>(text, *n, 0, 86'400, path, "retention-seconds"));
        }
    }
    if (const toml::node* polkitNode = root.get("polkit")) {
        const toml::table* polkit = polkitNode->as_table();
        if (polkit == nullptr) {
            fail(path, polkitNode->source(), "[polkit] must be a table");
        }
        checkKeys(*polkit, {"enabled", "timeout-ms"}, path, "[polkit]");
        if (const toml::node* n = polkit->get("enabled")) {
            config.polkit = boolean(*n, path, "enabled");
        }
        if (const toml::node* n = polkit->get("timeout-ms")) {
            config.polkitTimeout = std::chrono::milliseconds(
                integerIn<long>(text, *n, 1, 120'000, path, "timeout-ms"));
        }
    }
    if (const toml::node* grants = root.get("grant")) {
        const toml::array* list = grants->as_array();
        if (list == nullptr) {
            fail(path, grants->source(), "grants are written as [[grant]] tables");
        }
        for (const toml::node& item : *list) {
            const toml::table* table = item.as_table();
            if (table == nullptr) {
                fail(path, item.source(), "grants are written as [[grant]] tables");
            }
            config.grants.push_back(parseGrant(*table, path));
        }
    }
    return config;
}

Config loadConfig(const std::string& path, bool mustExist) {
    std::ifstream file(path);
    if (!file) {
        int err = errno;
        if (err == ENOENT && !mustExist) {
            return Config{};
        }
        throw ConfigError(path + ": " + std::strerror(err));
    }
    std::stringstream text;
    text << file.rdbuf();
    return parseConfig(text.str(), path);
}

}  // namespace nsfd::daemon
