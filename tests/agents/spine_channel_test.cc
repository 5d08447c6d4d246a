#include "agents/spine_channel.h"

#include <fstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/test_dir.h"

namespace idsync {
namespace {

using ::testing::HasSubstr;

TEST(SpineChannelTest, ParsesAddresses) {
  auto a = ParseDispatcherAddress("idsync.example.com:443");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->host, "idsync.example.com");
  EXPECT_EQ(a->port, 443);
  auto v6 = ParseDispatcherAddress("[::1]:50051");
  ASSERT_TRUE(v6.ok());
  EXPECT_EQ(v6->host, "::1");
  EXPECT_EQ(v6->port, 50051);
  for (const char* bad : {"", "host", "host:", ":1", "host:0", "host:65536",
                          "host:x", "::1:5", "[::1]5", "[::1]:"}) {
    EXPECT_FALSE(ParseDispatcherAddress(bad).ok()) << bad;
  }
}

TEST(SpineChannelTest, KnowsLoopback) {
  for (const char* host : {"localhost", "LOCALHOST", "127.0.0.1", "127.9.8.7",
                           "::1", "::ffff:127.0.0.1"}) {
    EXPECT_TRUE(IsLoopbackHost(host)) << host;
  }
  for (const char* host : {"10.0.0.1", "128.0.0.1", "::2", "example.com",
                           "localhost.example.com", "0.0.0.0", "::"}) {
    EXPECT_FALSE(IsLoopbackHost(host)) << host;
  }
}

TEST(SpineChannelTest, PlaintextOnlyOnLoopbackUnlessAllowed) {
  TlsOptions tls;
  tls.insecure = true;
  EXPECT_TRUE(SpineCredentials("127.0.0.1:50051", tls).ok());
  EXPECT_TRUE(SpineCredentials("localhost:50051", tls).ok());
  EXPECT_TRUE(SpineCredentials("[::1]:50051", tls).ok());
  auto remote = SpineCredentials("idsync.example.com:50051", tls);
  EXPECT_EQ(remote.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(remote.status().message(), HasSubstr("loopback"));
  EXPECT_THAT(remote.status().message(), HasSubstr("--insecure-allow-remote"));
  tls.insecure_allow_remote = true;
  EXPECT_TRUE(SpineCredentials("idsync.example.com:50051", tls).ok());
}

TEST(SpineChannelTest, TlsOptionsAreChecked) {
  testing::ScopedTestDir dir("spine_channel");
  TlsOptions tls;
  EXPECT_TRUE(SpineCredentials("idsync.example.com:443", tls).ok());
  tls.ca_file = dir.File("missing.pem");
  auto missing = SpineCredentials("idsync.example.com:443", tls);
  EXPECT_THAT(missing.status().message(), HasSubstr("--ca-file"));

  const std::string not_pem = dir.File("ca.txt");
  std::ofstream(not_pem) << "hello";
  tls.ca_file = not_pem;
  EXPECT_THAT(
      SpineCredentials("idsync.example.com:443", tls).status().message(),
      HasSubstr("not a PEM"));

  TlsOptions half;
  half.client_cert = dir.File("c.pem");
  EXPECT_THAT(
      SpineCredentials("idsync.example.com:443", half).status().message(),
      HasSubstr("go together"));

  TlsOptions mixed;
  mixed.insecure = true;
  mixed.ca_file = not_pem;
  EXPECT_FALSE(SpineCredentials("127.0.0.1:1", mixed).ok());
}

TEST(SpineChannelTest, KeepaliveStaysWithinWhatTheDispatcherAllows) {
  // The dispatcher accepts a ping every 10 s without data.
  EXPECT_GE(kSpineKeepaliveTimeMs, 10000);
  EXPECT_EQ(kSpineKeepalivePermitWithoutCalls, 1);
  EXPECT_EQ(kSpineMaxPingsWithoutData, 0);
}

}  // namespace
}  // namespace idsync
