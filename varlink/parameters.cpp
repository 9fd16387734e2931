// SPDX-License-Identifier: LGPL-2.1-or-later
#include "varlink/parameters.hpp"

#include <algorithm>
#include <iterator>
#include <stdexcept>

namespace nsfd::varlink {

namespace {

bool byName(const Parameters::Member& a, const Parameters::Member& b) {
    return a.first < b.first;
}

}  // namespace

Parameters::Parameters(std::vector<Member> members) : members_(std::move(members)) {
    // Already in order, as encodeCall and every nlohmann-made call send them:
    // nothing to do. Otherwise stable, so that equal names keep their order.
    if (!std::is_sorted(members_.begin(), members_.end(), byName)) {
        std::stable_sort(members_.begin(), members_.end(), byName);
    }
    // Of each run of equal names, the last member stays.
    auto kept = members_.begin();
    for (auto it = members_.begin(); it != members_.end(); ++it) {
        auto next = std::next(it);
        if (next != members_.end() && next->first == it->first) {
            continue;
        }
        if (kept != it) {
            *kept = std::move(*it);
        }
        ++kept;
    }
    members_.erase(kept, members_.end());
}

Parameters Parameters::fromJson(const Json& object) {
    if (!object.is_object()) {
        throw std::invalid_argument("Varlink parameters must be a JSON object, not " +
                                    std::string(object.type_name()));
    }
    std::vector<Member> members;
    members.reserve(object.size());
    for (const auto& [name, value] : object.items()) {
        members.emplace_back(name, value);
    }
    return Parameters(std::move(members));
}

const Json* Parameters::find(std::string_view name) const noexcept {
    auto it = std::lower_bound(
        members_.begin(), members_.end(), name,
        [](const Member& member, std::string_view wanted) { return member.first < wanted; });
    return it != members_.end() && it->first == name ? &it->second : nullptr;
}

const Json& Parameters::at(std::string_view name) const {
    const Json* value = find(name);
    if (value == nullptr) {
        throw std::out_of_range("No parameter '" + std::string(name) + "'");
    }
    return *value;
}

Json Parameters::toJson() const {
    Json object = Json::object();
    for (const auto& [name, value] : members_) {
        object[name] = value;
    }
    return object;
}

}  // namespace nsfd::varlink
