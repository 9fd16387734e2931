// SPDX-License-Identifier: LGPL-2.1-or-later
// polkit as the authorization step's last decider: asked only when the kernel
// rule and nsfdd.conf's grants did not allow a call, asynchronously (the loop
// serves other callers meanwhile), with nsfdd's own timeout. The actions are
// systemd/org.nsfd1.policy; each check passes the details rules read with
// action.lookup(): pid, id, uid (the target's real uid), namespace, signal,
// caller-sandboxed ("true" for a caller in another user namespace than
// nsfdd's), caller-user-namespace and caller-pid-namespace (NS_GET_IDs, "0"
// if unknown), target-visible ("true" if the caller could name the target).
// The subject is the caller's process (unix-process: pid, start time, uid),
// held by a pidfd since its connection was first seen; if that process has
// exited (before or during the check), polkit's answer is not taken: Deny.
#pragma once

#include <string_view>

#include "core/authorizer.hpp"
#include "polkit.hpp"

namespace nsfd::daemon {

// The polkit action of an authorization step's action; "" for one polkit
// never decides (GetFd stays root's).
std::string_view polkitActionOf(Action action) noexcept;

class PolkitDecider final : public Decider {
  public:
    PolkitDecider(sd_bus* bus, PolkitClient::Options options) : client_(bus, options) {}
    PolkitDecider(const PolkitDecider&) = delete;
    PolkitDecider& operator=(const PolkitDecider&) = delete;

    std::string_view name() const noexcept override { return "polkit"; }
    bool synchronous() const noexcept override { return false; }
    // Each namespace type of a GetNamespace is one check, in turn: all must pass.
    void decide(const Caller& caller, const Request& request, Answer answer) override;

  private:
    void check(const Caller& caller, const Request& request, std::size_t namespaceIndex,
               Answer answer);

    PolkitClient client_;
};

}  // namespace nsfd::daemon
