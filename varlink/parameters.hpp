// SPDX-License-Identifier: LGPL-2.1-or-later
// A call's "parameters" object as a server holds it: each member's name and
// value, sorted by name, a repeated name keeping the value that came last (as
// nlohmann's Json object did before; sd-varlink refuses a repeated name). Its members sit in one
// vector where a Json object allocates a node for each: a call's parameters
// are built, looked up a few times and dropped, and nlohmann's object was a
// tenth of nsfdd's own time per call (BENCHMARKS.md, figure 11b). The values
// stay Json: nested objects and arrays are rare and checked whole.
#pragma once

#include <cstddef>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace nsfd::varlink {

using Json = nlohmann::json;

class Parameters {
  public:
    using Member = std::pair<std::string, Json>;
    using const_iterator = std::vector<Member>::const_iterator;

    Parameters() = default;
    // `members` in any order; of a repeated name, the member that came last stays.
    explicit Parameters(std::vector<Member> members);
    // The members of a Json object. Throws std::invalid_argument if `object` is not one.
    static Parameters fromJson(const Json& object);

    // The value of member `name`; nullptr if there is none. O(log n).
    const Json* find(std::string_view name) const noexcept;
    bool contains(std::string_view name) const noexcept { return find(name) != nullptr; }
    // The value of member `name`. Throws std::out_of_range if there is none.
    const Json& at(std::string_view name) const;

    // By name.
    const_iterator begin() const noexcept { return members_.begin(); }
    const_iterator end() const noexcept { return members_.end(); }
    std::size_t size() const noexcept { return members_.size(); }
    bool empty() const noexcept { return members_.empty(); }

    // The same object as Json: to encode it again, or to show it.
    Json toJson() const;

    friend bool operator==(const Parameters&, const Parameters&) = default;
    // `Json json = parameters;` is the object (not nlohmann's array of pairs).
    friend void to_json(Json& json, const Parameters& parameters) { json = parameters.toJson(); }

  private:
    std::vector<Member> members_;
};

}  // namespace nsfd::varlink
