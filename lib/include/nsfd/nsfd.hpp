// SPDX-License-Identifier: LGPL-2.1-or-later
// The whole of libnsfd.
#pragma once

#include "nsfd/features.hpp"
#include "nsfd/info.hpp"
#include "nsfd/ns.hpp"
#include "nsfd/pidfd.hpp"
#include "nsfd/unique_fd.hpp"
