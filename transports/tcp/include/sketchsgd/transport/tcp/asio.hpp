// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// Boost.Asio with its C++20 coroutines, under g++ and clang alike. Every TCP
/// header includes Asio through this one.
///
/// Boost 1.74's Asio turns coroutines on under clang only when
/// `<experimental/coroutine>` exists, which libstdc++ lacks; clang 14 with
/// libstdc++ has the standard `<coroutine>` that Asio uses under g++, so the
/// two switches Asio would set there are set here first.

#include <utility>  // before Boost.Asio: its coroutine support needs it

#if defined(__clang__) && !defined(BOOST_ASIO_HAS_CO_AWAIT) && defined(__cpp_impl_coroutine) && \
    __has_include(<coroutine>)
#if defined(BOOST_ASIO_VERSION)
#error "sketchsgd's TCP headers must come before <boost/asio.hpp> under clang (or define BOOST_ASIO_HAS_CO_AWAIT and BOOST_ASIO_HAS_STD_COROUTINE)"
#endif
#define BOOST_ASIO_HAS_CO_AWAIT 1
#define BOOST_ASIO_HAS_STD_COROUTINE 1
#endif

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
